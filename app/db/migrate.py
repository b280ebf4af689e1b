"""Running alembic migrations from the program (the server upgrades at start-up).

The alembic configuration is found relative to this package (``<repo>/alembic.ini`` and
``<repo>/migrations``), never the working directory.  The migration runs on a connection
opened here and handed to ``migrations/env.py`` through ``Config.attributes``, so the same
code serves SQLite and PostgreSQL and runs inside the caller's event loop.  On PostgreSQL a
transaction-scoped advisory lock serialises servers that start at the same time.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, text
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db.engine import create_engine, normalize_url
from app.db.errors import (
    DatabaseError,
    MigrationFailed,
    is_unavailable,
    safe_url,
    translate_errors,
    unavailable,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
ALEMBIC_INI = REPO_ROOT / "alembic.ini"
MIGRATIONS_DIR = REPO_ROOT / "migrations"

MIGRATION_LOCK_KEY = 0x64657662  # "devb"
"""PostgreSQL advisory lock held while migrating."""


def alembic_config(url: str | None = None) -> Config:
    """The alembic configuration of the repository, with an absolute script location.

    ``url`` (if given) becomes ``sqlalchemy.url``; ``env.py`` otherwise reads the settings.
    Logging is left alone (``configure_logger`` is false): the program has its own.
    """
    if not (MIGRATIONS_DIR / "env.py").is_file():
        raise MigrationFailed(f"migrations folder not found at {MIGRATIONS_DIR}")
    config = Config(str(ALEMBIC_INI)) if ALEMBIC_INI.is_file() else Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolates "%": escape it (URL-encoded passwords contain it).
        config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    config.attributes["configure_logger"] = False
    return config


async def _run(url: str, what: str, operation: str, revision: str) -> None:
    """Open a connection to ``url`` and run ``command.<operation>(revision)`` on it."""
    config = alembic_config(url)
    engine = create_engine(url)
    try:
        with translate_errors(url, connecting=True):
            connection = await engine.connect()
        try:
            async with connection.begin():
                if connection.dialect.name == "postgresql":
                    await connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                    )
                await connection.run_sync(_run_command, config, operation, revision)
        except DatabaseError:
            raise
        except Exception as error:
            if is_unavailable(error):
                raise unavailable(url, error) from error
            raise MigrationFailed(
                f"{what} of database {safe_url(url)} failed: {_describe(error)}"
            ) from error
        finally:
            await connection.close()
    finally:
        await engine.dispose()


def _describe(error: Exception) -> str:
    """One line for a failed migration: the driver's message and the statement it ran."""
    if isinstance(error, StatementError):
        statement = " ".join((error.statement or "").split())
        if len(statement) > 200:
            statement = statement[:197] + "..."
        return f"{error.orig} (while running: {statement})"
    return str(error) or type(error).__name__


def _run_command(connection: Connection, config: Config, operation: str, revision: str) -> None:
    config.attributes["connection"] = connection
    getattr(command, operation)(config, revision)


async def upgrade_to_head(url: str) -> None:
    """Bring the schema of ``url`` to the newest revision (a no-op when it is current).

    Raises :class:`DatabaseUnavailable` if the database cannot be reached and
    :class:`MigrationFailed` if a migration step fails (its transaction is rolled back on
    PostgreSQL; SQLite cannot roll back every DDL statement).
    """
    await _run(url, "upgrade to head", "upgrade", "head")


async def downgrade(url: str, revision: str) -> None:
    """Take the schema of ``url`` back to ``revision`` (``"base"``: no tables at all)."""
    await _run(url, f"downgrade to {revision}", "downgrade", revision)


async def current_revision(url: str) -> str | None:
    """The revision the database of ``url`` is at, or None for an empty database."""
    engine = create_engine(url)
    try:
        with translate_errors(url, connecting=True):
            connection: AsyncConnection = await engine.connect()
        try:
            with translate_errors(url):
                return await connection.run_sync(
                    lambda sync: MigrationContext.configure(sync).get_current_revision()
                )
        finally:
            await connection.close()
    finally:
        await engine.dispose()
