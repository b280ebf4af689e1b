"""``run_mutation``: idempotent retries, one audit row per mutation, Kubernetes failures.

A small test schema wraps ``run_mutation`` around a mutation that creates a Secret in the
viewer's namespace, so the runner is exercised with real Kubernetes writes; the product's
``apiTokenCreate`` covers the same through the real schema.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import strawberry
from sqlalchemy import func, select

from app.db.models import ApiToken, IdempotencyKey
from app.kube import connect
from app.kubeclient import SECRETS, Kube, NotFound
from app.schema.context import Info, Viewer
from app.schema.errors import UserError
from app.schema.extensions import schema_extensions
from app.schema.mutation import MutationResult, run_mutation
from app.schema.system import SystemQuery
from app.settings import Environment, Settings
from tests.fixtures.api import ApiServer

PERFORMED: list[str] = []
"""Names the test mutation acted on (a test resets it)."""


@strawberry.type
class SecretPayload:
    name: str | None
    resource_version: str | None
    user_errors: list[UserError]


@strawberry.type
class RunnerMutation:
    @strawberry.mutation
    async def secret_create(
        self,
        info: Info,
        name: str,
        password: str = "",
        idempotency_key: str | None = None,
        delay: float = 0.0,
        crash: bool = False,
    ) -> SecretPayload:
        async def perform(viewer: Viewer) -> MutationResult:
            PERFORMED.append(name)
            await asyncio.sleep(delay)
            if crash:
                raise RuntimeError("secret internals: db password is hunter2")
            created = await info.context.services.kube.create(
                SECRETS,
                viewer.namespace,
                {"metadata": {"name": name}, "stringData": {"password": password}},
            )
            return MutationResult(
                target_name=name, resource_version=created["metadata"]["resourceVersion"]
            )

        result = await run_mutation(
            info,
            action="secretCreate",
            target_kind="Secret",
            target_name=name,
            input={"name": name, "password": password},
            idempotency_key=idempotency_key,
            perform=perform,
        )
        return SecretPayload(
            name=result.target_name if result.ok else None,
            resource_version=result.resource_version,
            user_errors=result.user_errors,
        )


RUNNER_SCHEMA = strawberry.Schema(
    query=SystemQuery,
    mutation=RunnerMutation,
    extensions=schema_extensions(Settings()),
)

CREATE = """
mutation($name: String!, $password: String! = "", $key: String, $delay: Float! = 0,
         $crash: Boolean! = false) {
  secretCreate(name: $name, password: $password, idempotencyKey: $key, delay: $delay,
               crash: $crash) {
    name resourceVersion userErrors { field message code }
  }
}
"""

TOKEN_CREATE = """
mutation($name: String!, $key: String) {
  apiTokenCreate(input: {name: $name, idempotencyKey: $key}) {
    apiToken { id name } token userErrors { field code message }
  }
}
"""


@pytest.fixture
async def runner(start_api: Callable[..., Awaitable[ApiServer]]) -> ApiServer:
    PERFORMED.clear()
    return await start_api(schema=RUNNER_SCHEMA)


async def secret_exists(server: ApiServer, namespace: str, name: str) -> bool:
    try:
        await server.kube.get(SECRETS, namespace, name)
    except NotFound:
        return False
    return True


async def test_retry_with_the_same_key_returns_the_first_result_without_acting_again(
    runner: ApiServer,
) -> None:
    _, token = await runner.make_user("alice")
    variables = {"name": "db", "password": "s3cret", "key": "k-1"}
    first = await runner.gql(CREATE, variables, token)
    again = await runner.gql(CREATE, variables, token)
    assert first["data"]["secretCreate"]["userErrors"] == []
    assert again == first
    assert PERFORMED == ["db"]
    rows = await runner.audit_rows()
    assert [(r.action, r.outcome) for r in rows] == [("secretCreate", "success")]


async def test_same_key_for_a_different_request_is_refused(runner: ApiServer) -> None:
    _, token = await runner.make_user("alice")
    await runner.gql(CREATE, {"name": "db", "key": "k-1"}, token)
    other = await runner.gql(CREATE, {"name": "cache", "key": "k-1"}, token)
    errors = other["data"]["secretCreate"]["userErrors"]
    assert [e["code"] for e in errors] == ["IDEMPOTENCY_KEY_REUSED"]
    assert errors[0]["field"] == ["input", "idempotencyKey"]
    assert PERFORMED == ["db"]
    rows = await runner.audit_rows()
    assert [(r.target_name, r.outcome, r.error_code) for r in rows] == [
        ("db", "success", None),
        ("cache", "failure", "IDEMPOTENCY_KEY_REUSED"),
    ]


@pytest.mark.parametrize(("key", "code"), [("", "INVALID"), ("k" * 256, "TOO_LONG")])
async def test_an_empty_or_too_long_key_is_refused_without_acting(
    runner: ApiServer, key: str, code: str
) -> None:
    _, token = await runner.make_user("alice")
    body = await runner.gql(CREATE, {"name": "db", "key": key}, token)
    errors = body["data"]["secretCreate"]["userErrors"]
    assert [(e["field"], e["code"]) for e in errors] == [(["input", "idempotencyKey"], code)]
    assert PERFORMED == []
    rows = await runner.audit_rows()
    assert [(r.outcome, r.error_code) for r in rows] == [("failure", code)]


async def test_keys_belong_to_a_token(runner: ApiServer) -> None:
    _, alice = await runner.make_user("alice")
    _, bob = await runner.make_user("bob")
    await runner.gql(CREATE, {"name": "db", "key": "shared"}, alice)
    await runner.gql(CREATE, {"name": "db", "key": "shared"}, bob)
    assert PERFORMED == ["db", "db"]


async def test_concurrent_duplicates_act_once_and_all_get_the_result(runner: ApiServer) -> None:
    _, token = await runner.make_user("alice")
    variables = {"name": "db", "key": "k-race", "delay": 0.3}
    answers = await asyncio.gather(*(runner.gql(CREATE, variables, token) for _ in range(5)))
    assert PERFORMED == ["db"]
    results = [a["data"]["secretCreate"] for a in answers]
    assert all(r == results[0] for r in results), results
    assert results[0]["userErrors"] == []
    assert len(await runner.audit_rows()) == 1


async def test_audit_row_records_a_successful_mutation(runner: ApiServer) -> None:
    user, token = await runner.make_user("alice")
    response = await runner.post(
        {"query": CREATE, "variables": {"name": "db", "password": "hunter2"}},
        token,
        headers={"User-Agent": "integration/1.0"},
    )
    assert response.status_code == 200
    (row,) = await runner.audit_rows()
    assert row.actor_user == "alice"
    assert row.actor_token_id is not None
    assert row.namespace == user.namespace
    assert (row.action, row.target_kind, row.target_name) == ("secretCreate", "Secret", "db")
    assert row.request_id == response.headers["x-request-id"]
    assert row.client_address == "127.0.0.1"
    assert row.user_agent == "integration/1.0"
    assert row.input == {"name": "db", "password": "[redacted]"}
    assert (row.outcome, row.error_code) == ("success", None)
    assert "hunter2" not in json.dumps(row.input)


async def test_kubernetes_failure_leaves_a_failure_row_and_no_object(runner: ApiServer) -> None:
    user, token = await runner.make_user("alice")
    working = runner.services.kube
    dead_client = await connect(url="http://127.0.0.1:9")  # discard port: nothing listens
    runner.services.kube = Kube(dead_client, timeout=2)
    try:
        body = await runner.gql(CREATE, {"name": "db", "key": "k-1"}, token)
    finally:
        runner.services.kube = working
        await dead_client.close()
    errors = body["data"]["secretCreate"]["userErrors"]
    assert [e["code"] for e in errors] == ["UNAVAILABLE"]
    assert "127.0.0.1" not in errors[0]["message"]
    assert "9" not in errors[0]["message"]
    assert not await secret_exists(runner, user.namespace, "db")
    (row,) = await runner.audit_rows()
    assert (row.outcome, row.error_code) == ("failure", "UNAVAILABLE")
    # Nothing was done, so a retry with the same key acts once Kubernetes is back.
    retried = await runner.gql(CREATE, {"name": "db", "key": "k-1"}, token)
    assert retried["data"]["secretCreate"]["userErrors"] == []
    assert await secret_exists(runner, user.namespace, "db")


async def test_existing_object_becomes_already_exists_user_error(runner: ApiServer) -> None:
    _, token = await runner.make_user("alice")
    await runner.gql(CREATE, {"name": "db"}, token)
    body = await runner.gql(CREATE, {"name": "db"}, token)
    (error,) = body["data"]["secretCreate"]["userErrors"]
    assert error["code"] == "ALREADY_EXISTS"
    assert "already exists" in error["message"]
    rows = await runner.audit_rows()
    assert [(r.outcome, r.error_code) for r in rows] == [
        ("success", None),
        ("failure", "ALREADY_EXISTS"),
    ]


async def test_bug_in_a_mutation_is_masked_audited_and_frees_the_key(
    runner: ApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="app.api.errors")
    _, token = await runner.make_user("alice")
    response = await runner.post(
        {"query": CREATE, "variables": {"name": "db", "key": "k-1", "crash": True}}, token
    )
    assert response.status_code == 200
    body = response.json()
    (error,) = body["errors"]
    assert "hunter2" not in response.text
    assert "RuntimeError" not in response.text
    assert error["extensions"]["requestId"] == response.headers["x-request-id"]
    request_id = response.headers["x-request-id"]
    logged = [r for r in caplog.records if request_id in r.getMessage()]
    assert logged, "the server log has no line with the request id"
    assert logged[0].exc_info is not None  # with its stack trace
    assert "hunter2" in str(logged[0].exc_info[1])
    (row,) = await runner.audit_rows()
    assert (row.outcome, row.error_code) == ("failure", "INTERNAL")
    async with runner.services.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(IdempotencyKey)) == 0


async def test_development_mode_shows_the_error_message_but_no_stack_trace(
    start_api: Callable[..., Awaitable[ApiServer]],
) -> None:
    settings = Settings(environment=Environment.DEVELOPMENT)
    schema = strawberry.Schema(
        query=SystemQuery, mutation=RunnerMutation, extensions=schema_extensions(settings)
    )
    server = await start_api(schema=schema)
    _, token = await server.make_user("alice")
    body = await server.gql(CREATE, {"name": "db", "crash": True}, token)
    (error,) = body["errors"]
    assert "secret internals" in error["message"]
    assert error["extensions"]["requestId"]
    assert "Traceback" not in str(body)


async def test_token_create_retry_returns_the_same_token_record_without_the_secret(
    api_server: ApiServer,
) -> None:
    user, token = await api_server.make_user("alice")
    variables: dict[str, Any] = {"name": "ci", "key": "create-ci"}
    first = (await api_server.gql(TOKEN_CREATE, variables, token))["data"]["apiTokenCreate"]
    again = (await api_server.gql(TOKEN_CREATE, variables, token))["data"]["apiTokenCreate"]
    assert first["token"].startswith("dbx_")
    assert again["apiToken"] == first["apiToken"]
    assert again["token"] is None  # shown once, never stored
    async with api_server.services.sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).select_from(ApiToken).where(ApiToken.user_id == user.id)
        )
    assert count == 2  # the test's token and "ci"
