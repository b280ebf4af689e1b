"""The SSH tunnel (``/tunnel/<namespace>/<devbox>``) next to a direct TCP connection to the
same server, measured in the same run.

Setup: a simulated cluster with a loopback pod network (its own thread), the API server with
SQLite (its own thread), two devboxes made Running by direct CR writes whose pods' SSH ports
are forwarded to (1) a test server in its own thread (echo / sink / source) and (2) a real
``sshd``.  The client runs in the main thread.

Figures:
- raw throughput, upload and download (``--megabytes``), tunnel vs direct TCP to the pod's
  SSH port (the address the tunnel itself connects to), and the ratio;
- round-trip latency of 64-byte echoes (p50/p99), tunnel vs direct, and the added latency;
- OpenSSH ``cat > /dev/null`` of ``--megabytes`` through ``ProxyCommand devboxctl ssh-proxy``
  vs ``ssh`` straight to the pod's SSH port (connection set-up, timed with ``ssh true``,
  subtracted);
- ``--tunnels`` (200) tunnels held open at once: how many still answer after ``--hold``
  seconds, and the process's resident memory per tunnel (client and server side together).

    .venv/bin/python bench/tunnel.py [--megabytes 200] [--tunnels 200] [--hold 5]

Targets (issue 6): tunnel >= 50% of direct throughput on loopback, < 2 ms added round trip,
200 concurrent tunnels.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvicorn
import websockets
from websockets.asyncio.client import ClientConnection

from app.api import create_app
from app.db import users
from app.db.migrate import upgrade_to_head
from app.kube import connect
from app.kubeclient import DEVBOXES, NAMESPACES, PODS, Kube
from app.resources.crdgen import all_crds
from app.services import make_services
from app.settings import REPO_ROOT, ClusterMode, Settings
from app.simcluster.network import FORWARD_PREFIX
from app.simcluster.nodes import NodeSettings
from app.simcluster.server import SimCluster

sys.path.insert(0, str(REPO_ROOT))
from tests.client.helpers import Sshd

NS = "bench"
CHUNK = 64 * 1024


# ---------------------------------------------------------------------- backend


async def _backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """``ECHO`` / ``SINK n`` / ``SOURCE n`` on the first line."""
    command = (await reader.readline()).decode().split()
    if command[0] == "ECHO":
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    elif command[0] == "SINK":
        left = int(command[1])
        while left > 0:
            data = await reader.read(CHUNK)
            if not data:
                break
            left -= len(data)
        writer.write(b"done\n")
        await writer.drain()
    elif command[0] == "SOURCE":
        block = os.urandom(CHUNK)
        left = int(command[1])
        while left > 0:
            writer.write(block[: min(left, CHUNK)])
            left -= CHUNK
            await writer.drain()
    writer.close()


def _thread_loop(main: Callable[[asyncio.AbstractEventLoop], Awaitable[Any]]) -> Any:
    """Run ``main(loop)`` in a new thread's event loop (forever); its result once ready."""
    box: dict[str, Any] = {}
    ready = threading.Event()

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        box["value"] = loop.run_until_complete(main(loop))
        ready.set()
        loop.run_forever()

    threading.Thread(target=run, daemon=True).start()
    ready.wait(120)
    return box["value"]


async def _start_backend(_: asyncio.AbstractEventLoop) -> int:
    server = await asyncio.start_server(_backend, "127.0.0.1", 0, limit=CHUNK)
    port: int = server.sockets[0].getsockname()[1]
    return port


# ---------------------------------------------------------------------- the product


async def _devbox(kube: Kube, name: str, target: str) -> str:
    """A devbox made Running by direct writes: CR, its pod (forwarded), its status."""
    devbox = await kube.create(
        DEVBOXES,
        NS,
        {
            "apiVersion": "devbox.dev/v1alpha1",
            "kind": "Devbox",
            "metadata": {"name": name},
            "spec": {
                "runtimeRef": {"name": "python-3-12", "namespace": "devbox-system"},
                "owner": "bench",
            },
        },
    )
    await kube.create(
        PODS,
        NS,
        {
            "metadata": {
                "name": name,
                "labels": {"devbox.dev/devbox": name},
                "annotations": {f"{FORWARD_PREFIX}2222": target},
                "ownerReferences": [
                    {
                        "apiVersion": "devbox.dev/v1alpha1",
                        "kind": "Devbox",
                        "name": name,
                        "uid": devbox["metadata"]["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": {
                "containers": [
                    {
                        "name": "devbox",
                        "image": "debian:12",
                        "ports": [{"name": "ssh", "containerPort": 2222}],
                    }
                ]
            },
        },
    )
    for _ in range(500):
        pod = await kube.get(PODS, NS, name)
        if (pod.get("status") or {}).get("phase") == "Running":
            break
        await asyncio.sleep(0.01)
    await kube.patch(
        DEVBOXES,
        NS,
        name,
        {"status": {"phase": "Running", "podName": name, "podIP": pod["status"]["podIP"]}},
        subresource="status",
    )
    return str(pod["status"]["podIP"])


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    return sock


async def _start_api(
    cluster_url: str, folder: Path, echo_port: int, sshd_port: int, tunnels: int
) -> tuple[str, str, str, str]:
    url = f"sqlite+aiosqlite:///{folder / 'bench.db'}"
    await upgrade_to_head(url)
    settings = Settings(
        data_dir=folder,
        cluster=ClusterMode.KUBE,
        database_url=url,
        tunnel_max_per_token=tunnels + 10,
    )
    kube = Kube(await connect(url=cluster_url))
    await kube.create(NAMESPACES, None, {"metadata": {"name": NS}})
    echo_ip = await _devbox(kube, "echo", f"127.0.0.1:{echo_port}")
    ssh_ip = await _devbox(kube, "ssh", f"127.0.0.1:{sshd_port}")
    services = make_services(settings, kube, database_url=url)
    async with services.sessionmaker() as session:
        user = await users.create_user(session, name="bench", namespace=NS)
        _, token = await users.create_token(session, user, name="bench")
        await session.commit()
    sock = _free_socket()
    server = uvicorn.Server(
        uvicorn.Config(create_app(services), log_level="warning", access_log=False)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", token, echo_ip, ssh_ip


# ---------------------------------------------------------------------- client side


class Pipe:
    """One byte stream: a tunnel WebSocket or a direct TCP connection."""

    async def send(self, data: bytes) -> None:
        raise NotImplementedError

    async def recv(self) -> bytes:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def recv_exactly(self, count: int) -> bytes:
        got = b""
        while len(got) < count:
            got += await self.recv()
        return got


class TunnelPipe(Pipe):
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send(self, data: bytes) -> None:
        await self.ws.send(data)

    async def recv(self) -> bytes:
        data = await self.ws.recv()
        return data if isinstance(data, bytes) else data.encode()

    async def close(self) -> None:
        await self.ws.close()


class TcpPipe(Pipe):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def recv(self) -> bytes:
        return await self.reader.read(CHUNK)

    async def close(self) -> None:
        self.writer.close()


async def tunnel(api: str, token: str, name: str) -> Pipe:
    ws = await websockets.connect(
        f"{api.replace('http://', 'ws://')}/tunnel/{NS}/{name}",
        additional_headers={"Authorization": f"Bearer {token}"},
        subprotocols=[websockets.Subprotocol("devbox.tunnel.v1")],
        compression=None,
        max_size=4 * CHUNK,
        open_timeout=60,
    )
    return TunnelPipe(ws)


async def direct(host: str) -> Pipe:
    """Straight to the pod's SSH port (the address the tunnel connects to)."""
    return TcpPipe(*await asyncio.open_connection(host, 2222, limit=CHUNK))


async def upload(pipe: Pipe, total: int) -> float:
    block = os.urandom(CHUNK)
    start = time.perf_counter()
    await pipe.send(f"SINK {total}\n".encode())
    left = total
    while left > 0:
        await pipe.send(block[: min(left, CHUNK)])
        left -= CHUNK
    assert await pipe.recv_exactly(5) == b"done\n"
    return total / (time.perf_counter() - start) / 1e6


async def download(pipe: Pipe, total: int) -> float:
    start = time.perf_counter()
    await pipe.send(f"SOURCE {total}\n".encode())
    got = 0
    while got < total:
        got += len(await pipe.recv())
    return total / (time.perf_counter() - start) / 1e6


async def round_trips(pipe: Pipe, count: int) -> list[float]:
    await pipe.send(b"ECHO\n")
    message = b"x" * 64
    times = []
    for _ in range(count):
        start = time.perf_counter()
        await pipe.send(message)
        await pipe.recv_exactly(64)
        times.append((time.perf_counter() - start) * 1000)
    return times


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _ssh_seconds(args: list[str], env: dict[str, str], stdin: Path | None) -> float:
    start = time.perf_counter()
    with stdin.open("rb") if stdin else open(os.devnull, "rb") as source:
        subprocess.run(args, stdin=source, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def openssh(api: str, token: str, ssh_ip: str, sshd: Sshd, folder: Path, megabytes: int) -> None:
    key = folder / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    sshd.authorized_keys.write_text((folder / "id_ed25519.pub").read_text())
    config = folder / "client.toml"
    config.write_text(f'server = "{api}"\ntoken = "{token}"\n')
    env = {**os.environ, "DEVBOXCTL_CONFIG": str(config)}
    devboxctl = str(Path(sys.executable).parent / "devboxctl")
    common = ["ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"]
    common += ["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]
    via_tunnel = [*common, "-o", f"ProxyCommand={devboxctl} ssh-proxy --namespace {NS} ssh"]
    via_tunnel.append("root@devbox")
    straight = [*common, "-p", "2222", f"root@{ssh_ip}"]
    payload = folder / "payload.bin"
    with payload.open("wb") as handle:
        for _ in range(megabytes):
            handle.write(os.urandom(1 << 20))
    print(f"\nOpenSSH 'cat > /dev/null' of {megabytes} MB (set-up subtracted):")
    results = {}
    for label, argv in (("direct", straight), ("tunnel", via_tunnel)):
        setup = min(_ssh_seconds([*argv, "true"], env, None) for _ in range(3))
        total = _ssh_seconds([*argv, "cat > /dev/null"], env, payload)
        results[label] = megabytes / max(total - setup, 1e-6)
        print(f"  {label:7} {results[label]:8.1f} MB/s   (connection set-up {setup * 1000:.0f} ms)")
    print(f"  tunnel/direct: {results['tunnel'] / results['direct']:.0%}")


async def measure(args: argparse.Namespace, api: str, token: str, echo_ip: str) -> None:
    async def straight() -> Pipe:
        return await direct(echo_ip)

    async def tunnelled() -> Pipe:
        return await tunnel(api, token, "echo")

    makers: list[tuple[str, Callable[[], Awaitable[Pipe]]]] = [
        ("direct", straight),
        ("tunnel", tunnelled),
    ]
    total = args.megabytes * 1_000_000
    print(f"raw throughput, {args.megabytes} MB each way (MB/s):")
    figures: dict[str, dict[str, float]] = {}
    for label, make in makers:
        up = await make()
        down = await make()
        figures[label] = {"up": await upload(up, total), "down": await download(down, total)}
        await up.close()
        await down.close()
        up_rate, down_rate = figures[label]["up"], figures[label]["down"]
        print(f"  {label:7} upload {up_rate:8.1f}   download {down_rate:8.1f}")
    for way in ("up", "down"):
        print(f"  tunnel/direct {way}load: {figures['tunnel'][way] / figures['direct'][way]:.0%}")

    print(f"\nround trip of 64 bytes, {args.round_trips} times (ms):")
    p50: dict[str, float] = {}
    for label, make in makers:
        pipe = await make()
        times = sorted(await round_trips(pipe, args.round_trips))
        await pipe.close()
        p50[label] = statistics.median(times)
        p99 = times[int(len(times) * 0.99) - 1]
        print(f"  {label:7} p50 {p50[label]:.3f}   p99 {p99:.3f}")
    print(f"  added by the tunnel (p50): {p50['tunnel'] - p50['direct']:.3f} ms")

    print(f"\n{args.tunnels} tunnels held open for {args.hold:g} s:")
    before = _rss_kib()
    pipes = await asyncio.gather(*(tunnel(api, token, "echo") for _ in range(args.tunnels)))
    for pipe in pipes:
        await pipe.send(b"ECHO\n")
    await asyncio.sleep(args.hold)

    async def alive(pipe: Pipe) -> bool:
        try:
            await pipe.send(b"ping")
            return await asyncio.wait_for(pipe.recv_exactly(4), 30) == b"ping"
        except Exception:
            return False

    answered = sum(await asyncio.gather(*(alive(p) for p in pipes)))
    after = _rss_kib()
    print(f"  answering after the hold: {answered}/{args.tunnels}")
    print(f"  resident memory per tunnel (both ends): {(after - before) / args.tunnels:.0f} KiB")
    await asyncio.gather(*(p.close() for p in pipes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--round-trips", type=int, default=2000)
    parser.add_argument("--tunnels", type=int, default=200)
    parser.add_argument("--hold", type=float, default=5.0)
    args = parser.parse_args()
    if shutil.which("sshd") is None and not Path("/usr/sbin/sshd").exists():
        sys.exit("needs openssh-server (sshd)")
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        (folder / "sshd").mkdir()
        sshd = Sshd(folder / "sshd")
        sshd.start()
        cluster = SimCluster(
            state_file=None,
            node_settings=NodeSettings(
                start_delay=0.01, pod_cidr=f"127.{random.randint(100, 250)}.0.0/16"
            ),
        )
        cluster.start_in_thread()
        cluster.apply(list(all_crds()))
        cluster.run_coroutine(cluster.wait_for_crds_established())
        try:
            echo_port = _thread_loop(_start_backend)
            api, token, echo_ip, ssh_ip = _thread_loop(
                lambda _: _start_api(cluster.url, folder, echo_port, sshd.port, args.tunnels)
            )
            asyncio.run(measure(args, api, token, echo_ip))
            openssh(api, token, ssh_ip, sshd, folder, args.megabytes)
        finally:
            sshd.stop()
            cluster.stop_thread()


if __name__ == "__main__":
    main()
