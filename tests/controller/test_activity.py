"""What the node-shim sees in a running devbox: SSH connections straight to the node port keep
idle auto-stop away, and a writable layer above ``resources.storage`` shows as a condition.

The fake node-shim (a real gRPC server) answers ContainerActivity as the test sets it; the
intervals are shortened so the controller asks every few tenths of a second."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from devbox_node_shim.api import nodeshim_pb2 as pb

from app.kubeclient import JSON
from tests.controller.harness import Harness, harness
from tests.fixtures.simcluster import Sim
from tests.fixtures.waiting import until, until_async

INTERVAL = 0.2
GiB = 2**30


@pytest.fixture
async def h(sim: Sim, tmp_path: Path) -> AsyncIterator[Harness]:
    async with harness(sim, tmp_path) as started:
        await started.create_runtime()
        await started.start_controller(activity_interval=INTERVAL, storage_interval=INTERVAL)
        yield started


def condition(obj: JSON, kind: str) -> JSON | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond["type"] == kind:
            return dict(cond)
    return None


def stamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_an_open_node_port_connection_keeps_an_idle_devbox_running(h: Harness) -> None:
    h.shim.activity = pb.ContainerActivityResponse(running=True, connections=1)
    await h.create_devbox(autoStop={"idleTimeoutSeconds": 2})
    running = await h.wait_phase("Running")
    ready = condition(running, "Ready")
    assert ready is not None
    idle_deadline = stamp(ready["lastTransitionTime"]) + timedelta(seconds=2)

    async def active_past_the_deadline() -> JSON | None:
        obj = await h.devbox()
        last = (obj.get("status") or {}).get("lastActivityTime")
        return obj if last and stamp(last) > idle_deadline + timedelta(seconds=1) else None

    # Activity recorded after the idle timeout had run out: the devbox was not stopped then.
    devbox = await until_async(active_past_the_deadline, 15, "activity past the idle deadline")
    assert devbox is not None
    assert devbox["spec"]["state"] == "Running"
    assert devbox["status"]["phase"] == "Running"
    assert condition(devbox, "AutoStopped") is None
    pod = await h.pod()
    assert pod is not None
    container_id = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    asked = h.shim.calls.activity[-1]
    assert asked.container_id == container_id
    assert asked.port == 2222  # the runtime's SSH port, in the container


async def test_an_idle_devbox_without_connections_is_stopped(h: Harness) -> None:
    h.shim.activity = pb.ContainerActivityResponse(running=True, connections=0)
    await h.create_devbox(autoStop={"idleTimeoutSeconds": 1})
    await h.wait_phase("Running")

    devbox = await h.wait_phase("Stopped", within=15)

    stopped = condition(devbox, "AutoStopped")
    assert stopped is not None
    assert stopped["reason"] == "IdleTimeout"
    assert any(call.port == 2222 for call in h.shim.calls.activity)
    assert "lastActivityTime" not in devbox["status"]


@pytest.mark.parametrize("why", ["down", "hangs"])
async def test_an_idle_devbox_is_stopped_when_its_node_shim_cannot_tell(
    h: Harness, why: str
) -> None:
    """A node-shim that is down (the simulated cluster has none) or does not answer in time
    cannot veto the idle stop forever: the stop goes by the tunnel's evidence."""
    if why == "down":
        await h.shim.stop()
    else:
        h.shim.activity_hangs = True
    await h.create_devbox(autoStop={"idleTimeoutSeconds": 1})
    await h.wait_phase("Running")

    async def auto_stopped() -> JSON | None:
        devbox = await h.devbox()
        return condition(devbox, "AutoStopped")

    stopped = await until_async(auto_stopped, 20, "the idle stop")
    assert stopped["reason"] == "IdleTimeout"
    assert (await h.devbox())["spec"]["state"] == "Stopped"


async def test_storage_above_the_reservation_shows_until_fixed(h: Harness) -> None:
    h.shim.activity = pb.ContainerActivityResponse(running=True, writable_bytes=3 * GiB)
    await h.create_devbox(resources={"cpu": "1", "memory": "2Gi", "storage": "2Gi"})
    await h.wait_phase("Running")

    async def storage(status: str) -> JSON | None:
        found = condition(await h.devbox(), "StorageWithinLimit")
        return found if found is not None and found["status"] == status else None

    exceeded = await until_async(lambda: storage("False"), 10, "StorageExceeded")
    h.shim.activity = pb.ContainerActivityResponse(running=True, writable_bytes=GiB // 2)
    fixed = await until_async(lambda: storage("True"), 10, "storage back within the limit")
    assert exceeded is not None
    assert fixed is not None

    assert exceeded["reason"] == "StorageExceeded"
    assert "3.0 GiB" in exceeded["message"]
    assert "2Gi" in exceeded["message"]
    assert "resources.storage" in exceeded["message"]
    assert "Delete files" in exceeded["message"]
    assert "commits take longer" in exceeded["message"]
    assert fixed["reason"] == "WithinLimit"


async def test_watching_a_steady_devbox_writes_nothing(h: Harness) -> None:
    h.shim.activity = pb.ContainerActivityResponse(running=True, writable_bytes=GiB)
    await h.create_devbox(autoStop={"idleTimeoutSeconds": 3600})
    await h.wait_phase("Running")

    async def within_limit() -> bool:
        found = condition(await h.devbox(), "StorageWithinLimit")
        return found is not None and found["status"] == "True"

    await until_async(within_limit, 10, "the first storage reading")
    assert h.controller is not None
    writes = h.controller.kube.writes
    asked = len(h.shim.calls.activity)
    h.shim.activity = pb.ContainerActivityResponse(running=True, writable_bytes=GiB + GiB // 2)

    await until(lambda: len(h.shim.calls.activity) >= asked + 5, 10, "five more looks")

    assert h.controller.kube.writes == writes  # the size moved, the condition did not


async def test_an_unreachable_node_shim_is_quiet_and_writes_nothing(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    await h.create_devbox(autoStop={"idleTimeoutSeconds": 3600})
    await h.wait_phase("Running")
    await until(lambda: h.shim.calls.activity, 10, "a first look")
    await h.shim.stop()  # as in the simulated cluster without node-shims
    assert h.controller is not None
    writes = h.controller.kube.writes
    reconciles = h.controller.reconciles

    with caplog.at_level(logging.DEBUG, logger="app.controller"):
        await until(lambda: h.controller.reconciles >= reconciles + 5, 10, "five more looks")  # type: ignore[union-attr]

    assert h.controller.kube.writes == writes
    quiet = [r for r in caplog.records if r.name.startswith("app.controller") and r.levelno > 10]
    assert quiet == []
    assert any("no activity from the node-shim" in r.getMessage() for r in caplog.records)


async def test_a_node_shim_that_does_not_answer_holds_no_reconcile_worker(h: Harness) -> None:
    """The calls run in tasks of their own: devboxes keep being reconciled while every
    activity call hangs until its deadline."""
    h.shim.activity_hangs = True
    await h.stop_controller()
    # One worker: a call held in it would stall every other devbox.
    await h.start_controller(activity_interval=INTERVAL, storage_interval=INTERVAL, workers=1)
    await h.create_devbox("first", autoStop={"idleTimeoutSeconds": 3600})
    await h.wait_phase("Running", name="first")
    await until(lambda: h.shim.calls.activity, 10, "a call that will hang")
    for name in ("second", "third"):
        await h.create_devbox(name)
        await h.wait_phase("Running", name=name, within=4)  # less than the call's deadline
