"""Idempotency keys in the database: claims, replays, expiry and abandoned claims."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import idempotency
from app.db.engine import create_engine, session_factory
from app.db.idempotency import ClaimState
from app.db.models import utcnow
from app.db.users import create_token, create_user

Database = tuple[async_sessionmaker[AsyncSession], str]


@pytest.fixture(params=["postgresql", "sqlite"])
async def database(
    request: pytest.FixtureRequest, pg_migrated_url: str, sqlite_migrated_url: str
) -> AsyncIterator[Database]:
    """Sessions on a migrated database (PostgreSQL, then SQLite), and one token's id."""
    url = pg_migrated_url if request.param == "postgresql" else sqlite_migrated_url
    engine = create_engine(url)
    sessions = session_factory(engine)
    async with sessions() as session:
        user = await create_user(session, name="alice", namespace="ns")
        token, _ = await create_token(session, user, name="t")
        await session.commit()
    try:
        yield sessions, token.id
    finally:
        await engine.dispose()


async def test_claim_then_replay_then_mismatch(database: Database) -> None:
    sessions, token_id = database
    hashed = idempotency.request_hash("a", {"x": 1})
    first = await idempotency.claim(
        sessions, token_id=token_id, key="k", action="a", hashed_request=hashed
    )
    assert first.state is ClaimState.CLAIMED
    running = await idempotency.claim(
        sessions, token_id=token_id, key="k", action="a", hashed_request=hashed
    )
    assert running.state is ClaimState.PENDING
    async with sessions() as session:
        await idempotency.store(session, token_id=token_id, key="k", response={"ok": 1})
        await session.commit()
    done = await idempotency.claim(
        sessions, token_id=token_id, key="k", action="a", hashed_request=hashed
    )
    assert (done.state, done.response) == (ClaimState.DONE, {"ok": 1})
    other = idempotency.request_hash("a", {"x": 2})
    mismatch = await idempotency.claim(
        sessions, token_id=token_id, key="k", action="a", hashed_request=other
    )
    assert mismatch.state is ClaimState.MISMATCH


async def test_keys_expire_after_a_day_and_abandoned_claims_are_taken_over(
    database: Database,
) -> None:
    sessions, token_id = database
    hashed = idempotency.request_hash("a", {})
    long_ago = utcnow() - timedelta(hours=25)
    await idempotency.claim(
        sessions, token_id=token_id, key="old", action="a", hashed_request=hashed, now=long_ago
    )
    async with sessions() as session:
        await idempotency.store(session, token_id=token_id, key="old", response={})
        await session.commit()
    again = await idempotency.claim(
        sessions, token_id=token_id, key="old", action="a", hashed_request=hashed
    )
    assert again.state is ClaimState.CLAIMED
    await idempotency.claim(
        sessions,
        token_id=token_id,
        key="stuck",
        action="a",
        hashed_request=hashed,
        now=utcnow() - idempotency.PENDING_TIMEOUT - timedelta(seconds=1),
    )
    taken = await idempotency.claim(
        sessions, token_id=token_id, key="stuck", action="a", hashed_request=hashed
    )
    assert taken.state is ClaimState.CLAIMED


async def test_purge_deletes_only_expired_keys(database: Database) -> None:
    sessions, token_id = database
    hashed = idempotency.request_hash("a", {})
    for key, when in (("old", utcnow() - timedelta(hours=25)), ("new", utcnow())):
        await idempotency.claim(
            sessions, token_id=token_id, key=key, action="a", hashed_request=hashed, now=when
        )
    async with sessions() as session:
        assert await idempotency.purge_expired(session) == 1
        await session.commit()
    kept = await idempotency.claim(
        sessions, token_id=token_id, key="new", action="a", hashed_request=hashed
    )
    assert kept.state is ClaimState.PENDING


def test_request_hash_ignores_key_order_but_not_values() -> None:
    assert idempotency.request_hash("a", {"x": 1, "y": 2}) == idempotency.request_hash(
        "a", {"y": 2, "x": 1}
    )
    assert idempotency.request_hash("a", {"x": 1}) != idempotency.request_hash("b", {"x": 1})
    assert idempotency.request_hash("a", {"x": 1}) != idempotency.request_hash("a", {"x": "1"})
