"""Snapshots of running devboxes (``app/controller/_snapshots.py``): through the reconciler
against the simulated cluster and a fake node-shim (a real gRPC server), and the timing rule
as a pure function."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app.controller import _snapshots as snapshots
from app.kubeclient import DEVBOXES, PODS, Conflict
from app.resources import Devbox
from tests.controller.harness import NS, Harness, harness
from tests.fixtures.simcluster import Sim
from tests.fixtures.waiting import until, until_async

SNAPSHOT = 2  # COMMIT_MODE_SNAPSHOT


@pytest.fixture
async def h(sim: Sim, tmp_path: Path) -> AsyncIterator[Harness]:
    async with harness(sim, tmp_path) as started:
        await started.create_runtime()
        await started.start_controller()
        yield started


def records(obj: dict[str, Any], mode: str = "Snapshot", status: str | None = None) -> list[Any]:
    return [
        c
        for c in (obj.get("status") or {}).get("commits") or []
        if c["mode"] == mode and (status is None or c["status"] == status)
    ]


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == kind)


def when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def snapshots_with(h: Harness, status: str, count: int, within: float = 10) -> Any:
    async def enough() -> dict[str, Any] | None:
        obj = await h.devbox()
        return obj if len(records(obj, status=status)) >= count else None

    return await until_async(enough, within, f"{count} {status} snapshots")


async def test_a_running_devbox_is_snapshotted_every_interval_and_keeps_running(
    h: Harness,
) -> None:
    await h.create_devbox(snapshotIntervalSeconds=1)
    await h.wait_phase("Running")
    pod = await h.pod()
    assert pod is not None
    devbox = await snapshots_with(h, "Succeeded", 2)
    first, second = records(devbox, status="Succeeded")[:2]
    # Measured from the last successful commit: not sooner than one interval apart.
    assert when(second["startedAt"]) - when(first["startedAt"]) >= timedelta(seconds=0.9)
    assert str(second["image"]).startswith(f"{h.registry.host}/{NS}/box:")
    assert str(second["digest"]).startswith("sha256:")
    calls = [c for c in h.shim.calls.commits if c.request_id == second["requestId"]]
    assert calls
    assert all(c.mode == SNAPSHOT for c in calls)
    assert calls[0].target_image == second["image"]
    # The container kept running: same pod, still Running and Ready, nothing stopped.
    devbox = await h.devbox()
    assert devbox["status"]["phase"] == "Running"
    assert condition(devbox, "Ready")["status"] == "True"
    assert condition(devbox, "Committed")["reason"] == "SnapshotSucceeded"
    now_pod = await h.pod()
    assert now_pod is not None
    assert now_pod["metadata"]["uid"] == pod["metadata"]["uid"]
    # The newest successful snapshot is the current image.
    newest = records(devbox, status="Succeeded")[-1]
    assert devbox["status"]["image"] == newest["image"]
    assert records(devbox, mode="Stop") == []


async def test_a_lost_pod_restarts_from_the_last_snapshot(h: Harness) -> None:
    await h.create_devbox(snapshotIntervalSeconds=1)
    await h.wait_phase("Running")
    await snapshots_with(h, "Succeeded", 1)
    await h.sim.kube.patch(DEVBOXES, NS, "box", {"spec": {"snapshotIntervalSeconds": 3600}})

    async def settled() -> dict[str, Any] | None:  # a snapshot started before may still end
        obj = await h.devbox()
        flying = [c for c in records(obj) if c["status"] in ("Pending", "Committing")]
        return None if flying else obj

    devbox = await until_async(settled, 10, "no snapshot in flight")
    snapshot = records(devbox, status="Succeeded")[-1]
    old = await h.pod()
    assert old is not None
    await h.sim.kube.delete(PODS, NS, "box")  # the node is gone, and the pod with it

    async def new_pod() -> dict[str, Any] | None:
        pod = await h.pod()
        fresh = pod is not None and pod["metadata"]["uid"] != old["metadata"]["uid"]
        return pod if fresh else None

    pod = await until_async(new_pod, 10, "a new pod")
    assert pod["spec"]["containers"][0]["image"] == snapshot["image"]
    await h.wait_phase("Running")


async def test_a_failed_snapshot_is_recorded_and_retried_at_the_next_interval(
    h: Harness,
) -> None:
    await h.create_devbox(snapshotIntervalSeconds=1)
    await h.wait_phase("Running")
    pod = await h.pod()
    assert pod is not None
    h.shim.mode = "fail"
    devbox = await snapshots_with(h, "Failed", 2)
    first, second = records(devbox, status="Failed")[:2]
    assert "registry answered 500" in first["reason"]
    assert when(second["startedAt"]) - when(first["startedAt"]) >= timedelta(seconds=0.9)
    assert devbox["status"]["phase"] == "Running"  # a failed snapshot stops nothing
    assert condition(devbox, "Committed")["reason"] == "SnapshotFailed"
    now_pod = await h.pod()
    assert now_pod is not None
    assert now_pod["metadata"]["uid"] == pod["metadata"]["uid"]

    h.shim.mode = "succeed"
    devbox = await snapshots_with(h, "Succeeded", 1)
    assert devbox["status"]["image"] == records(devbox, status="Succeeded")[-1]["image"]


async def test_no_snapshot_or_stop_commit_starts_while_a_snapshot_is_in_flight(
    h: Harness,
) -> None:
    h.shim.mode = "hang"
    await h.create_devbox(snapshotIntervalSeconds=1)
    await h.wait_phase("Running")
    await until(lambda: h.shim.calls.started, 10, "a snapshot started")
    await asyncio.sleep(2.5)  # more than two intervals
    assert len(h.shim.calls.started) == 1
    devbox = await h.devbox()
    assert [c["status"] for c in records(devbox)] == ["Committing"]
    assert devbox["status"]["phase"] == "Running"

    await h.set_state("Stopped")
    devbox = await h.wait_phase("Stopping")
    await asyncio.sleep(0.5)
    assert len(h.shim.calls.started) == 1  # the stop commit waits for the snapshot
    h.shim.mode = "succeed"
    h.shim.release()
    devbox = await h.wait_phase("Stopped")
    assert [(c["mode"], c["status"]) for c in devbox["status"]["commits"]] == [
        ("Snapshot", "Succeeded"),
        ("Stop", "Succeeded"),
    ]
    assert h.shim.calls.concurrent_per_container == 1


async def test_a_steady_devbox_between_snapshots_makes_no_writes(h: Harness) -> None:
    await h.create_devbox(snapshotIntervalSeconds=3600)
    await h.wait_phase("Running")
    await asyncio.sleep(0.5)
    controller = h.controller
    assert controller is not None
    writes = controller.kube.writes
    before = h.sim.resource_version
    await h.sim.kube.patch(DEVBOXES, NS, "box", {"metadata": {"labels": {"touched": "yes"}}})
    await asyncio.sleep(1.5)
    assert controller.kube.writes == writes
    assert h.sim.resource_version == before + 1
    assert h.shim.calls.started == []


async def test_the_controller_asks_to_look_again_when_the_next_snapshot_is_due(
    h: Harness,
) -> None:
    await h.create_devbox(snapshotIntervalSeconds=120)
    await h.wait_phase("Running")
    controller = h.controller
    assert controller is not None
    delay = None
    for _ in range(20):
        try:
            delay = await controller.reconciler.reconcile((NS, "box"))
            break
        except Conflict:
            # The controller's own workers reconcile the same devbox meanwhile; a conflicting
            # status write is retried, as the work queue does.
            await asyncio.sleep(0.1)
    assert delay is not None
    assert 100 < delay <= 120


# ---------------------------------------------------------------------- the timing rule


def devbox_with(interval: int, commits: list[dict[str, Any]], ready_ago: float) -> Devbox:
    now = datetime.now(UTC)

    def ago(seconds: float) -> str:
        return (now - timedelta(seconds=seconds)).isoformat()

    return Devbox.model_validate(
        {
            "metadata": {"name": "box", "namespace": NS, "generation": 1},
            "spec": {
                "runtimeRef": {"name": "python", "namespace": NS},
                "owner": "alice",
                "snapshotIntervalSeconds": interval,
            },
            "status": {
                "phase": "Running",
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "Running",
                        "lastTransitionTime": ago(ready_ago),
                    }
                ],
                "commits": [
                    {
                        "id": f"c{i}",
                        "mode": c["mode"],
                        "status": c["status"],
                        "image": f"r/default/box:c{i}",
                        "startedAt": ago(c["ago"]),
                    }
                    for i, c in enumerate(commits)
                ],
            },
        }
    )


def due(devbox: Devbox) -> float | None:
    return snapshots.due_in(devbox, devbox.status, datetime.now(UTC))


def test_the_interval_runs_from_the_last_successful_commit_of_any_mode() -> None:
    stop = {"mode": "Stop", "status": "Succeeded", "ago": 50}
    old = {"mode": "Snapshot", "status": "Succeeded", "ago": 90}
    assert due(devbox_with(60, [old, stop], ready_ago=100)) == pytest.approx(10, abs=1)


def test_the_interval_runs_from_when_the_devbox_became_ready_after_its_last_commit() -> None:
    stop = {"mode": "Stop", "status": "Succeeded", "ago": 500}
    assert due(devbox_with(60, [stop], ready_ago=20)) == pytest.approx(40, abs=1)


def test_a_failed_snapshot_is_retried_one_interval_later_not_at_once() -> None:
    saved = {"mode": "Snapshot", "status": "Succeeded", "ago": 300}
    failed = {"mode": "Snapshot", "status": "Failed", "ago": 15}
    assert due(devbox_with(60, [saved, failed], ready_ago=400)) == pytest.approx(45, abs=1)


def test_an_overdue_snapshot_is_due_now() -> None:
    saved = {"mode": "Snapshot", "status": "Succeeded", "ago": 300}
    assert due(devbox_with(60, [saved], ready_ago=400)) == 0.0


def test_no_snapshot_is_due_while_a_commit_is_in_flight_or_none_is_wanted() -> None:
    flying = {"mode": "Stop", "status": "Committing", "ago": 300}
    assert due(devbox_with(60, [flying], ready_ago=400)) is None
    assert due(devbox_with(0, [], ready_ago=400)) is None


async def test_a_snapshot_interrupted_by_a_network_blip_reattaches_by_request_id(
    h: Harness,
) -> None:
    h.shim.drop_streams = 1  # the first Commit call loses its stream; the commit goes on
    await h.create_devbox(snapshotIntervalSeconds=1)
    await h.wait_phase("Running")
    devbox = await snapshots_with(h, "Succeeded", 1)
    first = records(devbox)[0]
    assert first["status"] == "Succeeded"  # not recorded as failed: re-attached
    calls = [c for c in h.shim.calls.commits if c.request_id == first["requestId"]]
    assert len(calls) >= 2
    assert h.shim.calls.started.count(first["requestId"]) == 1
    assert devbox["status"]["phase"] == "Running"
