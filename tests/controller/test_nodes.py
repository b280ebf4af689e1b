"""A devbox whose node is lost shows Failed with a reason and what to do, not Starting."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.kubeclient import JSON, NODES
from tests.controller.harness import Harness, harness
from tests.fixtures.simcluster import Sim


@pytest.fixture
async def h(sim: Sim, tmp_path: Path) -> AsyncIterator[Harness]:
    async with harness(sim, tmp_path) as started:
        await started.create_runtime()
        await started.start_controller()
        yield started


def _ready(obj: JSON) -> JSON:
    return next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")


async def _set_node_ready(h: Harness, node: str, value: str, reason: str) -> None:
    current = await h.sim.kube.get(NODES, "", node)
    conditions = [
        {**c, "status": value, "reason": reason} if c["type"] == "Ready" else c
        for c in current["status"]["conditions"]
    ]
    await h.sim.kube.patch(
        NODES, "", node, {"status": {"conditions": conditions}}, subresource="status"
    )


async def test_a_devbox_on_a_lost_node_fails_with_a_reason_and_recovers_with_it(
    h: Harness,
) -> None:
    await h.create_devbox()
    await h.wait_phase("Running")
    pod = await h.pod()
    assert pod is not None
    node = pod["spec"]["nodeName"]

    await _set_node_ready(h, node, "Unknown", "NodeStatusUnknown")
    devbox = await h.wait_phase("Failed")
    ready = _ready(devbox)
    assert ready["status"] == "False"
    assert ready["reason"] == "NodeLost"
    assert node in ready["message"]
    assert "stop and start the devbox" in ready["message"]

    await _set_node_ready(h, node, "True", "KubeletReady")
    await h.wait_phase("Running")


def test_a_pod_marked_node_lost_or_on_a_missing_node_is_lost_and_a_healthy_one_is_not() -> None:
    from app.controller._nodes import pod_lost

    ready_node: JSON = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    healthy: JSON = {
        "spec": {"nodeName": "n1"},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }
    marked: JSON = {
        "spec": {"nodeName": "n1"},
        "status": {"reason": "NodeLost", "conditions": [{"type": "Ready", "status": "Unknown"}]},
    }
    unscheduled: JSON = {"spec": {}, "status": {}}
    assert pod_lost(healthy, ready_node) is None
    assert pod_lost(unscheduled, None) is None
    lost = pod_lost(marked, ready_node)
    assert lost is not None
    assert lost[0] == "NodeLost"
    gone = pod_lost(healthy, None)
    assert gone is not None
    assert "no longer exists" in gone[1]
