"""Idempotency keys: the first result of a mutation, replayed when a client retries it.

A key belongs to a token.  :func:`claim` inserts a *pending* row for ``(token, key)`` and
commits at once: the primary key makes that insert the lock, so of two requests sent with
the same key at the same time exactly one claims it, and the other sees the row (pending,
then done).  The owner acts, then :func:`store` writes the result (in the same transaction
as the audit row); if it cannot finish, :func:`release` deletes the pending row so a retry
may act.

Rows live :data:`KEY_TTL` (24 h): an expired row is replaced by a new claim.  A pending row
older than :data:`PENDING_TIMEOUT` belongs to a request that died mid-way (process killed,
database lost before the result was stored); a new claim takes it over.

Requests are compared by :func:`request_hash` (the action and its canonical JSON input), so a
key reused for a different request is detected (:attr:`ClaimState.MISMATCH`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.models import IdempotencyKey, utcnow

KEY_TTL = timedelta(hours=24)
"""How long a key's result is replayed."""

PENDING_TIMEOUT = timedelta(minutes=5)
"""After this a still-pending claim counts as abandoned and may be taken over."""

_STATE = "state"
_PENDING = "pending"
_DONE = "done"


class ClaimState(Enum):
    """What :func:`claim` found."""

    CLAIMED = "claimed"
    """The caller owns the key now: act, then :func:`store` or :func:`release`."""
    DONE = "done"
    """The same request already ran: ``Claim.response`` is its result."""
    PENDING = "pending"
    """The same request is running right now in another request."""
    MISMATCH = "mismatch"
    """The key was used for a different request (another action or input)."""


@dataclass(frozen=True)
class Claim:
    """The answer of :func:`claim`."""

    state: ClaimState
    response: dict[str, Any] | None = None


def request_hash(action: str, input: Mapping[str, Any]) -> str:
    """Hex SHA-256 of the action and its input as canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(
        {"action": action, "input": input},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


async def claim(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    token_id: str,
    key: str,
    action: str,
    hashed_request: str,
    now: datetime | None = None,
) -> Claim:
    """Claim ``key`` for this request, or say what an earlier request with it left.

    Commits its own short transactions (the claim must be visible to concurrent requests
    before the caller acts).
    """
    for _ in range(3):
        current = now or utcnow()
        async with sessionmaker() as session:
            session.add(
                IdempotencyKey(
                    token_id=token_id,
                    key=key,
                    action=action,
                    request_hash=hashed_request,
                    response={_STATE: _PENDING},
                    created_at=current,
                )
            )
            try:
                await session.commit()
                return Claim(ClaimState.CLAIMED)
            except IntegrityError:
                await session.rollback()
            row = await session.get(IdempotencyKey, (token_id, key), populate_existing=True)
            if row is None:
                continue  # released or expired in between: try again
            pending = row.response.get(_STATE) != _DONE
            stale = current - row.created_at > (PENDING_TIMEOUT if pending else KEY_TTL)
            if stale:
                await session.execute(
                    delete(IdempotencyKey).where(
                        IdempotencyKey.token_id == token_id,
                        IdempotencyKey.key == key,
                        IdempotencyKey.created_at == row.created_at,
                    )
                )
                await session.commit()
                continue
            if row.request_hash != hashed_request or row.action != action:
                return Claim(ClaimState.MISMATCH)
            if pending:
                return Claim(ClaimState.PENDING)
            result = row.response.get("result")
            return Claim(ClaimState.DONE, result if isinstance(result, dict) else {})
    # Three races lost in a row: report it as running elsewhere; the caller retries later.
    return Claim(ClaimState.PENDING)


async def store(
    session: AsyncSession, *, token_id: str, key: str, response: dict[str, Any]
) -> None:
    """Record the result of a claimed key in ``session`` (the caller commits)."""
    await session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.token_id == token_id, IdempotencyKey.key == key)
        .values(response={_STATE: _DONE, "result": response})
    )


async def release(
    sessionmaker: async_sessionmaker[AsyncSession], *, token_id: str, key: str
) -> None:
    """Give up a claim that produced no result (so a retry may act)."""
    async with sessionmaker() as session:
        await session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.token_id == token_id, IdempotencyKey.key == key
            )
        )
        await session.commit()


async def purge_expired(session: AsyncSession, *, now: datetime | None = None) -> int:
    """Delete rows older than :data:`KEY_TTL`; the number deleted.  The caller commits."""
    cutoff = (now or utcnow()) - KEY_TTL
    result = await session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)
