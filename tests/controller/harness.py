"""A controller under test: simulated cluster + fake node-shim + the controller in-process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from app.controller import Controller
from app.kubeclient import DEVBOXES, JSON, PODS, RUNTIMES, Devboxes, NotFound
from app.settings import Settings
from tests.fixtures.fake_nodeshim import TOKEN, FakeNodeShim
from tests.fixtures.fake_registry import FakeRegistry
from tests.fixtures.simcluster import Sim
from tests.fixtures.waiting import until_async

NS = "default"
RUNTIME_IMAGE = "docker.io/library/python:3.12"


@dataclass
class Harness:
    sim: Sim
    shim: FakeNodeShim
    settings: Settings
    registry: FakeRegistry
    controller: Controller | None = None
    task: asyncio.Task[None] | None = None

    @property
    def api(self) -> Devboxes:
        return Devboxes(self.sim.kube)

    async def start_controller(
        self,
        commit_retry_base: float = 0.2,
        *,
        activity_interval: float | None = None,
        storage_interval: float | None = None,
        workers: int = 4,
    ) -> Controller:
        controller = Controller(
            self.sim.api, self.settings, workers=workers, commit_retry_base=commit_retry_base
        )
        config = controller.reconciler.config
        config.activity_interval = activity_interval or config.activity_interval
        config.storage_interval = storage_interval or config.storage_interval
        self.controller = controller
        self.task = asyncio.create_task(controller.run())
        await asyncio.wait_for(controller.ready.wait(), 10)
        return controller

    async def stop_controller(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None

    async def create_runtime(self, image: str = RUNTIME_IMAGE, name: str = "python") -> None:
        await self.sim.kube.create(
            RUNTIMES,
            NS,
            {
                "apiVersion": "devbox.dev/v1alpha1",
                "kind": "Runtime",
                "metadata": {"name": name},
                "spec": {
                    "class": "Language",
                    "title": "Python",
                    "version": "3.12",
                    "image": image,
                    "user": "dev",
                    "workingDir": "/home/dev",
                    "command": ["/usr/sbin/sshd", "-D"],
                    "env": [{"name": "LANG", "value": "C.UTF-8"}],
                    "sshPort": 2222,
                },
            },
        )

    async def create_devbox(self, name: str = "box", runtime: str = "python", **spec: Any) -> None:
        body = {
            "apiVersion": "devbox.dev/v1alpha1",
            "kind": "Devbox",
            "metadata": {"name": name},
            "spec": {"runtimeRef": {"name": runtime, "namespace": NS}, "owner": "alice", **spec},
        }
        await self.sim.kube.create(DEVBOXES, NS, body)

    async def devbox(self, name: str = "box") -> JSON:
        return await self.sim.kube.get(DEVBOXES, NS, name)

    async def wait_gone(self, what: str, name: str = "box", within: float = 10.0) -> None:
        """Wait until the devbox no longer exists (its finalizer is done)."""

        async def gone() -> bool:
            try:
                await self.devbox(name)
            except NotFound:
                return True
            return False

        await until_async(gone, within, what)

    async def set_state(self, state: str, name: str = "box") -> None:
        await self.sim.kube.patch(DEVBOXES, NS, name, {"spec": {"state": state}})

    async def wait_phase(self, phase: str, name: str = "box", within: float = 10.0) -> JSON:
        async def check() -> JSON | None:
            obj = await self.devbox(name)
            return obj if (obj.get("status") or {}).get("phase") == phase else None

        return await until_async(check, within, f"devbox {name} phase {phase}")

    async def pod(self, name: str = "box") -> JSON | None:
        try:
            return await self.sim.kube.get(PODS, NS, name)
        except NotFound:
            return None


@contextlib.asynccontextmanager
async def harness(sim: Sim, tmp_path: Path) -> AsyncIterator[Harness]:
    registry = FakeRegistry()
    await registry.start()
    shim = FakeNodeShim(registry=registry)
    await shim.start()
    settings = Settings(
        data_dir=tmp_path,
        registry=registry.host,
        registry_insecure=True,
        domain="devbox.test",
        node_shim_port=shim.port,
        node_shim_token=SecretStr(TOKEN),
        delete_commit_wait_seconds=30,
    )
    h = Harness(sim, shim, settings, registry)
    try:
        yield h
    finally:
        await h.stop_controller()
        await shim.stop()
        await registry.stop()
