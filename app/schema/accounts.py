"""Accounts: the viewer, API tokens (create, list, revoke) and, for admins, users.

A token's clear text appears exactly once, in the ``token`` field of the payload of the
mutation that created it (``apiTokenCreate``, ``userCreate``); it is never stored, so a
replay of that mutation with the same idempotency key returns the token's record with
``token: null``.  ``userCreate`` also creates the user's Kubernetes namespace when missing.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from enum import Enum
from typing import Annotated, Any

import strawberry
from sqlalchemy import select

from app import admin
from app.admin import DNS_LABEL
from app.db import users as accounts
from app.db.models import ApiToken as ApiTokenRow
from app.db.models import Role as RoleValue
from app.db.models import User as UserRow
from app.kubeclient import NAMESPACES, KubeError
from app.schema.auth import authenticator_of
from app.schema.context import Info, require_viewer
from app.schema.errors import UserError, UserErrorCode, user_error
from app.schema.mutation import MutationResult, run_mutation
from app.schema.relay import Connection, Node, check_first, encode_global_id, paginate

NAME_MAX = 63
TOKEN_NAME_MAX = 100
MAX_EXPIRES_IN_DAYS = 3650


@strawberry.enum(description="What a user may do.")
class Role(Enum):
    USER = "user"
    """Works with the objects of its own namespace."""
    ADMIN = "admin"
    """Also creates users and reads the audit events of every namespace."""


@strawberry.type(description="A person or integration that holds API tokens.")
class User(Node):
    name: str
    namespace: str = strawberry.field(description="The Kubernetes namespace of its objects.")
    role: Role
    created_at: datetime

    @classmethod
    def from_row(cls, row: UserRow) -> User:
        return cls(
            id=encode_global_id("User", row.id),
            name=row.name,
            namespace=row.namespace,
            role=Role(row.role),
            created_at=row.created_at,
        )


@strawberry.type(name="Viewer", description="Who is calling.")
class ViewerType:
    user: User
    namespace: str
    role: Role


@strawberry.type(description="An API token (its clear text is shown only when created).")
class ApiToken(Node):
    name: str
    prefix: str = strawberry.field(description="The token's first characters, to recognise it.")
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None = strawberry.field(
        description="Last use, to the minute (it is not written on every request)."
    )
    revoked_at: datetime | None
    current: bool = strawberry.field(description="True for the token making this request.")

    @classmethod
    def from_row(cls, row: ApiTokenRow, *, current_token_id: str) -> ApiToken:
        return cls(
            id=encode_global_id("ApiToken", row.id),
            name=row.name,
            prefix=row.prefix,
            created_at=row.created_at,
            expires_at=row.expires_at,
            last_used_at=row.last_used_at,
            revoked_at=row.revoked_at,
            current=row.id == current_token_id,
        )


ApiTokenConnection = Annotated[Connection[ApiToken], strawberry.type(name="ApiTokenConnection")]


@strawberry.input
class ApiTokenCreateInput:
    name: str = strawberry.field(description='A label, e.g. "laptop" or "ci".')
    expires_in_days: int | None = strawberry.field(
        default=None, description=f"Days until it expires (1-{MAX_EXPIRES_IN_DAYS}); null: never."
    )
    idempotency_key: str | None = None


@strawberry.type
class ApiTokenCreatePayload:
    api_token: ApiToken | None
    token: str | None = strawberry.field(
        description="The token itself, shown this once (null on an idempotent replay)."
    )
    user_errors: list[UserError]


@strawberry.input
class ApiTokenRevokeInput:
    id: strawberry.ID = strawberry.field(description="The ApiToken's id.")
    idempotency_key: str | None = None


@strawberry.type
class ApiTokenRevokePayload:
    api_token: ApiToken | None
    user_errors: list[UserError]


@strawberry.input
class UserCreateInput:
    name: str
    namespace: str = strawberry.field(
        description="Kubernetes namespace of the user's objects (created when missing)."
    )
    role: Role = Role.USER
    idempotency_key: str | None = None


@strawberry.type
class UserCreatePayload:
    user: User | None
    token: str | None = strawberry.field(
        description="A first API token of the new user, shown this once."
    )
    user_errors: list[UserError]


def _label_errors(value: str, path: list[str], what: str) -> list[UserError]:
    if not value:
        return [user_error(path, f"The {what} is required.", UserErrorCode.REQUIRED)]
    if len(value) > NAME_MAX:
        return [
            user_error(
                path, f"The {what} has at most {NAME_MAX} characters.", UserErrorCode.TOO_LONG
            )
        ]
    if not DNS_LABEL.fullmatch(value):
        return [
            user_error(
                path,
                f"The {what} may contain lowercase letters, digits and '-', and starts and "
                "ends with a letter or digit.",
                UserErrorCode.INVALID,
            )
        ]
    return []


def _token_input_errors(name: str, expires_in_days: int | None) -> list[UserError]:
    errors: list[UserError] = []
    if not name.strip():
        errors.append(
            user_error(["input", "name"], "The token name is required.", UserErrorCode.REQUIRED)
        )
    elif len(name) > TOKEN_NAME_MAX:
        errors.append(
            user_error(
                ["input", "name"],
                f"The token name has at most {TOKEN_NAME_MAX} characters.",
                UserErrorCode.TOO_LONG,
            )
        )
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_EXPIRES_IN_DAYS:
        errors.append(
            user_error(
                ["input", "expiresInDays"],
                f"Tokens expire after 1 to {MAX_EXPIRES_IN_DAYS} days (or never: null).",
                UserErrorCode.OUT_OF_RANGE,
            )
        )
    return errors


def _token_id(value: str) -> str | None:
    from app.schema.relay import decode_global_id

    try:
        type_name, key = decode_global_id(value)
    except ValueError:
        return None
    return key if type_name == "ApiToken" else None


async def _token_node(info: Info, token_id: str | None) -> ApiToken | None:
    if token_id is None:
        return None
    viewer = require_viewer(info)
    async with info.context.services.sessionmaker() as session:
        row = await session.scalar(
            select(ApiTokenRow).where(
                ApiTokenRow.id == token_id, ApiTokenRow.user_id == viewer.user_id
            )
        )
    return ApiToken.from_row(row, current_token_id=viewer.token_id) if row else None


async def _viewer(info: Info) -> ViewerType:
    viewer = require_viewer(info)
    async with info.context.services.sessionmaker() as session:
        row = await session.get(UserRow, viewer.user_id)
    if row is None:  # deleted since the token was verified
        from app.schema.errors import Unauthenticated

        raise Unauthenticated("the user of this token no longer exists")
    return ViewerType(user=User.from_row(row), namespace=viewer.namespace, role=Role(row.role))


async def _api_tokens(info: Info, first: int, after: str | None = None) -> ApiTokenConnection:
    viewer = require_viewer(info)
    check_first(first)
    async with info.context.services.sessionmaker() as session:
        rows = await accounts.list_tokens(session, viewer.user_id)
    nodes = [ApiToken.from_row(r, current_token_id=viewer.token_id) for r in rows]
    return paginate(nodes, first=first, after=after, position=lambda n: str(n.id))


@strawberry.type
class AccountQuery:
    """Who am I, and my tokens."""

    viewer: ViewerType = strawberry.field(
        resolver=_viewer, description="The user and namespace of the token making this request."
    )
    api_tokens: ApiTokenConnection = strawberry.field(
        resolver=_api_tokens,
        description="The viewer's API tokens, newest first (revoked ones too).",
    )


async def _api_token_create(info: Info, input: ApiTokenCreateInput) -> ApiTokenCreatePayload:
    clear: list[str] = []

    async def perform(viewer: Any) -> MutationResult:
        errors = _token_input_errors(input.name, input.expires_in_days)
        if errors:
            return MutationResult(target_name=input.name, user_errors=errors)
        async with info.context.services.sessionmaker() as session:
            user = await session.get(UserRow, viewer.user_id)
            if user is None:
                return MutationResult(
                    target_name=input.name,
                    user_errors=[
                        user_error(None, "Your user no longer exists.", UserErrorCode.NOT_FOUND)
                    ],
                )
            token, text = await accounts.create_token(
                session, user, name=input.name, expires_in_days=input.expires_in_days
            )
            await session.commit()
        clear.append(text)
        return MutationResult(target_name=input.name, data={"tokenId": token.id})

    result = await run_mutation(
        info,
        action="apiTokenCreate",
        target_kind="ApiToken",
        target_name=input.name,
        input={"name": input.name, "expiresInDays": input.expires_in_days},
        idempotency_key=input.idempotency_key,
        perform=perform,
    )
    return ApiTokenCreatePayload(
        api_token=await _token_node(info, result.data.get("tokenId")),
        token=clear[0] if clear and result.ok else None,
        user_errors=result.user_errors,
    )


async def _api_token_revoke(info: Info, input: ApiTokenRevokeInput) -> ApiTokenRevokePayload:
    token_id = _token_id(str(input.id))

    async def perform(viewer: Any) -> MutationResult:
        not_found = MutationResult(
            target_name=str(input.id),
            user_errors=[
                user_error(["input", "id"], "You have no such API token.", UserErrorCode.NOT_FOUND)
            ],
        )
        if token_id is None:
            return not_found
        async with info.context.services.sessionmaker() as session:
            row = await accounts.revoke_token(session, user_id=viewer.user_id, token_id=token_id)
            if row is None:
                return not_found
            await session.commit()
        authenticator_of(info.context.services).forget_token(token_id)
        return MutationResult(target_name=row.name, data={"tokenId": token_id})

    result = await run_mutation(
        info,
        action="apiTokenRevoke",
        target_kind="ApiToken",
        target_name=token_id or str(input.id)[:64],
        input={"id": str(input.id)},
        idempotency_key=input.idempotency_key,
        perform=perform,
    )
    return ApiTokenRevokePayload(
        api_token=await _token_node(info, result.data.get("tokenId")),
        user_errors=result.user_errors,
    )


async def _user_create(info: Info, input: UserCreateInput) -> UserCreatePayload:
    clear: list[str] = []
    services = info.context.services

    async def perform(viewer: Any) -> MutationResult:
        if not viewer.is_admin:
            return MutationResult(
                target_name=input.name,
                user_errors=[
                    user_error(None, "Only admins create users.", UserErrorCode.FORBIDDEN)
                ],
            )
        errors = _label_errors(input.name, ["input", "name"], "user name")
        errors += _label_errors(input.namespace, ["input", "namespace"], "namespace")
        if errors:
            return MutationResult(target_name=input.name, user_errors=errors)
        async with services.sessionmaker() as session:
            taken = await session.scalar(select(UserRow.id).where(UserRow.name == input.name))
        if taken is not None:
            return MutationResult(
                target_name=input.name,
                user_errors=[
                    user_error(
                        ["input", "name"],
                        f"A user named {input.name!r} already exists.",
                        UserErrorCode.ALREADY_EXISTS,
                    )
                ],
            )
        created_namespace = await admin.ensure_namespace(services.kube, input.namespace)
        try:
            async with services.sessionmaker() as session:
                user = await accounts.create_user(
                    session,
                    name=input.name,
                    namespace=input.namespace,
                    role=RoleValue(input.role.value),
                )
                _, text = await accounts.create_token(session, user, name="first")
                await session.commit()
        except accounts.UserExists:
            await _undo_namespace(info, input.namespace, created_namespace)
            return MutationResult(
                target_name=input.name,
                user_errors=[
                    user_error(
                        ["input", "name"],
                        f"A user named {input.name!r} already exists.",
                        UserErrorCode.ALREADY_EXISTS,
                    )
                ],
            )
        except BaseException:
            await _undo_namespace(info, input.namespace, created_namespace)
            raise
        clear.append(text)
        return MutationResult(target_name=input.name, data={"userId": user.id})

    result = await run_mutation(
        info,
        action="userCreate",
        target_kind="User",
        target_name=input.name,
        input={"name": input.name, "namespace": input.namespace, "role": input.role.value},
        idempotency_key=input.idempotency_key,
        perform=perform,
    )
    user_node = None
    user_id = result.data.get("userId")
    if user_id:
        async with services.sessionmaker() as session:
            row = await session.get(UserRow, user_id)
        user_node = User.from_row(row) if row else None
    return UserCreatePayload(
        user=user_node,
        token=clear[0] if clear and result.ok else None,
        user_errors=result.user_errors,
    )


@strawberry.type
class AccountMutation:
    """Tokens for oneself; users for admins."""

    api_token_create: ApiTokenCreatePayload = strawberry.mutation(
        resolver=_api_token_create, description="Create an API token for the viewer's user."
    )
    api_token_revoke: ApiTokenRevokePayload = strawberry.mutation(
        resolver=_api_token_revoke, description="Revoke one of the viewer's API tokens (at once)."
    )
    user_create: UserCreatePayload = strawberry.mutation(
        resolver=_user_create,
        description="Admins: create a user (and its namespace if missing) with a first token.",
    )


async def _undo_namespace(info: Info, namespace: str, created: bool) -> None:
    """Delete a namespace this request created, when the rest of the request failed."""
    if not created:
        return
    with contextlib.suppress(KubeError):
        await info.context.services.kube.delete(NAMESPACES, None, namespace)
