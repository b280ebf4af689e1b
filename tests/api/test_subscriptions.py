"""Subscriptions over a real WebSocket (graphql-transport-ws): status changes arrive with the
whole devbox and what changed, once each — through dropped watches and 410 relists — and a
devbox's subscription ends when it is deleted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.kubeclient import DEVBOXES, JSON
from tests.api.stack import Stack, running_stack
from tests.fixtures.api import GraphQLWebSocket, SubscriptionComplete
from tests.fixtures.simcluster import Sim
from tests.fixtures.waiting import until, until_async


@pytest.fixture
async def stack(sim: Sim, api_database: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(sim, api_database, tmp_path) as running:
        yield running


ONE = """
subscription($name: String!) {
  devboxChanged(name: $name) { type changed devbox { name phase state } }
}
"""
ALL = "subscription { devboxesChanged { type changed devbox { name phase } } }"


async def namespace_of(stack: Stack, token: str) -> str:
    return str((await stack.gql(token, "{ viewer { namespace } }"))["viewer"]["namespace"])


async def set_phase(stack: Stack, ns: str, name: str, phase: str) -> JSON:
    return await stack.sim.kube.patch(
        DEVBOXES, ns, name, {"status": {"phase": phase}}, subresource="status"
    )


async def events(client: GraphQLWebSocket, ident: str, count: int) -> list[dict[str, Any]]:
    got = []
    for _ in range(count):
        payload = await client.next_payload(ident, within=10)
        assert "errors" not in payload, payload
        got.append(payload["data"])
    return got


async def nothing_more(client: GraphQLWebSocket, ident: str) -> None:
    with pytest.raises(TimeoutError):
        await client.next_payload(ident, within=0.5)


async def test_a_status_change_arrives_and_deletion_ends_the_subscription(stack: Stack) -> None:
    token = await stack.user("alice")
    ns = await namespace_of(stack, token)
    await stack.create(token, "box")
    cache = stack.server.services.cache
    async with stack.server.ws(token) as client:
        ident = await client.subscribe(ONE, {"name": "box"})
        await until(lambda: cache.subscriber_count() == 1, what="subscribed")
        await set_phase(stack, ns, "box", "Running")
        (event,) = await events(client, ident, 1)
        assert event == {
            "devboxChanged": {
                "type": "MODIFIED",
                "changed": ["PHASE"],
                "devbox": {"name": "box", "phase": "RUNNING", "state": "RUNNING"},
            }
        }
        await stack.gql(
            token, 'mutation { devboxStop(input: {name: "box"}) { userErrors { code } } }'
        )
        (spec,) = await events(client, ident, 1)
        assert spec["devboxChanged"]["changed"] == ["SPEC"]
        assert spec["devboxChanged"]["devbox"]["state"] == "STOPPED"
        await stack.sim.kube.delete(DEVBOXES, ns, "box")
        (deleted,) = await events(client, ident, 1)
        assert deleted["devboxChanged"]["type"] == "DELETED"
        with pytest.raises(SubscriptionComplete):
            await client.next_payload(ident)
        await until(lambda: cache.subscriber_count() == 0, what="unsubscribed")


async def test_the_namespace_subscription_sees_every_devbox(stack: Stack) -> None:
    token = await stack.user("alice")
    ns = await namespace_of(stack, token)
    async with stack.server.ws(token) as client:
        ident = await client.subscribe(ALL)
        await until(lambda: stack.server.services.cache.subscriber_count() == 1)
        await stack.create(token, "one")
        await stack.create(token, "two")
        await set_phase(stack, ns, "one", "Starting")
        got = await events(client, ident, 3)
        assert [
            (e["devboxesChanged"]["type"], e["devboxesChanged"]["devbox"]["name"]) for e in got
        ] == [
            ("ADDED", "one"),
            ("ADDED", "two"),
            ("MODIFIED", "one"),
        ]
        assert "SPEC" in got[0]["devboxesChanged"]["changed"]
        await client.complete(ident)
        await until(lambda: stack.server.services.cache.subscriber_count() == 0, what="freed")


async def test_subscribing_to_a_missing_devbox_is_not_found(stack: Stack) -> None:
    token = await stack.user("alice")
    async with stack.server.ws(token) as client:
        ident = await client.subscribe(ONE, {"name": "ghost"})
        payload = await client.next_payload(ident)
        (error,) = payload["errors"]
        assert error["extensions"]["code"] == "NOT_FOUND"
        assert error["message"] == "There is no devbox named 'ghost' in your namespace."
        with pytest.raises(SubscriptionComplete):
            await client.next_payload(ident)


async def test_a_subscription_without_a_token_is_closed_with_4401(stack: Stack) -> None:
    client = await stack.server.ws_connect()
    try:
        await client.send({"type": "connection_init", "payload": {}})
        code, _ = await client.closed()
        assert code == 4401
    finally:
        await client.aclose()


def drop_watches(sim: Sim) -> None:
    for watcher in list(sim.cluster.store.watchers):
        sim.cluster.store.unwatch(watcher)


def store_phase(sim: Sim, ns: str, name: str, phase: str) -> None:
    """Write a phase straight into the simulated store (no await: the watch cannot see it
    before the next line runs)."""
    store = sim.cluster.store
    rt = store.types.by_kind("devbox.dev/v1alpha1", "Devbox")
    assert rt is not None
    current = store.find(rt.storage_key, ns, name)
    assert current is not None
    store.update(rt, ns, name, {**current, "status": {"phase": phase}}, subresource="status")


async def test_dropped_watches_and_a_410_relist_deliver_each_change_once(stack: Stack) -> None:
    token = await stack.user("alice")
    ns = await namespace_of(stack, token)
    await stack.create(token, "box")
    informer = stack.server.services.cache.informer(DEVBOXES)
    async with stack.server.ws(token) as client:
        ident = await client.subscribe(ONE, {"name": "box"})
        await until(lambda: stack.server.services.cache.subscriber_count() == 1)
        # The watch drops between changes: it resumes from the last version it saw.
        for phase in ("Pending", "Starting", "Running"):
            drop_watches(stack.sim)
            await set_phase(stack, ns, "box", phase)
        got = await events(client, ident, 3)
        assert [e["devboxChanged"]["devbox"]["phase"] for e in got] == [
            "PENDING",
            "STARTING",
            "RUNNING",
        ]
        relists = informer.relists
        # The watch drops, two changes happen, and the history is compacted: 410 on resume,
        # a relist, and the newest state arrives once.
        drop_watches(stack.sim)
        store_phase(stack.sim, ns, "box", "Stopping")
        store_phase(stack.sim, ns, "box", "Stopped")
        stack.sim.compact()
        (after,) = await events(client, ident, 1)
        assert after["devboxChanged"]["devbox"]["phase"] == "STOPPED"
        await until(lambda: informer.relists == relists + 1, what="relisted")
        await set_phase(stack, ns, "box", "Starting")
        (last,) = await events(client, ident, 1)
        assert last["devboxChanged"]["devbox"]["phase"] == "STARTING"
        await nothing_more(client, ident)


async def test_many_subscribers_share_the_one_watch(stack: Stack) -> None:
    token = await stack.user("alice")
    ns = await namespace_of(stack, token)
    await stack.create(token, "box")
    watchers = len(stack.sim.cluster.store.watchers)
    async with stack.server.ws(token) as client:
        idents = [await client.subscribe(ONE, {"name": "box"}) for _ in range(20)]
        await until(lambda: stack.server.services.cache.subscriber_count() == 20)
        await set_phase(stack, ns, "box", "Running")
        for ident in idents:
            (event,) = await events(client, ident, 1)
            assert event["devboxChanged"]["devbox"]["phase"] == "RUNNING"
        assert len(stack.sim.cluster.store.watchers) == watchers
    await asyncio.wait_for(until(lambda: stack.server.services.cache.subscriber_count() == 0), 10)


KEYED = """
subscription($name: String!) {
  devboxChanged(name: $name) { type devbox { name owner ssh { privateKey } } }
}
"""


async def test_one_event_for_many_viewers_keeps_the_key_to_its_owner(
    sim: Sim, api_database: str, tmp_path: Path
) -> None:
    # One event is executed once per distinct operation and viewer (app.schema.execution):
    # the owner and a colleague in the same namespace, several subscriptions each, on
    # separate sockets, with a selection that needs the viewer (privateKey) and one that
    # does not.
    async with running_stack(sim, api_database, tmp_path, controller=True) as stack:
        alice = await stack.user("alice")
        ns = await namespace_of(stack, alice)
        bob = await stack.user("bob", namespace=ns)
        assert (await stack.create(alice, "box"))["userErrors"] == []
        await stack.wait_phase(ns, "box", "Running")

        async def keyed() -> bool | None:
            data = await stack.gql(alice, '{ devbox(name: "box") { ssh { privateKey } } }')
            return bool((data["devbox"]["ssh"] or {}).get("privateKey")) or None

        await until_async(keyed, 20, "the devbox has its SSH key")
        cache = stack.server.services.cache
        async with stack.server.ws(alice) as mine, stack.server.ws(bob) as theirs:
            subscribed = [
                (client, await client.subscribe(query, {"name": "box"}))
                for client in (mine, theirs, mine, theirs)
                for query in (KEYED, ONE)
            ]
            await until(lambda: cache.subscriber_count() == len(subscribed), what="subscribed")
            await stack.gql(
                alice, 'mutation { devboxStop(input: {name: "box"}) { userErrors { code } } }'
            )
            for client, ident in subscribed:
                (event,) = await events(client, ident, 1)
                devbox = event["devboxChanged"]["devbox"]
                assert devbox["name"] == "box"
                if "ssh" in devbox:
                    key = devbox["ssh"]["privateKey"]
                    if client is mine:
                        assert key.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
                    else:
                        assert key is None
