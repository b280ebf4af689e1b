"""Fixtures of the node-shim tests: a private containerd (tests/fixtures/containerd.py), a real
registry (tests/fixtures/registry.py) and an in-process node-shim gRPC server on a free loopback
port pushing to it, called through the controller's own client (app/nodeshim_client.py), so the
tests also prove the two sides agree."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from devbox_node_shim.push import RegistryPusher
from devbox_node_shim.server import Server
from devbox_node_shim.settings import Settings

from app.nodeshim_client import NodeShimClient
from tests.fixtures.containerd import Containerd, busybox_image, containerd, running_container
from tests.fixtures.registry import RegistryServer, auth_registry, registry

__all__ = ["auth_registry", "busybox_image", "containerd", "registry", "running_container"]

TOKEN = "node-shim-test-token"


@dataclass
class Shim:
    """A running node-shim and a client of it."""

    server: Server
    client: NodeShimClient
    settings: Settings
    registry: RegistryServer
    host: str = "127.0.0.1"

    def target(self, tag: str | None = None) -> str:
        """A fresh image reference in the test registry."""
        return f"{self.registry.host}/devbox/dev:{tag or uuid.uuid4().hex[:12]}"

    async def restart(self) -> None:
        """Stop the server and start a new one on the same state directory and port."""
        await self.server.stop(grace=0)
        self.server = Server(
            self.settings,
            pusher=self.server.committer.pusher,
            registry=self.server.service.registry,
        )
        await self.server.start()


def shim_settings(containerd: Containerd, state: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "token": TOKEN,
        "listen_address": "127.0.0.1",
        "port": 0,
        "containerd_socket": containerd.socket,
        "containerd_namespace": containerd.namespace,
        "state_dir": state,
        "stop_timeout_seconds": 5.0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def shim(
    containerd: Containerd, registry: RegistryServer, tmp_path: Path
) -> AsyncIterator[Shim]:
    """The node-shim, pushing to the test registry."""
    registry.start()  # a fault test may have stopped it
    settings = shim_settings(containerd, tmp_path / "state")
    pusher = RegistryPusher.from_settings(settings)
    server = Server(settings, pusher=pusher, registry=pusher)
    port = await server.start()
    settings = shim_settings(containerd, tmp_path / "state", port=port)
    server.settings = settings
    client = NodeShimClient(port=port, token=TOKEN, call_timeout=30)
    handle = Shim(server, client, settings, registry)
    try:
        yield handle
    finally:
        await client.close()
        await handle.server.stop(grace=0)
        await pusher.aclose()
