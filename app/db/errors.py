"""Errors of the database layer, and translation of driver errors at its boundary.

Exception tree::

    DatabaseError              any failure of the database layer that callers may handle
     ├── InvalidDatabaseUrl    the URL cannot be used (unknown driver, malformed)
     ├── DatabaseUnavailable   the database cannot be reached or refuses us (down, wrong
     │                         address, unknown database or role, bad password, overloaded)
     └── MigrationFailed       alembic could not bring the schema to the wanted revision

Messages name the database with its password hidden and say what a person can do; the
original driver error stays available as ``__cause__`` for the logs.  Anything not listed here
(a constraint violation, a bug in a query) is left as the SQLAlchemy error it is.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

# SQLSTATE values (or two-character classes) meaning "cannot use this database right now".
_UNAVAILABLE_SQLSTATES = (
    "08",  # connection exception
    "28",  # invalid authorization specification (unknown role, bad password)
    "3D000",  # invalid catalog name: the database does not exist
    "53",  # insufficient resources (too many connections, disk full)
    "57P",  # operator intervention: shutdown, cannot connect now
)

# SQLite messages meaning "cannot use the database file".
_SQLITE_UNAVAILABLE = (
    "unable to open database file",
    "database is locked",
    "disk i/o error",
    "database or disk is full",
    "readonly database",
    "file is not a database",
    "database disk image is malformed",
)


class DatabaseError(Exception):
    """Base of all errors raised by :mod:`app.db`."""


class InvalidDatabaseUrl(DatabaseError):
    """The database URL names a driver we do not support, or cannot be parsed."""


class DatabaseUnavailable(DatabaseError):
    """The database cannot be reached, does not exist, or refuses our credentials."""


class MigrationFailed(DatabaseError):
    """Alembic failed while changing the schema; the message names the target revision."""


def safe_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, fit for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sa_exc.ArgumentError:
        return "<unparseable database URL>"


def _sqlstate(error: sa_exc.DBAPIError) -> str | None:
    """The SQLSTATE of a wrapped driver error (asyncpg sets ``sqlstate``), if any."""
    for candidate in (error.orig, getattr(error.orig, "__cause__", None)):
        code = getattr(candidate, "sqlstate", None)
        if isinstance(code, str):
            return code
    return None


def is_unavailable(error: BaseException) -> bool:
    """True when ``error`` means the database cannot be used at all (not a query bug)."""
    if isinstance(error, OSError):
        return True
    if isinstance(error, sa_exc.DBAPIError):
        if error.connection_invalidated:
            return True
        if isinstance(error, sa_exc.InterfaceError):
            return True
        state = _sqlstate(error)
        if state is not None:
            return state.startswith(_UNAVAILABLE_SQLSTATES)
        if isinstance(error, sa_exc.OperationalError):
            # SQLite reports both "cannot use the file" and SQL mistakes as OperationalError.
            message = str(error.orig).lower()
            return any(fragment in message for fragment in _SQLITE_UNAVAILABLE)
    return False


def _reason(error: BaseException) -> str:
    """A short human reason for an unavailable database."""
    if isinstance(error, ConnectionRefusedError):
        return "connection refused (is the server running and listening on that port?)"
    if isinstance(error, socket.gaierror):
        return f"unknown host ({error.strerror or error})"
    if isinstance(error, TimeoutError):
        return "timed out while connecting (is the host reachable?)"
    if isinstance(error, OSError):
        return error.strerror or str(error) or type(error).__name__
    if isinstance(error, sa_exc.DBAPIError):
        return str(error.orig) if error.orig is not None else str(error)
    return str(error) or type(error).__name__


def unavailable(url: str, error: BaseException) -> DatabaseUnavailable:
    """A :class:`DatabaseUnavailable` for ``url`` explaining ``error`` in one line."""
    return DatabaseUnavailable(f"database {safe_url(url)} is unavailable: {_reason(error)}")


@contextmanager
def translate_errors(url: str, *, connecting: bool = False) -> Iterator[None]:
    """Turn driver errors meaning "database unavailable" into :class:`DatabaseUnavailable`.

    With ``connecting=True`` (around opening a connection) every driver error counts as
    unavailable; otherwise other errors (constraint violations, programming errors) pass
    through unchanged.
    """
    try:
        yield
    except DatabaseError:
        raise
    except (OSError, sa_exc.DBAPIError) as error:
        if connecting or is_unavailable(error):
            raise unavailable(url, error) from error
        raise
