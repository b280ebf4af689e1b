"""``commitProgress`` over a real WebSocket (graphql-transport-ws), with the real controller and
the fake node-shim: the progress the node-shim streams reaches the subscriber, the commit's end
comes last, deletion ends the subscription, and another namespace's token learns nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from devbox_node_shim.api import nodeshim_pb2 as pb

from app.kubeclient import DEVBOXES
from tests.api.stack import Stack, running_stack
from tests.fixtures.api import GraphQLWebSocket, SubscriptionComplete
from tests.fixtures.simcluster import Sim
from tests.fixtures.waiting import until, until_async

PROGRESS = """
subscription($devbox: String!) {
  commitProgress(devbox: $devbox) {
    commit { id mode status progress { step } }
    progress { step bytesDone bytesTotal updatedAt }
  }
}
"""


@pytest.fixture
async def stack(sim: Sim, api_database: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(sim, api_database, tmp_path, controller=True) as running:
        yield running


async def next_event(client: GraphQLWebSocket, ident: str) -> dict[str, Any]:
    payload = await client.next_payload(ident, within=15)
    assert "errors" not in payload, payload
    event: dict[str, Any] = payload["data"]["commitProgress"]
    return event


def step_of(event: dict[str, Any]) -> tuple[str, float, float] | None:
    progress = event["progress"]
    if progress is None:
        return None
    return (progress["step"], progress["bytesDone"], progress["bytesTotal"])


async def test_a_subscriber_follows_a_stop_commit_to_its_end(stack: Stack) -> None:
    h = stack.harness
    assert h is not None
    h.shim.mode = "hang"
    feed = h.shim.progress = asyncio.Queue()
    token = await stack.user("alice")
    ns = str((await stack.gql(token, "{ viewer { namespace } }"))["viewer"]["namespace"])
    assert (await stack.create(token, "box"))["userErrors"] == []
    await stack.wait_phase(ns, "box", "Running")
    cache = stack.server.services.cache
    async with stack.server.ws(token) as client:
        ident = await client.subscribe(PROGRESS, {"devbox": "box"})
        await until(lambda: cache.subscriber_count() == 1, what="subscribed")
        await stack.gql(
            token, 'mutation { devboxStop(input: {name: "box"}) { userErrors { code } } }'
        )
        first = await next_event(client, ident)
        assert step_of(first) == ("diff", 0, 1)  # the fake node-shim's first report
        assert first["commit"]["mode"] == "STOP"
        assert first["commit"]["status"] == "COMMITTING"
        assert first["commit"]["progress"]["step"] == "diff"
        commit_id = first["commit"]["id"]

        feed.put_nowait(pb.CommitProgress(step="push", bytes_done=4096, bytes_total=8192))
        pushing = await next_event(client, ident)
        assert step_of(pushing) == ("push", 4096, 8192)
        assert pushing["commit"]["id"] == commit_id

        feed.put_nowait(None)
        h.shim.release()
        ended = await next_event(client, ident)
        assert ended["progress"] is None
        assert ended["commit"] == {
            "id": commit_id,
            "mode": "STOP",
            "status": "SUCCEEDED",
            "progress": None,
        }

        await stack.sim.kube.delete(DEVBOXES, ns, "box")
        with pytest.raises(SubscriptionComplete):
            await client.next_payload(ident, within=15)
        await until(lambda: cache.subscriber_count() == 0, what="unsubscribed")


async def test_a_subscriber_joining_mid_commit_gets_the_current_progress_first(
    stack: Stack,
) -> None:
    h = stack.harness
    assert h is not None
    h.shim.mode = "hang"
    token = await stack.user("alice")
    ns = str((await stack.gql(token, "{ viewer { namespace } }"))["viewer"]["namespace"])
    await stack.create(token, "box")
    await stack.wait_phase(ns, "box", "Running")
    await stack.gql(token, 'mutation { devboxStop(input: {name: "box"}) { userErrors { code } } }')

    async def reported() -> bool:
        obj = await stack.sim.kube.get(DEVBOXES, ns, "box")
        return bool(obj["status"]["commits"][-1].get("progress"))

    await until_async(reported, 15, "progress in the status")
    async with stack.server.ws(token) as client:
        ident = await client.subscribe(PROGRESS, {"devbox": "box"})
        current = await next_event(client, ident)
        assert step_of(current) == ("diff", 0, 1)
        assert current["commit"]["status"] == "COMMITTING"


async def test_another_namespaces_token_is_refused_like_a_missing_devbox(stack: Stack) -> None:
    alice = await stack.user("alice")
    bob = await stack.user("bob")
    await stack.create(alice, "box")
    async with stack.server.ws(bob) as client:
        theirs = await client.subscribe(PROGRESS, {"devbox": "box"})
        missing = await client.subscribe(PROGRESS, {"devbox": "ghost"})
        refused = await client.next_payload(theirs)
        expected = await client.next_payload(missing)
        assert "data" not in refused or refused["data"] is None
        (error,) = refused["errors"]
        assert error["extensions"]["code"] == "NOT_FOUND"
        assert error["message"] == "There is no devbox named 'box' in your namespace."
        assert expected["errors"][0]["message"].replace("'ghost'", "'box'") == error["message"]
        with pytest.raises(SubscriptionComplete):
            await client.next_payload(theirs)
    assert stack.server.services.cache.subscriber_count() == 0
