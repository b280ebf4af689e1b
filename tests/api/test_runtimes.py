"""Runtimes through the API: the official ones for everyone, public shared ones for everyone,
private ones only for their namespace; filters, pages and ids."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.kubeclient import RUNTIMES
from app.schema.relay import encode_global_id
from tests.api.stack import SYSTEM, Stack, official_runtimes, running_stack
from tests.fixtures.simcluster import Sim


@pytest.fixture
async def stack(sim: Sim, api_database: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(sim, api_database, tmp_path) as running:
        yield running


RUNTIMES_QUERY = """
query($first: Int!, $after: String, $filter: RuntimeFilter) {
  runtimes(first: $first, after: $after, filter: $filter) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { node {
      id name namespace class title version image description visibility official
      user workingDir ports { name port protocol public } env { name value } sharedFrom { devbox }
    } }
  }
}
"""


def runtime(name: str, visibility: str, cls: str = "OS") -> dict[str, Any]:
    return {
        "apiVersion": "devbox.dev/v1alpha1",
        "kind": "Runtime",
        "metadata": {"name": name},
        "spec": {
            "class": cls,
            "title": name.title(),
            "version": "1",
            "image": f"example.com/{name}:1",
            "visibility": visibility,
        },
    }


async def names(stack: Stack, token: str, **variables: Any) -> list[tuple[str, str]]:
    data = await stack.gql(token, RUNTIMES_QUERY, first=100, **variables)
    return [(e["node"]["namespace"], e["node"]["name"]) for e in data["runtimes"]["edges"]]


async def test_official_runtimes_are_listed_for_everyone(stack: Stack) -> None:
    token = await stack.user("alice")
    data = await stack.gql(token, RUNTIMES_QUERY, first=100)
    nodes = [e["node"] for e in data["runtimes"]["edges"]]
    assert {n["name"] for n in nodes} == {r["metadata"]["name"] for r in official_runtimes()}
    python = next(n for n in nodes if n["name"] == "python-3-12")
    assert python == {
        "id": encode_global_id("Runtime", f"{SYSTEM}/python-3-12"),
        "name": "python-3-12",
        "namespace": SYSTEM,
        "class": "LANGUAGE",
        "title": "Python",
        "version": "3.12",
        "image": "docker.io/library/python:3.12-bookworm",
        "description": "Python 3.12 with pip on Debian 12.",
        "visibility": "PUBLIC",
        "official": True,
        "user": "root",
        "workingDir": "/root",
        "ports": [{"name": "http", "port": 8000, "protocol": "TCP", "public": False}],
        "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}],
        "sharedFrom": None,
    }
    fetched = await stack.gql(
        token, "query($id: ID!) { runtime(id: $id) { name } }", id=python["id"]
    )
    assert fetched["runtime"] == {"name": "python-3-12"}


async def test_private_runtimes_are_seen_only_in_their_namespace(stack: Stack) -> None:
    alice = await stack.user("alice")
    bob = await stack.user("bob")
    alice_ns = (await stack.gql(alice, "{ viewer { namespace } }"))["viewer"]["namespace"]
    bob_ns = (await stack.gql(bob, "{ viewer { namespace } }"))["viewer"]["namespace"]
    await stack.sim.kube.create(RUNTIMES, alice_ns, runtime("secret-os", "Private"))
    await stack.sim.kube.create(RUNTIMES, alice_ns, runtime("shared-os", "Public"))
    created = await stack.sim.kube.create(RUNTIMES, SYSTEM, runtime("internal", "Private"))
    await stack.server.services.cache.wait_for(created["metadata"]["resourceVersion"], RUNTIMES)
    mine = await names(stack, alice, filter={"class": "OS"})
    theirs = await names(stack, bob, filter={"class": "OS"})
    official = [(SYSTEM, "debian-12"), (SYSTEM, "ubuntu-24-04")]
    assert mine == [*official, (alice_ns, "secret-os"), (alice_ns, "shared-os")]
    assert theirs == [*official, (alice_ns, "shared-os")]
    hidden = encode_global_id("Runtime", f"{alice_ns}/secret-os")
    query = "query($id: ID!) { runtime(id: $id) { name } node(id: $id) { id } }"
    assert await stack.gql(bob, query, id=hidden) == {"runtime": None, "node": None}
    assert (await stack.gql(alice, query, id=hidden))["runtime"] == {"name": "secret-os"}
    # Bob cannot create a devbox from Alice's private runtime either.
    refused = await stack.create(bob, "box", runtime=hidden)
    assert [(e["field"], e["code"]) for e in refused["userErrors"]] == [
        (["input", "runtime"], "NOT_FOUND")
    ]
    assert bob_ns != alice_ns


async def test_runtimes_filter_by_search_and_page(stack: Stack) -> None:
    token = await stack.user("alice")
    assert await names(stack, token, filter={"search": "PYTHON"}) == [(SYSTEM, "python-3-12")]
    assert await names(stack, token, filter={"class": "FRAMEWORK"}) == []
    first = await stack.gql(token, RUNTIMES_QUERY, first=2)
    rest = await stack.gql(
        token, RUNTIMES_QUERY, first=100, after=first["runtimes"]["pageInfo"]["endCursor"]
    )
    seen = [e["node"]["name"] for e in first["runtimes"]["edges"] + rest["runtimes"]["edges"]]
    assert len(seen) == len(set(seen)) == len(official_runtimes())
    assert first["runtimes"]["pageInfo"]["hasNextPage"] is True


@pytest.mark.parametrize("bad_id", ["", "not-base64!", encode_global_id("Devbox", "x/y")])
async def test_a_bad_runtime_id_reads_as_missing(stack: Stack, bad_id: str) -> None:
    token = await stack.user("alice")
    data = await stack.gql(token, "query($id: ID!) { runtime(id: $id) { name } }", id=bad_id)
    assert data == {"runtime": None}
