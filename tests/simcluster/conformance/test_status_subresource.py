"""The status subresource of a custom resource: status writes and main writes are separate."""

from __future__ import annotations

import pytest
from kubernetes_asyncio.client import ApiException

from tests.simcluster.conformance.support import Widgets, assert_status, rv


async def test_put_status_changes_only_status(widgets: Widgets, namespace: str) -> None:
    created = await widgets.make(namespace, "w", size=3, labels={"a": "1"})
    body = await widgets.get(namespace, "w")
    body["spec"]["size"] = 9
    body["metadata"]["labels"] = {"a": "changed"}
    body["status"] = {"phase": "Ready", "observedGeneration": 1}
    updated = await widgets.replace_status(namespace, "w", body)
    assert updated["status"] == {"phase": "Ready", "observedGeneration": 1}
    assert updated["spec"] == {"size": 3, "mode": "a"}
    assert updated["metadata"]["labels"] == {"a": "1"}
    assert updated["metadata"]["generation"] == 1
    assert rv(updated) > rv(created)

    got = await widgets.get(namespace, "w")
    assert got["spec"] == {"size": 3, "mode": "a"}
    assert got["status"] == {"phase": "Ready", "observedGeneration": 1}


async def test_get_status_returns_the_whole_object(widgets: Widgets, namespace: str) -> None:
    await widgets.make(namespace, "w")
    await widgets.patch_status(namespace, "w", {"status": {"phase": "Ready"}})
    got = await widgets.custom.get_namespaced_custom_object_status(
        widgets.group, widgets.version, namespace, widgets.plural, "w"
    )
    assert got["kind"] == "Widget"
    assert got["spec"] == {"size": 3, "mode": "a"}
    assert got["status"] == {"phase": "Ready"}


async def test_patch_status_changes_only_status(widgets: Widgets, namespace: str) -> None:
    await widgets.make(namespace, "w", size=3)
    patched = await widgets.patch_status(
        namespace, "w", {"spec": {"size": 8}, "status": {"phase": "Ready"}}
    )
    assert patched["status"] == {"phase": "Ready"}
    assert patched["spec"]["size"] == 3
    assert patched["metadata"]["generation"] == 1

    again = await widgets.patch_status(namespace, "w", {"status": {"observedGeneration": 1}})
    assert again["status"] == {"phase": "Ready", "observedGeneration": 1}


async def test_main_resource_writes_ignore_status(widgets: Widgets, namespace: str) -> None:
    await widgets.make(namespace, "w", size=3)
    await widgets.patch_status(namespace, "w", {"status": {"phase": "Ready"}})

    patched = await widgets.patch(namespace, "w", {"status": {"phase": "Broken"}})
    assert patched["status"] == {"phase": "Ready"}
    assert patched["metadata"]["generation"] == 1

    body = await widgets.get(namespace, "w")
    body["spec"]["size"] = 4
    body["status"] = {"phase": "Gone"}
    replaced = await widgets.replace(namespace, "w", body)
    assert replaced["spec"]["size"] == 4
    assert replaced["status"] == {"phase": "Ready"}
    assert replaced["metadata"]["generation"] == 2

    got = await widgets.get(namespace, "w")
    assert got["status"] == {"phase": "Ready"}


async def test_status_write_with_stale_resource_version_conflicts(
    widgets: Widgets, namespace: str
) -> None:
    created = await widgets.make(namespace, "w")
    await widgets.patch(namespace, "w", {"spec": {"size": 4}})
    created["status"] = {"phase": "Ready"}
    with pytest.raises(ApiException) as info:
        await widgets.replace_status(namespace, "w", created)
    assert_status(info.value, 409, "Conflict")
    assert "status" not in await widgets.get(namespace, "w")
