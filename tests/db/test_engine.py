"""Engine creation, URL handling, and errors of a database that cannot be used."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from sqlalchemy import text

from app.db.engine import create_engine, normalize_url, ping, session_factory
from app.db.errors import DatabaseError, DatabaseUnavailable, InvalidDatabaseUrl, MigrationFailed
from app.db.migrate import upgrade_to_head
from app.db.tokens import display_prefix, generate_token, hash_token, looks_like_token


def _closed_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_database_down_is_unavailable() -> None:
    url = f"postgresql+asyncpg://postgres:s3cret@127.0.0.1:{_closed_port()}/devbox"
    engine = create_engine(url)
    try:
        with pytest.raises(DatabaseUnavailable) as caught:
            await ping(engine)
    finally:
        await engine.dispose()
    message = str(caught.value)
    assert "127.0.0.1" in message
    assert "connection refused" in message
    assert "s3cret" not in message
    assert isinstance(caught.value.__cause__, OSError)


async def test_migrating_a_database_that_is_down_is_unavailable() -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{_closed_port()}/devbox"
    with pytest.raises(DatabaseUnavailable, match="connection refused"):
        await upgrade_to_head(url)


@pytest.mark.postgres
async def test_missing_database_is_unavailable(pg_url: str) -> None:
    url = pg_url.rsplit("/", 1)[0] + "/devbox_no_such_database"
    with pytest.raises(DatabaseUnavailable, match='database "devbox_no_such_database" does not'):
        await upgrade_to_head(url)


async def test_sqlite_folder_that_cannot_be_created_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(DatabaseUnavailable, match="cannot create folder"):
        create_engine(f"sqlite+aiosqlite:///{blocker / 'sub' / 'devbox.db'}")


async def test_sqlite_file_that_is_not_a_database_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "devbox.db"
    path.write_bytes(b"this is not a SQLite file, just some text long enough " * 20)
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        with pytest.raises(DatabaseUnavailable, match="not a database"):
            await ping(engine)
    finally:
        await engine.dispose()


async def test_failing_migration_step_is_migration_failed(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    try:
        async with engine.begin() as connection:
            # A table in the way of the first revision.
            await connection.execute(text("CREATE TABLE users (id INTEGER PRIMARY KEY)"))
    finally:
        await engine.dispose()
    with pytest.raises(MigrationFailed, match="upgrade to head of database") as caught:
        await upgrade_to_head(sqlite_url)
    assert "users" in str(caught.value)


async def test_sqlite_enforces_foreign_keys(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    try:
        async with session_factory(engine)() as session:
            enabled = await session.scalar(text("PRAGMA foreign_keys"))
        assert enabled == 1
    finally:
        await engine.dispose()


def test_session_factory_keeps_objects_after_commit(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    assert session_factory(engine).kw["expire_on_commit"] is False


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@h:5432/d", "postgresql+asyncpg://u:p@h:5432/d"),
        ("postgres://u@h/d", "postgresql+asyncpg://u@h/d"),
        ("postgresql+asyncpg://u@h/d", "postgresql+asyncpg://u@h/d"),
        ("sqlite:////var/lib/devbox.db", "sqlite+aiosqlite:////var/lib/devbox.db"),
        ("sqlite+aiosqlite:///rel.db", "sqlite+aiosqlite:///rel.db"),
    ],
)
def test_normalize_url(given: str, expected: str) -> None:
    assert normalize_url(given) == expected


@pytest.mark.parametrize("url", ["mysql://u:pw@h/d", "postgresql+psycopg2://u:pw@h/d", "nonsense"])
def test_unsupported_url_is_refused_without_password(url: str) -> None:
    with pytest.raises(InvalidDatabaseUrl) as caught:
        create_engine(url)
    assert isinstance(caught.value, DatabaseError)
    assert "pw" not in str(caught.value)


def test_tokens() -> None:
    first, second = generate_token(), generate_token()
    assert first != second
    assert first.startswith("dbx_")
    assert looks_like_token(first)
    assert not looks_like_token("dbx_short")
    assert len(hash_token(first)) == 64
    assert hash_token(first) == hash_token(first)
    assert hash_token(first) != hash_token(second)
    assert first not in hash_token(first)
    assert display_prefix(first) == first[:8]
