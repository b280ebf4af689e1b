"""Layer compression engines on one tar of ~200 MB of mixed files, next to the binaries' floor.

    .venv/bin/python bench/layer_compress.py [--megabytes 200] [--runs 3]

The tar (Python sources and bytecode, ELF binaries, documentation, random and zero-filled
files, as a devbox's changes would be) is built once in a temporary directory and read from
the page cache.  For each engine of ``devbox_node_shim.compress`` it prints the best wall time
of ``--runs``, the throughput and the compression ratio, with — measured in the same run — the
shell pipelines ``zstd -3 -T0``, ``pigz -6`` and ``gzip -1`` into ``/dev/null`` (the floor each
engine is compared with).  The engine layer also hashes the uncompressed and the compressed
stream (diff_id and digest), which the shell pipelines do not.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "node-shim"))

from devbox_node_shim.compress import compress_stream

MiB = 1 << 20
SOURCES = [  # (directory, share of the total)
    ("/usr/lib/python3.11", 0.30),
    ("/usr/bin", 0.25),
    ("/usr/share/doc", 0.15),
    ("/usr/lib/x86_64-linux-gnu", 0.10),
]


def build_tar(path: Path, total: int) -> int:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for directory, share in SOURCES:
            budget = int(total * share)
            for root, _, files in os.walk(directory):
                for name in sorted(files):
                    file = os.path.join(root, name)
                    if not os.path.isfile(file) or os.path.islink(file):
                        continue
                    if os.path.getsize(file) > budget:
                        continue
                    budget -= os.path.getsize(file)
                    tar.add(file, recursive=False)
        for label, share, data in (
            ("random", 0.15, None),
            ("zeros", 0.05, bytes(MiB)),
        ):
            size = int(total * share)
            scratch = path.parent / label
            with open(scratch, "wb") as f:
                for _ in range(size // MiB):
                    f.write(data if data is not None else os.urandom(MiB))
            tar.add(scratch, arcname=label)
    return path.stat().st_size


def best_of(runs: int, action) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tar = Path(tmp) / "layer.tar"
        size = build_tar(tar, args.megabytes * MiB)
        tar.read_bytes()  # warm the page cache
        print(f"tar: {size / MiB:.0f} MiB, {os.cpu_count()} CPUs, best of {args.runs}")
        print(f"{'what':38} {'seconds':>8} {'MiB/s':>7} {'ratio':>6}")

        def shell(command: str) -> float:
            return best_of(
                args.runs,
                lambda: subprocess.run(f"{command} < {tar} > /dev/null", shell=True, check=True),
            )

        floors = {
            "zstd": shell("zstd -3 -T0 -q -c"),
            "gzip": shell("pigz -6 -n -c"),
        }
        cat = shell("cat")
        print(f"{'shell: cat (reading the tar)':38} {cat:8.2f} {size / MiB / cat:7.0f}")
        print(f"{'shell: zstd -3 -T0':38} {floors['zstd']:8.2f} {size / MiB / floors['zstd']:7.0f}")
        print(f"{'shell: pigz -6':38} {floors['gzip']:8.2f} {size / MiB / floors['gzip']:7.0f}")
        gz1 = shell("gzip -1 -n -c")
        print(f"{'shell: gzip -1':38} {gz1:8.2f} {size / MiB / gz1:7.0f}")
        for compression, engine, level in (
            ("zstd", "binary", None),
            ("zstd", "library", None),
            ("gzip", "binary", None),
            ("gzip", "library", 1),
            ("gzip", "library", 6),
        ):
            out = Path(tmp) / "blob"
            result = []

            def run(compression=compression, engine=engine, level=level, out=out, result=result):  # type: ignore[no-untyped-def]
                with open(tar, "rb") as source:
                    result.append(
                        compress_stream(
                            source, out, compression=compression, engine=engine, level=level
                        )
                    )

            seconds = best_of(args.runs, run)
            layer = result[-1]
            label = f"engine: {compression} {engine}" + (f" -{level}" if level else "")
            ratio = layer.uncompressed_size / layer.size
            floor = floors[compression]
            print(
                f"{label:38} {seconds:8.2f} {size / MiB / seconds:7.0f} {ratio:6.2f}"
                f"  ({seconds / floor:.2f}x the {compression} shell floor)"
            )


if __name__ == "__main__":
    main()
