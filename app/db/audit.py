"""Writing audit events: every mutation, success or failure, appends one row.

The audit table is append-only; this module only inserts.  The caller redacts secrets from
``input`` before calling, and writes the row in the request's session (for a failed mutation
whose transaction is rolled back, in a fresh session, so the failure is still recorded).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, overload

from sqlalchemy import String
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import AuditEvent, Outcome, utcnow


@overload
def _fit(column: str, value: str) -> str: ...
@overload
def _fit(column: str, value: None) -> None: ...
def _fit(column: str, value: str | None) -> str | None:
    """``value`` cut to the column's length: client-supplied text must never fail the insert."""
    if value is None:
        return None
    column_type = AuditEvent.__table__.c[column].type
    if isinstance(column_type, String) and column_type.length is not None:
        return value[: column_type.length]
    return value


async def append_audit_event(
    session: AsyncSession,
    *,
    actor_user: str,
    namespace: str,
    action: str,
    target_kind: str,
    target_name: str,
    request_id: str,
    outcome: Outcome | str,
    input: dict[str, Any] | None = None,
    actor_token_id: str | None = None,
    client_address: str | None = None,
    user_agent: str | None = None,
    error_code: str | None = None,
    time: datetime | None = None,
) -> AuditEvent:
    """Add one audit event to ``session`` and flush it (its ``id`` is then set).

    Text longer than its column (a long user agent, an invalid over-long target name from a
    failed request) is truncated rather than making the insert fail.  The caller commits.
    """
    outcome = Outcome(outcome)
    if outcome is Outcome.SUCCESS and error_code is not None:
        raise ValueError("a successful action has no error_code")
    event = AuditEvent(
        time=time or utcnow(),
        actor_user=_fit("actor_user", actor_user),
        actor_token_id=actor_token_id,
        namespace=_fit("namespace", namespace),
        action=_fit("action", action),
        target_kind=_fit("target_kind", target_kind),
        target_name=_fit("target_name", target_name),
        request_id=_fit("request_id", request_id),
        client_address=_fit("client_address", client_address),
        user_agent=_fit("user_agent", user_agent),
        input=input if input is not None else {},
        outcome=outcome.value,
        error_code=_fit("error_code", error_code),
    )
    session.add(event)
    await session.flush()
    return event
