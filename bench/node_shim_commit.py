"""Commit + push through the real node-shim, next to podman and to tar pipes, in one run.

    .venv/bin/python bench/node_shim_commit.py [--quick] [--repeat 5] [--rounds 50] [--no-podman]

Starts a private containerd (tests/fixtures/containerd.py), a loopback docker-registry
(tests/fixtures/registry.py) and the node-shim gRPC server on a free port (called through the
controller's client, app/nodeshim_client.py).  The base image — busybox-static plus ~500 MB of
generated files (half random, half text) in 4 uncompressed layers — is built here as an OCI
layout, pushed to the registry with skopeo and pulled from there by containerd and by podman
(its own storage under a temporary --root; runc needs the ``default_ulimits`` of
:data:`CONTAINERS_CONF` on this machine kind).  Needs root, containerd, runc, docker-registry,
skopeo, busybox-static, zstd, gzip; podman for the comparisons (``apt-get install podman``;
not part of scripts/bootstrap).

(a) a 1 KB change on top of the base image: node-shim commit + push (snapshot mode, client wall
    time) next to ``podman commit`` + ``podman push --tls-verify=false`` of the same change to
    the same registry; median of ``--repeat`` runs.  Target: < 0.15 s and faster than podman.
(b) a ~1 GB diff of mixed files (small text files, medium text files, large random and large
    compressible files), written through the container's rootfs: commit + push time and how
    long the task was paused (pause + diff + resume steps), next to ``tar -c <upper> | zstd -3
    -T0``, ``| gzip -1`` and ``| cat`` (the pause floor) on the same upper directory, and
    podman commit + push of the same files.  CPU seconds are printed too: the pipes' (tar and
    the compressor) next to what the commit cost the node-shim, containerd (its content store
    ingests the compressed layer) and the registry (it receives and hashes the same bytes) —
    on a 2-core machine their sum bounds the commit's wall time from below.
(c) ``--rounds`` consecutive commits of one devbox, each round running the previous commit's
    image (as a restarted devbox does), appending 64 KiB to a log and touching a few files, with
    max_layers = base layers + 3: layer count, image size and bytes the registry stored per
    commit (growth of its blob store) are printed per round.

``--quick`` shrinks the base image to ~50 MB, the diff to ~100 MB and the rounds to 10.
``--workdir DIR`` puts containerd's root and the node-shim's state on DIR's filesystem (default
/tmp); an XFS one for (b)'s reflinked capture::

    truncate -s 8G /var/tmp/xfs.img && mkfs.xfs -q /var/tmp/xfs.img
    mkdir -p /mnt/xfs && mount -o loop /var/tmp/xfs.img /mnt/xfs
    .venv/bin/python bench/node_shim_commit.py --only b --no-podman --workdir /mnt/xfs
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devbox_node_shim.api import nodeshim_pb2 as pb  # noqa: E402
from devbox_node_shim.containerd import ContainerdClient  # noqa: E402
from devbox_node_shim.push import RegistryPusher  # noqa: E402
from devbox_node_shim.registry import Reference, RegistryClient  # noqa: E402
from devbox_node_shim.server import Server  # noqa: E402
from devbox_node_shim.settings import Settings  # noqa: E402

from app.nodeshim_client import CommitOutcome, NodeShimClient  # noqa: E402
from tests.fixtures.containerd import Containerd, _busybox_layer  # noqa: E402
from tests.fixtures.registry import RegistryServer  # noqa: E402

MB = 1_000_000
TERMINABLE = ("/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.05; done")
TOKEN = "bench-token"
CONTAINERS_CONF = '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'
WORDS = (  # noqa: SIM905 - a sentence is easier to read than 60 quoted words
    "the quick brown fox jumps over lazy dog devbox commit layer overlay image registry push "
    "kernel process memory python import return value class def self none true false for in "
    "while if else try except finally with as yield async await lambda print open read write"
).split()


# --- generated data ------------------------------------------------------------------------


def _text(rng: random.Random, size: int) -> bytes:
    """Compressible text of ``size`` bytes (random words, lines of varying length)."""
    out = bytearray()
    while len(out) < size:
        line = " ".join(rng.choices(WORDS, k=rng.randint(4, 14)))
        out += line.encode() + b"\n"
    return bytes(out[:size])


def populate(directory: Path, total: int, seed: int) -> int:
    """Write ~``total`` bytes of mixed files below ``directory``; the bytes written.

    10 % small text files (1-8 KB, 100 per directory), 20 % medium text files (~1 MB, each
    different), 45 % large random files, 25 % large compressible files (a 4 MB text pool
    repeated with a varying offset)."""
    rng = random.Random(seed)
    written = 0
    small, medium = total // 10, total // 5
    large_random, large_text = total * 45 // 100, total // 4
    pool = _text(rng, 4 * MB)
    count = 0
    while written < small:
        folder = directory / "src" / f"pkg{count // 100:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        size = rng.randint(1000, 8000)
        offset = rng.randrange(0, len(pool) - size)
        (folder / f"module_{count:06d}.py").write_bytes(pool[offset : offset + size])
        written += size
        count += 1
    (directory / "data").mkdir(parents=True, exist_ok=True)
    done = 0
    while done < medium:
        (directory / "data" / f"medium-{done // MB:05d}.txt").write_bytes(_text(rng, MB))
        done += MB
    written += done
    pieces = max(1, large_random // (150 * MB))
    for i in range(pieces):
        with (directory / "data" / f"large-random-{i}.bin").open("wb") as f:
            for _ in range(large_random // pieces // MB):
                f.write(os.urandom(MB))
    written += large_random
    pieces = max(1, large_text // (150 * MB))
    for i in range(pieces):
        with (directory / "data" / f"large-text-{i}.log").open("wb") as f:
            for j in range(large_text // pieces // MB):
                start = (j * 7919 + i) % (len(pool) - MB)
                f.write(pool[start : start + MB])
    written += large_text
    return written


def sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()


def build_base_layout(layout: Path, work: Path, total: int, layers: int) -> None:
    """An OCI image layout at ``layout`` (tag ``base``): busybox + ``layers`` generated layers
    (uncompressed tars) of ``total`` bytes in all."""
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    tars = [work / "layer-0.tar"]
    tars[0].write_bytes(_busybox_layer())
    for i in range(1, layers + 1):
        tree = work / f"tree-{i}"
        populate(tree / "opt" / f"base{i}", total // layers, seed=i)
        tar = work / f"layer-{i}.tar"
        subprocess.run(
            [
                "tar",
                "-C",
                str(tree),
                "--numeric-owner",
                "--owner=0",
                "--group=0",
                "-cf",
                str(tar),
                ".",
            ],
            check=True,
        )
        shutil.rmtree(tree)
        tars.append(tar)
    descriptors, diff_ids = [], []
    for tar in tars:
        digest = sha256_file(tar)
        size = tar.stat().st_size
        tar.rename(blobs / digest.split(":")[1])
        diff_ids.append(digest)
        descriptors.append(
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": size}
        )
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
                "size": len(config),
            },
            "layers": descriptors,
        }
    ).encode()
    for blob in (config, manifest):
        (blobs / hashlib.sha256(blob).hexdigest()).write_bytes(blob)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (layout / "index.json").write_text(
        json.dumps(
            {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": "sha256:" + hashlib.sha256(manifest).hexdigest(),
                        "size": len(manifest),
                        "annotations": {"org.opencontainers.image.ref.name": "base"},
                    }
                ],
            }
        )
    )


# --- helpers -------------------------------------------------------------------------------


def run(*command: str, env: dict[str, str] | None = None, timeout: float = 1800) -> str:
    result = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {result.stderr.strip()[-2000:]}")
    return result.stdout


async def timed_async(action: Awaitable[object]) -> float:
    start = time.perf_counter()
    await action
    return time.perf_counter() - start


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def tree_bytes(path: Path) -> int:
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(directory, name)).st_size
    return total


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def flush_disks() -> None:
    subprocess.run(["sync"], check=True)


def unmount(path: Path) -> None:
    subprocess.run(["umount", "-R", str(path)], capture_output=True, check=False)


def rootfs(cd: Containerd, container: str) -> Path:
    return cd.base / "state" / "io.containerd.runtime.v2.task" / cd.namespace / container / "rootfs"


class Podman:
    """podman with its own storage, configuration and ulimits, in a temporary folder."""

    def __init__(self, base: Path) -> None:
        self.base = base
        conf = base / "containers.conf"
        conf.write_text(CONTAINERS_CONF)
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}
        self.flags = ["--root", str(base / "root"), "--runroot", str(base / "run")]

    def __call__(self, *args: str, timeout: float = 1800) -> str:
        return run("podman", *self.flags, *args, env=self.env, timeout=timeout).strip()

    def commit_and_push(self, container: str, target: str) -> float:
        def action() -> None:
            self("commit", container, target)
            self("push", "--tls-verify=false", target)

        return timed(action)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self("rm", "-af", "-t", "0")
        with contextlib.suppress(Exception):
            self("system", "reset", "-f")
        unmount(self.base / "root")


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.containerd = Containerd(tmp / "ctrd", namespace="bench")
        self.registry = RegistryServer(tmp / "registry")
        self.podman: Podman | None = None
        self.containers: list[str] = []
        self.server: Server | None = None
        self.client: NodeShimClient | None = None
        self.base_ref = ""
        self.base_layers = 0

    # lifecycle

    async def start(self) -> None:
        self.containerd.base.mkdir()
        self.containerd.start()
        self.registry.directory.mkdir()
        self.registry.start()
        settings = Settings(
            token=TOKEN,
            listen_address="127.0.0.1",
            port=0,
            containerd_socket=self.containerd.socket,
            containerd_namespace=self.containerd.namespace,
            state_dir=self.tmp / "shim",
            insecure_registries=[self.registry.host],
        )
        pusher = RegistryPusher.from_settings(settings)
        self.server = Server(settings, pusher=pusher, registry=pusher)
        port = await self.server.start()
        self.client = NodeShimClient(port=port, token=TOKEN, call_timeout=3600)
        if not self.args.no_podman:
            (self.tmp / "podman").mkdir()
            self.podman = Podman(self.tmp / "podman")

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.close()
        if self.server is not None:
            await self.server.stop(grace=0)
        if self.podman is not None:
            self.podman.close()
        with contextlib.suppress(Exception):
            self.containerd.cleanup()
        self.containerd.stop()
        unmount(self.containerd.root)
        self.registry.stop()

    # building blocks

    def start_container(self, image: str) -> str:
        name = f"bench-{uuid.uuid4().hex[:8]}"
        # Exits at once on SIGTERM (a commit in mode STOP waits for that), as sshd does.
        self.containerd.run(image, name, *TERMINABLE)
        self.containers.append(name)
        return name

    def remove_container(self, name: str) -> None:
        self.containerd.remove_container(name)
        self.containers.remove(name)

    async def commit(
        self,
        container: str,
        target: str,
        max_layers: int = 0,
        mode: int = pb.COMMIT_MODE_SNAPSHOT,
    ) -> CommitOutcome:
        assert self.client is not None
        request = pb.CommitRequest(
            request_id=uuid.uuid4().hex,
            container_id=container,
            target_image=target,
            mode=mode,  # type: ignore[arg-type]
            max_layers=max_layers,
        )
        return await self.client.commit("127.0.0.1", request)

    async def upper_dir(self, container: str) -> str:
        cd = ContainerdClient(self.containerd.socket, self.containerd.namespace)
        try:
            info = await cd.container(container)
            mounts = await cd.mounts(info.snapshotter, info.snapshot_key)
        finally:
            await cd.close()
        upper = mounts[0].option("upperdir")
        assert upper is not None
        return upper

    def registry_bytes(self) -> int:
        return tree_bytes(
            self.registry.directory / "storage" / "docker" / "registry" / "v2" / "blobs"
        )

    # the image

    def build_base(self) -> None:
        size = 50 * MB if self.args.quick else 500 * MB
        work = self.tmp / "build"
        work.mkdir()
        layout = self.tmp / "layout"
        start = time.perf_counter()
        build_base_layout(layout, work, size, layers=4)
        self.base_ref = f"{self.registry.host}/bench/base:{size // MB}m"
        run(
            "skopeo",
            "copy",
            "--dest-tls-verify=false",
            f"oci:{layout}:base",
            f"docker://{self.base_ref}",
        )
        self.containerd.ctr("images", "pull", "--plain-http", self.base_ref, timeout=1800)
        if self.podman is not None:
            self.podman("pull", "--tls-verify=false", self.base_ref)
        shutil.rmtree(layout)
        shutil.rmtree(work)
        self.base_layers = 5
        print(
            f"base image {self.base_ref}: busybox + {size // MB} MB in 4 layers, built, pushed "
            f"and pulled by containerd{' and podman' if self.podman else ''} in "
            f"{time.perf_counter() - start:.1f} s"
        )

    # (a)

    async def small_change(self) -> None:
        print("\n(a) 1 KB change on the base image: commit + push, median of", self.args.repeat)
        box = self.start_container(self.base_ref)
        ours: list[float] = []
        steps: list[dict[str, float]] = []
        for i in range(self.args.repeat):
            self.containerd.exec(box, f"head -c 1024 /dev/urandom > /root/change-{i}")
            target = f"{self.registry.host}/bench/devbox:small-{i}-{uuid.uuid4().hex[:6]}"
            start = time.perf_counter()
            outcome = await self.commit(box, target)
            ours.append(time.perf_counter() - start)
            steps.append(outcome.steps)
        self.remove_container(box)
        median = statistics.median(ours)
        print(
            f"  node-shim commit+push   median {median:6.3f} s  (runs: "
            + ", ".join(f"{t:.3f}" for t in ours)
            + ")"
        )
        last = steps[len(steps) // 2]
        print("    steps: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in last.items()))
        print(f"    target < 0.15 s: {'met' if median < 0.15 else 'NOT met'}")
        if self.podman is None:
            return
        container = self.podman("run", "-d", self.base_ref, "/bin/sleep", "100000")
        theirs: list[float] = []
        try:
            for i in range(self.args.repeat):
                self.podman(
                    "exec",
                    container,
                    "/bin/sh",
                    "-c",
                    f"head -c 1024 /dev/urandom > /root/change-{i}",
                )
                target = f"{self.registry.host}/bench/podman:small-{i}-{uuid.uuid4().hex[:6]}"
                theirs.append(self.podman.commit_and_push(container, target))
        finally:
            self.podman("rm", "-f", "-t", "0", container)
        podman = statistics.median(theirs)
        print(
            f"  podman commit+push      median {podman:6.3f} s  (runs: "
            + ", ".join(f"{t:.3f}" for t in theirs)
            + ")"
        )
        print(f"  podman / node-shim: {podman / median:.1f}x")

    # (b)

    async def large_diff(self) -> None:
        size = 100 * MB if self.args.quick else 1000 * MB
        print(f"\n(b) ~{size // MB} MB diff of mixed files, in each commit mode")
        print(
            "    (each mode on a fresh container holding the same files; the pipes' medians of"
            " 3 runs on its upper directory, just before its commit)"
        )
        results: dict[str, float] = {}
        for mode in (pb.COMMIT_MODE_STOP, pb.COMMIT_MODE_SNAPSHOT):
            results[pb.CommitMode.Name(mode)] = await self.large_diff_in(mode, size)
        if self.podman is None:
            return
        container = self.podman("run", "-d", self.base_ref, "/bin/sleep", "100000")
        try:
            mount = Path(self.podman("mount", container))
            populate(mount / "home" / "dev", size, seed=99)
            flush_disks()
            target = f"{self.registry.host}/bench/podman:large-{uuid.uuid4().hex[:6]}"
            podman = self.podman.commit_and_push(container, target)
        finally:
            self.podman("rm", "-f", "-t", "0", container)
        ours = results["COMMIT_MODE_STOP"]
        print(
            f"  podman commit+push             {podman:7.2f} s  = {podman / ours:.1f}x"
            " node-shim (mode stop)"
        )

    async def large_diff_in(self, mode: int, size: int) -> float:
        """One container, the diff written, the pipes measured, one commit in ``mode``; the
        commit's wall time."""
        name = pb.CommitMode.Name(mode).removeprefix("COMMIT_MODE_").lower()
        box = self.start_container(self.base_ref)
        written = populate(rootfs(self.containerd, box) / "home" / "dev", size, seed=99)
        upper = await self.upper_dir(box)
        flush_disks()
        print(
            f"  [{name}] written: {written / MB:.0f} MB through the container's rootfs"
            f" ({tree_bytes(Path(upper)) / MB:.0f} MB in its upper directory)"
        )

        def pipe(command: str) -> float:
            return timed(
                lambda: subprocess.run(
                    f"tar -C {upper} -cf - . | {command} > /dev/null", shell=True, check=True
                )
            )

        pipe("cat")  # warm the page cache for everyone alike
        floor = statistics.median(pipe("cat") for _ in range(3))
        cpu_before = children_cpu()
        zstd = statistics.median(pipe("zstd -3 -T0 -q -c") for _ in range(3))
        zstd_cpu = (children_cpu() - cpu_before) / 3
        gzip = pipe("gzip -1 -c") if mode == pb.COMMIT_MODE_STOP else 0.0
        target = f"{self.registry.host}/bench/devbox:large-{name}-{uuid.uuid4().hex[:6]}"
        assert self.containerd.process is not None
        assert self.registry.process is not None
        pids = {
            "node-shim": os.getpid(),
            "containerd": self.containerd.process.pid,
            "registry": self.registry.process.pid,
        }
        cpu = {n: process_cpu(pid) for n, pid in pids.items()}
        start = time.perf_counter()
        outcome = await self.commit(box, target, mode=mode)
        ours = time.perf_counter() - start
        cpu = {n: process_cpu(pid) - cpu[n] for n, pid in pids.items()}
        # The local copy into containerd follows the push (LocalCopy.AFTER_PUSH): timed apart.
        copy_cpu = process_cpu(pids["containerd"])
        copy_start = time.perf_counter()
        assert self.server is not None
        await self.server.committer.settle()
        local_copy = time.perf_counter() - copy_start
        copy_cpu = process_cpu(pids["containerd"]) - copy_cpu
        self.remove_container(box)
        floor_push = await self.registry_ingest(target) if mode == pb.COMMIT_MODE_STOP else None
        paused = sum(outcome.steps.get(s, 0.0) for s in ("pause", "diff", "resume"))
        print(f"  [{name}] tar -c | cat > /dev/null       {floor:7.2f} s  (pause floor)")
        print(f"  [{name}] tar -c | zstd -3 -T0           {zstd:7.2f} s  ({zstd_cpu:.1f} CPU s)")
        if gzip:
            print(f"  [{name}] tar -c | gzip -1               {gzip:7.2f} s")
        print(
            f"  [{name}] node-shim commit+push          {ours:7.2f} s  = {ours / zstd:.2f}x"
            f" tar|zstd (target <= 1.25x), layer {outcome.size_bytes / MB:.0f} MB image total"
        )
        if mode == pb.COMMIT_MODE_SNAPSHOT:
            print(
                f"  [{name}] node-shim paused               {paused:7.2f} s  ="
                f" {paused / floor:.2f}x tar|cat (target <= 1x)"
            )
        print("    steps: " + ", ".join(f"{k} {v:.2f} s" for k, v in outcome.steps.items()))
        print(
            "    CPU seconds of the commit: "
            + ", ".join(f"{n} {seconds:.1f}" for n, seconds in cpu.items())
            + f" (sum {sum(cpu.values()):.1f}, on {os.cpu_count()} cores)"
        )
        print(
            f"    then the local copy into containerd: {local_copy:.2f} s more in the background"
            f" (containerd {copy_cpu:.1f} CPU s)"
        )
        if floor_push is not None:
            seconds, registry_cpu = floor_push
            floor_cpu = (zstd_cpu + registry_cpu) / (os.cpu_count() or 1)
            print(
                f"  [{name}] floors of commit+push here: the registry alone takes {seconds:.2f} s"
                f" = {seconds / zstd:.2f}x tar|zstd to take the compressed layer from memory"
                f" ({registry_cpu:.1f} CPU s); tar|zstd's CPU plus that, shared by"
                f" {os.cpu_count()} cores: {floor_cpu:.2f} s = {floor_cpu / zstd:.2f}x"
                " (before hashing the diff_id and the digest)"
            )
        return ours

    async def registry_ingest(self, image: str) -> tuple[float, float]:
        """The largest layer of ``image`` fetched into memory, then uploaded to a new repository
        of the registry; (seconds, registry CPU seconds) of the upload alone."""
        repository, tag = image.split("/", 1)[1].rsplit(":", 1)
        base = f"{self.registry.url}/v2"
        async with httpx.AsyncClient(timeout=600) as http:
            manifest = (
                await http.get(
                    f"{base}/{repository}/manifests/{tag}",
                    headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
                )
            ).json()
            layer = max(manifest["layers"], key=lambda d: d["size"])
            blob = (await http.get(f"{base}/{repository}/blobs/{layer['digest']}")).content
        client = RegistryClient(insecure=[self.registry.host])
        assert self.registry.process is not None
        pid = self.registry.process.pid

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(blob), 1 << 20):
                yield blob[start : start + (1 << 20)]

        async def digest() -> str:
            return str(layer["digest"])

        try:
            ref = Reference.parse(f"{self.registry.host}/bench/floor-{uuid.uuid4().hex[:6]}:x")
            cpu = process_cpu(pid)
            seconds = await timed_async(client.upload_stream(ref, chunks(), digest))
            return seconds, process_cpu(pid) - cpu
        finally:
            await client.aclose()

    # (c)

    async def many_commits(self) -> None:
        rounds = 10 if self.args.quick else self.args.rounds
        bound = self.base_layers + 3
        print(
            f"\n(c) {rounds} consecutive commits of one devbox, max_layers {bound}"
            " (each: run the last image, append 64 KiB to a log, touch 3 files)"
        )
        print("  round  layers  image MB  log KiB  registry +KB  +KB/log KiB  commit s")
        image = self.base_ref
        sizes: list[int] = []
        counts: list[int] = []
        for i in range(rounds):
            box = self.start_container(image)
            self.containerd.exec(
                box,
                "mkdir -p /root/work; head -c 65536 /dev/urandom | base64 >> /root/work/app.log;"
                f" for f in a b c; do echo {i} > /root/work/$f; done",
            )
            before = self.registry_bytes()
            target = f"{self.registry.host}/bench/devbox:round-{i:03d}"
            start = time.perf_counter()
            outcome = await self.commit(box, target, max_layers=bound)
            seconds = time.perf_counter() - start
            pushed = self.registry_bytes() - before
            log_size = int(self.containerd.exec(box, "wc -c < /root/work/app.log").strip())
            self.remove_container(box)
            image = outcome.image
            # The next round runs it from this node's containerd: once the local copy (which
            # follows the push) is there, as a devbox restarted on the same node would.
            assert self.server is not None
            await self.server.committer.settle(image)
            sizes.append(pushed)
            counts.append(outcome.layers)
            print(
                f"  {i:5d}  {outcome.layers:6d}  {outcome.size_bytes / MB:8.1f}  "
                f"{log_size / 1024:7.0f}  {pushed / 1000:12.1f}  {pushed * 1.024 / log_size:11.2f}"
                f"  {seconds:8.3f}"
            )
        half = len(sizes) // 2
        print(
            f"  layers: max {max(counts)} (bound {bound});"
            " registry growth per commit: first half mean"
            f" {statistics.mean(sizes[:half]) / 1000:.0f} KB, second half mean"
            f" {statistics.mean(sizes[half:]) / 1000:.0f} KB"
            " (the log grows 86 KiB a round and a commit stores it whole, once: a squash keeps"
            " only its latest size, so the image never holds one copy per commit)"
        )


@contextlib.contextmanager
def workspace(parent: str) -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="nsb-", dir=parent))  # short: a socket lives in it
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--repeat", type=int, default=5, help="runs of (a)")
    parser.add_argument("--rounds", type=int, default=50, help="commits of (c)")
    parser.add_argument("--no-podman", action="store_true", help="skip the podman comparisons")
    parser.add_argument("--only", choices=["a", "b", "c"], action="append", help="parts to run")
    parser.add_argument(
        "--workdir",
        default="/tmp",
        help="where containerd's root and the node-shim's state go (its filesystem: on XFS or"
        " btrfs the capture reflinks large files instead of copying them)",
    )
    args = parser.parse_args()
    if not args.no_podman and shutil.which("podman") is None:
        parser.error("podman is not installed (apt-get install podman) — or pass --no-podman")
    parts = set(args.only or ["a", "b", "c"])
    print(
        f"{time.strftime('%Y-%m-%d %H:%M:%S')} load {os.getloadavg()[0]:.2f},"
        f" {os.cpu_count()} cores"
    )
    where = run("stat", "-f", "-c", "%T", args.workdir).strip()
    print(f"containerd's root and the node-shim's state in {args.workdir} ({where})")
    with workspace(args.workdir) as tmp:
        bench = Bench(args, tmp)
        try:
            await bench.start()
            bench.build_base()
            if "a" in parts:
                await bench.small_change()
            if "b" in parts:
                await bench.large_diff()
            if "c" in parts:
                await bench.many_commits()
        finally:
            await bench.stop()


if __name__ == "__main__":
    asyncio.run(main())
