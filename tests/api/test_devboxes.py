"""Devboxes through the GraphQL API: create, read, list, change, and drive their lifecycle
(with the real controller, the fake node-shim and registry), with user errors for bad input.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.kubeclient import DEVBOXES
from app.schema.common import SHARED_LIST_SECONDS
from tests.api.stack import DEVBOX, Stack, running_stack
from tests.fixtures.simcluster import Sim
from tests.fixtures.waiting import until_async


@pytest.fixture
async def stack(sim: Sim, api_database: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(sim, api_database, tmp_path) as running:
        yield running


async def namespace_of(stack: Stack, token: str) -> str:
    data = await stack.gql(token, "{ viewer { namespace } }")
    return str(data["viewer"]["namespace"])


async def test_a_created_devbox_is_readable_at_once(stack: Stack) -> None:
    token = await stack.user("alice")
    ns = await namespace_of(stack, token)
    payload = await stack.create(
        token,
        "box",
        resources={"cpu": "2", "memory": "4Gi"},
        env=[{"name": "EDITOR", "value": "vim"}],
    )
    assert payload["userErrors"] == []
    devbox = payload["devbox"]
    assert devbox["name"] == "box"
    assert devbox["namespace"] == ns
    assert devbox["owner"] == "alice"
    assert devbox["state"] == "RUNNING"
    assert devbox["phase"] == "PENDING"
    assert devbox["runtime"]["name"] == "python-3-12"
    assert devbox["resources"] == {"cpu": "2", "memory": "4Gi", "storage": "10Gi"}
    assert devbox["env"] == [{"name": "EDITOR", "value": "vim"}]
    # The runtime's default ports.
    assert devbox["ports"] == [
        {"name": "http", "port": 8000, "protocol": "TCP", "public": False, "url": None}
    ]
    read = await stack.gql(token, DEVBOX + 'query { devbox(name: "box") { ...D } }')
    assert read["devbox"] == devbox
    by_id = await stack.gql(
        token, "query($id: ID!) { node(id: $id) { id ... on Devbox { name } } }", id=devbox["id"]
    )
    assert by_id["node"] == {"id": devbox["id"], "name": "box"}
    stored = await stack.sim.kube.get(DEVBOXES, ns, "box")
    assert stored["spec"]["owner"] == "alice"
    assert stored["spec"]["runtimeRef"] == {"name": "python-3-12", "namespace": "devbox-system"}


CREATE = (
    "mutation($input: DevboxCreateInput!) { devboxCreate(input: $input) {"
    " devbox { name } userErrors { field message code } } }"
)


async def test_invalid_input_gives_user_errors_with_paths_and_writes_nothing(
    stack: Stack,
) -> None:
    token = await stack.user("alice")
    ns = await namespace_of(stack, token)
    runtime = await stack.runtime_id(token)
    data = await stack.gql(
        token,
        CREATE,
        input={
            "name": "1box",
            "runtime": runtime,
            "resources": {"cpu": "64", "memory": "lots"},
            "ports": [{"port": 8080, "name": "web"}, {"port": 8080, "name": "api"}, {"port": 22}],
            "env": [{"name": "DEVBOX_NAME", "value": "x"}, {"name": "9LIVES"}],
            "autoStop": {"idleTimeoutSeconds": -5},
        },
    )
    payload = data["devboxCreate"]
    assert payload["devbox"] is None
    assert {(tuple(e["field"]), e["code"]) for e in payload["userErrors"]} == {
        (("input", "name"), "INVALID"),
        (("input", "resources", "cpu"), "OUT_OF_RANGE"),
        (("input", "resources", "memory"), "INVALID"),
        (("input", "ports", "1", "port"), "DUPLICATE"),
        (("input", "ports", "2", "port"), "RESERVED"),
        (("input", "env", "0", "name"), "RESERVED"),
        (("input", "env", "1", "name"), "INVALID"),
        (("input", "autoStop", "idleTimeoutSeconds"), "OUT_OF_RANGE"),
    }
    items, _ = await stack.sim.kube.list_objects(DEVBOXES, ns)
    assert items == []
    (row,) = [r for r in await stack.server.audit_rows() if r.action == "devboxCreate"]
    assert row.outcome == "failure"
    assert row.error_code == "INVALID"


async def test_an_unknown_runtime_or_a_taken_name_is_refused(stack: Stack) -> None:
    token = await stack.user("alice")
    assert (await stack.create(token, "box"))["userErrors"] == []
    again = await stack.create(token, "box")
    assert [(e["field"], e["code"]) for e in again["userErrors"]] == [
        (["input", "name"], "ALREADY_EXISTS")
    ]
    unknown = await stack.create(token, "other", runtime="UnVudGltZTpuby9zdWNo")
    assert [(e["field"], e["code"]) for e in unknown["userErrors"]] == [
        (["input", "runtime"], "NOT_FOUND")
    ]


LIST = """
query($first: Int!, $after: String, $filter: DevboxFilter, $order: DevboxOrder) {
  devboxes(first: $first, after: $after, filter: $filter, orderBy: $order) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node { name phase } }
  }
}
"""


async def test_devboxes_page_filter_and_order(stack: Stack) -> None:
    token = await stack.user("alice")
    ns = await namespace_of(stack, token)
    assert (await stack.create(token, "echo", state="STOPPED"))["userErrors"] == []
    await asyncio.sleep(1.1)  # creationTimestamp has whole seconds
    for name in ("charlie", "alpha", "bravo", "delta"):
        assert (await stack.create(token, name, state="STOPPED"))["userErrors"] == []
    first = (await stack.gql(token, LIST, first=2))["devboxes"]
    assert [e["node"]["name"] for e in first["edges"]] == ["alpha", "bravo"]
    assert first["totalCount"] == 5
    assert first["pageInfo"]["hasNextPage"] is True
    rest = (await stack.gql(token, LIST, first=10, after=first["pageInfo"]["endCursor"]))[
        "devboxes"
    ]
    assert [e["node"]["name"] for e in rest["edges"]] == ["charlie", "delta", "echo"]
    assert rest["pageInfo"]["hasNextPage"] is False
    oldest = (
        await stack.gql(token, LIST, first=2, order={"field": "CREATED_AT", "direction": "ASC"})
    )["devboxes"]
    # Whole-second timestamps: under load the four may straddle a second, so the one after
    # "echo" is the earliest by (creationTimestamp, name) as the cluster recorded them.
    created = {
        name: (await stack.sim.kube.get(DEVBOXES, ns, name))["metadata"]["creationTimestamp"]
        for name in ("alpha", "bravo", "charlie", "delta")
    }
    second = min(created, key=lambda name: (created[name], name))
    assert [e["node"]["name"] for e in oldest["edges"]] == ["echo", second]
    newest = (
        await stack.gql(token, LIST, first=1, order={"field": "CREATED_AT", "direction": "DESC"})
    )["devboxes"]
    assert [e["node"]["name"] for e in newest["edges"]] == ["delta"]
    searched = (await stack.gql(token, LIST, first=10, filter={"search": "LPH"}))["devboxes"]
    assert [e["node"]["name"] for e in searched["edges"]] == ["alpha"]
    await stack.sim.kube.patch(
        DEVBOXES, ns, "bravo", {"status": {"phase": "Stopped"}}, subresource="status"
    )
    stopped = await stack.sim.kube.get(DEVBOXES, ns, "bravo")
    await stack.server.services.cache.wait_for(stopped["metadata"]["resourceVersion"])
    by_phase = (await stack.gql(token, LIST, first=10, filter={"phase": "STOPPED"}))["devboxes"]
    assert [e["node"]["name"] for e in by_phase["edges"]] == ["bravo"]


async def test_first_is_required_and_capped(stack: Stack) -> None:
    token = await stack.user("alice")
    body = await stack.server.gql("{ devboxes(first: 101) { totalCount } }", token=token)
    assert body["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    missing = await stack.server.post({"query": "{ devboxes { totalCount } }"}, token)
    assert missing.status_code == 400


UPDATE = (
    DEVBOX + "mutation($input: DevboxUpdateInput!) { devboxUpdate(input: $input) {"
    " devbox { ...D } userErrors { field message code } } }"
)


async def test_an_update_changes_only_what_it_names(stack: Stack) -> None:
    token = await stack.user("alice")
    await stack.create(token, "box", env=[{"name": "A", "value": "1"}])
    data = await stack.gql(
        token,
        UPDATE,
        input={
            "name": "box",
            "resources": {"memory": "8Gi"},
            "ports": [{"name": "web", "port": 3000, "public": True}],
            "autoStop": {"idleTimeoutSeconds": 3600},
        },
    )
    payload = data["devboxUpdate"]
    assert payload["userErrors"] == []
    devbox = payload["devbox"]
    assert devbox["resources"] == {"cpu": "1", "memory": "8Gi", "storage": "10Gi"}
    assert devbox["ports"] == [
        {"name": "web", "port": 3000, "protocol": "TCP", "public": True, "url": None}
    ]
    assert devbox["env"] == [{"name": "A", "value": "1"}]
    assert devbox["autoStop"] == {"idleTimeoutSeconds": 3600, "stopAt": None}


async def test_an_invalid_update_changes_nothing(stack: Stack) -> None:
    token = await stack.user("alice")
    ns = await namespace_of(stack, token)
    await stack.create(token, "box")
    before = await stack.sim.kube.get(DEVBOXES, ns, "box")
    data = await stack.gql(
        token,
        UPDATE,
        input={"name": "box", "resources": {"memory": "8Gi", "storage": "1Ti"}},
    )
    assert [(e["field"], e["code"]) for e in data["devboxUpdate"]["userErrors"]] == [
        (["input", "resources", "storage"], "OUT_OF_RANGE")
    ]
    after = await stack.sim.kube.get(DEVBOXES, ns, "box")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


ACTION = "mutation { %s(input: {name: %s}) { devbox { name state } userErrors { field code } } }"


async def test_start_and_stop_set_the_desired_state(stack: Stack) -> None:
    token = await stack.user("alice")
    await stack.create(token, "box")
    stopped = await stack.gql(token, ACTION % ("devboxStop", '"box"'))
    assert stopped["devboxStop"] == {
        "devbox": {"name": "box", "state": "STOPPED"},
        "userErrors": [],
    }
    started = await stack.gql(token, ACTION % ("devboxStart", '"box"'))
    assert started["devboxStart"]["devbox"]["state"] == "RUNNING"
    missing = await stack.gql(token, ACTION % ("devboxStart", '"nope"'))
    assert missing["devboxStart"] == {
        "devbox": None,
        "userErrors": [{"field": ["input", "name"], "code": "NOT_FOUND"}],
    }


async def test_restart_of_a_stopped_devbox_is_refused(stack: Stack) -> None:
    token = await stack.user("alice")
    await stack.create(token, "box", state="STOPPED")
    data = await stack.gql(token, ACTION % ("devboxRestart", '"box"'))
    assert data["devboxRestart"]["userErrors"] == [
        {"field": ["input", "name"], "code": "INVALID_STATE"}
    ]


async def test_every_mutation_writes_one_audit_row(stack: Stack) -> None:
    token = await stack.user("alice")
    await stack.create(token, "box")
    await stack.gql(token, ACTION % ("devboxStop", '"box"'))
    await stack.gql(token, ACTION % ("devboxStop", '"ghost"'))
    rows = [
        (r.action, r.target_name, r.outcome, r.error_code) for r in await stack.server.audit_rows()
    ]
    assert rows == [
        ("devboxCreate", "box", "success", None),
        ("devboxStop", "box", "success", None),
        ("devboxStop", "ghost", "failure", "NOT_FOUND"),
    ]
    data = await stack.gql(
        token,
        '{ devbox(name: "box") { auditEvents(first: 10) { edges { node { action } } } } }',
    )
    events = data["devbox"]["auditEvents"]
    assert [e["node"]["action"] for e in events["edges"]] == ["devboxStop", "devboxCreate"]


async def test_a_retried_create_with_the_same_key_acts_once(stack: Stack) -> None:
    token = await stack.user("alice")
    ns = await namespace_of(stack, token)
    first = await stack.create(token, "box", idempotencyKey="k-1")
    writes = stack.sim.kube.writes
    again = await stack.create(token, "box", idempotencyKey="k-1")
    assert again == first
    assert again["userErrors"] == []
    items, _ = await stack.sim.kube.list_objects(DEVBOXES, ns)
    assert len(items) == 1
    assert [r.action for r in await stack.server.audit_rows()] == ["devboxCreate"]
    assert stack.sim.kube.writes == writes


async def test_deleting_reports_the_deleted_id(stack: Stack) -> None:
    token = await stack.user("alice")
    ns = await namespace_of(stack, token)
    created = await stack.create(token, "box")
    data = await stack.gql(
        token,
        'mutation { devboxDelete(input: {name: "box"}) { deletedDevboxId userErrors { code } } }',
    )
    assert data["devboxDelete"] == {"deletedDevboxId": created["devbox"]["id"], "userErrors": []}
    items, _ = await stack.sim.kube.list_objects(DEVBOXES, ns)
    assert items == []
    read = await stack.gql(token, '{ devbox(name: "box") { name } }')
    assert read["devbox"] is None


async def test_restore_and_release_need_commits(stack: Stack) -> None:
    token = await stack.user("alice")
    await stack.create(token, "box", state="STOPPED")
    restore = await stack.gql(
        token,
        'mutation { devboxRestore(input: {name: "box", commitId: "c1"}) '
        "{ devbox { name } userErrors { field code } } }",
    )
    assert restore["devboxRestore"]["userErrors"] == [
        {"field": ["input", "commitId"], "code": "NOT_FOUND"}
    ]
    release = await stack.gql(
        token,
        'mutation { devboxRelease(input: {name: "box", version: "v1"}) '
        "{ release { name } userErrors { field code } } }",
    )
    assert release["devboxRelease"]["userErrors"] == [
        {"field": ["input", "name"], "code": "INVALID_STATE"}
    ]
    bad_version = await stack.gql(
        token,
        'mutation { devboxRelease(input: {name: "box", version: "latest"}) '
        "{ release { name } userErrors { field code } } }",
    )
    assert bad_version["devboxRelease"]["userErrors"] == [
        {"field": ["input", "version"], "code": "INVALID"}
    ]


async def test_when_kubernetes_is_down_a_mutation_says_so_and_is_audited(stack: Stack) -> None:
    token = await stack.user("alice")
    await stack.create(token, "box")
    await stack.sim.cluster.stop()
    data = await stack.gql(token, ACTION % ("devboxStop", '"box"'))
    (error,) = data["devboxStop"]["userErrors"]
    assert error["code"] == "UNAVAILABLE"
    assert data["devboxStop"]["devbox"] is None
    row = (await stack.server.audit_rows())[-1]
    assert (row.action, row.outcome, row.error_code) == ("devboxStop", "failure", "UNAVAILABLE")
    # Reads still answer from the cache.
    read = await stack.gql(token, '{ devbox(name: "box") { state } }')
    assert read["devbox"] == {"state": "RUNNING"}


async def test_the_audit_row_keeps_env_names_but_not_their_values(stack: Stack) -> None:
    token = await stack.user("alice")
    payload = await stack.create(token, "box", env=[{"name": "API_KEY", "value": "s3cret-v4lue"}])
    assert payload["userErrors"] == []
    (row,) = await stack.server.audit_rows()
    assert row.input["env"][0]["name"] == "API_KEY"
    assert "s3cret-v4lue" not in str(row.input)
    assert row.input["name"] == "box"


async def test_events_and_keys_of_a_page_cost_one_kubernetes_list_each(
    sim: Sim, api_database: str, tmp_path: Path
) -> None:
    async with running_stack(sim, api_database, tmp_path, controller=True) as stack:
        token = await stack.user("alice")
        for name in ("one", "two", "three"):
            assert (await stack.create(token, name))["userErrors"] == []
        each = (
            "{ edges { node { phase events(first: 5) { edges { cursor } } ssh { privateKey } } } }"
        )
        query = f"{{ a: devboxes(first: 10) {each} b: devboxes(first: 10) {each} }}"

        async def keyed() -> dict[str, Any] | None:
            data = await stack.gql(token, query)
            keys = [(e["node"]["ssh"] or {}).get("privateKey") for e in data["a"]["edges"]]
            return data if all(keys) else None

        await until_async(keyed, 20, "every devbox has its SSH key")
        await asyncio.sleep(SHARED_LIST_SECONDS + 0.1)  # nothing shared from earlier requests
        kube = stack.server.services.kube
        before = kube.requests
        data = await stack.gql(token, query)
        assert len(data["b"]["edges"]) == 3
        assert all(e["node"]["ssh"]["privateKey"] for e in data["b"]["edges"])
        # One list of events and one of SSH secrets, not one of each per devbox and alias.
        assert kube.requests - before == 2


async def test_env_values_never_reach_the_audit_trail_and_still_tell_retries_apart(
    stack: Stack,
) -> None:
    token = await stack.user("alice")
    secret = "hunter2"
    first = await stack.create(
        token, "envbox", env=[{"name": "API_KEY", "value": secret}], idempotencyKey="k-env-1"
    )
    assert first["userErrors"] == []
    # The same key with another value is another request: refused, not replayed.
    other = await stack.create(
        token, "envbox", env=[{"name": "API_KEY", "value": "hunter3"}], idempotencyKey="k-env-1"
    )
    assert [e["code"] for e in other["userErrors"]] == ["IDEMPOTENCY_KEY_REUSED"]

    events = (
        await stack.gql(token, "{ auditEvents(first: 10) { edges { node { action input } } } }")
    )["auditEvents"]["edges"]
    inputs = [e["node"]["input"] for e in events if e["node"]["action"] == "devboxCreate"]
    assert len(inputs) == 2
    assert all(i["env"] == [{"name": "API_KEY", "value": "[redacted]"}] for i in inputs)
    trail = json.dumps(inputs)
    assert secret not in trail
    assert hashlib.sha256(secret.encode()).hexdigest()[:16] not in trail
