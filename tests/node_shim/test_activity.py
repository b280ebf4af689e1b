"""ContainerActivity against the private containerd: a busybox container serving TCP in its
own network namespace, a real connection into it from that namespace, and its writable layer
growing as a file is written."""

from __future__ import annotations

import ctypes
import os
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from devbox_node_shim.server import Server
from devbox_node_shim.sockets import ProcessGone, established

from app.nodeshim_client import NodeShimClient, NodeShimError
from tests.fixtures.containerd import Containerd
from tests.fixtures.waiting import until_async
from tests.node_shim.conftest import TOKEN, shim_settings
from tests.node_shim.test_commit import _start, containers

__all__ = ["containers"]

PORT = 2222
CLONE_NEWNET = 0x40000000
HOST = "127.0.0.1"


@dataclass
class ActivityShim:
    server: Server
    client: NodeShimClient
    port: int


@pytest.fixture
async def shim(containerd: Containerd, tmp_path: Path) -> AsyncIterator[ActivityShim]:
    """A node-shim (no registry: ContainerActivity needs none)."""
    server = Server(shim_settings(containerd, tmp_path / "state"))
    port = await server.start()
    client = NodeShimClient(port=port, token=TOKEN, call_timeout=30)
    try:
        yield ActivityShim(server, client, port)
    finally:
        await client.close()
        await server.stop(grace=0)


def _connect_from(pid: int, port: int, within: float = 10.0) -> socket.socket:
    """A TCP connection to 127.0.0.1:``port`` opened inside the network namespace of process
    ``pid`` (a thread of ours joins it; the socket stays in it), retried until the server
    listens."""
    outcome: list[socket.socket | BaseException] = []

    def run() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns into the container's netns")
            finally:
                os.close(fd)
            deadline = time.monotonic() + within
            while True:
                try:
                    outcome.append(socket.create_connection(("127.0.0.1", port), timeout=5))
                    return
                except ConnectionRefusedError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, name="connect in container netns")
    thread.start()
    thread.join()
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result


def _listener(containerd: Containerd, image: str, started: list[tuple[str, str]]) -> str:
    """A container echoing every TCP connection on PORT, in a network namespace of its own
    (``ctr run`` without ``--net-host``)."""
    return _start(containerd, image, started, "/bin/nc", "-ll", "-p", str(PORT), "-e", "/bin/cat")


async def test_connections_into_the_container_are_counted_until_closed(
    shim: ActivityShim,
    containerd: Containerd,
    busybox_image: str,
    containers: list[tuple[str, str]],
) -> None:
    name = _listener(containerd, busybox_image, containers)
    pid = (await shim.server.containerd.task(name)).pid
    assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")

    idle = await shim.client.activity(HOST, name, PORT)
    connection = _connect_from(pid, PORT)
    try:
        connection.sendall(b"ping\n")
        assert connection.recv(16) == b"ping\n"  # a real connection, echoed by the container
        busy = await shim.client.activity(HOST, name, PORT)
        other_port = await shim.client.activity(HOST, name, PORT + 1)
    finally:
        connection.close()

    async def closed() -> bool:
        return (await shim.client.activity(HOST, name, PORT)).connections == 0

    await until_async(closed, 10, "the closed connection no longer counted")
    assert idle.running
    assert idle.connections == 0
    assert busy.running
    assert busy.connections == 1
    assert other_port.connections == 0


async def test_the_writable_layer_grows_when_a_file_is_written(
    shim: ActivityShim,
    containerd: Containerd,
    busybox_image: str,
    containers: list[tuple[str, str]],
) -> None:
    name = _start(containerd, busybox_image, containers)
    before = await shim.client.activity(HOST, name, 0)
    containerd.exec(name, "dd if=/dev/urandom of=/root/blob bs=1M count=4 2>/dev/null; sync")
    after = await shim.client.activity(HOST, name, 0)
    skipped = await shim.client.activity(HOST, name, 0, writable_bytes=False)

    assert after.writable_bytes >= before.writable_bytes + 4 * 1024 * 1024
    assert skipped.writable_bytes == 0  # measuring walks the layer: callers may skip it
    assert skipped.running


async def test_a_stopped_task_is_not_running_and_has_no_connections(
    shim: ActivityShim,
    containerd: Containerd,
    busybox_image: str,
    containers: list[tuple[str, str]],
) -> None:
    name = _listener(containerd, busybox_image, containers)
    containerd.ctr("task", "kill", "-s", "SIGKILL", name)

    async def stopped() -> bool:
        return containerd.task_status(name) == "STOPPED"

    await until_async(stopped, 10, "the task stopped")
    answer = await shim.client.activity(HOST, name, PORT)

    assert not answer.running
    assert answer.connections == 0


async def test_an_unknown_container_is_not_found(shim: ActivityShim) -> None:
    with pytest.raises(NodeShimError) as refused:
        await shim.client.activity(HOST, "no-such-container", PORT)

    assert refused.value.code == "NOT_FOUND"
    assert "no-such-container" in refused.value.message


async def test_activity_needs_the_bearer_token(shim: ActivityShim) -> None:
    intruder = NodeShimClient(port=shim.port, token="wrong")
    try:
        with pytest.raises(NodeShimError) as refused:
            await intruder.activity(HOST, "any", PORT)
    finally:
        await intruder.close()

    assert refused.value.code == "UNAUTHENTICATED"


TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:08AE 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
   1: 0100007F:08AE 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 2 1
   2: 0100007F:D2F0 0100007F:08AE 01 00000000:00000000 00:00000000 00000000     0        0 3 1
   3: 0100007F:08AE 0100007F:D2F2 08 00000000:00000000 00:00000000 00000000     0        0 4 1
"""
TCP6 = """\
  sl  local_address                         remote_address                        st
   0: 00000000000000000000000001000000:08AE 00000000000000000000000001000000:E000 01
"""


def test_only_established_sockets_on_the_local_port_count(tmp_path: Path) -> None:
    net = tmp_path / "42" / "net"
    net.mkdir(parents=True)
    (net / "tcp").write_text(TCP)
    (net / "tcp6").write_text(TCP6)

    # Port 0x08AE = 2222: one IPv4 server side (not the listener, not the client side with
    # remote port 2222, not the one closing) and one IPv6.
    assert established(42, 2222, proc=tmp_path) == 2
    assert established(42, 0xD2F0, proc=tmp_path) == 1
    with pytest.raises(ProcessGone):
        established(43, 2222, proc=tmp_path)
