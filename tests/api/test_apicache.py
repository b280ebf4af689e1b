"""The API's read cache: one watch per kind serves every reader and subscriber; subscribers
get each change once, through watch drops and 410 relists, and a slow one is cut off."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.apicache import (
    Aspect,
    CacheStopped,
    Change,
    ReadCache,
    SlowSubscriber,
    Subscription,
    changed_aspects,
)
from app.kubeclient import DEVBOXES, JSON, RUNTIMES, Kind
from tests.fixtures.simcluster import Sim
from tests.fixtures.waiting import until

NAMESPACES = Kind("", "v1", "namespaces", "Namespace", namespaced=False)
NS = "default"


def devbox(name: str, **spec: Any) -> JSON:
    return {
        "apiVersion": "devbox.dev/v1alpha1",
        "kind": "Devbox",
        "metadata": {"name": name},
        "spec": {"runtimeRef": {"name": "python", "namespace": NS}, "owner": "alice", **spec},
    }


@contextlib.asynccontextmanager
async def started(sim: Sim, **kwargs: Any) -> AsyncIterator[ReadCache]:
    cache = ReadCache(sim.kube, **kwargs)
    await cache.start(within=10)
    try:
        yield cache
    finally:
        await cache.stop()


async def set_phase(sim: Sim, name: str, phase: str, ns: str = NS) -> JSON:
    return await sim.kube.patch(
        DEVBOXES, ns, name, {"status": {"phase": phase}}, subresource="status"
    )


async def drain(sub: Subscription[Any], count: int, within: float = 5.0) -> list[Change[Any]]:
    got: list[Change[Any]] = []
    async with asyncio.timeout(within):
        while len(got) < count:
            item = await sub.get()
            assert item is not None
            got.append(item)
    return got


def seen(changes: list[Change[Any]]) -> list[tuple[str, str, str | None]]:
    return [(c.type, c.object.name, c.object.status.phase) for c in changes]


async def test_reads_come_from_the_cache_by_namespace(sim: Sim) -> None:
    await sim.kube.create(NAMESPACES, None, {"metadata": {"name": "other"}})
    await sim.kube.create(DEVBOXES, NS, devbox("mine"))
    await sim.kube.create(DEVBOXES, "other", devbox("theirs"))
    async with started(sim) as cache:
        requests = sim.kube.requests
        assert [d.name for d in cache.devboxes(NS)] == ["mine"]
        assert [d.name for d in cache.devboxes("other")] == ["theirs"]
        assert cache.devbox(NS, "theirs") is None
        assert cache.devbox(NS, "mine") is not None
        assert sim.kube.requests == requests  # no API call per read


async def test_a_read_after_a_write_sees_the_write(sim: Sim) -> None:
    async with started(sim) as cache:
        for index in range(5):
            created = await sim.kube.create(DEVBOXES, NS, devbox(f"b{index}"))
            assert await cache.wait_for(created["metadata"]["resourceVersion"])
            found = cache.devbox(NS, f"b{index}")
            assert found is not None
            assert found.metadata.uid == created["metadata"]["uid"]


async def test_many_subscribers_share_one_watch(sim: Sim) -> None:
    async with started(sim) as cache:
        await until(lambda: len(sim.cluster.store.watchers) == 3)  # one per kind
        subs = [cache.subscribe(DEVBOXES, NS) for _ in range(50)]
        await sim.kube.create(DEVBOXES, NS, devbox("box"))
        for sub in subs:
            (change,) = await drain(sub, 1)
            assert change.type == "ADDED"
        assert len(sim.cluster.store.watchers) == 3
        for sub in subs:
            sub.end()
        assert cache.subscriber_count() == 0


async def test_subscribers_get_the_whole_object_and_what_changed(sim: Sim) -> None:
    await sim.kube.create(DEVBOXES, NS, devbox("box"))
    await sim.kube.create(DEVBOXES, NS, devbox("other"))
    async with started(sim) as cache, cache.subscribe(DEVBOXES, NS, "box") as sub:
        await set_phase(sim, "other", "Running")  # another devbox: not for this subscriber
        await set_phase(sim, "box", "Running")
        await sim.kube.patch(DEVBOXES, NS, "box", {"spec": {"state": "Stopped"}})
        await sim.kube.delete(DEVBOXES, NS, "box")
        changes = await drain(sub, 3)
        assert seen(changes) == [
            ("MODIFIED", "box", "Running"),
            ("MODIFIED", "box", "Running"),
            ("DELETED", "box", "Running"),
        ]
        assert changes[0].changed == {Aspect.PHASE}
        assert changes[1].changed == {Aspect.SPEC}
        assert changes[1].object.spec.state == "Stopped"
        assert sub.queue.empty()


def test_changed_aspects_name_each_part() -> None:
    old: JSON = {"spec": {"a": 1}, "status": {"phase": "Running", "image": "x"}, "metadata": {}}
    assert changed_aspects(old, old) == frozenset()
    new = {**old, "status": {"phase": "Running", "image": "y", "commits": [{"id": "c"}]}}
    assert changed_aspects(old, new) == {Aspect.STATUS, Aspect.COMMITS}
    deleting = {**old, "metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}
    assert changed_aspects(old, deleting) == {Aspect.METADATA}
    assert Aspect.SPEC in changed_aspects(None, old)


async def test_a_slow_subscriber_is_cut_off_with_a_clear_error(sim: Sim) -> None:
    await sim.kube.create(DEVBOXES, NS, devbox("box"))
    async with started(sim, queue_size=3) as cache:
        slow = cache.subscribe(DEVBOXES, NS)
        fast = cache.subscribe(DEVBOXES, NS)
        phases = ["Pending", "Starting", "Running", "Stopping", "Stopped"]
        for phase in phases:
            await set_phase(sim, "box", phase)
            (change,) = await drain(fast, 1)
            assert change.object.status.phase == phase
        with pytest.raises(SlowSubscriber, match="subscribe again"):
            await slow.get()
        assert cache.subscriber_count() == 1
        fast.end()


async def test_stopping_the_cache_ends_subscriptions(sim: Sim) -> None:
    cache = ReadCache(sim.kube)
    await cache.start(within=10)
    sub = cache.subscribe(DEVBOXES, NS)
    await cache.stop()
    with pytest.raises(CacheStopped):
        await sub.get()


def drop_watches(sim: Sim) -> None:
    for watcher in list(sim.cluster.store.watchers):
        sim.cluster.store.unwatch(watcher)


async def test_a_dropped_watch_loses_and_repeats_nothing(sim: Sim) -> None:
    await sim.kube.create(DEVBOXES, NS, devbox("box"))
    async with started(sim) as cache, cache.subscribe(DEVBOXES, NS) as sub:
        phases = ["Pending", "Starting", "Running", "Stopping", "Stopped"]
        for phase in phases:
            drop_watches(sim)
            await set_phase(sim, "box", phase)
        changes = await drain(sub, len(phases))
        assert [c.object.status.phase for c in changes] == phases
        await asyncio.sleep(0.3)
        assert sub.queue.empty()
        assert cache.informer(DEVBOXES).relists == 1


def store_write(sim: Sim, name: str, phase: str | None = None, delete: bool = False) -> None:
    """Write straight into the simulated store, without yielding to the event loop."""
    store = sim.cluster.store
    rt = store.types.by_kind("devbox.dev/v1alpha1", "Devbox")
    assert rt is not None
    if delete:
        store.delete(rt, NS, name)
        return
    current = store.find(rt.storage_key, NS, name)
    if current is None:
        store.create(rt, NS, devbox(name))
        return
    body = {**current, "status": {"phase": phase}}
    store.update(rt, NS, name, body, subresource="status")


async def test_a_relist_after_410_delivers_each_missed_change_once(sim: Sim) -> None:
    for name in ("stays", "changes", "goes"):
        await sim.kube.create(DEVBOXES, NS, devbox(name))
    async with started(sim) as cache, cache.subscribe(DEVBOXES, NS) as sub:
        await set_phase(sim, "changes", "Starting")
        (first,) = await drain(sub, 1)
        # While the watch is down: changes, then the history is compacted (410 on resume).
        drop_watches(sim)
        store_write(sim, "changes", "Running")
        store_write(sim, "goes", delete=True)
        store_write(sim, "new")
        sim.compact()
        changes = await drain(sub, 3)
        assert sorted(seen(changes)) == [
            ("ADDED", "new", None),
            ("DELETED", "goes", None),
            ("MODIFIED", "changes", "Running"),
        ]
        await until(lambda: cache.informer(DEVBOXES).relists == 2)
        await set_phase(sim, "stays", "Running")
        (after,) = await drain(sub, 1)
        assert seen([after]) == [("MODIFIED", "stays", "Running")]
        assert sub.queue.empty()
        assert first.object.status.phase == "Starting"


async def test_a_subscriber_never_gets_a_version_it_already_has(sim: Sim) -> None:
    await sim.kube.create(DEVBOXES, NS, devbox("box"))
    async with started(sim) as cache:
        sub = cache.subscribe(DEVBOXES, NS)
        obj = cache.devbox(NS, "box")
        assert obj is not None
        # The same version again (as a relist of an unchanged object would report it).
        rv = int(obj.metadata.resource_version or 0)
        sub.offer(Change("MODIFIED", obj, frozenset(), rv))
        sub.offer(Change("DELETED", obj, frozenset(), rv + 1))
        sub.offer(Change("DELETED", obj, frozenset(), rv + 1))
        assert [c.type for c in await drain(sub, 1)] == ["DELETED"]
        assert sub.queue.empty()
        sub.end()


async def test_runtimes_are_cached_across_namespaces(sim: Sim) -> None:
    await sim.kube.create(NAMESPACES, None, {"metadata": {"name": "devbox-system"}})
    body = {
        "apiVersion": "devbox.dev/v1alpha1",
        "kind": "Runtime",
        "metadata": {"name": "python"},
        "spec": {"class": "Language", "title": "Python", "version": "3", "image": "python:3"},
    }
    await sim.kube.create(RUNTIMES, "devbox-system", body)
    async with started(sim) as cache:
        assert [r.name for r in cache.runtimes()] == ["python"]
        assert cache.runtime("devbox-system", "python") is not None
        assert cache.runtimes(NS) == []
