"""Errors of the simulated API server, each one a Kubernetes ``Status`` object.

Exception tree::

    ApiError                 any failure answered as a Status (code, reason, message, details)
     ├── BadRequest          400 BadRequest: malformed body, selector, parameter
     ├── NotFound            404 NotFound: the object does not exist
     ├── AlreadyExists       409 AlreadyExists: create of an existing name
     ├── Conflict            409 Conflict: stale resourceVersion, or other concurrent change
     ├── Gone                410 Expired/Gone: resourceVersion or continue token compacted
     ├── UnsupportedMediaType 415: patch type not accepted for this resource
     ├── Invalid             422 Invalid: validation failed, with ``causes`` (field paths)
     └── MethodNotAllowed    405 MethodNotAllowed: verb not supported on this resource

The HTTP layer turns any ``ApiError`` into a JSON Status with the HTTP code; nothing else
escapes as a stack trace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Cause:
    """One field-level reason inside an Invalid status (``details.causes[]``)."""

    reason: str
    message: str
    field: str

    def to_json(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message, "field": self.field}


@dataclass
class ApiError(Exception):
    """A failure answered as a Kubernetes Status object."""

    code: int
    reason: str
    message: str
    details: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def to_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
        }
        if self.reason:  # StatusReasonUnknown is "" and omitted, as Go's omitempty does
            status["reason"] = self.reason
        if self.details is not None:
            status["details"] = self.details
        status["code"] = self.code
        return status


def _details(name: str | None, group: str, kind: str) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    details["kind"] = kind
    return details


def qualified(resource: str, group: str) -> str:
    """``widgets.probe.example.com`` or ``pods`` (core group), as Status messages print it."""
    return f"{resource}.{group}" if group else resource


class BadRequest(ApiError):
    """400: the request itself is malformed."""

    def __init__(self, message: str) -> None:
        super().__init__(400, "BadRequest", message)


class NotFound(ApiError):
    """404: the named object does not exist."""

    def __init__(self, resource: str, group: str, name: str) -> None:
        super().__init__(
            404,
            "NotFound",
            f'{qualified(resource, group)} "{name}" not found',
            _details(name, group, resource),
        )


class AlreadyExists(ApiError):
    """409: create of a name that exists."""

    def __init__(self, resource: str, group: str, name: str) -> None:
        super().__init__(
            409,
            "AlreadyExists",
            f'{qualified(resource, group)} "{name}" already exists',
            _details(name, group, resource),
        )


class Conflict(ApiError):
    """409: the object changed since the client read it."""

    def __init__(self, resource: str, group: str, name: str, why: str | None = None) -> None:
        why = why or (
            "the object has been modified; please apply your changes to the latest version "
            "and try again"
        )
        super().__init__(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {qualified(resource, group)} "{name}": {why}',
            _details(name, group, resource),
        )


class Gone(ApiError):
    """410: the requested resourceVersion or continue token has been compacted away."""

    def __init__(self, message: str, reason: str = "Expired") -> None:
        super().__init__(410, reason, message)


class UnsupportedMediaType(ApiError):
    """415: a patch content type this resource does not accept."""

    def __init__(self, accepted: list[str]) -> None:
        super().__init__(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: "
            + ", ".join(accepted),
        )


_NOT_ALLOWED = "the server does not allow this method on the requested resource"


class MethodNotAllowed(ApiError):
    """405: the verb is not supported on this resource."""

    def __init__(self, message: str = _NOT_ALLOWED) -> None:
        super().__init__(405, "MethodNotAllowed", message)


@dataclass
class Invalid(ApiError):
    """422: validation failed; ``causes`` name each bad field."""

    causes: list[Cause] = field(default_factory=list)

    def __init__(
        self, kind: str, group: str, name: str, causes: list[Cause], message: str | None = None
    ) -> None:
        self.causes = causes
        qualified_kind = f"{kind}.{group}" if group else kind
        if message is None:
            parts = [f"{c.field}: {c.message}" if c.field else c.message for c in causes]
            joined = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
            message = f'{qualified_kind} "{name}" is invalid: {joined}'
        details = _details(name, group, kind)
        details["causes"] = [c.to_json() for c in causes]
        ApiError.__init__(self, 422, "Invalid", message, details)
