"""Stop commits whose pod vanished while the controller was away: the registry decides."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from app.kubeclient import PODS
from tests.controller.harness import NS, Harness, harness
from tests.fixtures.simcluster import Sim
from tests.fixtures.waiting import until, until_async


@pytest.fixture
async def h(sim: Sim, tmp_path: Path) -> AsyncIterator[Harness]:
    async with harness(sim, tmp_path) as started:
        await started.create_runtime()
        await started.start_controller()
        yield started


def last_commit(obj: dict[str, object]) -> dict[str, object]:
    return dict((obj.get("status") or {})["commits"][-1])  # type: ignore[index]


def pod_gone(h: Harness) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await h.pod() is None

    return check


async def _stop_while_away(h: Harness) -> dict[str, object]:
    """Stop the devbox, let the commit start, take the controller away, delete the pod."""
    h.shim.mode = "hang"
    await h.create_devbox()
    await h.wait_phase("Running")
    await h.set_state("Stopped")
    await until(lambda: h.shim.calls.started, 10, "commit started")
    await h.stop_controller()
    return await h.devbox()


async def test_a_commit_pushed_before_its_pod_vanished_is_recorded_as_saved(h: Harness) -> None:
    away = await _stop_while_away(h)
    assert last_commit(away)["status"] == "Committing"
    h.shim.release()  # the node-shim finishes and pushes while the controller is away
    await until(lambda: h.registry.tags, 10, "image pushed")
    await h.sim.kube.delete(PODS, NS, "box", grace_period_seconds=0)
    await until_async(pod_gone(h), 10, "pod gone")

    await h.start_controller()
    stopped = await h.wait_phase("Stopped")
    record = last_commit(stopped)
    assert record["status"] == "Succeeded"
    assert record["digest"] == next(iter(h.registry.tags.values()))
    assert stopped["status"]["image"] == record["image"]
    assert len(h.shim.calls.started) == 1


async def test_a_commit_never_pushed_before_its_pod_vanished_is_failed_with_the_reason(
    h: Harness,
) -> None:
    await _stop_while_away(h)
    h.shim.mode = "fail"
    h.shim.release()  # the commit fails: nothing reaches the registry
    await h.sim.kube.delete(PODS, NS, "box", grace_period_seconds=0)
    await until_async(pod_gone(h), 10, "pod gone")

    await h.start_controller()
    stopped = await h.wait_phase("Stopped")
    record = last_commit(stopped)
    assert record["status"] == "Failed"
    assert "pod was gone" in str(record["reason"])
    assert not h.registry.tags


async def test_a_registry_that_cannot_answer_keeps_the_record_until_it_can(h: Harness) -> None:
    await _stop_while_away(h)
    h.shim.release()
    await until(lambda: h.registry.tags, 10, "image pushed")
    await h.sim.kube.delete(PODS, NS, "box", grace_period_seconds=0)
    await until_async(pod_gone(h), 10, "pod gone")
    h.registry.fail_next = 3

    await h.start_controller()
    stopped = await h.wait_phase("Stopped", within=20)
    assert last_commit(stopped)["status"] == "Succeeded"
    assert h.registry.fail_next == 0  # the registry was asked through its failures
