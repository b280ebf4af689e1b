"""Alembic environment of Devbox (async, after alembic's ``async`` template).

Two ways in:

* programmatic (:mod:`app.db.migrate`): the caller opens a connection and passes it as
  ``config.attributes["connection"]``; it owns the transaction and the event loop;
* the ``alembic`` command: the URL is ``sqlalchemy.url`` if set (``-x`` or programmatic
  config), else the server's settings (``DATABASE_URL``, default SQLite file), and this file
  runs its own event loop.

``render_as_batch`` is on for SQLite, whose ``ALTER TABLE`` cannot change columns or
constraints; ``compare_type`` is on so autogenerate sees type changes.
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy.engine import Connection

from app.db.engine import create_engine, normalize_url
from app.db.models import Base, UtcDateTime

config = context.config

if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name)

target_metadata = Base.metadata


def database_url() -> str:
    """The URL to migrate: from the alembic config if given, else the server's settings."""
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        from app.settings import Settings

        url = Settings().effective_database_url
    return normalize_url(url)


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Render our column types as plain SQLAlchemy types in generated revisions."""
    if type_ == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def configure_options(dialect_name: str) -> dict[str, Any]:
    """Options of ``context.configure`` shared by online and offline mode."""
    return {
        "target_metadata": target_metadata,
        "compare_type": True,
        "render_as_batch": dialect_name == "sqlite",
        "render_item": render_item,
    }


def run_migrations_offline() -> None:
    """Emit the SQL of the migrations to standard output (``alembic upgrade head --sql``)."""
    url = database_url()
    context.configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **configure_options(url.split(":", 1)[0].split("+", 1)[0]),
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    """Run the migrations on an open (synchronous facade of an async) connection."""
    context.configure(connection=connection, **configure_options(connection.dialect.name))
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    """Open the app's engine for the URL (SQLite pragmas, timeouts) and run the migrations."""
    connectable = create_engine(database_url())
    try:
        async with connectable.connect() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await connectable.dispose()


def run_migrations_online() -> None:
    """Use the caller's connection if there is one, else connect in a new event loop."""
    connection = config.attributes.get("connection")
    if connection is not None:
        do_run_migrations(connection)
    else:
        asyncio.run(run_async_migrations())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
