"""PATCH: JSON patch, merge patch, strategic merge patch, and the media types refused."""

from __future__ import annotations

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiException

from tests.simcluster.conformance.support import (
    JSON_PATCH,
    MERGE,
    PAUSE_IMAGE,
    STRATEGIC,
    UNSUPPORTED_PATCH_MESSAGE,
    Widgets,
    assert_status,
    create_pod,
    rv,
    unschedulable_pod_body,
)


async def test_json_patch_on_custom_resource(widgets: Widgets, namespace: str) -> None:
    created = await widgets.make(namespace, "w", size=3, mode="a")
    patched = await widgets.patch(
        namespace,
        "w",
        [
            {"op": "test", "path": "/spec/size", "value": 3},
            {"op": "replace", "path": "/spec/size", "value": 7},
            {"op": "add", "path": "/metadata/labels", "value": {"k": "v"}},
        ],
        content_type=JSON_PATCH,
    )
    assert patched["spec"] == {"size": 7, "mode": "a"}
    assert patched["metadata"]["labels"] == {"k": "v"}
    assert patched["metadata"]["generation"] == 2
    assert rv(patched) > rv(created)

    removed = await widgets.patch(
        namespace, "w", [{"op": "remove", "path": "/spec/mode"}], content_type=JSON_PATCH
    )
    assert removed["spec"] == {"size": 7}


async def test_json_patch_failing_test_op_is_invalid(widgets: Widgets, namespace: str) -> None:
    await widgets.make(namespace, "w", size=3)
    with pytest.raises(ApiException) as info:
        await widgets.patch(
            namespace,
            "w",
            [
                {"op": "test", "path": "/spec/size", "value": 4},
                {"op": "replace", "path": "/spec/size", "value": 5},
            ],
            content_type=JSON_PATCH,
        )
    status = assert_status(
        info.value, 422, "Invalid", "the server rejected our request due to an error in our request"
    )
    assert status["details"] == {}
    assert (await widgets.get(namespace, "w"))["spec"]["size"] == 3


async def test_json_patch_on_configmap(core: client.CoreV1Api, namespace: str) -> None:
    await core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "cm"}, "data": {"a": "1"}}
    )
    patched = await core.patch_namespaced_config_map(
        "cm",
        namespace,
        [{"op": "add", "path": "/data/b", "value": "2"}, {"op": "remove", "path": "/data/a"}],
        _content_type=JSON_PATCH,
    )
    assert patched.data == {"b": "2"}
    with pytest.raises(ApiException) as info:
        await core.patch_namespaced_config_map(
            "cm",
            namespace,
            [{"op": "test", "path": "/data/b", "value": "3"}],
            _content_type=JSON_PATCH,
        )
    assert_status(
        info.value, 422, "Invalid", "the server rejected our request due to an error in our request"
    )


async def test_merge_patch_of_spec_bumps_generation(widgets: Widgets, namespace: str) -> None:
    await widgets.make(namespace, "w", size=3, mode="a", labels={"keep": "1", "drop": "1"})
    patched = await widgets.patch(
        namespace, "w", {"spec": {"size": 5}, "metadata": {"labels": {"drop": None}}}
    )
    assert patched["spec"] == {"size": 5, "mode": "a"}
    assert patched["metadata"]["labels"] == {"keep": "1"}
    assert patched["metadata"]["generation"] == 2


async def test_strategic_merge_patch_merges_pod_containers_by_name(
    core: client.CoreV1Api, namespace: str
) -> None:
    containers = [
        {"name": "a", "image": PAUSE_IMAGE, "command": ["/pause"]},
        {"name": "b", "image": PAUSE_IMAGE},
    ]
    await create_pod(
        core, namespace, unschedulable_pod_body("p", containers=containers, labels={"x": "1"})
    )
    patched = await core.patch_namespaced_pod(
        "p",
        namespace,
        {
            "metadata": {"labels": {"y": "2"}},
            "spec": {"containers": [{"name": "b", "image": "registry.k8s.io/pause:3.1"}]},
        },
        _content_type=STRATEGIC,
    )
    by_name = {c.name: c for c in patched.spec.containers}
    assert [c.name for c in patched.spec.containers] == ["a", "b"]
    assert by_name["a"].image == PAUSE_IMAGE
    assert by_name["a"].command == ["/pause"]
    assert by_name["b"].image == "registry.k8s.io/pause:3.1"
    assert patched.metadata.labels == {"x": "1", "y": "2"}


async def test_merge_patch_replaces_pod_container_lists(
    core: client.CoreV1Api, namespace: str
) -> None:
    """A JSON merge patch replaces lists whole: dropping a container is refused."""
    containers = [{"name": "a", "image": PAUSE_IMAGE}, {"name": "b", "image": PAUSE_IMAGE}]
    await create_pod(core, namespace, unschedulable_pod_body("p", containers=containers))
    with pytest.raises(ApiException) as info:
        await core.patch_namespaced_pod(
            "p",
            namespace,
            {"spec": {"containers": [{"name": "b", "image": "registry.k8s.io/pause:3.1"}]}},
            _content_type=MERGE,
        )
    assert_status(info.value, 422, "Invalid")


async def test_strategic_merge_patch_merges_service_ports_by_port(
    core: client.CoreV1Api, namespace: str
) -> None:
    await core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "svc"},
            "spec": {
                "selector": {"app": "x"},
                "ports": [
                    {"name": "http", "port": 80, "targetPort": 8080},
                    {"name": "https", "port": 443, "targetPort": 8443},
                ],
            },
        },
    )
    patched = await core.patch_namespaced_service(
        "svc",
        namespace,
        {"spec": {"ports": [{"port": 80, "targetPort": 9090}], "selector": {"tier": "web"}}},
        _content_type=STRATEGIC,
    )
    ports = {p.port: p for p in patched.spec.ports}
    assert set(ports) == {80, 443}
    assert ports[80].target_port == 9090
    assert ports[80].name == "http"
    assert ports[443].target_port == 8443
    assert patched.spec.selector == {"app": "x", "tier": "web"}


@pytest.mark.parametrize("content_type", [STRATEGIC, "application/json"])
async def test_custom_resource_refuses_patch_media_type(
    widgets: Widgets, namespace: str, content_type: str
) -> None:
    await widgets.make(namespace, "w")
    with pytest.raises(ApiException) as info:
        await widgets.patch(namespace, "w", {"spec": {"size": 4}}, content_type=content_type)
    status = assert_status(info.value, 415, "UnsupportedMediaType", UNSUPPORTED_PATCH_MESSAGE)
    assert "details" not in status
    assert (await widgets.get(namespace, "w"))["spec"]["size"] == 3
