"""Create / get / list / update / patch / delete of the built-in kinds."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import re
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiException

from tests.simcluster.conformance.support import (
    MERGE,
    STRATEGIC,
    create_pod,
    raw_request,
    rv,
    status_of,
    unique,
    unschedulable_pod_body,
    wait_gone,
)

UID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def assert_server_metadata(meta: client.V1ObjectMeta) -> None:
    """What a real server fills in on create."""
    assert UID.match(meta.uid or ""), meta.uid
    assert isinstance(meta.creation_timestamp, dt.datetime)
    assert meta.creation_timestamp.tzinfo is not None
    assert isinstance(meta.resource_version, str)
    assert meta.resource_version.isdigit()
    assert meta.deletion_timestamp is None


async def test_namespace_crud(core: client.CoreV1Api) -> None:
    name = unique("ns-crud")
    created = await core.create_namespace({"metadata": {"name": name, "labels": {"a": "1"}}})
    try:
        assert created.metadata.name == name
        assert_server_metadata(created.metadata)
        assert created.status.phase == "Active"
        assert created.spec.finalizers == ["kubernetes"]

        got = await core.read_namespace(name)
        assert got.metadata.uid == created.metadata.uid
        listed = await core.list_namespace(label_selector="a=1")
        assert name in [n.metadata.name for n in listed.items]

        got.metadata.labels["b"] = "2"
        replaced = await core.replace_namespace(name, got)
        assert replaced.metadata.labels == {"a": "1", "b": "2"}
        assert rv(replaced) > rv(created)

        patched = await core.patch_namespace(
            name, {"metadata": {"annotations": {"note": "x"}}}, _content_type=MERGE
        )
        assert patched.metadata.annotations == {"note": "x"}
        assert patched.metadata.labels == {"a": "1", "b": "2"}
        assert rv(patched) > rv(replaced)
    finally:
        await core.delete_namespace(name)


async def test_configmap_crud(core: client.CoreV1Api, namespace: str) -> None:
    body = {"metadata": {"name": "cm", "labels": {"app": "x"}}, "data": {"k": "v"}}
    created = await core.create_namespaced_config_map(namespace, body)
    assert created.metadata.namespace == namespace
    assert created.data == {"k": "v"}
    assert_server_metadata(created.metadata)

    got = await core.read_namespaced_config_map("cm", namespace)
    assert got.metadata.uid == created.metadata.uid
    assert got.metadata.resource_version == created.metadata.resource_version

    listed = await core.list_namespaced_config_map(namespace, label_selector="app=x")
    assert [c.metadata.name for c in listed.items] == ["cm"]
    assert listed.metadata.resource_version.isdigit()

    got.data["k2"] = "v2"
    replaced = await core.replace_namespaced_config_map("cm", namespace, got)
    assert replaced.data == {"k": "v", "k2": "v2"}
    assert rv(replaced) > rv(created)
    assert replaced.metadata.uid == created.metadata.uid
    assert replaced.metadata.creation_timestamp == created.metadata.creation_timestamp

    patched = await core.patch_namespaced_config_map(
        "cm", namespace, {"data": {"k": None, "k3": "v3"}}, _content_type=MERGE
    )
    assert patched.data == {"k2": "v2", "k3": "v3"}
    assert rv(patched) > rv(replaced)

    await core.delete_namespaced_config_map("cm", namespace)
    with pytest.raises(ApiException) as info:
        await core.read_namespaced_config_map("cm", namespace)
    assert info.value.status == 404


async def test_configmap_update_without_resource_version_is_unconditional(
    core: client.CoreV1Api, namespace: str
) -> None:
    created = await core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "cm"}, "data": {"k": "v"}}
    )
    replaced = await core.replace_namespaced_config_map(
        "cm", namespace, {"metadata": {"name": "cm"}, "data": {"k": "new"}}
    )
    assert replaced.data == {"k": "new"}
    assert rv(replaced) > rv(created)


async def test_secret_crud_merges_string_data(core: client.CoreV1Api, namespace: str) -> None:
    body = {
        "metadata": {"name": "s"},
        "data": {"a": base64.b64encode(b"alpha").decode()},
        "stringData": {"b": "beta"},
    }
    created = await core.create_namespaced_secret(namespace, body)
    assert_server_metadata(created.metadata)
    assert created.type == "Opaque"
    assert created.string_data is None
    assert created.data == {
        "a": base64.b64encode(b"alpha").decode(),
        "b": base64.b64encode(b"beta").decode(),
    }

    got = await core.read_namespaced_secret("s", namespace)
    assert got.data == created.data
    listed = await core.list_namespaced_secret(namespace, field_selector="metadata.name=s")
    assert [s.metadata.name for s in listed.items] == ["s"]

    got.data["c"] = base64.b64encode(b"gamma").decode()
    replaced = await core.replace_namespaced_secret("s", namespace, got)
    assert set(replaced.data) == {"a", "b", "c"}
    assert rv(replaced) > rv(created)

    patched = await core.patch_namespaced_secret(
        "s", namespace, {"stringData": {"a": "changed"}}, _content_type=MERGE
    )
    assert patched.data["a"] == base64.b64encode(b"changed").decode()
    assert patched.string_data is None

    await core.delete_namespaced_secret("s", namespace)
    await wait_gone(lambda: core.read_namespaced_secret("s", namespace), within=5, what="secret")


async def test_pod_crud(core: client.CoreV1Api, namespace: str) -> None:
    created = await create_pod(core, namespace, unschedulable_pod_body("p", labels={"a": "1"}))
    assert_server_metadata(created.metadata)
    assert created.status.phase == "Pending"
    assert created.spec.node_name is None

    got = await core.read_namespaced_pod("p", namespace)
    assert got.metadata.uid == created.metadata.uid
    listed = await core.list_namespaced_pod(namespace)
    assert [p.metadata.name for p in listed.items] == ["p"]

    got.metadata.labels["b"] = "2"
    replaced = await core.replace_namespaced_pod("p", namespace, got)
    assert replaced.metadata.labels == {"a": "1", "b": "2"}
    assert rv(replaced) > rv(created)

    patched = await core.patch_namespaced_pod(
        "p", namespace, {"metadata": {"labels": {"c": "3"}}}, _content_type=STRATEGIC
    )
    assert patched.metadata.labels == {"a": "1", "b": "2", "c": "3"}

    # a pod that is bound to no node is deleted at once, whatever its grace period
    await core.delete_namespaced_pod("p", namespace)
    await wait_gone(lambda: core.read_namespaced_pod("p", namespace), within=5, what="pod")


async def test_pod_gets_defaults(core: client.CoreV1Api, namespace: str) -> None:
    body = {
        "metadata": {"name": "p"},
        "spec": {
            "schedulerName": "conformance-no-such-scheduler",
            "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.2"}],
        },
    }
    pod = await create_pod(core, namespace, body)
    assert pod.spec.restart_policy == "Always"
    assert pod.spec.dns_policy == "ClusterFirst"
    assert pod.spec.termination_grace_period_seconds == 30
    assert pod.spec.service_account_name == "default"
    assert pod.spec.enable_service_links is True
    container = pod.spec.containers[0]
    assert container.image_pull_policy == "IfNotPresent"
    assert container.termination_message_path == "/dev/termination-log"
    assert container.termination_message_policy == "File"
    assert pod.status.phase == "Pending"
    assert pod.status.qos_class == "BestEffort"


async def test_pod_update_may_not_add_containers(core: client.CoreV1Api, namespace: str) -> None:
    await create_pod(core, namespace, unschedulable_pod_body("p"))
    patch = {"spec": {"containers": [{"name": "d", "image": "registry.k8s.io/pause:3.2"}]}}
    with pytest.raises(ApiException) as info:
        await core.patch_namespaced_pod("p", namespace, patch, _content_type=STRATEGIC)
    assert info.value.status == 422
    status = status_of(info.value)
    assert status["reason"] == "Invalid"
    assert status["message"] == (
        'Pod "p" is invalid: spec.containers: Forbidden: pod updates may not add or remove '
        "containers"
    )
    assert status["details"]["causes"] == [
        {
            "reason": "FieldValueForbidden",
            "message": "Forbidden: pod updates may not add or remove containers",
            "field": "spec.containers",
        }
    ]


async def test_service_crud_allocates_cluster_ip(core: client.CoreV1Api, namespace: str) -> None:
    body = {
        "metadata": {"name": "svc"},
        "spec": {"selector": {"app": "x"}, "ports": [{"name": "http", "port": 80}]},
    }
    created = await core.create_namespaced_service(namespace, body)
    assert_server_metadata(created.metadata)
    assert created.spec.type == "ClusterIP"
    assert created.spec.session_affinity == "None"
    ipaddress.ip_address(created.spec.cluster_ip)
    port = created.spec.ports[0]
    assert port.protocol == "TCP"
    assert port.target_port == 80
    assert port.node_port is None

    got = await core.read_namespaced_service("svc", namespace)
    assert got.spec.cluster_ip == created.spec.cluster_ip
    listed = await core.list_namespaced_service(namespace)
    assert [s.metadata.name for s in listed.items] == ["svc"]

    got.metadata.labels = {"l": "1"}
    replaced = await core.replace_namespaced_service("svc", namespace, got)
    assert replaced.metadata.labels == {"l": "1"}
    assert replaced.spec.cluster_ip == created.spec.cluster_ip
    assert rv(replaced) > rv(created)

    patched = await core.patch_namespaced_service(
        "svc", namespace, {"spec": {"selector": {"tier": "web"}}}, _content_type=STRATEGIC
    )
    assert patched.spec.selector == {"app": "x", "tier": "web"}

    await core.delete_namespaced_service("svc", namespace)
    await wait_gone(lambda: core.read_namespaced_service("svc", namespace), within=5, what="svc")


async def test_headless_service_keeps_cluster_ip_none(
    core: client.CoreV1Api, namespace: str
) -> None:
    body = {
        "metadata": {"name": "headless"},
        "spec": {"clusterIP": "None", "selector": {"app": "x"}, "ports": [{"port": 80}]},
    }
    created = await core.create_namespaced_service(namespace, body)
    assert created.spec.cluster_ip == "None"


async def test_event_crud_and_involved_object_selector(
    core: client.CoreV1Api, namespace: str
) -> None:
    cm = await core.create_namespaced_config_map(namespace, {"metadata": {"name": "cm"}})
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)

    def event(name: str, involved: str) -> dict[str, Any]:
        return {
            "metadata": {"name": name},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "name": involved,
                "namespace": namespace,
                "uid": cm.metadata.uid,
            },
            "reason": "Tested",
            "message": f"about {involved}",
            "type": "Normal",
            "count": 1,
            "firstTimestamp": now.isoformat().replace("+00:00", "Z"),
            "lastTimestamp": now.isoformat().replace("+00:00", "Z"),
            "source": {"component": "conformance"},
        }

    created = await core.create_namespaced_event(namespace, event("e1", "cm"))
    await core.create_namespaced_event(namespace, event("e2", "other"))
    assert_server_metadata(created.metadata)
    assert created.involved_object.name == "cm"
    assert created.count == 1

    got = await core.read_namespaced_event("e1", namespace)
    assert got.message == "about cm"
    selected = await core.list_namespaced_event(namespace, field_selector="involvedObject.name=cm")
    assert [e.metadata.name for e in selected.items] == ["e1"]

    patched = await core.patch_namespaced_event("e1", namespace, {"count": 2}, _content_type=MERGE)
    assert patched.count == 2
    assert rv(patched) > rv(created)

    await core.delete_namespaced_event("e1", namespace)
    await wait_gone(lambda: core.read_namespaced_event("e1", namespace), within=5, what="event")


async def test_ingress_crud(api: client.ApiClient, namespace: str) -> None:
    net = client.NetworkingV1Api(api)
    body = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "ing"},
        "spec": {
            "rules": [
                {
                    "host": "box.example.com",
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "svc", "port": {"number": 80}}},
                            }
                        ]
                    },
                }
            ]
        },
    }
    created = await net.create_namespaced_ingress(namespace, body)
    assert_server_metadata(created.metadata)
    assert created.spec.rules[0].host == "box.example.com"
    path = created.spec.rules[0].http.paths[0]
    assert path.backend.service.name == "svc"
    assert path.backend.service.port.number == 80

    got = await net.read_namespaced_ingress("ing", namespace)
    assert got.metadata.uid == created.metadata.uid
    listed = await net.list_namespaced_ingress(namespace)
    assert [i.metadata.name for i in listed.items] == ["ing"]

    got.spec.rules[0].host = "other.example.com"
    replaced = await net.replace_namespaced_ingress("ing", namespace, got)
    assert replaced.spec.rules[0].host == "other.example.com"
    assert rv(replaced) > rv(created)

    patched = await net.patch_namespaced_ingress(
        "ing", namespace, {"metadata": {"annotations": {"a": "b"}}}, _content_type=MERGE
    )
    assert patched.metadata.annotations == {"a": "b"}

    await net.delete_namespaced_ingress("ing", namespace)
    await wait_gone(lambda: net.read_namespaced_ingress("ing", namespace), within=5, what="ing")


async def test_ingress_without_path_type_is_invalid(api: client.ApiClient, namespace: str) -> None:
    """networking.k8s.io/v1 requires pathType (only v1beta1 defaulted it)."""
    body = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "ing"},
        "spec": {
            "rules": [
                {
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "backend": {"service": {"name": "s", "port": {"number": 80}}},
                            }
                        ]
                    }
                }
            ]
        },
    }
    resp = await raw_request(
        api,
        "POST",
        f"/apis/networking.k8s.io/v1/namespaces/{namespace}/ingresses",
        body=json.dumps(body).encode(),
        content_type="application/json",
    )
    assert resp.status == 422, resp.body
    status = resp.json()
    assert status["reason"] == "Invalid"
    assert status["details"]["causes"] == [
        {
            "reason": "FieldValueRequired",
            "message": "Required value: pathType must be specified",
            "field": "spec.rules[0].http.paths[0].pathType",
        }
    ]


async def test_resource_version_is_a_cluster_wide_counter(
    core: client.CoreV1Api, api: client.ApiClient, namespace: str
) -> None:
    """resourceVersions increase across objects, kinds and namespaces."""
    seen = [
        rv(await core.create_namespaced_config_map(namespace, {"metadata": {"name": "a"}})),
        rv(await core.create_namespaced_secret(namespace, {"metadata": {"name": "b"}})),
        rv(
            await client.CoordinationV1Api(api).create_namespaced_lease(
                namespace, {"metadata": {"name": "c"}, "spec": {"holderIdentity": "x"}}
            )
        ),
        rv(
            await core.patch_namespaced_config_map(
                "a", namespace, {"data": {"k": "v"}}, _content_type=MERGE
            )
        ),
        rv(
            await core.create_namespaced_service(
                namespace, {"metadata": {"name": "d"}, "spec": {"ports": [{"port": 80}]}}
            )
        ),
    ]
    assert seen == sorted(seen)
    assert len(set(seen)) == len(seen)
    # a list without resourceVersion is read from storage: at least as new as every write
    listed = await core.list_namespaced_config_map(namespace)
    assert int(listed.metadata.resource_version) >= seen[-1]
