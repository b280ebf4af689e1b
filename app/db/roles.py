"""User roles, in a module of their own so the command line can name them without loading
the database layer (``devboxctl ssh-proxy`` starts on every SSH connection)."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """What a user may do: ``user`` works in its namespace, ``admin`` also manages users."""

    USER = "user"
    ADMIN = "admin"
