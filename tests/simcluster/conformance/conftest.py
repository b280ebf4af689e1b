"""Fixtures of the conformance suite (on top of ``kube``, ``api``, ``namespace``, ``kubectl``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from kubernetes_asyncio import client

from tests.fixtures.deps import missing
from tests.fixtures.kube import KubeTarget
from tests.simcluster.conformance.support import Widgets, install_widgets, uninstall_widgets


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: waits for something a real server only does about once a minute"
    )
    config.addinivalue_line(
        "markers", "nodes: needs pods to run (simulated nodes, or a Ready node of a real cluster)"
    )


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
async def widgets(api: client.ApiClient) -> AsyncIterator[Widgets]:
    """A Widget CRD in this test's own API group, Established; deleted afterwards."""
    installed = await install_widgets(api)
    try:
        yield installed
    finally:
        await uninstall_widgets(installed)


@pytest.fixture
async def ready_nodes(kube: KubeTarget, core: client.CoreV1Api) -> list[client.V1Node]:
    """The Ready nodes; on a real cluster without one, pods cannot run (skip, or fail in CI)."""
    nodes = (await core.list_node()).items
    ready = [
        node
        for node in nodes
        if any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
    ]
    if not ready and not kube.simulated:
        missing("a Ready node on the real cluster", "pods cannot run without one")
    return ready
