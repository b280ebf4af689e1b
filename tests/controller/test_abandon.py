"""Starting a devbox whose stopped container could not be committed: refused (nothing is
lost) until the user abandons the changes with ``devbox.dev/abandon-changes: "true"``."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.controller import ABANDON_ANNOTATION
from app.kubeclient import DEVBOXES, PODS
from tests.controller.harness import NS, Harness, harness
from tests.fixtures.simcluster import Sim
from tests.fixtures.waiting import until_async


@pytest.fixture
async def h(sim: Sim, tmp_path: Path) -> AsyncIterator[Harness]:
    async with harness(sim, tmp_path) as started:
        await started.create_runtime()
        await started.start_controller()
        yield started


def commits(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return list((obj.get("status") or {}).get("commits") or [])


def ready(obj: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")


async def container_exits(h: Harness) -> None:
    """Play the kubelet reporting what a stop commit's first step did: the container's task
    was stopped, and with ``restartPolicy: Never`` the exited container is kept."""
    pod = await h.pod()
    assert pod is not None
    statuses = copy.deepcopy(pod["status"]["containerStatuses"])
    for status in statuses:
        started = status["state"]["running"]["startedAt"]
        status["state"] = {
            "terminated": {
                "exitCode": 0,
                "reason": "Completed",
                "startedAt": started,
                "finishedAt": started,
                "containerID": status["containerID"],
            }
        }
        status["ready"] = False
        status["started"] = False
    conditions = [
        {**c, "status": "False"} if c["type"] in ("Ready", "ContainersReady") else c
        for c in pod["status"]["conditions"]
    ]
    await h.sim.kube.patch(
        PODS,
        NS,
        "box",
        {"status": {"phase": "Succeeded", "containerStatuses": statuses, "conditions": conditions}},
        subresource="status",
    )


async def stopped_with_unsaved_changes(h: Harness) -> tuple[dict[str, Any], dict[str, Any]]:
    """A devbox saved once, then stopped again with a failing commit: (saved record, pod)."""
    await h.create_devbox()
    await h.wait_phase("Running")
    await h.set_state("Stopped")
    saved = commits(await h.wait_phase("Stopped"))[-1]
    await h.set_state("Running")
    await h.wait_phase("Running")
    h.shim.mode = "fail"
    await h.set_state("Stopped")

    async def failed() -> bool:
        return any(c["status"] == "Failed" for c in commits(await h.devbox()))

    await until_async(failed, 10, "a failed stop commit")
    await container_exits(h)
    pod = await h.pod()
    assert pod is not None
    return saved, pod


async def test_starting_with_unsaved_changes_is_refused_and_keeps_the_pod(h: Harness) -> None:
    _saved, pod = await stopped_with_unsaved_changes(h)
    await h.set_state("Running")
    devbox = await h.wait_phase("Failed")
    assert ABANDON_ANNOTATION in ready(devbox)["message"]
    kept = await h.pod()
    assert kept is not None
    assert kept["metadata"]["uid"] == pod["metadata"]["uid"]


async def test_abandoning_starts_from_the_last_commit_and_records_it(h: Harness) -> None:
    saved, pod = await stopped_with_unsaved_changes(h)
    await h.sim.kube.patch(
        DEVBOXES,
        NS,
        "box",
        {"metadata": {"annotations": {ABANDON_ANNOTATION: "true"}}, "spec": {"state": "Running"}},
    )

    async def new_pod() -> dict[str, Any] | None:
        now = await h.pod()
        fresh = now is not None and now["metadata"]["uid"] != pod["metadata"]["uid"]
        return now if fresh else None

    started = await until_async(new_pod, 10, "a new pod")
    assert started["spec"]["containers"][0]["image"] == saved["image"]
    devbox = await h.wait_phase("Running")
    assert devbox["status"]["image"] == saved["image"]
    failed = [c for c in commits(devbox) if c["status"] == "Failed"]
    assert failed, "the abandoned attempts stay in the history"
    newest = failed[-1]
    assert newest["requestId"].startswith(pod["metadata"]["uid"] + ":")
    assert str(newest["reason"]).startswith("abandoned")
    assert "registry answered 500" in newest["reason"]

    async def cleared() -> dict[str, Any] | None:
        obj = await h.devbox()
        annotations = obj["metadata"].get("annotations") or {}
        return None if ABANDON_ANNOTATION in annotations else obj

    await until_async(cleared, 10, "the annotation cleared")


async def test_the_abandon_annotation_on_a_healthy_start_is_cleared_and_loses_nothing(
    h: Harness,
) -> None:
    await h.create_devbox()
    await h.wait_phase("Running")
    pod = await h.pod()
    assert pod is not None
    await h.sim.kube.patch(
        DEVBOXES, NS, "box", {"metadata": {"annotations": {ABANDON_ANNOTATION: "true"}}}
    )

    async def cleared() -> bool:
        obj = await h.devbox()
        return ABANDON_ANNOTATION not in (obj["metadata"].get("annotations") or {})

    await until_async(cleared, 10, "the annotation cleared")
    kept = await h.pod()
    assert kept is not None
    assert kept["metadata"]["uid"] == pod["metadata"]["uid"]
