"""Reading the audit log through the API: scoping, filters, pagination, per-object events."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import strawberry

from app.schema.audit import AuditEventConnection, audit_events_connection
from app.schema.context import Info
from app.schema.system import SystemQuery
from tests.fixtures.api import ApiServer

EVENTS = """
query($first: Int! = 50, $after: String, $filter: AuditEventFilter) {
  auditEvents(first: $first, after: $after, filter: $filter) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { node { namespace action targetKind targetName outcome errorCode requestId
                   actor { userName tokenId } input clientAddress } }
  }
}
"""
TOKEN_CREATE = """
mutation($name: String!, $days: Int) {
  apiTokenCreate(input: {name: $name, expiresInDays: $days}) { userErrors { code } }
}
"""


async def events(server: ApiServer, token: str, **variables: Any) -> dict[str, Any]:
    body = await server.gql(EVENTS, variables, token)
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["auditEvents"]
    return result


def targets(connection: dict[str, Any]) -> list[str]:
    return [edge["node"]["targetName"] for edge in connection["edges"]]


async def test_users_see_only_their_namespaces_events(api_server: ApiServer) -> None:
    alice, alice_token = await api_server.make_user("alice")
    _, bob_token = await api_server.make_user("bob")
    await api_server.gql(TOKEN_CREATE, {"name": "alice-ci"}, alice_token)
    await api_server.gql(TOKEN_CREATE, {"name": "bob-ci"}, bob_token)
    seen = await events(api_server, alice_token)
    assert targets(seen) == ["alice-ci"]
    node = seen["edges"][0]["node"]
    assert node["namespace"] == alice.namespace
    assert node["actor"]["userName"] == "alice"
    assert node["input"] == {"name": "alice-ci", "expiresInDays": None}
    assert node["clientAddress"] == "127.0.0.1"


async def test_users_cannot_read_another_namespace(api_server: ApiServer) -> None:
    _, alice_token = await api_server.make_user("alice")
    bob, bob_token = await api_server.make_user("bob")
    await api_server.gql(TOKEN_CREATE, {"name": "bob-ci"}, bob_token)
    body = await api_server.gql(EVENTS, {"filter": {"namespace": bob.namespace}}, alice_token)
    assert body["data"] is None
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert "bob-ci" not in str(body)


async def test_admins_see_all_namespaces_or_one(api_server: ApiServer) -> None:
    alice, alice_token = await api_server.make_user("alice")
    _, bob_token = await api_server.make_user("bob")
    _, admin = await api_server.make_user("root", role="admin")
    await api_server.gql(TOKEN_CREATE, {"name": "alice-ci"}, alice_token)
    await api_server.gql(TOKEN_CREATE, {"name": "bob-ci"}, bob_token)
    assert targets(await events(api_server, admin)) == ["bob-ci", "alice-ci"]
    only = await events(api_server, admin, filter={"namespace": alice.namespace})
    assert targets(only) == ["alice-ci"]


async def test_filters_by_action_target_outcome_and_time(api_server: ApiServer) -> None:
    _, token = await api_server.make_user("alice")
    before = datetime.now(UTC) - timedelta(seconds=1)
    await api_server.gql(TOKEN_CREATE, {"name": "good"}, token)
    await api_server.gql(TOKEN_CREATE, {"name": "bad", "days": 0}, token)
    failed = await events(api_server, token, filter={"outcome": "FAILURE"})
    assert targets(failed) == ["bad"]
    assert failed["edges"][0]["node"]["errorCode"] == "OUT_OF_RANGE"
    assert targets(await events(api_server, token, filter={"targetName": "good"})) == ["good"]
    assert targets(await events(api_server, token, filter={"action": "userCreate"})) == []
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert targets(await events(api_server, token, filter={"since": future})) == []
    assert len(targets(await events(api_server, token, filter={"since": before.isoformat()}))) == 2


async def test_pages_are_newest_first_and_never_repeat(api_server: ApiServer) -> None:
    _, token = await api_server.make_user("alice")
    for i in range(5):
        await api_server.gql(TOKEN_CREATE, {"name": f"t{i}"}, token)
    first = await events(api_server, token, first=2)
    assert first["totalCount"] == 5
    assert targets(first) == ["t4", "t3"]
    await api_server.gql(TOKEN_CREATE, {"name": "t5"}, token)  # a new event meanwhile
    second = await events(api_server, token, first=2, after=first["pageInfo"]["endCursor"])
    assert targets(second) == ["t2", "t1"]
    third = await events(api_server, token, first=2, after=second["pageInfo"]["endCursor"])
    assert targets(third) == ["t0"]
    assert not third["pageInfo"]["hasNextPage"]


@strawberry.type
class ObjectAuditQuery(SystemQuery):
    @strawberry.field
    async def secret_audit(
        self, info: Info, name: str, first: int, after: str | None = None
    ) -> AuditEventConnection:
        return await audit_events_connection(
            info, target_kind="ApiToken", target_name=name, first=first, after=after
        )


async def test_object_audit_events_list_one_target_of_the_viewers_namespace(
    start_api: Callable[..., Awaitable[ApiServer]],
) -> None:
    server = await start_api(schema=strawberry.Schema(query=ObjectAuditQuery))
    _, alice = await server.make_user("alice")
    _, bob = await server.make_user("bob")
    product = await start_api()  # same database: write events through the real schema
    await product.gql(TOKEN_CREATE, {"name": "ci"}, alice)
    await product.gql(TOKEN_CREATE, {"name": "ci"}, bob)
    await product.gql(TOKEN_CREATE, {"name": "other"}, alice)
    body = await server.gql(
        '{ secretAudit(name: "ci", first: 10) { totalCount edges { node { actor '
        "{ userName } targetName } } } }",
        token=alice,
    )
    connection = body["data"]["secretAudit"]
    assert connection["totalCount"] == 1
    assert connection["edges"][0]["node"] == {"actor": {"userName": "alice"}, "targetName": "ci"}
