"""Errors of the Kubernetes client layer, translated from HTTP answers at the boundary.

::

    KubeError                 any failed call; ``status``, ``reason``, ``message``
     ├── NotFound             404: the object (or its namespace) does not exist
     ├── Conflict             409: resourceVersion precondition failed (re-read and retry)
     │    └── AlreadyExists   409 AlreadyExists: an object with that name exists
     ├── Invalid              422 (and 400): the server refused the body; ``causes`` lists fields
     ├── Gone                 410: resourceVersion too old (relist)
     ├── Forbidden            401/403: not allowed
     └── Unavailable          transport errors, 429, 5xx: temporary, retry with backoff
"""

from __future__ import annotations

import json
from typing import Any


class KubeError(Exception):
    """A Kubernetes API call failed."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        reason: str = "",
        causes: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason = reason
        self.causes = causes or []

    temporary = False
    """Whether retrying the same call later may succeed."""


class NotFound(KubeError):
    """The object does not exist."""


class Conflict(KubeError):
    """The object changed since it was read (stale resourceVersion)."""

    temporary = True


class AlreadyExists(Conflict):
    """An object with that name already exists."""


class Invalid(KubeError):
    """The server refused the request body."""


class Gone(KubeError):
    """The resourceVersion is too old: list again."""

    temporary = True


class Forbidden(KubeError):
    """The caller may not do this."""


class Unavailable(KubeError):
    """The API server could not be reached or answered with a temporary error."""

    temporary = True


def from_response(status: int, body: bytes | str) -> KubeError:
    """The error for an HTTP answer ``status`` with ``body`` (a Status object, or text)."""
    try:
        parsed = json.loads(body) if body else {}
    except ValueError:
        parsed = {}
    if not isinstance(parsed, dict):
        parsed = {}
    text = body.decode(errors="replace") if isinstance(body, bytes) else body
    message = str(parsed.get("message") or text.strip() or f"HTTP {status}")
    reason = str(parsed.get("reason") or "")
    causes = list((parsed.get("details") or {}).get("causes") or [])
    kwargs: dict[str, Any] = {"status": status, "reason": reason, "causes": causes}
    if status == 404:
        return NotFound(message, **kwargs)
    if status == 409:
        if reason == "AlreadyExists":
            return AlreadyExists(message, **kwargs)
        return Conflict(message, **kwargs)
    if status == 410:
        return Gone(message, **kwargs)
    if status in (400, 415, 422):
        return Invalid(message, **kwargs)
    if status in (401, 403):
        return Forbidden(message, **kwargs)
    if status == 429 or status >= 500:
        return Unavailable(message, **kwargs)
    return KubeError(message, **kwargs)
