"""The simulated pod network: forwarded container ports answer on loopback pod IPs, and node
ports are served like kube-proxy, so real TCP clients reach a process the test runs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.kube import connect
from app.kubeclient import NAMESPACES, PODS, SERVICES, Kube, NotFound
from app.simcluster.network import FORWARD_PREFIX
from app.simcluster.nodes import NodeSettings
from app.simcluster.server import SimCluster
from tests.fixtures.waiting import until_async

NS = "net"


@pytest.fixture
async def kube() -> AsyncIterator[Kube]:
    cluster = SimCluster(
        state_file=None,
        node_settings=NodeSettings(
            count=1,
            start_delay=0.01,
            stop_delay=0.01,
            pod_cidr="127.244.0.0/16",
            proxy_node_ports=True,
        ),
    )
    await cluster.start()
    api = await connect(url=cluster.url)
    client = Kube(api)
    await client.create(NAMESPACES, None, {"metadata": {"name": NS}})
    try:
        yield client
    finally:
        await api.close()
        await cluster.stop()


@pytest.fixture
async def echo() -> AsyncIterator[int]:
    """A TCP server that answers every line with ``echo: <line>``; its port."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            writer.write(b"echo: " + line)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


def pod(name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"app": name}, "annotations": annotations or {}},
        "spec": {
            "containers": [
                {"name": "c", "image": "busybox", "ports": [{"name": "ssh", "containerPort": 2222}]}
            ]
        },
    }


async def running_pod(kube: Kube, body: dict[str, Any]) -> dict[str, Any]:
    await kube.create(PODS, NS, body)

    async def ready() -> dict[str, Any] | None:
        obj = await kube.get(PODS, NS, body["metadata"]["name"])
        return obj if (obj.get("status") or {}).get("phase") == "Running" else None

    return await until_async(ready, 5, "pod Running")


async def talk(host: str, port: int) -> bytes:
    """Send one line; the answer (b"" when the connection is closed without one)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"hello\n")
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def answers(host: str, port: int) -> bytes | None:
    with contextlib.suppress(OSError):
        return await talk(host, port)
    return None


async def test_forwarded_container_port_answers_on_the_pod_ip(kube: Kube, echo: int) -> None:
    obj = await running_pod(kube, pod("a", {f"{FORWARD_PREFIX}2222": f"127.0.0.1:{echo}"}))
    ip = obj["status"]["podIP"]
    assert ip.startswith("127.244.")
    answer = await until_async(lambda: answers(ip, 2222), 5, "the forward listens")
    assert answer == b"echo: hello\n"


async def test_a_port_without_forward_refuses_until_the_annotation_appears(
    kube: Kube, echo: int
) -> None:
    obj = await running_pod(kube, pod("b"))
    ip = obj["status"]["podIP"]
    with pytest.raises(ConnectionRefusedError):
        await talk(ip, 2222)
    await kube.patch(
        PODS, NS, "b", {"metadata": {"annotations": {f"{FORWARD_PREFIX}2222": f"127.0.0.1:{echo}"}}}
    )
    assert await until_async(lambda: answers(ip, 2222), 5, "forward added") == b"echo: hello\n"


async def test_deleting_the_pod_stops_its_forward(kube: Kube, echo: int) -> None:
    obj = await running_pod(kube, pod("c", {f"{FORWARD_PREFIX}2222": f"127.0.0.1:{echo}"}))
    ip = obj["status"]["podIP"]
    await until_async(lambda: answers(ip, 2222), 5, "the forward listens")
    await kube.delete(PODS, NS, "c")

    async def gone() -> bool:
        try:
            await kube.get(PODS, NS, "c")
        except NotFound:
            return await answers(ip, 2222) is None
        return False

    await until_async(gone, 5, "pod and forward gone")


async def test_node_port_reaches_the_selected_pod_by_port_name(kube: Kube, echo: int) -> None:
    await running_pod(kube, pod("d", {f"{FORWARD_PREFIX}2222": f"127.0.0.1:{echo}"}))
    service = await kube.create(
        SERVICES,
        NS,
        {
            "metadata": {"name": "d-ssh"},
            "spec": {
                "type": "NodePort",
                "selector": {"app": "d"},
                "ports": [{"name": "ssh", "port": 22, "targetPort": "ssh"}],
            },
        },
    )
    node_port = service["spec"]["ports"][0]["nodePort"]
    answer = await until_async(lambda: answers("127.0.0.1", node_port), 5, "node port served")
    assert answer == b"echo: hello\n"


async def test_node_port_without_a_ready_pod_closes_the_connection(kube: Kube) -> None:
    service = await kube.create(
        SERVICES,
        NS,
        {
            "metadata": {"name": "nobody"},
            "spec": {
                "type": "NodePort",
                "selector": {"app": "nobody"},
                "ports": [{"port": 22, "targetPort": 2222}],
            },
        },
    )
    node_port = service["spec"]["ports"][0]["nodePort"]

    async def closed_at_once() -> bool:
        try:
            return await talk("127.0.0.1", node_port) == b""
        except ConnectionRefusedError:
            return False  # not listening yet
        except ConnectionResetError:
            return True  # closed while the line was sent

    await until_async(closed_at_once, 5, "node port listens and closes")


async def test_open_connections_end_when_the_pod_is_deleted(kube: Kube, echo: int) -> None:
    obj = await running_pod(kube, pod("e", {f"{FORWARD_PREFIX}2222": f"127.0.0.1:{echo}"}))
    ip = obj["status"]["podIP"]
    await until_async(lambda: answers(ip, 2222), 5, "the forward listens")
    reader, writer = await asyncio.open_connection(ip, 2222)
    try:
        writer.write(b"one\n")
        assert await asyncio.wait_for(reader.readline(), 5) == b"echo: one\n"
        await kube.delete(PODS, NS, "e")
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the "container"
    finally:
        writer.close()
