"""Arbitrary input thrown at the account mutations never gives a server error and never a
partial write: a refused ``apiTokenCreate`` adds no token, a refused ``userCreate`` adds no
user and no namespace; accepted ones add exactly theirs."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Coroutine
from typing import Any, TypeVar

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from app.db.models import ApiToken, User
from app.kubeclient import NAMESPACES, NotFound
from tests.fixtures.api import ApiServer

T = TypeVar("T")
CHECKABLE = re.compile(r"[a-z0-9][a-z0-9.-]{0,62}")
"""Names whose existence can be looked up by path (others cannot be namespaces anyway)."""

texts = st.sampled_from(["ci", "", " ", "x" * 101, "bob", "Bob", "-a", "a-", "ok-2"]) | st.text(
    max_size=80
)
days = st.none() | st.integers(-(2**31), 2**31 - 1) | st.sampled_from([0, 1, 3650, 3651])
keys = st.none() | st.text(max_size=300)
roles = st.sampled_from(["USER", "ADMIN", "ROOT", ""])

TOKEN_CREATE = (
    "mutation($input: ApiTokenCreateInput!) { apiTokenCreate(input: $input) "
    "{ apiToken { name } token userErrors { field code } } }"
)
USER_CREATE = (
    "mutation($input: UserCreateInput!) { userCreate(input: $input) "
    "{ user { name namespace } token userErrors { field code } } }"
)


def assert_no_server_error(response: Any) -> dict[str, Any]:
    assert response.status_code in (200, 400), response.text
    body: dict[str, Any] = response.json()
    for error in body.get("errors") or []:
        assert (error.get("extensions") or {}).get("code") != "INTERNAL_SERVER_ERROR", body
    return body


async def count(server: ApiServer, model: type[ApiToken] | type[User]) -> int:
    async with server.services.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def namespace_exists(server: ApiServer, name: str) -> bool:
    try:
        await server.kube.get(NAMESPACES, None, name)
    except NotFound:
        return False
    return True


async def test_arbitrary_account_mutations_never_fail_or_half_write(
    api_server: ApiServer,
) -> None:
    _, admin = await api_server.make_user("root", role="admin")
    loop = asyncio.get_running_loop()
    outcomes = {"accepted": 0, "refused": 0}

    def run(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=60)

    async def one_token(payload: dict[str, Any]) -> None:
        before = await count(api_server, ApiToken)
        response = await api_server.post(
            {"query": TOKEN_CREATE, "variables": {"input": payload}}, admin
        )
        body = assert_no_server_error(response)
        result = (body.get("data") or {}).get("apiTokenCreate")
        after = await count(api_server, ApiToken)
        if result is not None and not result["userErrors"]:
            outcomes["accepted"] += 1
            assert result["token"].startswith("dbx_")
            assert after == before + 1
        else:
            outcomes["refused"] += 1
            assert after == before
            assert result is None or result["token"] is None

    async def one_user(payload: dict[str, Any]) -> None:
        users_before = await count(api_server, User)
        namespace = payload.get("namespace")
        checkable = isinstance(namespace, str) and CHECKABLE.fullmatch(namespace) is not None
        existed = checkable and await namespace_exists(api_server, namespace)
        response = await api_server.post(
            {"query": USER_CREATE, "variables": {"input": payload}}, admin
        )
        body = assert_no_server_error(response)
        result = (body.get("data") or {}).get("userCreate")
        if result is not None and not result["userErrors"]:
            outcomes["accepted"] += 1
            assert await count(api_server, User) == users_before + 1
            assert await namespace_exists(api_server, payload["namespace"])
            api_server.namespaces.append(payload["namespace"])
        else:
            outcomes["refused"] += 1
            assert await count(api_server, User) == users_before
            if checkable and not existed:
                assert not await namespace_exists(api_server, namespace)

    fuzz = settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )

    @fuzz
    @given(name=texts, expires=days, key=keys)
    @example(name="ci", expires=30, key=None)
    def tokens(name: str, expires: int | None, key: str | None) -> None:
        payload: dict[str, Any] = {"name": name, "expiresInDays": expires}
        if key is not None:
            payload["idempotencyKey"] = key
        run(one_token(payload))

    @fuzz
    @given(name=texts, namespace=texts, role=roles)
    @example(name="bob", namespace="bob-fuzz", role="USER")
    def users(name: str, namespace: str, role: str) -> None:
        run(one_user({"name": name, "namespace": namespace, "role": role}))

    await loop.run_in_executor(None, tokens)
    await loop.run_in_executor(None, users)
    assert outcomes["accepted"] >= 2
    assert outcomes["refused"] >= 10
