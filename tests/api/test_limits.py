"""Limits and errors: depth, aliases, tokens, body size, page size, rate; masked errors; 400s."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from tests.fixtures.api import ApiServer, SubscriptionError

AUDIT = "{ auditEvents(first: 5) { edges { node { actor { userName } } } } }"


def error_of(response_json: dict[str, object]) -> dict[str, object]:
    errors = response_json["errors"]
    assert isinstance(errors, list)
    assert errors
    first = errors[0]
    assert isinstance(first, dict)
    return first


async def test_too_deep_query_is_refused_with_400(
    start_api: Callable[..., Awaitable[ApiServer]],
) -> None:
    server = await start_api(max_query_depth=3)
    _, token = await server.make_user("alice")
    response = await server.post({"query": AUDIT}, token)
    assert response.status_code == 400
    error = error_of(response.json())
    assert "exceeds maximum operation depth of 3" in str(error["message"])
    assert response.json().get("data") is None


async def test_too_many_aliases_are_refused(api_server: ApiServer) -> None:
    _, token = await api_server.make_user("alice")
    query = "{ " + " ".join(f"v{i}: version" for i in range(31)) + " }"
    response = await api_server.post({"query": query}, token)
    assert response.status_code == 400
    assert "aliases" in str(error_of(response.json())["message"]).lower()


async def test_too_many_tokens_are_refused(api_server: ApiServer) -> None:
    _, token = await api_server.make_user("alice")
    query = "{ " + "version " * 2100 + "}"
    response = await api_server.post({"query": query}, token)
    assert response.status_code == 400
    assert "token" in str(error_of(response.json())["message"]).lower()


async def test_oversized_body_is_refused_with_413_before_parsing(api_server: ApiServer) -> None:
    _, token = await api_server.make_user("alice")
    body = b'{"query": "{ version }", "padding": "' + b"x" * 300_000 + b'"}'
    response = await api_server.post(None, token, content=body)
    assert response.status_code == 413
    assert error_of(response.json())["extensions"] == {
        "code": "REQUEST_TOO_LARGE",
        "requestId": response.headers["x-request-id"],
    }


async def test_rate_limit_answers_429_with_retry_after(
    start_api: Callable[..., Awaitable[ApiServer]],
) -> None:
    server = await start_api(rate_limit_burst=3, rate_limit_per_second=0.05)
    _, alice = await server.make_user("alice")
    _, bob = await server.make_user("bob")
    statuses = [(await server.post({"query": "{ version }"}, alice)).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = await server.post({"query": "{ version }"}, alice)
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert error_of(limited.json())["extensions"]["code"] == "RATE_LIMITED"  # type: ignore[index]
    # Another token has its own budget.
    assert (await server.post({"query": "{ version }"}, bob)).status_code == 200


async def test_first_is_required_and_capped(api_server: ApiServer) -> None:
    _, token = await api_server.make_user("alice")
    missing = await api_server.post({"query": "{ auditEvents { totalCount } }"}, token)
    assert missing.status_code == 400
    too_many = await api_server.gql("{ auditEvents(first: 101) { totalCount } }", token=token)
    error = error_of(too_many)
    assert "first must be between 0 and 100" in str(error["message"])
    assert error["extensions"]["code"] == "BAD_REQUEST"  # type: ignore[index]
    assert error["extensions"]["requestId"]  # type: ignore[index]


async def test_malformed_json_is_a_400_with_a_clear_error(api_server: ApiServer) -> None:
    _, token = await api_server.make_user("alice")
    response = await api_server.post(None, token, content=b'{"query": "{ version }"')
    assert response.status_code == 400
    error = error_of(response.json())
    assert "JSON" in str(error["message"])
    assert error["extensions"]["code"] == "BAD_REQUEST"  # type: ignore[index]


async def test_malformed_graphql_is_a_400_with_a_clear_error(api_server: ApiServer) -> None:
    _, token = await api_server.make_user("alice")
    response = await api_server.post({"query": "{ version "}, token)
    assert response.status_code == 400
    assert "Syntax Error" in str(error_of(response.json())["message"])
    unknown = await api_server.post({"query": "{ noSuchField }"}, token)
    assert unknown.status_code == 400
    assert "noSuchField" in str(error_of(unknown.json())["message"])


async def test_non_object_bodies_are_400_not_500(api_server: ApiServer) -> None:
    _, token = await api_server.make_user("alice")
    for body in (
        b"[]",
        b"42",
        b'"q"',
        b'{"query": 5}',
        b'{"query": "{ version }", "variables": 1}',
    ):
        response = await api_server.post(None, token, content=body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["errors"][0]["extensions"]["requestId"]


async def test_every_error_carries_the_request_id(api_server: ApiServer) -> None:
    _, token = await api_server.make_user("alice")
    response = await api_server.post({"query": "{ auditEvents(first: -1) { totalCount } }"}, token)
    assert (
        response.json()["errors"][0]["extensions"]["requestId"] == response.headers["x-request-id"]
    )


async def test_repeated_invalid_query_gets_each_requests_own_id(api_server: ApiServer) -> None:
    """Validation results are cached across requests; the request ids must not be."""
    _, token = await api_server.make_user("alice")
    ids = []
    for _ in range(2):
        response = await api_server.post({"query": "{ noSuchField }"}, token)
        assert response.status_code == 400
        error = error_of(response.json())
        assert error["extensions"]["requestId"] == response.headers["x-request-id"]  # type: ignore[index]
        ids.append(response.headers["x-request-id"])
    assert ids[0] != ids[1]


async def test_rate_limit_also_applies_to_operations_over_a_websocket(
    start_api: Callable[..., Awaitable[ApiServer]],
) -> None:
    server = await start_api(rate_limit_burst=3, rate_limit_per_second=0.05)
    _, alice = await server.make_user("alice")
    async with server.ws(alice) as client:  # connection_init spends one request
        for _ in range(2):
            ident = await client.subscribe("{ version }")
            assert "version" in (await client.next_payload(ident))["data"]
        ident = await client.subscribe("{ version }")
        with pytest.raises(SubscriptionError) as refused:
            await client.next_payload(ident)
    assert refused.value.payload[0]["extensions"]["code"] == "RATE_LIMITED"
