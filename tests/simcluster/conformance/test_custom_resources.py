"""Custom resources: CRUD, server metadata, generation, pruning, optimistic concurrency."""

from __future__ import annotations

import re

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiException

from tests.simcluster.conformance.support import (
    GENERATE_NAME_ALPHABET,
    JSON_PATCH,
    MERGE,
    Widgets,
    assert_status,
    rv,
    wait_gone,
)

UID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


async def test_custom_resource_crud(widgets: Widgets, namespace: str) -> None:
    created = await widgets.make(namespace, "w1", size=3, mode="a", labels={"app": "x"})
    meta = created["metadata"]
    assert created["apiVersion"] == widgets.api_version
    assert created["kind"] == "Widget"
    assert created["spec"] == {"size": 3, "mode": "a"}
    assert meta["name"] == "w1"
    assert meta["namespace"] == namespace
    assert UID.match(meta["uid"])
    assert TIMESTAMP.match(meta["creationTimestamp"])
    assert meta["generation"] == 1
    assert meta["labels"] == {"app": "x"}
    assert "deletionTimestamp" not in meta
    assert "status" not in created

    got = await widgets.get(namespace, "w1")
    assert got["metadata"]["uid"] == meta["uid"]
    assert got["metadata"]["resourceVersion"] == meta["resourceVersion"]

    listed = await widgets.list(namespace)
    assert listed["kind"] == "WidgetList"
    assert listed["apiVersion"] == widgets.api_version
    assert listed["metadata"]["resourceVersion"].isdigit()
    assert [w["metadata"]["name"] for w in listed["items"]] == ["w1"]

    got["spec"]["size"] = 4
    replaced = await widgets.replace(namespace, "w1", got)
    assert replaced["spec"] == {"size": 4, "mode": "a"}
    assert rv(replaced) > rv(created)
    assert replaced["metadata"]["generation"] == 2
    assert replaced["metadata"]["uid"] == meta["uid"]
    assert replaced["metadata"]["creationTimestamp"] == meta["creationTimestamp"]

    patched = await widgets.patch(namespace, "w1", {"spec": {"mode": "b"}})
    assert patched["spec"] == {"size": 4, "mode": "b"}
    assert patched["metadata"]["generation"] == 3
    assert rv(patched) > rv(replaced)

    await widgets.delete(namespace, "w1")
    await wait_gone(lambda: widgets.get(namespace, "w1"), within=5, what="widget")


async def test_generation_bumps_on_spec_changes_only(widgets: Widgets, namespace: str) -> None:
    created = await widgets.make(namespace, "w", size=3)
    assert created["metadata"]["generation"] == 1

    labelled = await widgets.patch(namespace, "w", {"metadata": {"labels": {"a": "b"}}})
    assert labelled["metadata"]["generation"] == 1
    assert rv(labelled) > rv(created)

    annotated = await widgets.patch(
        namespace,
        "w",
        [{"op": "add", "path": "/metadata/annotations", "value": {"n": "1"}}],
        content_type=JSON_PATCH,
    )
    assert annotated["metadata"]["generation"] == 1

    with_status = await widgets.patch_status(namespace, "w", {"status": {"phase": "Ready"}})
    assert with_status["metadata"]["generation"] == 1
    assert with_status["status"] == {"phase": "Ready"}

    resized = await widgets.patch(namespace, "w", {"spec": {"size": 5}})
    assert resized["metadata"]["generation"] == 2

    same = await widgets.patch(namespace, "w", {"spec": {"size": 5}})
    assert same["metadata"]["generation"] == 2


async def test_create_drops_status_when_status_is_a_subresource(
    widgets: Widgets, namespace: str
) -> None:
    body = widgets.body("w")
    body["status"] = {"phase": "Ready"}
    created = await widgets.create(namespace, body)
    assert "status" not in created
    assert "status" not in await widgets.get(namespace, "w")


async def test_unknown_fields_are_pruned(widgets: Widgets, namespace: str) -> None:
    body = widgets.body("w")
    body["spec"]["extra"] = "dropped"
    body["other"] = {"x": 1}
    created = await widgets.create(namespace, body)
    assert created["spec"] == {"size": 3, "mode": "a"}
    assert "other" not in created
    got = await widgets.get(namespace, "w")
    assert got["spec"] == {"size": 3, "mode": "a"}


async def test_update_without_resource_version_is_invalid(widgets: Widgets, namespace: str) -> None:
    """Custom resources refuse unconditional updates (unlike ConfigMaps or Pods)."""
    await widgets.make(namespace, "w")
    with pytest.raises(ApiException) as info:
        await widgets.replace(namespace, "w", widgets.body("w", size=4))
    status = assert_status(
        info.value,
        422,
        "Invalid",
        f'widgets.{widgets.group} "w" is invalid: metadata.resourceVersion: Invalid value: 0x0: '
        "must be specified for an update",
    )
    assert status["details"]["name"] == "w"
    assert status["details"]["group"] == widgets.group
    assert status["details"]["kind"] == "widgets"
    assert status["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": "Invalid value: 0x0: must be specified for an update",
            "field": "metadata.resourceVersion",
        }
    ]


async def test_stale_resource_version_conflicts(widgets: Widgets, namespace: str) -> None:
    created = await widgets.make(namespace, "w1")
    await widgets.patch(namespace, "w1", {"spec": {"size": 5}})
    stale = widgets.body("w1", size=6, resourceVersion=created["metadata"]["resourceVersion"])
    with pytest.raises(ApiException) as info:
        await widgets.replace(namespace, "w1", stale)
    status = assert_status(
        info.value,
        409,
        "Conflict",
        f'Operation cannot be fulfilled on widgets.{widgets.group} "w1": the object has been '
        "modified; please apply your changes to the latest version and try again",
    )
    assert status["details"] == {"name": "w1", "group": widgets.group, "kind": "widgets"}
    assert (await widgets.get(namespace, "w1"))["spec"]["size"] == 5


async def test_configmap_stale_resource_version_conflicts(
    core: client.CoreV1Api, namespace: str
) -> None:
    created = await core.create_namespaced_config_map(namespace, {"metadata": {"name": "cm"}})
    await core.patch_namespaced_config_map(
        "cm", namespace, {"data": {"a": "1"}}, _content_type=MERGE
    )
    stale = {
        "metadata": {"name": "cm", "resourceVersion": created.metadata.resource_version},
        "data": {"a": "2"},
    }
    with pytest.raises(ApiException) as info:
        await core.replace_namespaced_config_map("cm", namespace, stale)
    status = assert_status(
        info.value,
        409,
        "Conflict",
        'Operation cannot be fulfilled on configmaps "cm": the object has been modified; '
        "please apply your changes to the latest version and try again",
    )
    assert status["details"] == {"name": "cm", "kind": "configmaps"}


async def test_generate_name_appends_five_random_characters(
    widgets: Widgets, core: client.CoreV1Api, namespace: str
) -> None:
    pattern = re.compile(f"^box-[{GENERATE_NAME_ALPHABET}]{{5}}$")
    names = set()
    for _ in range(5):
        created = await widgets.create(namespace, widgets.body(None, generateName="box-"))
        assert pattern.match(created["metadata"]["name"]), created["metadata"]["name"]
        assert created["metadata"]["generateName"] == "box-"
        names.add(created["metadata"]["name"])
    assert len(names) == 5
    listed = await widgets.list(namespace)
    assert {w["metadata"]["name"] for w in listed["items"]} == names

    cm = await core.create_namespaced_config_map(namespace, {"metadata": {"generateName": "cfg-"}})
    assert re.match(f"^cfg-[{GENERATE_NAME_ALPHABET}]{{5}}$", cm.metadata.name)
    assert cm.metadata.generate_name == "cfg-"
