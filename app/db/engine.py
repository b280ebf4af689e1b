"""The async engine and session factory: one engine per process, one session per request.

Only two drivers are supported: ``postgresql+asyncpg`` and ``sqlite+aiosqlite``.  The plain
forms users tend to write (``postgresql://``, ``postgres://``, ``sqlite://``) are mapped to
them by :func:`normalize_url`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine

from app.db.errors import (
    DatabaseUnavailable,
    InvalidDatabaseUrl,
    safe_url,
    translate_errors,
)

CONNECT_TIMEOUT_SECONDS = 10.0
"""How long connecting to PostgreSQL may take before the database counts as unavailable."""

SQLITE_BUSY_TIMEOUT_MS = 5000
"""How long SQLite waits for a lock held by another connection before failing."""

_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}


def parse_url(url: str) -> URL:
    """Parse ``url`` and select the async driver; raise :class:`InvalidDatabaseUrl` if unknown."""
    try:
        parsed = make_url(url)
    except ArgumentError as error:
        raise InvalidDatabaseUrl(f"cannot parse database URL {safe_url(url)!r}") from error
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise InvalidDatabaseUrl(
            f"unsupported database URL {safe_url(url)!r}: use postgresql+asyncpg://… "
            "or sqlite+aiosqlite:///path"
        )
    return parsed.set(drivername=driver)


def normalize_url(url: str) -> str:
    """``url`` with the supported async driver spelled out (password kept)."""
    return parse_url(url).render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    """True when ``url`` names a SQLite database."""
    return parse_url(url).get_backend_name() == "sqlite"


def _sqlite_file(parsed: URL) -> Path | None:
    """The file of a SQLite URL, or None for an in-memory database."""
    database = parsed.database
    if not database or database == ":memory:" or parsed.query.get("mode") == "memory":
        return None
    if database.startswith("file:"):
        return None
    return Path(database)


def _enable_sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    """Per connection: enforce foreign keys (SQLite ignores them by default), wait on locks."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def create_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    """Create the process's async engine for ``url`` (no connection is made yet).

    SQLite: the folder of the database file is created, and every connection enforces
    foreign keys.  PostgreSQL: stale pooled connections are detected before use, and
    connecting gives up after :data:`CONNECT_TIMEOUT_SECONDS`.
    """
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = _sqlite_file(parsed)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise DatabaseUnavailable(
                    f"database {safe_url(url)} is unavailable: cannot create folder "
                    f"{path.parent}: {error.strerror or error}"
                ) from error
        engine = _create_async_engine(parsed, echo=echo)
        event.listen(engine.sync_engine, "connect", _enable_sqlite_pragmas)
        return engine
    return _create_async_engine(
        parsed,
        echo=echo,
        pool_pre_ping=True,
        connect_args={"timeout": CONNECT_TIMEOUT_SECONDS},
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions bound to ``engine``; objects stay usable after commit (no implicit reload)."""
    return async_sessionmaker(engine, expire_on_commit=False)


async def ping(engine: AsyncEngine) -> None:
    """Check that the database answers; raise :class:`DatabaseUnavailable` if it does not.

    On SQLite the schema is read, so a file that is not a database is caught too.
    """
    url = engine.url.render_as_string(hide_password=False)
    query = "SELECT count(*) FROM sqlite_master" if engine.dialect.name == "sqlite" else "SELECT 1"
    with translate_errors(url, connecting=True):
        async with engine.connect() as connection:
            await connection.execute(text(query))
