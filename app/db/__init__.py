"""The database layer: models, engine, migrations, and the few rules that belong to the data.

One async engine per process (:func:`app.db.engine.create_engine`), one session per request or
task (:func:`app.db.engine.session_factory`), schema changes only through alembic
(:func:`app.db.migrate.upgrade_to_head`, run by the server at start-up).  SQLite
(``sqlite+aiosqlite``, the embedded default) and PostgreSQL (``postgresql+asyncpg``) are both
supported with the same models and migrations.  Driver errors are turned into the typed
errors of :mod:`app.db.errors` at this boundary.
"""
