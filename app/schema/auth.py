"""Authentication of API requests: bearer tokens on HTTP, ``connection_init`` on WebSockets.

:class:`Authenticator` turns a clear token into a :class:`~app.schema.context.Viewer` through
:func:`app.db.users.authenticate`, remembering verified tokens for a few seconds
(``auth_cache_seconds``) so a busy client costs no database read per request.  Revoking a
token through this process forgets it at once (:meth:`Authenticator.forget_token`).
Only the token's SHA-256 is used as the cache key; the clear token is never kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.models import utcnow
from app.db.tokens import hash_token
from app.db.users import TokenOwner, authenticate
from app.schema.context import Services, Viewer

MAX_CACHED = 10_000
"""Verified tokens remembered at most (the cache is cleared when full)."""


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value, or None."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def connection_token(payload: Mapping[str, object]) -> str | None:
    """The token in a WebSocket ``connection_init`` payload.

    Accepted forms: ``{"authorization": "Bearer <token>"}`` (also ``Authorization``) and
    ``{"token": "<token>"}``.
    """
    for key in ("authorization", "Authorization"):
        value = payload.get(key)
        if isinstance(value, str):
            return bearer_token(value)
    token = payload.get("token")
    if isinstance(token, str) and token:
        return token
    return None


@dataclass
class _Cached:
    viewer: Viewer
    until: float
    owner: TokenOwner


class Authenticator:
    """Verifies tokens against the database, with a short in-process cache."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        cache_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache: dict[str, _Cached] = {}

    async def viewer(self, token: str | None) -> Viewer | None:
        """The viewer ``token`` authenticates, or None (missing, unknown, expired, revoked)."""
        if not token:
            return None
        key = hash_token(token)
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None:
            expires = cached.owner.expires_at
            if cached.until > now and (expires is None or expires > utcnow()):
                return cached.viewer
            del self._cache[key]
        async with self._sessionmaker() as session:
            owner = await authenticate(session, token)
        if owner is None:
            return None
        viewer = Viewer(
            user_id=owner.user_id,
            user_name=owner.user_name,
            namespace=owner.namespace,
            role=owner.role,
            token_id=owner.token_id,
        )
        if self._cache_seconds > 0:
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
            self._cache[key] = _Cached(viewer, now + self._cache_seconds, owner)
        return viewer

    def forget_token(self, token_id: str) -> None:
        """Stop trusting a cached token (after it was revoked)."""
        for key in [k for k, c in self._cache.items() if c.viewer.token_id == token_id]:
            del self._cache[key]

    def forget_user(self, user_id: str) -> None:
        """Stop trusting cached tokens of a user (after the user was disabled)."""
        for key in [k for k, c in self._cache.items() if c.viewer.user_id == user_id]:
            del self._cache[key]


def authenticator_of(services: Services) -> Authenticator:
    """The process's :class:`Authenticator` (kept in ``services.extras``; made on first use)."""
    found = services.extras.get("authenticator")
    if isinstance(found, Authenticator):
        return found
    created = Authenticator(
        services.sessionmaker, cache_seconds=services.settings.auth_cache_seconds
    )
    services.extras["authenticator"] = created
    return created
