"""Tenant isolation: two users in two namespaces try every query, mutation and subscription
on each other's objects.  Every attempt reads exactly like an attempt on an object that does
not exist (same answer, same message), and nothing of the other namespace changes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app.kubeclient import DEVBOXES, RELEASES, RUNTIMES
from app.schema.relay import encode_global_id
from tests.api.stack import Stack, running_stack
from tests.fixtures.simcluster import Sim
from tests.fixtures.waiting import until


@dataclass
class Tenants:
    stack: Stack
    alice: str
    bob: str
    alice_ns: str
    bob_ns: str
    devbox_id: str
    release_id: str
    runtime_id: str


@pytest.fixture
async def tenants(sim: Sim, api_database: str, tmp_path: Path) -> AsyncIterator[Tenants]:
    async with running_stack(sim, api_database, tmp_path) as stack:
        alice = await stack.user("alice")
        bob = await stack.user("bob")
        alice_ns = (await stack.gql(alice, "{ viewer { namespace } }"))["viewer"]["namespace"]
        bob_ns = (await stack.gql(bob, "{ viewer { namespace } }"))["viewer"]["namespace"]
        created = await stack.create(alice, "box")
        assert created["userErrors"] == []
        # A commit, a finished release and a private runtime of Alice's.
        await stack.sim.kube.patch(
            DEVBOXES,
            alice_ns,
            "box",
            {
                "status": {
                    "phase": "Stopped",
                    "commits": [
                        {
                            "id": "c1",
                            "mode": "Stop",
                            "image": "registry.test/a/box:c1",
                            "status": "Succeeded",
                        }
                    ],
                }
            },
            subresource="status",
        )
        await stack.sim.kube.patch(DEVBOXES, alice_ns, "box", {"spec": {"state": "Stopped"}})
        await stack.sim.kube.create(
            RELEASES,
            alice_ns,
            {
                "apiVersion": "devbox.dev/v1alpha1",
                "kind": "DevboxRelease",
                "metadata": {"name": "box-v1"},
                "spec": {"devbox": "box", "version": "v1"},
            },
        )
        await stack.sim.kube.patch(
            RELEASES,
            alice_ns,
            "box-v1",
            {"status": {"phase": "Succeeded", "image": "registry.test/a/box:v1"}},
            subresource="status",
        )
        runtime = await stack.sim.kube.create(
            RUNTIMES,
            alice_ns,
            {
                "apiVersion": "devbox.dev/v1alpha1",
                "kind": "Runtime",
                "metadata": {"name": "private-os"},
                "spec": {
                    "class": "OS",
                    "title": "Mine",
                    "version": "1",
                    "image": "registry.test/a/os:1",
                },
            },
        )
        cache = stack.server.services.cache
        await cache.wait_for(runtime["metadata"]["resourceVersion"], RUNTIMES)
        await until(
            lambda: (
                (r := cache.release(alice_ns, "box-v1")) is not None
                and r.status.phase == "Succeeded"
            )
        )
        yield Tenants(
            stack,
            alice,
            bob,
            alice_ns,
            bob_ns,
            created["devbox"]["id"],
            encode_global_id("Release", f"{alice_ns}/box-v1"),
            encode_global_id("Runtime", f"{alice_ns}/private-os"),
        )


def same_but_name(theirs: object, missing: object) -> bool:
    """The answers are the same but for the (quoted) name asked about."""
    return str(theirs).replace("'box'", "'N'") == str(missing).replace("'ghost'", "'N'")


async def alice_state(t: Tenants) -> list[tuple[str, str]]:
    """Every object in Alice's namespace, with its resourceVersion."""
    found = []
    for kind in (DEVBOXES, RELEASES, RUNTIMES):
        items, _ = await t.stack.sim.kube.list_objects(kind, t.alice_ns)
        found += [(i["metadata"]["name"], i["metadata"]["resourceVersion"]) for i in items]
    return sorted(found)


async def test_queries_do_not_see_the_other_namespace(tenants: Tenants) -> None:
    t = tenants
    query = """
    query($devbox: ID!, $release: ID!, $runtime: ID!) {
      devbox(name: "box") { name }
      devboxes(first: 100) { totalCount edges { node { name } } }
      devboxNode: node(id: $devbox) { id }
      releaseNode: node(id: $release) { id }
      runtimeNode: node(id: $runtime) { id }
      runtime(id: $runtime) { name }
      runtimes(first: 100) { edges { node { namespace } } }
    }
    """
    ids = {"devbox": t.devbox_id, "release": t.release_id, "runtime": t.runtime_id}
    data = await t.stack.gql(t.bob, query, **ids)
    assert data["devbox"] is None
    assert data["devboxes"] == {"totalCount": 0, "edges": []}
    assert data["devboxNode"] is None
    assert data["releaseNode"] is None
    assert data["runtimeNode"] is None
    assert data["runtime"] is None
    assert t.alice_ns not in {e["node"]["namespace"] for e in data["runtimes"]["edges"]}
    # The owner sees them all, so the ids above are real.
    mine = await t.stack.gql(t.alice, query, **ids)
    assert mine["devbox"] == {"name": "box"}
    assert mine["releaseNode"] == {"id": t.release_id}
    assert mine["runtime"] == {"name": "private-os"}


MUTATIONS: list[tuple[str, str, str]] = [
    ("devboxUpdate", '{name: "%s", resources: {cpu: "2"}}', "devbox { name }"),
    ("devboxDelete", '{name: "%s"}', "deletedDevboxId"),
    ("devboxStart", '{name: "%s"}', "devbox { name }"),
    ("devboxStop", '{name: "%s"}', "devbox { name }"),
    ("devboxRestart", '{name: "%s"}', "devbox { name }"),
    ("devboxRestore", '{name: "%s", commitId: "c1"}', "devbox { name }"),
    ("devboxRelease", '{name: "%s", version: "v2"}', "release { name }"),
]


@pytest.mark.parametrize(("mutation", "args", "fields"), MUTATIONS)
async def test_mutations_on_the_other_namespace_read_as_not_found(
    tenants: Tenants, mutation: str, args: str, fields: str
) -> None:
    t = tenants
    before = await alice_state(t)

    async def attempt(name: str) -> dict[str, Any]:
        errors = "userErrors { field message code }"
        text = f"mutation {{ {mutation}(input: {args % name}) {{ {fields} {errors} }} }}"
        body = await t.stack.server.gql(text, token=t.bob)
        assert "errors" not in body, body
        payload: dict[str, Any] = body["data"][mutation]
        return payload

    theirs = await attempt("box")
    missing = await attempt("ghost")
    assert theirs["userErrors"][0]["code"] == "NOT_FOUND"
    assert same_but_name(theirs, missing)
    assert await alice_state(t) == before


async def test_creating_from_the_other_namespace_is_refused_like_missing_ids(
    tenants: Tenants,
) -> None:
    t = tenants
    before = await alice_state(t)
    from_runtime = await t.stack.create(t.bob, "mine", runtime=t.runtime_id)
    from_nothing = await t.stack.create(
        t.bob, "mine", runtime=encode_global_id("Runtime", f"{t.alice_ns}/nothing")
    )
    assert from_runtime == from_nothing
    assert from_runtime["userErrors"][0]["code"] == "NOT_FOUND"
    share = (
        'mutation($id: ID!) { runtimeCreateFromRelease(input: {release: $id, name: "x"}) '
        "{ runtime { name } userErrors { field message code } } }"
    )
    theirs = await t.stack.gql(t.bob, share, id=t.release_id)
    nothing = await t.stack.gql(
        t.bob, share, id=encode_global_id("Release", f"{t.alice_ns}/nothing")
    )
    assert theirs == nothing
    assert theirs["runtimeCreateFromRelease"]["userErrors"][0]["code"] == "NOT_FOUND"
    # Names are per namespace: Bob's own "box" is a different devbox.
    assert (await t.stack.create(t.bob, "box"))["userErrors"] == []
    assert await alice_state(t) == before


async def test_subscriptions_never_cross_namespaces(tenants: Tenants) -> None:
    t = tenants
    one = "subscription($n: String!) { devboxChanged(name: $n) { type devbox { name } } }"
    every = "subscription { devboxesChanged { type devbox { name namespace } } }"
    async with t.stack.server.ws(t.bob) as client:
        theirs = await client.subscribe(one, {"n": "box"})
        missing = await client.subscribe(one, {"n": "ghost"})
        refused = await client.next_payload(theirs)
        expected = await client.next_payload(missing)
        assert same_but_name(refused, expected)
        assert refused["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        all_of_bobs = await client.subscribe(every)
        cache = t.stack.server.services.cache
        await until(lambda: cache.subscriber_count() == 1)
        await t.stack.sim.kube.patch(
            DEVBOXES, t.alice_ns, "box", {"status": {"phase": "Starting"}}, subresource="status"
        )
        await t.stack.create(t.bob, "own")
        event = await client.next_payload(all_of_bobs)
        assert event["data"]["devboxesChanged"]["devbox"] == {"name": "own", "namespace": t.bob_ns}
