"""An informer that dies after the caches synced is restarted: the controller never goes on
with a frozen cache."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.kubeclient import JSON
from tests.controller.harness import Harness, harness
from tests.fixtures.simcluster import Sim


@pytest.fixture
async def h(sim: Sim, tmp_path: Path) -> AsyncIterator[Harness]:
    async with harness(sim, tmp_path) as started:
        await started.create_runtime()
        await started.start_controller()
        yield started


async def test_a_pod_informer_that_fails_is_restarted_and_the_stop_completes(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    await h.create_devbox()
    await h.wait_phase("Running")
    assert h.controller is not None
    pods = h.controller.caches.pods
    original = pods._apply
    failures: list[str] = []

    async def broken(event: JSON) -> None:
        if not failures:
            failures.append(str(event.get("type")))
            raise RuntimeError("a malformed watch event")
        await original(event)

    pods._apply = broken  # type: ignore[method-assign]
    caplog.set_level(logging.ERROR, logger="app.controller._supervisor")

    # Stopping needs pod events (the commit, then the pod's deletion) to reach the cache.
    await h.set_state("Stopped")
    await h.wait_phase("Stopped", within=15)
    assert failures, "the informer never met the failure"
    assert await h.pod() is None
    assert pods.get("default", "box") is None
    assert any("informer pods failed" in r.getMessage() for r in caplog.records)
    assert h.task is not None
    assert not h.task.done()
