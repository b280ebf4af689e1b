"""The gRPC server's contract beyond the commit itself: malformed requests are refused before
anything runs, a full state directory is RESOURCE_EXHAUSTED naming it, and Health reports a
registry that fails as degraded without failing the call."""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from devbox_node_shim.api import nodeshim_pb2 as pb
from devbox_node_shim.push import RegistryPusher
from devbox_node_shim.server import Server

from app.nodeshim_client import NodeShimClient, NodeShimError
from tests.fixtures.containerd import Containerd
from tests.fixtures.registry import RegistryServer
from tests.node_shim.conftest import TOKEN, Shim, shim_settings
from tests.node_shim.test_commit import _request, _start, containers

__all__ = ["containers"]


async def test_a_commit_without_a_mode_is_refused(shim: Shim) -> None:
    request = _request("any-container", shim.target(), mode=pb.COMMIT_MODE_UNSPECIFIED)

    with pytest.raises(NodeShimError) as refused:
        await shim.client.commit(shim.host, request)

    assert refused.value.code == "INVALID_ARGUMENT"
    assert "mode is required" in refused.value.message
    assert shim.server.store.left_running() == []


async def test_a_layer_bound_of_one_is_refused(shim: Shim) -> None:
    request = _request("any-container", shim.target(), max_layers=1)

    with pytest.raises(NodeShimError) as refused:
        await shim.client.commit(shim.host, request)

    assert refused.value.code == "INVALID_ARGUMENT"
    assert "max_layers 1 cannot work" in refused.value.message


@pytest.fixture
async def registry_shim(
    containerd: Containerd, registry: RegistryServer, tmp_path: Path
) -> AsyncIterator[Shim]:
    """A node-shim configured for the test registry (named in INSECURE_REGISTRIES)."""
    registry.start()
    settings = shim_settings(containerd, tmp_path / "state", insecure_registries=[registry.host])
    pusher = RegistryPusher.from_settings(settings)
    server = Server(settings, pusher=pusher, registry=pusher)
    port = await server.start()
    client = NodeShimClient(port=port, token=TOKEN)
    try:
        yield Shim(server, client, settings, registry)
    finally:
        await client.close()
        await server.stop(grace=0)
        await pusher.aclose()
        registry.start()


async def test_health_reports_a_registry_that_is_down_as_degraded(registry_shim: Shim) -> None:
    healthy = await registry_shim.client.health(registry_shim.host)
    registry_shim.registry.stop()
    try:
        degraded = await registry_shim.client.health(registry_shim.host)
    finally:
        registry_shim.registry.start()

    assert healthy.serving
    assert not healthy.degraded
    assert degraded.serving  # containerd answers: the call itself does not fail
    assert degraded.degraded
    assert registry_shim.registry.host in degraded.message


@pytest.fixture
def small_state_dir() -> Iterator[Path]:
    """A 2 MiB tmpfs for a node-shim's state directory."""
    state = Path(tempfile.mkdtemp(prefix="shim-state-", dir="/tmp"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(state)], check=True)
    try:
        yield state
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)
        state.rmdir()


@pytest.fixture
async def small_state_shim(
    containerd: Containerd, registry: RegistryServer, small_state_dir: Path
) -> AsyncIterator[Shim]:
    """A node-shim whose state directory is a 2 MiB tmpfs."""
    registry.start()
    settings = shim_settings(containerd, small_state_dir)
    pusher = RegistryPusher.from_settings(settings)
    server = Server(settings, pusher=pusher, registry=pusher)
    port = await server.start()
    client = NodeShimClient(port=port, token=TOKEN)
    try:
        yield Shim(server, client, settings, registry)
    finally:
        await client.close()
        await server.stop(grace=0)
        await pusher.aclose()


def _fill(path: Path) -> None:
    """Write zeros to ``path`` until its disk is full."""
    with path.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass


async def test_a_full_state_directory_is_resource_exhausted_naming_it(
    containerd: Containerd,
    busybox_image: str,
    containers: list[tuple[str, str]],
    small_state_shim: Shim,
) -> None:
    source = _start(containerd, busybox_image, containers)
    containerd.exec(source, "echo hello > /root/hello")
    state = Path(small_state_shim.settings.state_dir)
    filler = state / "filler"
    await asyncio.to_thread(_fill, filler)
    request = _request(source, small_state_shim.target())

    with pytest.raises(NodeShimError) as full:
        await small_state_shim.client.commit(small_state_shim.host, request)
    await asyncio.to_thread(filler.unlink)
    outcome = await small_state_shim.client.commit(small_state_shim.host, request)

    assert full.value.code == "RESOURCE_EXHAUSTED"
    assert str(state) in full.value.message
    assert containerd.task_status(source) == "RUNNING"
    assert outcome.layers == 2
