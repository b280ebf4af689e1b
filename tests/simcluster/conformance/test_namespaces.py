"""Namespace deletion: Terminating, contents deleted, then the namespace disappears."""

from __future__ import annotations

import json

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiException

from tests.simcluster.conformance.support import (
    MERGE,
    Widgets,
    assert_status,
    eventually,
    is_gone,
    unique,
    wait_gone,
)

NAMESPACE_WAIT = 120
"""Seconds a real namespace controller may take to empty and remove a namespace."""


async def test_deleting_a_namespace_deletes_its_objects(
    core: client.CoreV1Api, widgets: Widgets
) -> None:
    name = unique("t-doomed")
    await core.create_namespace({"metadata": {"name": name}})
    try:
        await core.create_namespaced_config_map(name, {"metadata": {"name": "cm"}})
        await core.create_namespaced_secret(name, {"metadata": {"name": "s"}})
        await core.create_namespaced_service(
            name, {"metadata": {"name": "svc"}, "spec": {"ports": [{"port": 80}]}}
        )
        await widgets.make(name, "w")

        resp = await core.delete_namespace(name, _preload_content=False)
        assert resp.status == 200
        terminating = json.loads(await resp.read())
        assert terminating["kind"] == "Namespace"
        assert terminating["metadata"]["name"] == name
        assert terminating["metadata"]["deletionTimestamp"]
        assert terminating["spec"]["finalizers"] == ["kubernetes"]
        assert terminating["status"]["phase"] == "Terminating"

        await wait_gone(lambda: core.read_namespace(name), within=NAMESPACE_WAIT, what=name)
        leftovers = await core.list_config_map_for_all_namespaces(
            field_selector=f"metadata.namespace={name}"
        )
        assert leftovers.items == []
        assert await is_gone(lambda: core.read_namespaced_service("svc", name))
        assert await is_gone(lambda: widgets.get(name, "w"))
    finally:
        try:
            await core.delete_namespace(name)
        except ApiException as exc:
            if exc.status != 404:
                raise


async def test_terminating_namespace_refuses_new_objects_and_waits_for_finalizers(
    core: client.CoreV1Api,
) -> None:
    name = unique("t-doomed")
    await core.create_namespace({"metadata": {"name": name}})
    try:
        await core.create_namespaced_config_map(
            name, {"metadata": {"name": "held", "finalizers": ["conformance.example.com/hold"]}}
        )
        await core.delete_namespace(name)

        async def held_deleting() -> bool:
            held = await core.read_namespaced_config_map("held", name)
            return held.metadata.deletion_timestamp is not None

        await eventually(held_deleting, within=NAMESPACE_WAIT, what="the held configmap deleted")
        namespace = await core.read_namespace(name)
        assert namespace.status.phase == "Terminating"

        with pytest.raises(ApiException) as info:
            await core.create_namespaced_config_map(name, {"metadata": {"name": "late"}})
        status = assert_status(
            info.value,
            403,
            "Forbidden",
            f'configmaps "late" is forbidden: unable to create new content in namespace {name} '
            "because it is being terminated",
        )
        assert status["details"] == {
            "name": "late",
            "kind": "configmaps",
            "causes": [
                {
                    "reason": "NamespaceTerminating",
                    "message": f"namespace {name} is being terminated",
                    "field": "metadata.namespace",
                }
            ],
        }

        await core.patch_namespaced_config_map(
            "held", name, {"metadata": {"finalizers": None}}, _content_type=MERGE
        )
        await wait_gone(lambda: core.read_namespace(name), within=NAMESPACE_WAIT, what=name)
    finally:
        try:
            await core.patch_namespaced_config_map(
                "held", name, {"metadata": {"finalizers": None}}, _content_type=MERGE
            )
        except ApiException as exc:
            if exc.status != 404:
                raise


async def test_objects_in_a_missing_namespace_are_refused(core: client.CoreV1Api) -> None:
    name = unique("t-missing")
    with pytest.raises(ApiException) as info:
        await core.create_namespaced_config_map(name, {"metadata": {"name": "cm"}})
    assert_status(info.value, 404, "NotFound", f'namespaces "{name}" not found')
