"""Nodes and what they do to pods; Services get cluster IPs and NodePorts.

Pod tests need a node that runs them: always true for the simulated cluster, and on a real
cluster only when a node is Ready (``ready_nodes`` skips otherwise, and fails under
``CI=true``) and can pull the pause image.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import random
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiException

from tests.simcluster.conformance.support import (
    assert_status,
    create_pod,
    eventually,
    pod_body,
    unique,
    wait_gone,
)

RUN_WAIT = 180
"""Seconds a pod may take to run (a real node may have to pull the image)."""


def condition(obj: Any, kind: str) -> str | None:
    for c in obj.status.conditions or []:
        if c.type == kind:
            return str(c.status)
    return None


async def wait_running(core: client.CoreV1Api, namespace: str, name: str) -> client.V1Pod:
    async def check() -> client.V1Pod | None:
        pod = await core.read_namespaced_pod(name, namespace)
        if pod.status.phase == "Running" and condition(pod, "Ready") == "True":
            return pod
        return None

    return await eventually(check, within=RUN_WAIT, what=f"pod {name} Running and Ready")


async def test_nodes_have_addresses_and_ready_condition(
    core: client.CoreV1Api, ready_nodes: list[client.V1Node]
) -> None:
    nodes = (await core.list_node()).items
    assert nodes
    assert ready_nodes
    for node in nodes:
        assert node.metadata.uid
        assert node.metadata.labels["kubernetes.io/hostname"]
        assert node.metadata.labels["kubernetes.io/os"] == "linux"
        types = {a.type for a in node.status.addresses}
        assert {"InternalIP", "Hostname"} <= types, types
        for address in node.status.addresses:
            if address.type == "InternalIP":
                ipaddress.ip_address(address.address)
        assert condition(node, "Ready") in {"True", "False", "Unknown"}
        assert {"cpu", "memory", "pods"} <= set(node.status.capacity)
        assert {"cpu", "memory", "pods"} <= set(node.status.allocatable)
        assert node.status.node_info.kubelet_version.startswith("v1.20")
        assert node.status.node_info.container_runtime_version
    got = await core.read_node(ready_nodes[0].metadata.name)
    assert condition(got, "Ready") == "True"


@pytest.mark.nodes
async def test_pod_is_scheduled_and_runs(
    core: client.CoreV1Api, namespace: str, ready_nodes: list[client.V1Node]
) -> None:
    await create_pod(core, namespace, pod_body("p", labels={"app": "run"}))
    pod = await wait_running(core, namespace, "p")

    node_names = {n.metadata.name for n in ready_nodes}
    assert pod.spec.node_name in node_names
    node = next(n for n in ready_nodes if n.metadata.name == pod.spec.node_name)
    internal = {a.address for a in node.status.addresses if a.type == "InternalIP"}
    assert pod.status.host_ip in internal
    ipaddress.ip_address(pod.status.pod_ip)
    assert [ip.ip for ip in pod.status.pod_ips] == [pod.status.pod_ip]
    assert pod.status.start_time is not None
    assert pod.status.qos_class == "BestEffort"
    for kind in ("Initialized", "Ready", "ContainersReady", "PodScheduled"):
        assert condition(pod, kind) == "True", kind

    [status] = pod.status.container_statuses
    assert status.name == "c"
    assert status.ready is True
    assert status.started is True
    assert status.restart_count == 0
    assert "://" in status.container_id
    assert status.image_id
    assert status.state.running is not None
    assert status.state.running.started_at is not None

    on_node = await core.list_namespaced_pod(
        namespace, field_selector=f"spec.nodeName={pod.spec.node_name},status.phase=Running"
    )
    assert [p.metadata.name for p in on_node.items] == ["p"]


@pytest.mark.nodes
async def test_pod_deletion_honours_the_grace_period(
    core: client.CoreV1Api, namespace: str, ready_nodes: list[client.V1Node]
) -> None:
    assert ready_nodes is not None
    await create_pod(core, namespace, pod_body("p"))
    running = await wait_running(core, namespace, "p")

    deleted = await core.delete_namespaced_pod("p", namespace, grace_period_seconds=5)
    assert deleted.metadata.deletion_timestamp is not None
    assert deleted.metadata.deletion_grace_period_seconds == 5
    assert deleted.metadata.uid == running.metadata.uid
    # the deadline is "now + grace period" by the server's clock
    deadline = deleted.metadata.deletion_timestamp - running.metadata.creation_timestamp
    assert deadline >= dt.timedelta(seconds=4)

    # (the pause container stops at once on SIGTERM, so the pod may go before the deadline)
    await wait_gone(lambda: core.read_namespaced_pod("p", namespace), within=60, what="pod")


@pytest.mark.nodes
async def test_pod_with_finalizer_stays_after_containers_stop(
    core: client.CoreV1Api, namespace: str, ready_nodes: list[client.V1Node]
) -> None:
    assert ready_nodes is not None
    body = pod_body("p")
    body["metadata"]["finalizers"] = ["conformance.example.com/hold"]
    await create_pod(core, namespace, body)
    await wait_running(core, namespace, "p")
    await core.delete_namespaced_pod("p", namespace, grace_period_seconds=1)

    # The kubelet stops the containers, then (once it reclaimed the pod's resources, some
    # seconds later on a real node) deletes the pod with grace period 0: the finalizer keeps it.
    async def stopped() -> client.V1Pod | None:
        pod = await core.read_namespaced_pod("p", namespace)
        statuses = pod.status.container_statuses or []
        if (
            statuses
            and all(s.state.terminated is not None for s in statuses)
            and pod.metadata.deletion_grace_period_seconds == 0
        ):
            return pod
        return None

    try:
        pod = await eventually(stopped, within=60, what="the containers to stop, grace period 0")
        assert pod.metadata.deletion_timestamp is not None
    finally:
        await core.patch_namespaced_pod(
            "p",
            namespace,
            {"metadata": {"finalizers": None}},
            _content_type="application/merge-patch+json",
        )
    await wait_gone(lambda: core.read_namespaced_pod("p", namespace), within=30, what="pod")


async def test_services_get_distinct_cluster_ips(core: client.CoreV1Api, namespace: str) -> None:
    ips = []
    for i in range(5):
        svc = await core.create_namespaced_service(
            namespace, {"metadata": {"name": f"s{i}"}, "spec": {"ports": [{"port": 80}]}}
        )
        ipaddress.ip_address(svc.spec.cluster_ip)
        ips.append(svc.spec.cluster_ip)
    assert len(set(ips)) == 5


async def test_node_ports_are_allocated_in_range_without_collisions(
    core: client.CoreV1Api, namespace: str
) -> None:
    ports: list[int] = []
    for i in range(20):
        svc = await core.create_namespaced_service(
            namespace,
            {
                "metadata": {"name": f"np{i}"},
                "spec": {
                    "type": "NodePort",
                    "selector": {"app": "x"},
                    "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81}],
                },
            },
        )
        assert svc.spec.type == "NodePort"
        assert svc.spec.external_traffic_policy == "Cluster"
        ipaddress.ip_address(svc.spec.cluster_ip)
        ports += [p.node_port for p in svc.spec.ports]
    assert all(30000 <= p <= 32767 for p in ports), ports
    assert len(set(ports)) == len(ports) == 40


async def test_requested_node_port_in_use_is_invalid(
    core: client.CoreV1Api, namespace: str
) -> None:
    def service(name: str, port: int) -> dict[str, Any]:
        return {
            "metadata": {"name": name},
            "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": port}]},
        }

    rng = random.Random()
    for _ in range(20):
        port = rng.randint(30000, 32767)
        try:
            first = await core.create_namespaced_service(namespace, service("first", port))
            break
        except ApiException as exc:
            if exc.status != 422:  # taken by someone else on a shared cluster: try another
                raise
    else:
        pytest.fail("no free nodePort found")
    assert first.spec.ports[0].node_port == port

    with pytest.raises(ApiException) as info:
        await core.create_namespaced_service(namespace, service("second", port))
    status = assert_status(
        info.value,
        422,
        "Invalid",
        f'Service "second" is invalid: spec.ports[0].nodePort: Invalid value: {port}: '
        "provided port is already allocated",
    )
    assert status["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": f"Invalid value: {port}: provided port is already allocated",
            "field": "spec.ports[0].nodePort",
        }
    ]

    # released again once the first service is gone
    await core.delete_namespaced_service("first", namespace)
    await wait_gone(
        lambda: core.read_namespaced_service("first", namespace), within=10, what="service"
    )
    again = await core.create_namespaced_service(namespace, service(unique("again"), port))
    assert again.spec.ports[0].node_port == port


async def test_node_port_out_of_range_is_invalid(core: client.CoreV1Api, namespace: str) -> None:
    body = {
        "metadata": {"name": "bad"},
        "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]},
    }
    with pytest.raises(ApiException) as info:
        await core.create_namespaced_service(namespace, body)
    status = assert_status(info.value, 422, "Invalid")
    assert [c["field"] for c in status["details"]["causes"]] == ["spec.ports[0].nodePort"]
    assert "provided port is not in the valid range" in status["message"]
