"""Authentication: bearer tokens on HTTP, ``connection_init`` on WebSockets."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from app.db.models import ApiToken, User, utcnow
from tests.fixtures.api import ApiServer, GraphQLHTTPError

VIEWER = "{ viewer { user { name } namespace role } }"


async def test_viewer_answers_with_the_tokens_user_and_namespace(api_server: ApiServer) -> None:
    _, token = await api_server.make_user("alice", "alice-ns")
    body = await api_server.gql(VIEWER, token=token)
    assert body == {
        "data": {"viewer": {"user": {"name": "alice"}, "namespace": "alice-ns", "role": "USER"}}
    }


async def test_request_without_token_is_refused_with_401(api_server: ApiServer) -> None:
    response = await api_server.post({"query": VIEWER})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert error["extensions"]["requestId"] == response.headers["x-request-id"]


@pytest.mark.parametrize(
    "header",
    ["Bearer dbx_not-a-real-token", "Bearer", "Basic YWxpY2U6c2VjcmV0", "dbx_token-without-scheme"],
)
async def test_bad_authorization_header_is_refused_with_401(
    api_server: ApiServer, header: str
) -> None:
    await api_server.make_user("alice")
    response = await api_server.post({"query": VIEWER}, headers={"Authorization": header})
    assert response.status_code == 401
    assert "Bearer" in response.headers["www-authenticate"]


async def test_revoked_token_no_longer_authenticates(api_server: ApiServer) -> None:
    _, token = await api_server.make_user("alice")
    body = await api_server.gql(
        "{ apiTokens(first: 10) { edges { node { id current } } } }", token=token
    )
    token_id = body["data"]["apiTokens"]["edges"][0]["node"]["id"]
    revoked = await api_server.gql(
        "mutation($id: ID!) { apiTokenRevoke(input: {id: $id}) { apiToken { revokedAt } "
        "userErrors { code } } }",
        {"id": token_id},
        token=token,
    )
    assert revoked["data"]["apiTokenRevoke"]["userErrors"] == []
    assert revoked["data"]["apiTokenRevoke"]["apiToken"]["revokedAt"] is not None
    with pytest.raises(GraphQLHTTPError) as refused:
        await api_server.gql(VIEWER, token=token)
    assert refused.value.status == 401


async def test_expired_token_is_refused(api_server: ApiServer) -> None:
    _, token = await api_server.make_user("alice")
    async with api_server.services.sessionmaker() as session:
        await session.execute(update(ApiToken).values(expires_at=utcnow() - timedelta(seconds=1)))
        await session.commit()
    with pytest.raises(GraphQLHTTPError) as refused:
        await api_server.gql(VIEWER, token=token)
    assert refused.value.status == 401


async def test_token_of_a_disabled_user_is_refused(api_server: ApiServer) -> None:
    _, token = await api_server.make_user("alice")
    async with api_server.services.sessionmaker() as session:
        await session.execute(update(User).values(disabled_at=utcnow()))
        await session.commit()
    with pytest.raises(GraphQLHTTPError) as refused:
        await api_server.gql(VIEWER, token=token)
    assert refused.value.status == 401


async def test_use_of_a_token_is_recorded_as_last_used(api_server: ApiServer) -> None:
    _, token = await api_server.make_user("alice")
    await api_server.gql(VIEWER, token=token)
    body = await api_server.gql(
        "{ apiTokens(first: 10) { edges { node { lastUsedAt current } } } }", token=token
    )
    node = body["data"]["apiTokens"]["edges"][0]["node"]
    assert node["current"] is True
    assert node["lastUsedAt"] is not None


@pytest.mark.parametrize("form", ["authorization", "token"])
async def test_websocket_authenticates_in_connection_init(api_server: ApiServer, form: str) -> None:
    _, token = await api_server.make_user("alice", "alice-ws")
    payload = {"authorization": f"Bearer {token}"} if form == "authorization" else {"token": token}
    async with api_server.ws(token, payload=payload) as client:
        ident = await client.subscribe(VIEWER)
        result = await client.next_payload(ident)
    assert result["data"]["viewer"]["namespace"] == "alice-ws"


@pytest.mark.parametrize(
    "payload", [{}, {"token": "dbx_wrong"}, {"authorization": "Bearer nope"}, {"token": 7}]
)
async def test_websocket_without_valid_token_is_closed_with_4401(
    api_server: ApiServer, payload: dict[str, object]
) -> None:
    await api_server.make_user("alice")
    client = await api_server.ws_connect()
    try:
        await client.send({"type": "connection_init", "payload": payload})
        code, _ = await client.closed()
    finally:
        await client.aclose()
    assert code == 4401


async def test_websocket_subscribe_before_init_is_closed_with_4401(
    api_server: ApiServer,
) -> None:
    client = await api_server.ws_connect()
    try:
        await client.send({"id": "1", "type": "subscribe", "payload": {"query": VIEWER}})
        code, _ = await client.closed()
    finally:
        await client.aclose()
    assert code == 4401


async def test_graphiql_is_served_to_browsers_without_a_token(api_server: ApiServer) -> None:
    response = await api_server.http.get(api_server.graphql_url, headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()


async def test_legacy_graphql_ws_without_valid_token_is_refused_with_4401(
    api_server: ApiServer,
) -> None:
    client = await api_server.ws_connect("graphql-ws")
    try:
        await client.send({"type": "connection_init", "payload": {"token": "dbx_wrong"}})
        assert (await client.receive())["type"] == "connection_error"
        code, _ = await client.closed()
    finally:
        await client.aclose()
    assert code == 4401


async def test_unreachable_database_is_a_503_not_a_500(api_server: ApiServer) -> None:
    from app.db.engine import create_engine, session_factory

    _, token = await api_server.make_user("alice")
    working = api_server.services.sessionmaker
    dead = create_engine("postgresql+asyncpg://postgres@127.0.0.1:9/nowhere")
    api_server.services.sessionmaker = session_factory(dead)
    api_server.services.extras.pop("authenticator", None)  # forget verified tokens
    try:
        response = await api_server.post({"query": VIEWER}, token)
    finally:
        api_server.services.sessionmaker = working
        api_server.services.extras.pop("authenticator", None)
        await dead.dispose()
    assert response.status_code == 503
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAVAILABLE"
    assert "127.0.0.1" not in response.text


async def test_revoked_token_cannot_start_new_operations_on_an_open_socket(
    api_server: ApiServer,
) -> None:
    _, token = await api_server.make_user("alice")
    async with api_server.ws(token) as client:
        first = await client.subscribe(VIEWER)
        assert (await client.next_payload(first))["data"]["viewer"]["role"] == "USER"
        listed = await api_server.gql(
            "{ apiTokens(first: 5) { edges { node { id } } } }", token=token
        )
        token_id = listed["data"]["apiTokens"]["edges"][0]["node"]["id"]
        await api_server.gql(
            "mutation($id: ID!) { apiTokenRevoke(input: {id: $id}) { userErrors { code } } }",
            {"id": token_id},
            token,
        )
        await client.subscribe(VIEWER)
        code, _ = await client.closed()
    assert code == 4401


async def test_revoked_token_cannot_start_operations_on_an_open_legacy_socket(
    api_server: ApiServer,
) -> None:
    _, token = await api_server.make_user("alice")
    client = await api_server.ws_connect("graphql-ws")
    try:
        await client.send({"type": "connection_init", "payload": {"token": token}})
        assert (await client.receive())["type"] == "connection_ack"
        listed = await api_server.gql(
            "{ apiTokens(first: 5) { edges { node { id } } } }", token=token
        )
        token_id = listed["data"]["apiTokens"]["edges"][0]["node"]["id"]
        await api_server.gql(
            "mutation($id: ID!) { apiTokenRevoke(input: {id: $id}) { userErrors { code } } }",
            {"id": token_id},
            token,
        )
        await client.send(
            {
                "id": "1",
                "type": "start",
                "payload": {"query": "subscription { devboxesChanged { type } }"},
            }
        )
        code, _ = await client.closed()
    finally:
        await client.aclose()
    assert code == 4401


@pytest.mark.parametrize("subprotocol", ["graphql-transport-ws", "graphql-ws"])
async def test_revoking_a_token_ends_its_open_subscriptions(
    api_server: ApiServer, monkeypatch: pytest.MonkeyPatch, subprotocol: str
) -> None:
    import app.api

    monkeypatch.setattr(app.api, "REVALIDATE_SECONDS", 0.2)
    _, token = await api_server.make_user("alice")
    client = await api_server.ws_connect(subprotocol)
    try:
        await client.send({"type": "connection_init", "payload": {"token": token}})
        assert (await client.receive())["type"] == "connection_ack"
        start = "subscribe" if subprotocol == "graphql-transport-ws" else "start"
        query = "subscription { devboxesChanged { type } }"
        await client.send({"id": "1", "type": start, "payload": {"query": query}})
        listed = await api_server.gql(
            "{ apiTokens(first: 5) { edges { node { id } } } }", token=token
        )
        token_id = listed["data"]["apiTokens"]["edges"][0]["node"]["id"]
        await api_server.gql(
            "mutation($id: ID!) { apiTokenRevoke(input: {id: $id}) { userErrors { code } } }",
            {"id": token_id},
            token,
        )
        code, _ = await client.closed()
    finally:
        await client.aclose()
    assert code == 4401
