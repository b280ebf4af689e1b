"""What a mutation tells the user it could not do: ``UserError`` with a field path and a code.

Top-level GraphQL errors are only for authentication, malformed requests, limits and bugs;
anything the user can fix is a ``UserError`` in the payload's ``userErrors`` list.

Top-level errors a resolver may raise on purpose (shown to the client as they are, with
``extensions.code``; every other exception is a bug and is masked in production)::

    ApiError                 base; ``code`` goes to ``extensions.code``
     ├── Unauthenticated     UNAUTHENTICATED: no valid token on this request or connection
     ├── PermissionDenied    FORBIDDEN: the viewer's role does not allow this field
     └── BadRequest          BAD_REQUEST: an argument the schema cannot express (e.g. ``first``)
"""

from __future__ import annotations

from enum import Enum
from typing import Any, ClassVar

import strawberry


class ApiError(Exception):
    """A top-level GraphQL error whose message is meant for the client (never masked)."""

    code: ClassVar[str] = "BAD_REQUEST"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.extensions: dict[str, Any] = {"code": self.code}


class Unauthenticated(ApiError):
    """No valid API token: send ``Authorization: Bearer <token>``."""

    code = "UNAUTHENTICATED"


class PermissionDenied(ApiError):
    """The viewer's role does not allow this (e.g. a non-admin reading all namespaces)."""

    code = "FORBIDDEN"


class BadRequest(ApiError):
    """An argument is out of range or malformed in a way the schema cannot express."""

    code = "BAD_REQUEST"


@strawberry.enum(description="Why a mutation input was refused.")
class UserErrorCode(Enum):
    INVALID = "INVALID"
    """The value has the wrong form (a name, a quantity, an env name…)."""
    REQUIRED = "REQUIRED"
    TOO_LONG = "TOO_LONG"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    """A number or quantity outside the allowed minimum/maximum."""
    DUPLICATE = "DUPLICATE"
    """Two items of a list share what must be unique (a port number, a port name)."""
    RESERVED = "RESERVED"
    """A value the platform keeps for itself (the SSH port)."""
    ALREADY_EXISTS = "ALREADY_EXISTS"
    NOT_FOUND = "NOT_FOUND"
    """The object does not exist in the viewer's namespace (or is not visible to it)."""
    INVALID_STATE = "INVALID_STATE"
    """The action does not apply now (e.g. restore while running, release with no commit)."""
    CONFLICT = "CONFLICT"
    """Someone else changed the object at the same time; read it again and retry."""
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    """The idempotency key was already used by this token for a different request."""
    FORBIDDEN = "FORBIDDEN"
    """The viewer's role does not allow this action."""
    UNAVAILABLE = "UNAVAILABLE"
    """Kubernetes or the database could not be reached; nothing was changed, retry later."""


@strawberry.type(description="A problem with a mutation's input that the caller can fix.")
class UserError:
    field: list[str] | None = strawberry.field(
        description='Path to the input field, e.g. ["input", "ports", "1", "port"].'
    )
    message: str
    code: UserErrorCode


def user_error(field: list[str] | None, message: str, code: UserErrorCode) -> UserError:
    """A :class:`UserError` (shorthand for resolvers and validators)."""
    return UserError(field=field, message=message, code=code)
