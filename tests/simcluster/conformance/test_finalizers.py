"""Finalizers and deletion: deletionTimestamp, still readable, gone once the last one is removed."""

from __future__ import annotations

import asyncio

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiException

from tests.simcluster.conformance.support import (
    JSON_PATCH,
    MERGE,
    Widgets,
    assert_status,
    install_widgets,
    rv,
    uninstall_widgets,
    wait_gone,
)


async def test_delete_with_finalizer_marks_then_removes(widgets: Widgets, namespace: str) -> None:
    created = await widgets.make(namespace, "w", finalizers=["conformance.example.com/f"])
    await widgets.patch(namespace, "w", {"spec": {"size": 5}})

    deleted = await widgets.delete(namespace, "w")
    meta = deleted["metadata"]
    assert deleted["kind"] == "Widget"
    assert meta["deletionTimestamp"]
    assert meta["deletionGracePeriodSeconds"] == 0
    assert meta["finalizers"] == ["conformance.example.com/f"]
    assert meta["generation"] == 3
    assert rv(deleted) > rv(created)

    still = await widgets.get(namespace, "w")
    assert still["metadata"]["deletionTimestamp"] == meta["deletionTimestamp"]
    assert still["metadata"]["uid"] == created["metadata"]["uid"]

    # a second DELETE changes nothing and answers with the object
    again = await widgets.delete(namespace, "w")
    assert again["metadata"]["deletionTimestamp"] == meta["deletionTimestamp"]

    await widgets.patch(namespace, "w", {"metadata": {"finalizers": None}})
    await wait_gone(lambda: widgets.get(namespace, "w"), within=5, what="finalized widget")


async def test_only_the_last_finalizer_releases_the_object(
    core: client.CoreV1Api, namespace: str
) -> None:
    await core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "cm", "finalizers": ["example.com/a", "example.com/b"]}}
    )
    await core.delete_namespaced_config_map("cm", namespace)
    got = await core.read_namespaced_config_map("cm", namespace)
    assert got.metadata.deletion_timestamp is not None
    assert got.metadata.deletion_grace_period_seconds == 0

    await core.patch_namespaced_config_map(
        "cm",
        namespace,
        [{"op": "remove", "path": "/metadata/finalizers/0"}],
        _content_type=JSON_PATCH,
    )
    await asyncio.sleep(0.5)
    got = await core.read_namespaced_config_map("cm", namespace)
    assert got.metadata.finalizers == ["example.com/b"]

    await core.patch_namespaced_config_map(
        "cm", namespace, {"metadata": {"finalizers": None}}, _content_type=MERGE
    )
    await wait_gone(
        lambda: core.read_namespaced_config_map("cm", namespace), within=5, what="configmap"
    )


async def test_no_new_finalizers_once_deleting(widgets: Widgets, namespace: str) -> None:
    await widgets.make(namespace, "w", finalizers=["example.com/a"])
    await widgets.delete(namespace, "w")
    try:
        with pytest.raises(ApiException) as info:
            await widgets.patch(
                namespace, "w", {"metadata": {"finalizers": ["example.com/a", "example.com/b"]}}
            )
        status = assert_status(info.value, 422, "Invalid")
        assert "no new finalizers can be added if the object is being deleted" in status["message"]
    finally:
        await widgets.patch(namespace, "w", {"metadata": {"finalizers": None}})


async def test_custom_resource_finalizer_blocks_crd_deletion(
    api: client.ApiClient, namespace: str
) -> None:
    widgets = await install_widgets(api)
    ext = client.ApiextensionsV1Api(api)
    try:
        await widgets.make(namespace, "w", finalizers=["conformance.example.com/hold"])
        await ext.delete_custom_resource_definition(widgets.crd_name)

        await asyncio.sleep(3)
        crd = await ext.read_custom_resource_definition(widgets.crd_name)
        assert crd.metadata.deletion_timestamp is not None
        assert "customresourcecleanup.apiextensions.k8s.io" in crd.metadata.finalizers
        terminating = [c for c in crd.status.conditions if c.type == "Terminating"]
        assert [c.status for c in terminating] == ["True"]

        widget = await widgets.get(namespace, "w")
        assert widget["metadata"]["deletionTimestamp"]

        # no new objects while the definition is terminating
        with pytest.raises(ApiException) as info:
            await widgets.make(namespace, "w2")
        assert_status(
            info.value,
            405,
            "MethodNotAllowed",
            "create not allowed while custom resource definition is terminating",
        )

        await widgets.patch(namespace, "w", {"metadata": {"finalizers": None}})
        await wait_gone(
            lambda: ext.read_custom_resource_definition(widgets.crd_name),
            within=30,
            what="the CRD",
        )
    finally:
        await uninstall_widgets(widgets)
