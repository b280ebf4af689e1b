"""The informer keeps a faithful cache through watch timeouts, disconnects and 410 Gone."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from app.kubeclient import SECRETS, Informer, Kube
from tests.fixtures.simcluster import Sim
from tests.fixtures.waiting import until

NS = "default"


def secret(name: str, value: str = "a") -> dict[str, object]:
    return {"metadata": {"name": name}, "stringData": {"k": value}}


@contextlib.asynccontextmanager
async def running(informer: Informer) -> AsyncIterator[Informer]:
    task = asyncio.create_task(informer.run())
    try:
        await informer.wait_synced(within=5)
        yield informer
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_informer_lists_then_follows_changes(sim: Sim) -> None:
    await sim.kube.create(SECRETS, NS, secret("before"))
    events: list[tuple[str, str]] = []
    informer = Informer(sim.kube, SECRETS, namespace=NS)
    informer.add_handler(lambda e, obj, _old: events.append((e, obj["metadata"]["name"])))
    async with running(informer):
        assert informer.get(NS, "before") is not None
        created = await sim.kube.create(SECRETS, NS, secret("after"))
        await informer.wait_for_resource_version(created["metadata"]["resourceVersion"])
        assert informer.get(NS, "after") is not None
        await sim.kube.patch(SECRETS, NS, "after", {"stringData": {"k": "b"}})
        await sim.kube.delete(SECRETS, NS, "before")
        await until(lambda: informer.get(NS, "before") is None)
    assert events == [
        ("ADDED", "before"),
        ("ADDED", "after"),
        ("MODIFIED", "after"),
        ("DELETED", "before"),
    ]


async def test_informer_resumes_after_the_server_ends_the_watch(sim: Sim) -> None:
    informer = Informer(sim.kube, SECRETS, namespace=NS, watch_timeout=1)
    async with running(informer):
        for index in range(3):
            await sim.kube.create(SECRETS, NS, secret(f"s{index}"))
            await asyncio.sleep(0.6)
        await until(lambda: len(informer.objects(NS)) >= 3)
        assert informer.relists == 1


async def test_informer_relists_on_gone_and_reports_what_it_missed(sim: Sim) -> None:
    await sim.kube.create(SECRETS, NS, secret("stays"))
    await sim.kube.create(SECRETS, NS, secret("goes"))
    events: list[tuple[str, str]] = []
    informer = Informer(sim.kube, SECRETS, namespace=NS)
    informer.add_handler(lambda e, obj, _old: events.append((e, obj["metadata"]["name"])))
    async with running(informer):
        pass
    # While the informer is away: changes, then the history is compacted.
    await sim.kube.delete(SECRETS, NS, "goes")
    await sim.kube.create(SECRETS, NS, secret("new"))
    await sim.kube.patch(SECRETS, NS, "stays", {"stringData": {"k": "changed"}})
    sim.compact()
    events.clear()
    async with running(informer):
        await until(lambda: informer.get(NS, "new") is not None)
    assert informer.relists == 2
    assert sorted(events) == [("ADDED", "new"), ("DELETED", "goes"), ("MODIFIED", "stays")]


async def test_wait_for_resource_version_times_out_when_never_reached(sim: Sim) -> None:
    informer = Informer(sim.kube, SECRETS, namespace=NS)
    async with running(informer):
        with pytest.raises(TimeoutError):
            await informer.wait_for_resource_version("999999999", within=0.2)


async def test_bookmarks_advance_the_resource_version_of_a_quiet_kind() -> None:
    from tests.fixtures.simcluster import start_sim

    started = await start_sim(bookmark_interval=0.2)
    try:
        informer = Informer(started.kube, SECRETS, namespace="kube-public")
        async with running(informer):
            before = int(informer.resource_version)
            await started.kube.create(SECRETS, NS, secret("elsewhere"))
            await until(lambda: int(informer.resource_version) > before, within=3)
    finally:
        await started.api.close()
        await started.cluster.stop()


def test_errors_are_translated_by_status() -> None:
    from app.kubeclient import AlreadyExists, Conflict, Gone, Invalid, NotFound, Unavailable
    from app.kubeclient._errors import from_response

    assert isinstance(from_response(404, b'{"reason":"NotFound"}'), NotFound)
    assert isinstance(from_response(409, b'{"reason":"AlreadyExists"}'), AlreadyExists)
    assert type(from_response(409, b'{"reason":"Conflict"}')) is Conflict
    assert isinstance(from_response(410, b""), Gone)
    assert isinstance(from_response(422, b'{"message":"bad"}'), Invalid)
    assert isinstance(from_response(503, b"down"), Unavailable)
    assert from_response(422, b'{"message":"spec.x: bad"}').message == "spec.x: bad"


async def test_unreachable_server_is_unavailable() -> None:
    from app.kube import connect
    from app.kubeclient import Unavailable

    api = await connect(url="http://127.0.0.1:9")
    try:
        with pytest.raises(Unavailable):
            await Kube(api, timeout=2).get(SECRETS, NS, "x")
    finally:
        await api.close()
