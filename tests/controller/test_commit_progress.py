"""The node-shim's progress of a commit in flight reaches the devbox's status — at most one
write per step within the throttle interval, the newest report once the interval ends, no
writes once steady — and the finished record drops it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from devbox_node_shim.api import nodeshim_pb2 as pb

from app.controller import Controller
from app.controller._commits import Progress
from app.kubeclient import JSON, EventType
from tests.controller.harness import NS, Harness, harness
from tests.fixtures.simcluster import Sim
from tests.fixtures.waiting import until, until_async


@pytest.fixture
async def h(sim: Sim, tmp_path: Path) -> AsyncIterator[Harness]:
    async with harness(sim, tmp_path) as started:
        await started.create_runtime()
        await started.start_controller()
        yield started


def last_commit(obj: JSON) -> dict[str, Any]:
    return dict(obj["status"]["commits"][-1])


def report(step: str, done: int, total: int) -> pb.CommitProgress:
    return pb.CommitProgress(step=step, bytes_done=done, bytes_total=total)


async def progress_is(h: Harness, step: str, done: int) -> JSON:
    """The devbox once its newest commit record shows ``step`` at ``done`` bytes."""

    async def check() -> JSON | None:
        obj = await h.devbox()
        commits = (obj.get("status") or {}).get("commits") or []
        progress = commits[-1].get("progress") if commits else None
        if progress and (progress["step"], progress["bytesDone"]) == (step, done):
            return obj
        return None

    found: JSON | None = await until_async(check, 10, f"progress {step} {done}")
    assert found is not None
    return found


def record_versions(controller: Controller) -> list[int]:
    """Every resourceVersion of the devbox ``box`` the controller's cache sees from now on:
    one per write to it."""
    seen: list[int] = []

    def handle(_event: EventType, obj: JSON, _old: JSON | None) -> None:
        meta = obj["metadata"]
        if (meta["namespace"], meta["name"]) == (NS, "box"):
            seen.append(int(meta["resourceVersion"]))

    controller.caches.devboxes.add_handler(handle)
    return seen


async def test_a_stop_commit_shows_its_progress_throttled_and_the_final_record_drops_it(
    h: Harness,
) -> None:
    controller = h.controller
    assert controller is not None
    h.shim.mode = "hang"
    feed = h.shim.progress = asyncio.Queue()
    await h.create_devbox()
    await h.wait_phase("Running")
    controller.commits.progress_interval = 3600.0  # within a step only the first report counts
    await h.set_state("Stopped")

    started = await progress_is(h, "diff", 0)  # the fake node-shim's first report
    record = last_commit(started)
    assert record["status"] == "Committing"
    assert record["progress"]["bytesTotal"] == 1
    assert started["status"]["phase"] == "Stopping"
    versions = record_versions(controller)
    for done in range(1, 101):
        feed.put_nowait(report("diff", done * 1000, 100_000))
    newest = Progress("diff", 100_000, 100_000)
    await until(lambda: controller.commits.progress(record["requestId"]) == newest, 10)
    await controller.reconciler.reconcile((NS, "box"))  # as any other event would
    feed.put_nowait(report("push", 0, 5000))
    pushing = await progress_is(h, "push", 0)
    # The controller's cache may see that write after the GET above did: wait for it.
    await until(lambda: int(pushing["metadata"]["resourceVersion"]) in versions, 10)
    after = int(started["metadata"]["resourceVersion"])
    writes = sorted({rv for rv in versions if after < rv})
    # A hundred reports of the same step wrote nothing; the new step was written once.
    assert writes == [int(pushing["metadata"]["resourceVersion"])]
    assert last_commit(pushing)["progress"]["bytesTotal"] == 5000

    # With a short interval, the newest report of the step is written once it ends.
    controller.commits.progress_interval = 0.1
    for done in (1000, 2000, 5000):
        feed.put_nowait(report("push", done, 5000))
    steady = await progress_is(h, "push", 5000)

    # Steady: looking again writes nothing (no write loop).
    writes_before = controller.kube.writes
    for _ in range(3):
        await controller.reconciler.reconcile((NS, "box"))
    assert controller.kube.writes == writes_before
    assert (await h.devbox())["metadata"]["resourceVersion"] == steady["metadata"][
        "resourceVersion"
    ]

    feed.put_nowait(None)
    h.shim.release()
    stopped = await h.wait_phase("Stopped")
    final = last_commit(stopped)
    assert final["status"] == "Succeeded"
    assert "progress" not in final


async def test_a_snapshot_shows_its_progress_while_the_devbox_keeps_running(h: Harness) -> None:
    h.shim.mode = "hang"
    feed = h.shim.progress = asyncio.Queue()
    await h.create_devbox(snapshotIntervalSeconds=1)
    await h.wait_phase("Running")
    feed.put_nowait(report("compress", 10, 20))
    running = await progress_is(h, "compress", 10)
    record = last_commit(running)
    assert (record["mode"], record["status"]) == ("Snapshot", "Committing")
    assert running["status"]["phase"] == "Running"

    feed.put_nowait(None)
    h.shim.release()

    async def snapshot_done() -> dict[str, Any] | None:
        commits = (await h.devbox())["status"]["commits"]
        found = next(dict(c) for c in commits if c["id"] == record["id"])
        return found if found["status"] == "Succeeded" else None

    done: dict[str, Any] | None = await until_async(snapshot_done, 10, "snapshot succeeded")
    assert done is not None
    assert "progress" not in done
