"""Users and their API tokens: create, list, revoke, and authenticate a token.

Tokens are generated and hashed by :mod:`app.db.tokens`; the clear token is returned once by
:func:`create_token` and never stored.  :func:`authenticate` finds a token by its hash and
refuses expired and revoked tokens and disabled users; it records ``last_used_at`` at most
once per :data:`LAST_USED_RESOLUTION` per token, so authentication stays one read in the
common case.

Errors::

    AccountError            a request about users/tokens that cannot be done
     ├── UserExists         a user with that name exists
     └── NoSuchUser         no user with that name
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import ApiToken, Role, User, utcnow
from app.db.tokens import display_prefix, generate_token, hash_token, looks_like_token

LAST_USED_RESOLUTION = timedelta(minutes=1)
"""``last_used_at`` is written when it is older than this (not on every request)."""


class AccountError(Exception):
    """A user or token operation that cannot be done; the message says why."""


class UserExists(AccountError):
    """A user with that name already exists."""


class NoSuchUser(AccountError):
    """No user has that name."""


@dataclass(frozen=True)
class TokenOwner:
    """Who a valid token belongs to (what :func:`authenticate` returns)."""

    user_id: str
    user_name: str
    namespace: str
    role: Role
    token_id: str
    expires_at: datetime | None


async def create_user(
    session: AsyncSession, *, name: str, namespace: str, role: Role = Role.USER
) -> User:
    """Add a user (flushed; the caller commits); :class:`UserExists` if the name is taken."""
    existing = await session.scalar(select(User.id).where(User.name == name))
    if existing is not None:
        raise UserExists(f"a user named {name!r} already exists")
    user = User(name=name, namespace=namespace, role=role.value)
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise UserExists(f"a user named {name!r} already exists") from exc
    return user


async def get_user(session: AsyncSession, name: str) -> User:
    """The user named ``name``; :class:`NoSuchUser` if there is none."""
    user = await session.scalar(select(User).where(User.name == name))
    if user is None:
        raise NoSuchUser(f"no user named {name!r}")
    return user


async def has_admin(session: AsyncSession) -> bool:
    """True when at least one enabled admin exists."""
    found = await session.scalar(
        select(User.id).where(User.role == Role.ADMIN.value, User.disabled_at.is_(None)).limit(1)
    )
    return found is not None


async def create_token(
    session: AsyncSession,
    user: User,
    *,
    name: str,
    expires_in_days: int | None = None,
    now: datetime | None = None,
) -> tuple[ApiToken, str]:
    """A new token for ``user`` (flushed; the caller commits) and its clear text, shown once."""
    clear = generate_token()
    created = now or utcnow()
    token = ApiToken(
        user_id=user.id,
        name=name,
        token_hash=hash_token(clear),
        prefix=display_prefix(clear),
        created_at=created,
        expires_at=created + timedelta(days=expires_in_days) if expires_in_days else None,
    )
    session.add(token)
    await session.flush()
    return token, clear


async def list_tokens(session: AsyncSession, user_id: str) -> list[ApiToken]:
    """The user's tokens, newest first (revoked and expired ones included)."""
    rows = await session.scalars(
        select(ApiToken)
        .where(ApiToken.user_id == user_id)
        .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
    )
    return list(rows)


async def revoke_token(
    session: AsyncSession, *, user_id: str, token_id: str, now: datetime | None = None
) -> ApiToken | None:
    """Revoke the user's token ``token_id`` (idempotent); None if the user has no such token.

    The caller commits.
    """
    token = await session.scalar(
        select(ApiToken).where(ApiToken.id == token_id, ApiToken.user_id == user_id)
    )
    if token is None:
        return None
    if token.revoked_at is None:
        token.revoked_at = now or utcnow()
        await session.flush()
    return token


async def authenticate(
    session: AsyncSession, token: str, *, now: datetime | None = None
) -> TokenOwner | None:
    """Who ``token`` belongs to, or None (unknown, malformed, expired, revoked, user disabled).

    Commits the ``last_used_at`` update when one is due.
    """
    if not looks_like_token(token):
        return None
    current = now or utcnow()
    row = (
        await session.execute(
            select(ApiToken, User)
            .join(User, User.id == ApiToken.user_id)
            .where(ApiToken.token_hash == hash_token(token))
        )
    ).one_or_none()
    if row is None:
        return None
    api_token, user = row
    if api_token.revoked_at is not None or user.disabled_at is not None:
        return None
    if api_token.expires_at is not None and api_token.expires_at <= current:
        return None
    last_used = api_token.last_used_at
    if last_used is None or current - last_used >= LAST_USED_RESOLUTION:
        await session.execute(
            update(ApiToken).where(ApiToken.id == api_token.id).values(last_used_at=current)
        )
        await session.commit()
    return TokenOwner(
        user_id=user.id,
        user_name=user.name,
        namespace=user.namespace,
        role=Role(user.role),
        token_id=api_token.id,
        expires_at=api_token.expires_at,
    )
