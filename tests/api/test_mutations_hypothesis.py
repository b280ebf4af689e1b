"""Arbitrary input thrown at the devbox mutations never gives a server error (HTTP 500 or an
INTERNAL_SERVER_ERROR) and never a partial write: a refused mutation leaves the namespace as it
was, an accepted one wrote exactly its object."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.kubeclient import DEVBOXES, RELEASES, RUNTIMES
from tests.api.stack import Stack, running_stack
from tests.fixtures.simcluster import Sim
from tests.fixtures.waiting import until

T = TypeVar("T")

names = st.sampled_from(["box", "a", "my-box-2", "Box", "1box", "", "x" * 64]) | st.text(
    max_size=70
)
quantities = (
    st.none()
    | st.sampled_from(["1", "500m", "2Gi", "10Gi", "0", "-1", "1e999", "64", "4GB", " 1", ".5"])
    | st.text(max_size=12)
)
port_numbers = st.integers(-5, 70000) | st.sampled_from([22, 8000, 65535, 2**31 - 1, -(2**31)])
ports = st.none() | st.lists(
    st.fixed_dictionaries(
        {"port": port_numbers},
        optional={
            "name": names,
            "protocol": st.sampled_from(["TCP", "UDP"]),
            "public": st.booleans(),
        },
    ),
    max_size=4,
)
env = st.none() | st.lists(
    st.fixed_dictionaries(
        {"name": names | st.sampled_from(["PATH", "DEVBOX_X", "A-B"])},
        optional={"value": st.text(max_size=30)},
    ),
    max_size=4,
)
auto_stop = st.none() | st.fixed_dictionaries(
    {"idleTimeoutSeconds": st.integers(-(2**31), 2**31 - 1)}
)
resources = st.none() | st.fixed_dictionaries(
    {}, optional={"cpu": quantities, "memory": quantities, "storage": quantities}
)
keys = st.none() | st.text(max_size=300)


def drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


@pytest.fixture
async def stack(sim: Sim, api_database: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(sim, api_database, tmp_path) as running:
        yield running


async def snapshot(stack: Stack, ns: str) -> dict[str, str]:
    """Name → resourceVersion of every devbox, release and runtime in ``ns`` (devboxes by
    bare name, the others prefixed with their kind)."""
    found: dict[str, str] = {}
    for kind, prefix in ((DEVBOXES, ""), (RELEASES, "release/"), (RUNTIMES, "runtime/")):
        items, _ = await stack.sim.kube.list_objects(kind, ns)
        found |= {prefix + i["metadata"]["name"]: i["metadata"]["resourceVersion"] for i in items}
    return found


def assert_no_server_error(response: Any) -> dict[str, Any]:
    assert response.status_code != 500, response.text
    body: dict[str, Any] = response.json()
    for error in body.get("errors") or []:
        assert (error.get("extensions") or {}).get("code") != "INTERNAL_SERVER_ERROR", body
    return body


async def test_arbitrary_creates_and_updates_never_fail_or_half_write(stack: Stack) -> None:
    token = await stack.user("alice")
    ns = (await stack.gql(token, "{ viewer { namespace } }"))["viewer"]["namespace"]
    runtime = await stack.runtime_id(token)
    assert (await stack.create(token, "fixed", state="STOPPED"))["userErrors"] == []
    cache = stack.server.services.cache
    loop = asyncio.get_running_loop()
    outcomes = {"accepted": 0, "refused": 0}

    def run(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=60)

    create = (
        "mutation($input: DevboxCreateInput!) { devboxCreate(input: $input) "
        "{ devbox { name } userErrors { field code } } }"
    )
    update = (
        "mutation($input: DevboxUpdateInput!) { devboxUpdate(input: $input) "
        "{ devbox { name } userErrors { field code } } }"
    )

    async def one_create(payload: dict[str, Any]) -> None:
        before = await snapshot(stack, ns)
        response = await stack.server.post(
            {"query": create, "variables": {"input": payload}}, token
        )
        body = assert_no_server_error(response)
        after = await snapshot(stack, ns)
        result = (body.get("data") or {}).get("devboxCreate")
        if result is not None and not result["userErrors"]:
            outcomes["accepted"] += 1
            name = payload["name"]
            assert result["devbox"] == {"name": name}
            assert set(after) == set(before) | {name}
            await stack.sim.kube.delete(DEVBOXES, ns, name)
            await until(lambda: cache.devbox(ns, name) is None, what="deleted")
        else:
            outcomes["refused"] += 1
            assert after == before

    async def one_update(payload: dict[str, Any]) -> None:
        before = await snapshot(stack, ns)
        response = await stack.server.post(
            {"query": update, "variables": {"input": payload}}, token
        )
        body = assert_no_server_error(response)
        after = await snapshot(stack, ns)
        result = (body.get("data") or {}).get("devboxUpdate")
        if result is None or result["userErrors"]:
            assert after == before

    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(
        name=names,
        res=resources,
        port_list=ports,
        variables=env,
        auto=auto_stop,
        key=keys,
        good_runtime=st.booleans(),
    )
    @example(
        name="box", res=None, port_list=None, variables=None, auto=None, key=None, good_runtime=True
    )
    @example(
        name="box",
        res={"cpu": "1e999"},
        port_list=None,
        variables=None,
        auto=None,
        key=None,
        good_runtime=True,
    )
    def creates(
        name: str,
        res: dict[str, Any] | None,
        port_list: list[dict[str, Any]] | None,
        variables: list[dict[str, Any]] | None,
        auto: dict[str, Any] | None,
        key: str | None,
        good_runtime: bool,
    ) -> None:
        payload = drop_none(
            {
                "name": name,
                "runtime": runtime if good_runtime else name,
                "resources": res,
                "ports": port_list,
                "env": variables,
                "autoStop": auto,
                "idempotencyKey": key,
            }
        )
        run(one_create(payload))

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(res=resources, port_list=ports, variables=env, auto=auto_stop)
    def updates(
        res: dict[str, Any] | None,
        port_list: list[dict[str, Any]] | None,
        variables: list[dict[str, Any]] | None,
        auto: dict[str, Any] | None,
    ) -> None:
        payload = drop_none(
            {
                "name": "fixed",
                "resources": res,
                "ports": port_list,
                "env": variables,
                "autoStop": auto,
            }
        )
        run(one_update(payload))

    actions = (
        "mutation($version: String!, $notes: String!, $commit: String!, $release: ID!, "
        "$name: String!) {"
        " devboxRelease(input: {name: $name, version: $version, notes: $notes})"
        " { release { name } userErrors { code } }"
        " devboxRestore(input: {name: $name, commitId: $commit})"
        " { devbox { name } userErrors { code } }"
        " runtimeCreateFromRelease(input: {release: $release, name: $name, title: $notes})"
        " { runtime { name } userErrors { code } } }"
    )

    async def one_action(variables: dict[str, Any]) -> None:
        before = await snapshot(stack, ns)
        response = await stack.server.post({"query": actions, "variables": variables}, token)
        assert_no_server_error(response)
        assert await snapshot(stack, ns) == before  # no commit, no release: all refused

    @settings(
        max_examples=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(
        version=st.text(max_size=140),
        notes=st.text(max_size=80),
        commit=st.text(max_size=70),
        release=st.text(max_size=40),
        name=names | st.just("fixed"),
    )
    def other_actions(version: str, notes: str, commit: str, release: str, name: str) -> None:
        variables = {
            "version": version,
            "notes": notes,
            "commit": commit,
            "release": release,
            "name": name,
        }
        run(one_action(variables))

    await asyncio.to_thread(creates)
    assert outcomes["accepted"] > 0
    assert outcomes["refused"] > 0
    await asyncio.to_thread(updates)
    await asyncio.to_thread(other_actions)
