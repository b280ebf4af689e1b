"""API tokens: created, listed, revoked through the API; never stored in clear."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from app.db.tokens import hash_token
from tests.fixtures.api import ApiServer, GraphQLHTTPError

TOKEN_CREATE = """
mutation($name: String!, $days: Int, $key: String) {
  apiTokenCreate(input: {name: $name, expiresInDays: $days, idempotencyKey: $key}) {
    apiToken { id name prefix expiresAt revokedAt current } token
    userErrors { field code message }
  }
}
"""
USER_CREATE = """
mutation($name: String!, $namespace: String!, $role: Role! = USER, $key: String) {
  userCreate(input: {name: $name, namespace: $namespace, role: $role, idempotencyKey: $key}) {
    user { id name namespace role } token userErrors { field code message }
  }
}
"""
TOKENS = (
    "query($after: String) { apiTokens(first: 2, after: $after) { totalCount "
    "edges { cursor node { name current revokedAt } } pageInfo { hasNextPage endCursor } } }"
)


async def all_database_text(server: ApiServer) -> str:
    """Every row of every table in the database, as text."""
    async with server.services.sessionmaker() as session:
        tables = (
            (
                await session.execute(
                    text(
                        "SELECT table_name FROM information_schema.tables "
                        "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
                    )
                )
            )
            .scalars()
            .all()
        )
        dumped = []
        for table in tables:
            rows = await session.execute(text(f'SELECT t::text FROM "{table}" t'))
            dumped.extend(f"{table}: {row}" for row in rows.scalars())
    return "\n".join(dumped)


async def test_the_database_never_holds_a_token_in_clear(api_server: ApiServer) -> None:
    _, admin = await api_server.make_user("root", role="admin")
    created = await api_server.gql(TOKEN_CREATE, {"name": "ci", "key": "k1"}, admin)
    replay = await api_server.gql(TOKEN_CREATE, {"name": "ci", "key": "k1"}, admin)
    user = await api_server.gql(
        USER_CREATE, {"name": "bob", "namespace": "bob-tokens", "key": "k2"}, admin
    )
    api_server.namespaces.append("bob-tokens")
    clear = [
        admin,
        created["data"]["apiTokenCreate"]["token"],
        user["data"]["userCreate"]["token"],
    ]
    assert all(t and t.startswith("dbx_") for t in clear)
    assert replay["data"]["apiTokenCreate"]["token"] is None
    dump = await all_database_text(api_server)
    for table in ("api_tokens", "audit_events", "idempotency_keys"):
        assert table in dump
    for token in clear:
        assert token not in dump
        assert token[4:] not in dump  # not even the random part
        assert token[4:20] not in dump
        assert hash_token(token) in dump  # what is stored instead


async def test_created_token_works_and_is_listed_without_its_secret(
    api_server: ApiServer,
) -> None:
    _, token = await api_server.make_user("alice")
    body = await api_server.gql(TOKEN_CREATE, {"name": "laptop", "days": 30}, token)
    payload = body["data"]["apiTokenCreate"]
    assert payload["userErrors"] == []
    new = payload["token"]
    assert payload["apiToken"]["prefix"] == new[:8]
    assert payload["apiToken"]["expiresAt"] is not None
    viewer = await api_server.gql("{ viewer { user { name } } }", token=new)
    assert viewer["data"]["viewer"]["user"]["name"] == "alice"
    listed = await api_server.gql(TOKENS, token=new)
    names = [e["node"]["name"] for e in listed["data"]["apiTokens"]["edges"]]
    assert sorted(names) == ["laptop", "test"]
    assert new not in str(listed)


async def test_token_list_pages_with_cursors(api_server: ApiServer) -> None:
    _, token = await api_server.make_user("alice")
    for name in ("a", "b", "c"):
        await api_server.gql(TOKEN_CREATE, {"name": name}, token)
    first = (await api_server.gql(TOKENS, token=token))["data"]["apiTokens"]
    assert first["totalCount"] == 4
    assert first["pageInfo"]["hasNextPage"]
    second = (await api_server.gql(TOKENS, {"after": first["pageInfo"]["endCursor"]}, token))[
        "data"
    ]["apiTokens"]
    names = [e["node"]["name"] for e in first["edges"] + second["edges"]]
    assert sorted(names) == ["a", "b", "c", "test"]
    assert not second["pageInfo"]["hasNextPage"]


async def test_bad_token_input_is_a_user_error_with_its_field(api_server: ApiServer) -> None:
    _, token = await api_server.make_user("alice")
    body = await api_server.gql(TOKEN_CREATE, {"name": " ", "days": 0}, token)
    errors = body["data"]["apiTokenCreate"]["userErrors"]
    assert {(tuple(e["field"]), e["code"]) for e in errors} == {
        (("input", "name"), "REQUIRED"),
        (("input", "expiresInDays"), "OUT_OF_RANGE"),
    }
    assert body["data"]["apiTokenCreate"]["token"] is None


async def test_a_user_cannot_revoke_another_users_token(api_server: ApiServer) -> None:
    _, alice = await api_server.make_user("alice")
    _, bob = await api_server.make_user("bob")
    bobs = await api_server.gql(TOKENS, token=bob)
    bob_token_id = bobs["data"]["apiTokens"]["edges"][0]["node"]
    listed = await api_server.gql("{ apiTokens(first: 5) { edges { node { id } } } }", token=bob)
    token_id = listed["data"]["apiTokens"]["edges"][0]["node"]["id"]
    body = await api_server.gql(
        "mutation($id: ID!) { apiTokenRevoke(input: {id: $id}) { apiToken { id } "
        "userErrors { code message } } }",
        {"id": token_id},
        alice,
    )
    assert body["data"]["apiTokenRevoke"]["userErrors"][0]["code"] == "NOT_FOUND"
    assert body["data"]["apiTokenRevoke"]["apiToken"] is None
    assert bob_token_id["revokedAt"] is None
    still = await api_server.gql("{ viewer { user { name } } }", token=bob)
    assert still["data"]["viewer"]["user"]["name"] == "bob"


async def test_admin_creates_a_user_with_namespace_and_first_token(
    api_server: ApiServer,
) -> None:
    from app.kubeclient import NAMESPACES

    _, admin = await api_server.make_user("root", role="admin")
    body = await api_server.gql(
        USER_CREATE, {"name": "carol", "namespace": "carol-team", "role": "USER"}, admin
    )
    api_server.namespaces.append("carol-team")
    payload = body["data"]["userCreate"]
    assert payload["userErrors"] == []
    assert payload["user"]["namespace"] == "carol-team"
    namespace = await api_server.kube.get(NAMESPACES, None, "carol-team")
    assert namespace["metadata"]["name"] == "carol-team"
    viewer = await api_server.gql("{ viewer { namespace role } }", token=payload["token"])
    assert viewer["data"]["viewer"] == {"namespace": "carol-team", "role": "USER"}


async def test_only_admins_create_users(api_server: ApiServer) -> None:
    _, token = await api_server.make_user("alice")
    body = await api_server.gql(USER_CREATE, {"name": "mallory", "namespace": "x-ns"}, token)
    payload = body["data"]["userCreate"]
    assert [e["code"] for e in payload["userErrors"]] == ["FORBIDDEN"]
    assert payload["user"] is None
    assert payload["token"] is None
    rows = await api_server.audit_rows()
    assert [(r.action, r.outcome, r.error_code) for r in rows] == [
        ("userCreate", "failure", "FORBIDDEN")
    ]


async def test_user_create_refuses_bad_and_taken_names(api_server: ApiServer) -> None:
    _, admin = await api_server.make_user("root", role="admin")
    bad = await api_server.gql(USER_CREATE, {"name": "Bad_Name", "namespace": "-x"}, admin)
    errors = bad["data"]["userCreate"]["userErrors"]
    assert {tuple(e["field"]) for e in errors} == {("input", "name"), ("input", "namespace")}
    taken = await api_server.gql(USER_CREATE, {"name": "root", "namespace": "root-2"}, admin)
    assert [e["code"] for e in taken["data"]["userCreate"]["userErrors"]] == ["ALREADY_EXISTS"]


async def test_revoking_the_current_token_logs_it_out(api_server: ApiServer) -> None:
    _, token = await api_server.make_user("alice")
    listed = await api_server.gql("{ apiTokens(first: 5) { edges { node { id } } } }", token=token)
    token_id = listed["data"]["apiTokens"]["edges"][0]["node"]["id"]
    await api_server.gql(
        "mutation($id: ID!) { apiTokenRevoke(input: {id: $id}) { userErrors { code } } }",
        {"id": token_id},
        token,
    )
    with pytest.raises(GraphQLHTTPError) as refused:
        await api_server.gql("{ viewer { namespace } }", token=token)
    assert refused.value.status == 401
