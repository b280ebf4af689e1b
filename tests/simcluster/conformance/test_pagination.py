"""List pagination: limit / continue, remainingItemCount, consistent snapshots."""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio import client

from tests.simcluster.conformance.support import MERGE, Widgets, unique


async def test_limit_and_continue_walk_every_item_once(widgets: Widgets, namespace: str) -> None:
    names = [f"w{i}" for i in range(7)]
    for name in names:
        await widgets.make(namespace, name)

    pages: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"limit": 3}
        if token:
            kwargs["_continue"] = token
        page = await widgets.list(namespace, **kwargs)
        pages.append(page)
        token = page["metadata"].get("continue")
        if not token:
            break
        assert len(pages) < 10, "pagination does not end"

    assert [len(p["items"]) for p in pages] == [3, 3, 1]
    seen = [w["metadata"]["name"] for p in pages for w in p["items"]]
    assert seen == sorted(names)
    assert [p["metadata"].get("remainingItemCount") for p in pages] == [4, 1, None]
    versions = {p["metadata"]["resourceVersion"] for p in pages}
    assert len(versions) == 1
    assert versions.pop().isdigit()
    assert pages[-1]["metadata"].get("continue", "") == ""


async def test_continue_pages_are_a_consistent_snapshot(widgets: Widgets, namespace: str) -> None:
    for name in ("a", "b", "c", "d"):
        await widgets.make(namespace, name, size=1)
    first = await widgets.list(namespace, limit=2)
    assert [w["metadata"]["name"] for w in first["items"]] == ["a", "b"]

    await widgets.make(namespace, "e", size=1)
    await widgets.patch(namespace, "d", {"spec": {"size": 9}})

    rest = await widgets.list(namespace, limit=10, _continue=first["metadata"]["continue"])
    assert [w["metadata"]["name"] for w in rest["items"]] == ["c", "d"]
    assert rest["items"][1]["spec"]["size"] == 1
    assert rest["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]

    fresh = await widgets.list(namespace)
    assert [w["metadata"]["name"] for w in fresh["items"]] == ["a", "b", "c", "d", "e"]
    assert int(fresh["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])


async def test_pagination_with_label_selector(core: client.CoreV1Api, namespace: str) -> None:
    suite = unique("s")
    names = [f"cm{i}" for i in range(5)]
    for name in names:
        await core.create_namespaced_config_map(
            namespace, {"metadata": {"name": name, "labels": {"suite": suite}}}
        )
    seen: list[str] = []
    token: str | None = None
    rounds = 0
    while True:
        rounds += 1
        assert rounds < 10, "pagination does not end"
        page = await core.list_namespaced_config_map(
            namespace, label_selector=f"suite={suite}", limit=2, _continue=token
        )
        assert len(page.items) <= 2
        assert page.metadata.resource_version.isdigit()
        seen += [c.metadata.name for c in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert seen == names


async def test_list_metadata_resource_version_without_limit(
    core: client.CoreV1Api, namespace: str
) -> None:
    created = await core.create_namespaced_config_map(namespace, {"metadata": {"name": "cm"}})
    listed = await core.list_namespaced_config_map(namespace)
    assert int(listed.metadata.resource_version) >= int(created.metadata.resource_version)
    assert not listed.metadata._continue
    assert listed.metadata.remaining_item_count is None
    patched = await core.patch_namespaced_config_map(
        "cm", namespace, {"data": {"a": "b"}}, _content_type=MERGE
    )
    again = await core.list_namespaced_config_map(namespace)
    assert int(again.metadata.resource_version) >= int(patched.metadata.resource_version)
