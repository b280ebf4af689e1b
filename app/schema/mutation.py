"""How every mutation runs: authenticate, replay idempotent retries, act, audit.

CONTRACT (shared by every mutation module; implemented by the API-core work):

    result = await run_mutation(
        info,
        action="devboxCreate",            # the mutation's field name
        target_kind="Devbox",
        target_name=input.name,            # what the audit row names
        input=redacted_input_dict,         # JSON-able, secrets already removed
        idempotency_key=input.idempotency_key,
        perform=perform,                   # async (viewer) -> MutationResult
    )

``perform`` validates, writes to Kubernetes through the client layer and returns a
:class:`MutationResult`; it returns user errors instead of raising for anything the user
can fix.  ``run_mutation``:

- requires an authenticated viewer (else a top-level authentication error);
- with an idempotency key already used by this token within 24 h for the same action and
  input: returns the stored result without calling ``perform``; for a different input:
  returns ``IDEMPOTENCY_KEY_REUSED``;
- translates client-layer failures raised by ``perform`` (Kubernetes unreachable,
  conflicts…) into a result with a user error (``UNAVAILABLE``/``CONFLICT``) — never half-made
  state (``perform`` writes at most one object, or undoes what it wrote);
- always appends exactly one audit row (success when there are no user errors, otherwise
  failure with the first error's code);
- stores the result under the idempotency key.

The resolver then builds its payload from the read cache, waiting for
``result.resource_version`` so the client reads its own write.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.schema.context import Info, Viewer
from app.schema.errors import UserError


@dataclass
class MutationResult:
    """What a mutation did, in a form that can be stored and replayed."""

    target_name: str
    user_errors: list[UserError] = field(default_factory=list)
    resource_version: str | None = None
    """resourceVersion of the written object, for read-your-writes; None if nothing written."""
    data: dict[str, Any] = field(default_factory=dict)
    """Extra JSON-able data the payload needs (e.g. a created token, shown once)."""

    @property
    def ok(self) -> bool:
        return not self.user_errors


Perform = Callable[[Viewer], Awaitable[MutationResult]]


async def run_mutation(
    info: Info,
    *,
    action: str,
    target_kind: str,
    target_name: str,
    input: Mapping[str, Any],
    idempotency_key: str | None,
    perform: Perform,
) -> MutationResult:
    """Run one mutation with idempotency and audit (see the module docstring)."""
    raise NotImplementedError("implemented by the API-core work")
