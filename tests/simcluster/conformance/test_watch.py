"""Watch: events from a resourceVersion, bookmarks, timeouts, 410 Expired, selector edges."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client import ApiException

from tests.simcluster.conformance.support import (
    MERGE,
    Widgets,
    raw_request,
    rv,
    unique,
    watch_events,
)


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["type"], e["raw_object"]["metadata"].get("name", "")) for e in events]


def event_rvs(events: list[dict[str, Any]]) -> list[int]:
    return [int(e["raw_object"]["metadata"]["resourceVersion"]) for e in events]


async def test_watch_from_list_resource_version_sees_changes_in_order(
    core: client.CoreV1Api, namespace: str
) -> None:
    selector = f"suite={unique('s')}"
    labels = {"suite": selector.split("=")[1]}
    listed = await core.list_namespaced_config_map(namespace, label_selector=selector)
    start = int(listed.metadata.resource_version)

    created = await core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "cm", "labels": labels}}
    )
    patched = await core.patch_namespaced_config_map(
        "cm", namespace, {"data": {"k": "v"}}, _content_type=MERGE
    )
    await core.delete_namespaced_config_map("cm", namespace)

    events = await watch_events(
        core.list_namespaced_config_map,
        namespace,
        label_selector=selector,
        resource_version=listed.metadata.resource_version,
        seconds=10,
        count=3,
    )
    assert summary(events) == [("ADDED", "cm"), ("MODIFIED", "cm"), ("DELETED", "cm")]
    versions = event_rvs(events)
    assert versions[0] == rv(created)
    assert versions[1] == rv(patched)
    assert versions == sorted(versions)
    assert len(set(versions)) == 3
    assert versions[0] > start
    assert events[1]["raw_object"]["data"] == {"k": "v"}
    assert events[0]["raw_object"]["kind"] == "ConfigMap"
    assert events[0]["raw_object"]["apiVersion"] == "v1"
    assert isinstance(events[0]["object"], client.V1ConfigMap)


async def watchable_version(widgets: Widgets, namespace: str) -> str:
    """A list's resourceVersion the server accepts a watch from.  A real API server's watch
    cache of a just-created resource type can start just after the version a list returned
    (the list is read from etcd): the watch answers 410 Gone and a client lists again, as
    informers do.  Nothing writes in the test's namespace meanwhile, so no change is missed."""
    for _ in range(20):
        version = str((await widgets.list(namespace))["metadata"]["resourceVersion"])
        try:
            await watch_events(
                widgets.custom.list_namespaced_custom_object,
                widgets.group,
                widgets.version,
                namespace,
                widgets.plural,
                resource_version=version,
                seconds=1,
                count=1,
            )
        except ApiException as exc:
            if exc.status != 410:
                raise
            await asyncio.sleep(0.5)
            continue
        return version
    raise AssertionError("every watch from a fresh list's version was refused with 410")


async def test_watch_delivers_changes_made_while_watching(widgets: Widgets, namespace: str) -> None:
    version = await watchable_version(widgets, namespace)
    events: list[dict[str, Any]] = []

    async def mutate() -> None:
        await asyncio.sleep(0.5)
        await widgets.make(namespace, "w", size=1)
        await widgets.patch(namespace, "w", {"spec": {"size": 2}})
        await widgets.patch_status(namespace, "w", {"status": {"phase": "Ready"}})
        await widgets.delete(namespace, "w")

    mutation = asyncio.create_task(mutate())
    try:
        events = await watch_events(
            widgets.custom.list_namespaced_custom_object,
            widgets.group,
            widgets.version,
            namespace,
            widgets.plural,
            resource_version=version,
            seconds=15,
            count=4,
        )
    finally:
        await mutation
    assert summary(events) == [
        ("ADDED", "w"),
        ("MODIFIED", "w"),
        ("MODIFIED", "w"),
        ("DELETED", "w"),
    ]
    assert [e["raw_object"]["spec"]["size"] for e in events] == [1, 2, 2, 2]
    assert events[2]["raw_object"]["status"] == {"phase": "Ready"}
    versions = event_rvs(events)
    assert versions == sorted(versions)
    assert len(set(versions)) == 4


async def test_watch_without_resource_version_starts_with_existing_objects(
    core: client.CoreV1Api, namespace: str
) -> None:
    suite = unique("s")
    for name in ("a", "b"):
        await core.create_namespaced_config_map(
            namespace, {"metadata": {"name": name, "labels": {"suite": suite}}}
        )
    events = await watch_events(
        core.list_namespaced_config_map,
        namespace,
        label_selector=f"suite={suite}",
        seconds=5,
        count=2,
    )
    assert sorted(summary(events)) == [("ADDED", "a"), ("ADDED", "b")]


async def test_watch_ends_after_timeout_seconds(core: client.CoreV1Api, namespace: str) -> None:
    started = time.monotonic()
    events = await watch_events(
        core.list_namespaced_config_map,
        namespace,
        label_selector=f"suite={unique('nothing')}",
        seconds=2,
    )
    elapsed = time.monotonic() - started
    assert [e for e in events if e["type"] != "BOOKMARK"] == []
    assert 1.5 <= elapsed < 10, elapsed


def assert_bookmark_shape(event: dict[str, Any], kind: str, api_version: str) -> int:
    """A BOOKMARK carries only the resourceVersion (typed kinds add creationTimestamp: null)."""
    obj = event["raw_object"]
    assert set(obj) <= {"kind", "apiVersion", "metadata"}, obj
    assert obj.get("kind") == kind
    assert obj.get("apiVersion") == api_version
    metadata = obj["metadata"]
    assert set(metadata) <= {"resourceVersion", "creationTimestamp"}, metadata
    assert metadata.get("creationTimestamp") is None
    assert metadata["resourceVersion"].isdigit()
    return int(metadata["resourceVersion"])


async def test_bookmarks_if_any_carry_only_a_resource_version(
    widgets: Widgets, namespace: str
) -> None:
    listed = await widgets.list(namespace)
    await widgets.make(namespace, "w")
    events = await watch_events(
        widgets.custom.list_namespaced_custom_object,
        widgets.group,
        widgets.version,
        namespace,
        widgets.plural,
        resource_version=listed["metadata"]["resourceVersion"],
        allow_watch_bookmarks=True,
        seconds=4,
    )
    assert [e["type"] for e in events if e["type"] != "BOOKMARK"] == ["ADDED"]
    last = 0
    for event in events:
        if event["type"] == "BOOKMARK":
            assert int(assert_bookmark_shape(event, "Widget", widgets.api_version)) >= last
        last = max(last, int(event["raw_object"]["metadata"]["resourceVersion"]))


@pytest.mark.slow
async def test_bookmark_arrives_within_a_minute(core: client.CoreV1Api, namespace: str) -> None:
    suite = unique("s")
    listed = await core.list_namespaced_config_map(namespace, label_selector=f"suite={suite}")
    bookmarks: list[dict[str, Any]] = []
    async with watch.Watch() as w:

        async def run() -> None:
            async for event in w.stream(
                core.list_namespaced_config_map,
                namespace,
                label_selector=f"suite={suite}",
                resource_version=listed.metadata.resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=75,
                _request_timeout=90,
            ):
                if event["type"] == "BOOKMARK":
                    bookmarks.append(event)
                    w.stop()
                    break

        await asyncio.wait_for(run(), 100)
    assert bookmarks, "no BOOKMARK within 75 s"
    assert assert_bookmark_shape(bookmarks[0], "ConfigMap", "v1") >= int(
        listed.metadata.resource_version
    )


async def test_watch_from_too_old_resource_version_is_expired(
    core: client.CoreV1Api, namespace: str
) -> None:
    with pytest.raises(ApiException) as info:
        await watch_events(
            core.list_namespaced_config_map, namespace, resource_version="1", seconds=5
        )
    assert info.value.status == 410
    assert info.value.reason.startswith("Expired: too old resource version: 1 (")


async def test_too_old_resource_version_is_an_error_event_on_http_200(
    api: client.ApiClient, widgets: Widgets, namespace: str
) -> None:
    resp = await raw_request(
        api,
        "GET",
        f"{widgets.path}/namespaces/{namespace}/widgets",
        params={"watch": "1", "resourceVersion": "1", "timeoutSeconds": "5"},
        seconds=20,
    )
    assert resp.status == 200
    lines = [line for line in resp.body.decode().splitlines() if line.strip()]
    assert len(lines) == 1, lines
    event = json.loads(lines[0])
    assert event["type"] == "ERROR"
    status = event["object"]
    assert status["kind"] == "Status"
    assert status["apiVersion"] == "v1"
    assert status["status"] == "Failure"
    assert status["reason"] == "Expired"
    assert status["code"] == 410
    assert status["message"].startswith("too old resource version: 1 (")


async def test_label_selector_watch_sees_objects_leave_and_enter(
    core: client.CoreV1Api, namespace: str
) -> None:
    listed = await core.list_namespaced_config_map(namespace, label_selector="sel=in")
    await core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "cm", "labels": {"sel": "in"}}}
    )
    left = await core.patch_namespaced_config_map(
        "cm", namespace, {"metadata": {"labels": {"sel": "out"}}}, _content_type=MERGE
    )
    await core.patch_namespaced_config_map(
        "cm", namespace, {"data": {"unseen": "change"}}, _content_type=MERGE
    )
    back = await core.patch_namespaced_config_map(
        "cm", namespace, {"metadata": {"labels": {"sel": "in"}}}, _content_type=MERGE
    )
    events = await watch_events(
        core.list_namespaced_config_map,
        namespace,
        label_selector="sel=in",
        resource_version=listed.metadata.resource_version,
        seconds=5,
    )
    assert summary(events) == [("ADDED", "cm"), ("DELETED", "cm"), ("ADDED", "cm")]
    deleted = events[1]["raw_object"]
    assert int(deleted["metadata"]["resourceVersion"]) == rv(left)
    assert deleted["metadata"]["labels"] == {"sel": "in"}
    assert int(events[2]["raw_object"]["metadata"]["resourceVersion"]) == rv(back)
    assert events[2]["raw_object"]["data"] == {"unseen": "change"}
