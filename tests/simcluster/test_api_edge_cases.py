"""Edge cases a review found where the simulation differed from a real API server.

Each test states what a real v1.20 server does; they run against the simulation only (through
plain HTTP), the portable ones belong in the conformance suite once checked on a real cluster.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from app.simcluster.nodes import NodeSettings
from app.simcluster.server import SimCluster

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def _eventually(check: Callable[[], Any], within: float = 10.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def _crd(
    group: str, *, versions: list[dict[str, Any]] | None = None, status: bool = True
) -> dict[str, Any]:
    schema = {
        "openAPIV3Schema": {
            "type": "object",
            "properties": {
                "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
        }
    }
    version = {"name": "v1", "served": True, "storage": True, "schema": schema}
    if status:
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"things.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "things", "kind": "Thing"},
            "versions": versions or [version],
        },
    }


@pytest.fixture
def cluster() -> Iterator[SimCluster]:
    sim = SimCluster(node_settings=NodeSettings(count=1, pods="3"))
    sim.start_in_thread()
    try:
        yield sim
    finally:
        sim.stop_thread()


@pytest.fixture
def http(cluster: SimCluster) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cluster.url, timeout=10) as client:
        yield client


def _install(http: httpx.Client, crd: dict[str, Any]) -> str:
    assert http.post(CRDS, json=crd).status_code == 201
    group = crd["spec"]["group"]
    path = f"/apis/{group}/v1/namespaces/default/things"
    _eventually(lambda: http.get(path).status_code == 200)
    return path


def _pod(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox:1"}]},
    }


def test_pod_deleted_right_after_binding_still_goes_away(http: httpx.Client) -> None:
    pods = "/api/v1/namespaces/default/pods"
    http.post(pods, json=_pod("quick")).raise_for_status()
    _eventually(lambda: http.get(f"{pods}/quick").json()["spec"].get("nodeName"), 5)
    http.delete(f"{pods}/quick").raise_for_status()
    _eventually(lambda: http.get(f"{pods}/quick").status_code == 404, 10)


def test_scheduler_respects_node_pod_capacity_and_retries_when_room_frees(
    http: httpx.Client,
) -> None:
    pods = "/api/v1/namespaces/default/pods"
    for i in range(4):
        http.post(pods, json=_pod(f"p{i}")).raise_for_status()

    def unschedulable() -> dict[str, Any] | None:
        waiting = [p for p in http.get(pods).json()["items"] if not p["spec"].get("nodeName")]
        if len(waiting) != 1:
            return None
        conditions = waiting[0]["status"].get("conditions") or []
        return next((c for c in conditions if c["type"] == "PodScheduled"), None)

    condition = _eventually(unschedulable)
    assert condition["status"] == "False"
    assert condition["reason"] == "Unschedulable"
    assert condition["message"] == "0/1 nodes are available: 1 Too many pods."
    http.delete(f"{pods}/p0", params={"gracePeriodSeconds": "0"}).raise_for_status()
    _eventually(
        lambda: all(
            p["spec"].get("nodeName") and p["status"]["phase"] == "Running"
            for p in http.get(pods).json()["items"]
        )
    )


def test_crd_versions_need_names_and_protected_groups_need_approval(http: httpx.Client) -> None:
    nameless = _crd("nameless.example.com")
    del nameless["spec"]["versions"][0]["name"]
    reply = http.post(CRDS, json=nameless)
    assert reply.status_code == 422
    assert "spec.versions[0].name: Required value" in reply.json()["message"]

    hijack = _crd("networking.k8s.io")
    hijack["metadata"]["name"] = "ingresses.networking.k8s.io"
    hijack["spec"]["names"] = {"plural": "ingresses", "kind": "Ingress"}
    reply = http.post(CRDS, json=hijack)
    assert reply.status_code == 422
    assert "api-approved.kubernetes.io" in reply.json()["message"]


def test_reapplying_a_crd_keeps_its_defaults_and_generation(
    cluster: SimCluster, http: httpx.Client
) -> None:
    crd = _crd("again.example.com")
    _install(http, crd)
    name = crd["metadata"]["name"]
    first = http.get(f"{CRDS}/{name}").json()
    cluster.apply([crd])
    second = http.get(f"{CRDS}/{name}").json()
    assert second["metadata"]["generation"] == first["metadata"]["generation"]
    assert second["spec"]["conversion"] == {"strategy": "None"}
    assert second["spec"]["names"]["singular"] == "thing"


def test_watches_of_a_custom_resource_end_when_its_crd_is_deleted(http: httpx.Client) -> None:
    crd = _crd("ending.example.com")
    path = _install(http, crd)
    with (
        httpx.Client(base_url=str(http.base_url), timeout=15) as watcher,
        watcher.stream("GET", path, params={"watch": "true", "timeoutSeconds": "10"}) as stream,
    ):
        started = time.monotonic()
        http.delete(f"{CRDS}/{crd['metadata']['name']}").raise_for_status()
        for _ in stream.iter_lines():
            pass
        assert time.monotonic() - started < 8


def test_generation_counts_status_when_there_is_no_status_subresource(
    http: httpx.Client,
) -> None:
    path = _install(http, _crd("nostatus.example.com", status=False))
    thing = {
        "apiVersion": "nostatus.example.com/v1",
        "kind": "Thing",
        "metadata": {"name": "t"},
        "spec": {"a": 1},
    }
    http.post(path, json=thing).raise_for_status()
    patched = http.patch(
        f"{path}/t",
        json={"status": {"x": 1}},
        headers={"content-type": "application/merge-patch+json"},
    ).json()
    assert patched["status"] == {"x": 1}
    assert patched["metadata"]["generation"] == 2


def test_bad_delete_options_are_a_bad_request(http: httpx.Client) -> None:
    cms = "/api/v1/namespaces/default/configmaps"
    http.post(cms, json={"metadata": {"name": "victim"}}).raise_for_status()
    for body in ({"preconditions": "x"}, {"gracePeriodSeconds": "5"}, [1]):
        reply = http.request("DELETE", f"{cms}/victim", json=body)
        assert reply.status_code == 400, body
        assert reply.json()["reason"] == "BadRequest"
    both = http.request(
        "DELETE",
        f"{cms}/victim",
        json={"orphanDependents": True, "propagationPolicy": "Background"},
    )
    assert both.status_code == 422
    assert http.get(f"{cms}/victim").status_code == 200


def test_changing_the_uid_in_an_update_is_refused(http: httpx.Client) -> None:
    cms = "/api/v1/namespaces/default/configmaps"
    created = http.post(cms, json={"metadata": {"name": "fixed"}}).json()
    created["metadata"]["uid"] = "00000000-0000-0000-0000-000000000000"
    reply = http.put(f"{cms}/fixed", json=created)
    assert reply.status_code == 422
    assert "metadata.uid" in reply.json()["message"]


def test_paginated_list_at_a_version_reads_that_version(http: httpx.Client) -> None:
    cms = "/api/v1/namespaces/default/configmaps"
    first = http.post(cms, json={"metadata": {"name": "page-a"}}).json()
    at = first["metadata"]["resourceVersion"]
    http.post(cms, json={"metadata": {"name": "page-b"}}).raise_for_status()
    page = http.get(cms, params={"limit": "10", "resourceVersion": at}).json()
    assert page["metadata"]["resourceVersion"] == at
    assert "page-b" not in [item["metadata"]["name"] for item in page["items"]]
    exact = http.get(cms, params={"resourceVersion": "99999999", "resourceVersionMatch": "Exact"})
    assert exact.status_code == 504
    assert http.get(cms, params={"resourceVersionMatch": "Exact"}).status_code == 400


def test_events_with_python_timestamps_are_normalized_and_printable(http: httpx.Client) -> None:
    events = "/api/v1/namespaces/default/events"
    event = {
        "metadata": {"name": "e1"},
        "involvedObject": {"kind": "Pod", "name": "x", "namespace": "default"},
        "reason": "Test",
        "message": "m",
        "type": "Normal",
        "firstTimestamp": "2024-01-01T00:00:00.123456+00:00",
        "lastTimestamp": "2024-01-01T00:00:00.123456+00:00",
    }
    created = http.post(events, json=event).json()
    assert created["lastTimestamp"] == "2024-01-01T00:00:00Z"
    table = http.get(events, headers={"accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
    assert table.status_code == 200
    assert table.json()["rows"][0]["cells"][2] == "Test"


def test_scheduler_fits_resource_requests_into_node_allocatable(http: httpx.Client) -> None:
    pods = "/api/v1/namespaces/default/pods"
    big = {
        "metadata": {"name": "big"},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": "busybox:1",
                    "resources": {"requests": {"cpu": "60", "memory": "1Gi"}},
                }
            ]
        },
    }
    http.post(pods, json=big).raise_for_status()
    _eventually(lambda: http.get(f"{pods}/big").json()["status"].get("phase") == "Running")
    second = {**big, "metadata": {"name": "second"}}
    second["spec"] = {
        "containers": [
            {
                "name": "c",
                "image": "busybox:1",
                "resources": {"limits": {"cpu": "8", "memory": "1Gi"}},
            }
        ]
    }
    http.post(pods, json=second).raise_for_status()

    def condition() -> dict[str, Any] | None:
        status = http.get(f"{pods}/second").json().get("status") or {}
        return next(
            (
                c
                for c in status.get("conditions") or []
                if c["type"] == "PodScheduled" and c["status"] == "False"
            ),
            None,
        )

    assert _eventually(condition)["message"] == "0/1 nodes are available: 1 Insufficient cpu."
    http.delete(f"{pods}/big", params={"gracePeriodSeconds": "0"}).raise_for_status()
    _eventually(lambda: http.get(f"{pods}/second").json()["spec"].get("nodeName"))
