"""Fixtures of the conformance suite (on top of ``kube``, ``api``, ``namespace``, ``kubectl``).

The suite runs against every target in :func:`targets`: the simulated cluster always (test ids
end in ``[simulated]``), and the real local cluster of ``scripts/local-cluster`` (``[real]``,
marked ``realcluster``) when ``fixtures.realcluster.real_cluster_wanted()`` — with
``DEVBOX_REAL_CLUSTER=1``, and in CI.  ``DEVBOX_TEST_KUBECONFIG=/path`` instead runs it once,
against the API server that kubeconfig names (``[given]``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from kubernetes_asyncio import client

from tests.fixtures.deps import missing
from tests.fixtures.kube import KubeTarget, simulated_target
from tests.fixtures.realcluster import RealCluster, real_cluster_wanted
from tests.simcluster.conformance.support import Widgets, install_widgets, uninstall_widgets


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: waits for something a real server only does about once a minute"
    )
    config.addinivalue_line(
        "markers", "nodes: needs pods to run (simulated nodes, or a Ready node of a real cluster)"
    )


def targets() -> list[object]:
    """The API servers the suite runs against in this session."""
    if os.environ.get("DEVBOX_TEST_KUBECONFIG"):
        return ["given"]
    found: list[object] = ["simulated"]
    if real_cluster_wanted():
        found.append(pytest.param("real", marks=pytest.mark.realcluster))
    return found


@pytest.fixture(scope="session", params=targets())
def kube(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KubeTarget]:
    """The API server under test (overrides ``fixtures.kube.kube`` for this suite)."""
    if request.param == "given":
        path = Path(os.environ["DEVBOX_TEST_KUBECONFIG"])
        yield KubeTarget(url="", kubeconfig=path, simulated=False)
    elif request.param == "real":
        cluster: RealCluster = request.getfixturevalue("real_cluster")
        yield KubeTarget(url=cluster.url, kubeconfig=cluster.kubeconfig, simulated=False)
    else:
        with simulated_target(tmp_path_factory, service_accounts=True) as target:
            yield target


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
