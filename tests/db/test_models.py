"""Rows of every table can be written and read back, and the data rules hold.

Runs on PostgreSQL and on SQLite (the embedded default), each migrated to head.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from app.db.audit import append_audit_event
from app.db.engine import create_engine, session_factory
from app.db.models import ApiToken, AuditEvent, IdempotencyKey, Outcome, Role, User
from app.db.tokens import display_prefix, generate_token, hash_token


@pytest.fixture(params=["postgresql", "sqlite"])
def db_url(request: pytest.FixtureRequest) -> str:
    """A migrated database of each kind (PostgreSQL tests carry the ``postgres`` mark)."""
    if request.param == "postgresql":
        request.applymarker(pytest.mark.postgres)
        return str(request.getfixturevalue("pg_migrated_url"))
    return str(request.getfixturevalue("sqlite_migrated_url"))


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A session factory on the database of ``db_url``."""
    engine = create_engine(db_url)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


async def _user(session: AsyncSession, name: str = "ada", role: Role = Role.USER) -> User:
    user = User(name=name, namespace=f"u-{name}", role=role)
    session.add(user)
    await session.flush()
    return user


async def _token(session: AsyncSession, user: User, clear: str | None = None) -> ApiToken:
    clear = clear or generate_token()
    token = ApiToken(
        user_id=user.id, name="laptop", token_hash=hash_token(clear), prefix=display_prefix(clear)
    )
    session.add(token)
    await session.flush()
    return token


async def test_user_round_trip(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions.begin() as session:
        user = await _user(session, "grace", Role.ADMIN)
        user_id = user.id
    async with sessions() as session:
        loaded = await session.get_one(User, user_id)
    assert loaded.name == "grace"
    assert loaded.namespace == "u-grace"
    assert loaded.role == Role.ADMIN
    assert loaded.disabled_at is None
    assert loaded.created_at.tzinfo is not None
    assert abs(datetime.now(UTC) - loaded.created_at) < timedelta(minutes=1)


async def test_user_name_is_unique(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions.begin() as session:
        await _user(session, "ada")
    with pytest.raises(IntegrityError):
        async with sessions.begin() as session:
            await _user(session, "ada")


async def test_user_role_is_checked(sessions: async_sessionmaker[AsyncSession]) -> None:
    with pytest.raises(IntegrityError):
        async with sessions.begin() as session:
            session.add(User(name="eve", namespace="u-eve", role="root"))


async def test_token_is_stored_hashed(sessions: async_sessionmaker[AsyncSession]) -> None:
    clear = generate_token()
    expires = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    async with sessions.begin() as session:
        user = await _user(session)
        token = await _token(session, user, clear)
        token.expires_at = expires
        token_id = token.id

    async with sessions() as session:
        found = await session.scalar(
            select(ApiToken)
            .where(ApiToken.token_hash == hash_token(clear))
            .options(selectinload(ApiToken.user))
        )
        assert found is not None
        assert found.id == token_id
        assert found.user.name == "ada"
        assert found.prefix == clear[:8]
        assert found.expires_at == expires
        assert found.revoked_at is None
        assert found.last_used_at is None
        # The clear token appears in no column of any row.
        rows = (await session.execute(text("SELECT * FROM api_tokens"))).all()
    cells = [str(cell) for row in rows for cell in row]
    assert cells
    assert not [cell for cell in cells if clear in cell]
    assert not [cell for cell in cells if clear[8:] in cell]


async def test_token_hash_is_unique(sessions: async_sessionmaker[AsyncSession]) -> None:
    clear = generate_token()
    async with sessions.begin() as session:
        user = await _user(session)
        await _token(session, user, clear)
    async with sessions.begin() as session:
        other = await _user(session, "bob")
    with pytest.raises(IntegrityError):
        async with sessions.begin() as session:
            await _token(session, other, clear)


async def test_deleting_a_user_deletes_its_tokens_and_keys(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions.begin() as session:
        user = await _user(session)
        other = await _user(session, "bob")
        token = await _token(session, user)
        await _token(session, user)
        kept = await _token(session, other)
        session.add(
            IdempotencyKey(
                token_id=token.id,
                key="k1",
                action="devboxCreate",
                request_hash="0" * 64,
                response={"devbox": {"name": "x"}},
            )
        )
        user_id, kept_id = user.id, kept.id

    async with sessions.begin() as session:
        # A bulk delete: the database's ON DELETE CASCADE does the work, not the ORM.
        await session.execute(delete(User).where(User.id == user_id))

    async with sessions() as session:
        tokens = (await session.scalars(select(ApiToken.id))).all()
        keys = (await session.scalars(select(IdempotencyKey.key))).all()
    assert tokens == [kept_id]
    assert keys == []


async def test_token_needs_an_existing_user(sessions: async_sessionmaker[AsyncSession]) -> None:
    with pytest.raises(IntegrityError):
        async with sessions.begin() as session:
            session.add(ApiToken(user_id="no-such-user", name="x", token_hash="a" * 64, prefix="x"))


async def test_audit_event_keeps_its_input(sessions: async_sessionmaker[AsyncSession]) -> None:
    payload = {
        "name": "web",
        "runtime": {"image": "python:3.11", "ports": [8080, 9090]},
        "env": [{"name": "TOKEN", "value": "[redacted]"}],
        "unicode": "héllo ✓",
        "nothing": None,
        "flag": True,
    }
    async with sessions.begin() as session:
        first = await append_audit_event(
            session,
            actor_user="ada",
            actor_token_id="t-1",
            namespace="u-ada",
            action="devboxCreate",
            target_kind="Devbox",
            target_name="web",
            request_id="req-1",
            client_address="192.0.2.1",
            user_agent="x" * 2000,
            input=payload,
            outcome=Outcome.SUCCESS,
        )
        second = await append_audit_event(
            session,
            actor_user="ada",
            namespace="u-ada",
            action="devboxDelete",
            target_kind="Devbox",
            target_name="web",
            request_id="req-2",
            outcome="failure",
            error_code="NOT_FOUND",
        )
        assert second.id > first.id

    async with sessions() as session:
        events = (await session.scalars(select(AuditEvent).order_by(AuditEvent.id))).all()
    assert [event.action for event in events] == ["devboxCreate", "devboxDelete"]
    assert events[0].input == payload
    assert events[0].user_agent == "x" * 512
    assert events[0].outcome == Outcome.SUCCESS
    assert events[0].time.tzinfo is not None
    assert events[1].input == {}
    assert events[1].error_code == "NOT_FOUND"
    assert events[1].actor_token_id is None


async def test_audit_events_are_append_only(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions.begin() as session:
        event = await append_audit_event(
            session,
            actor_user="ada",
            namespace="u-ada",
            action="devboxCreate",
            target_kind="Devbox",
            target_name="web",
            request_id="req-1",
            outcome=Outcome.SUCCESS,
        )
        event_id = event.id
    with pytest.raises(DBAPIError, match="append-only"):
        async with sessions.begin() as session:
            await session.execute(
                update(AuditEvent).where(AuditEvent.id == event_id).values(outcome="failure")
            )
    with pytest.raises(DBAPIError, match="append-only"):
        async with sessions.begin() as session:
            await session.execute(delete(AuditEvent).where(AuditEvent.id == event_id))


async def test_idempotency_key_round_trip(sessions: async_sessionmaker[AsyncSession]) -> None:
    response = {"devboxCreate": {"devbox": {"name": "web"}, "userErrors": []}}
    async with sessions.begin() as session:
        token = await _token(session, await _user(session))
        session.add(
            IdempotencyKey(
                token_id=token.id,
                key="retry-1",
                action="devboxCreate",
                request_hash="f" * 64,
                response=response,
            )
        )
        token_id = token.id
    async with sessions() as session:
        stored = await session.get_one(IdempotencyKey, (token_id, "retry-1"))
    assert stored.response == response
    assert stored.action == "devboxCreate"
    assert stored.created_at.tzinfo is not None
    with pytest.raises(IntegrityError):
        async with sessions.begin() as session:
            session.add(
                IdempotencyKey(
                    token_id=token_id,
                    key="retry-1",
                    action="devboxCreate",
                    request_hash="e" * 64,
                    response={},
                )
            )


async def test_naive_times_are_refused(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        user = await _user(session)
        user.disabled_at = datetime(2030, 1, 1)
        with pytest.raises(StatementError, match="naive datetime"):
            await session.flush()
