"""The migrations build exactly the schema of the models, and can be undone and redone."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text

from app.db.engine import create_engine
from app.db.migrate import current_revision, downgrade, upgrade_to_head
from app.db.models import Base

TABLES = {"users", "api_tokens", "audit_events", "idempotency_keys"}


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "target_metadata": Base.metadata}
    )
    return list(compare_metadata(context, Base.metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names()) - {"alembic_version"}


async def _schema(url: str) -> tuple[set[str], list[Any]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            tables = await connection.run_sync(_tables)
            differences = await connection.run_sync(_differences)
    finally:
        await engine.dispose()
    return tables, differences


async def _head() -> str:
    from alembic.script import ScriptDirectory

    from app.db.migrate import alembic_config

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


@pytest.mark.postgres
async def test_postgres_upgrade_downgrade_upgrade(pg_url: str) -> None:
    assert await current_revision(pg_url) is None

    await upgrade_to_head(pg_url)
    tables, differences = await _schema(pg_url)
    assert tables == TABLES
    assert differences == []
    assert await current_revision(pg_url) == await _head()

    await upgrade_to_head(pg_url)  # already current: nothing to do
    assert await current_revision(pg_url) == await _head()

    await downgrade(pg_url, "base")
    tables, _ = await _schema(pg_url)
    assert tables == set()
    assert await current_revision(pg_url) is None
    engine = create_engine(pg_url)
    try:
        async with engine.connect() as connection:
            leftover = await connection.scalar(
                text("SELECT count(*) FROM pg_proc WHERE proname = 'audit_events_append_only'")
            )
        assert leftover == 0
    finally:
        await engine.dispose()

    await upgrade_to_head(pg_url)
    tables, differences = await _schema(pg_url)
    assert tables == TABLES
    assert differences == []


@pytest.mark.postgres
async def test_postgres_concurrent_upgrades_are_serialised(pg_url: str) -> None:
    # Several servers starting at once: one migrates, the others find the schema current.
    await asyncio.gather(*(upgrade_to_head(pg_url) for _ in range(3)))
    tables, differences = await _schema(pg_url)
    assert tables == TABLES
    assert differences == []


async def test_sqlite_upgrade_matches_models(sqlite_url: str) -> None:
    await upgrade_to_head(sqlite_url)
    tables, differences = await _schema(sqlite_url)
    assert tables == TABLES
    assert differences == []

    await downgrade(sqlite_url, "base")
    tables, _ = await _schema(sqlite_url)
    assert tables == set()

    await upgrade_to_head(sqlite_url)
    tables, differences = await _schema(sqlite_url)
    assert tables == TABLES
    assert differences == []


async def test_migrations_do_not_depend_on_working_directory(
    sqlite_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    await upgrade_to_head(sqlite_url)
    assert await current_revision(sqlite_url) == await _head()


async def test_sqlite_creates_the_folder_of_its_file(tmp_path: Any) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'a' / 'b' / 'devbox.db'}"
    await upgrade_to_head(url)
    assert (tmp_path / "a" / "b" / "devbox.db").is_file()
