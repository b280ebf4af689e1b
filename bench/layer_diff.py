"""The overlay differ's layer stream next to GNU tar, on the same directory, in one run.

    .venv/bin/python bench/layer_diff.py [DIRECTORY ...] [--runs 3]

For the directories given (default: /usr/lib/python3.11 and /usr/share/doc, many small files,
read from the page cache after a first pass) it prints the best wall time of ``--runs`` of:
``tar -c | cat > /dev/null`` (the floor: GNU tar skips reading data when writing straight to
/dev/null, so it is piped), ``write_layer`` into a sink that discards, ``tar -c | zstd -3 -T0``
and ``write_layer`` into a ``LayerCompressor`` (zstd, which also hashes both streams).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "node-shim"))

from devbox_node_shim.compress import LayerCompressor
from devbox_node_shim.overlay_diff import write_layer

MiB = 1 << 20


class Discard:
    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return len(data)


def best_of(runs: int, action) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directories", nargs="*", default=["/usr/lib/python3.11", "/usr/share/doc"])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "upper"
        tree.mkdir()
        for directory in args.directories:
            subprocess.run(["cp", "-a", directory, str(tree)], check=True)
        sink = Discard()
        write_layer(tree, sink)  # type: ignore[arg-type]  # warms the page cache
        files = sum(1 for _ in tree.rglob("*"))
        print(f"{sink.size / MiB:.0f} MiB of tar, {files} entries, best of {args.runs}")

        def shell(command: str) -> float:
            return best_of(
                args.runs,
                lambda: subprocess.run(
                    f"tar -C {tree} -cf - . | {command} > /dev/null", shell=True, check=True
                ),
            )

        def layer() -> None:
            write_layer(tree, Discard())  # type: ignore[arg-type]

        def compressed() -> None:
            with LayerCompressor(Path(tmp) / "blob") as out:
                write_layer(tree, out)  # type: ignore[arg-type]

        floor = shell("cat")
        rows = [
            ("tar -c | cat", floor),
            ("write_layer (discarded)", best_of(args.runs, layer)),
            ("tar -c | zstd -3 -T0", shell("zstd -3 -T0 -q -c")),
            ("write_layer | LayerCompressor zstd", best_of(args.runs, compressed)),
        ]
        for label, seconds in rows:
            print(f"{label:38} {seconds:7.2f} s  {seconds / floor:5.2f}x tar|cat")


if __name__ == "__main__":
    main()
