"""Reading the audit log: ``auditEvents`` at the top level, and per object (``Devbox.auditEvents``).

Events are newest first, paginated by their id (keyset: a page never skips or repeats an
event when new ones arrive).  A user sees the events of its own namespace; an admin sees all
namespaces, or one with ``filter.namespace``.  There is no way to change or delete an event.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated, Any

import strawberry
from sqlalchemy import Select, func, select
from strawberry.scalars import JSON

from app.db.models import AuditEvent as AuditRow
from app.schema.context import Info, Viewer, require_viewer
from app.schema.errors import PermissionDenied
from app.schema.relay import (
    Connection,
    Edge,
    Node,
    PageInfo,
    PaginationError,
    check_first,
    decode_cursor,
    encode_cursor,
    encode_global_id,
)


@strawberry.enum(description="How an audited action ended.")
class AuditOutcome(Enum):
    SUCCESS = "success"
    FAILURE = "failure"


@strawberry.type(description="Who acted.")
class AuditActor:
    user_name: str
    token_id: str | None = strawberry.field(description="Id (not the token) of the API token.")


@strawberry.type(description="One mutation, successful or not, as recorded at the time.")
class AuditEvent(Node):
    time: datetime
    actor: AuditActor
    namespace: str
    action: str = strawberry.field(description="The mutation, e.g. devboxCreate.")
    target_kind: str
    target_name: str
    request_id: str
    client_address: str | None
    user_agent: str | None
    input: JSON = strawberry.field(description="The mutation's input, secrets redacted.")
    outcome: AuditOutcome
    error_code: str | None = strawberry.field(description="The first user error's code.")

    @classmethod
    def from_row(cls, row: AuditRow) -> AuditEvent:
        return cls(
            id=encode_global_id("AuditEvent", str(row.id)),
            time=row.time,
            actor=AuditActor(user_name=row.actor_user, token_id=row.actor_token_id),
            namespace=row.namespace,
            action=row.action,
            target_kind=row.target_kind,
            target_name=row.target_name,
            request_id=row.request_id,
            client_address=row.client_address,
            user_agent=row.user_agent,
            input=JSON(row.input),
            outcome=AuditOutcome(row.outcome),
            error_code=row.error_code,
        )


AuditEventConnection = Annotated[
    Connection[AuditEvent], strawberry.type(name="AuditEventConnection")
]


@strawberry.input(description="Narrow the audit events (all conditions must hold).")
class AuditEventFilter:
    action: str | None = None
    target_kind: str | None = None
    target_name: str | None = None
    outcome: AuditOutcome | None = None
    since: datetime | None = strawberry.field(default=None, description="Events at or after.")
    namespace: str | None = strawberry.field(
        default=None, description="Admins: one namespace (default: all). Users: their own."
    )


def _after_id(after: str | None) -> int | None:
    if after is None:
        return None
    text = decode_cursor(after)
    if not text.isdigit():
        raise PaginationError("after: not a valid cursor")
    return int(text)


async def _page(
    info: Info, query: Select[Any], *, first: int, after: str | None
) -> Connection[AuditEvent]:
    check_first(first)
    after_id = _after_id(after)
    async with info.context.services.sessionmaker() as session:
        total = await session.scalar(select(func.count()).select_from(query.subquery()))
        page_query = query.order_by(AuditRow.id.desc()).limit(first + 1)
        if after_id is not None:
            page_query = page_query.where(AuditRow.id < after_id)
        rows = list((await session.scalars(page_query)).all())
    has_next = len(rows) > first
    edges = [
        Edge(cursor=encode_cursor(str(row.id)), node=AuditEvent.from_row(row))
        for row in rows[:first]
    ]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=has_next,
            has_previous_page=after_id is not None,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
        total_count=int(total or 0),
    )


def _scoped(viewer: Viewer, namespace: str | None) -> Select[Any]:
    query = select(AuditRow)
    if viewer.is_admin:
        return query.where(AuditRow.namespace == namespace) if namespace else query
    if namespace is not None and namespace != viewer.namespace:
        raise PermissionDenied("only admins read the audit events of other namespaces")
    return query.where(AuditRow.namespace == viewer.namespace)


async def audit_events_connection(
    info: Info, *, target_kind: str, target_name: str, first: int, after: str | None
) -> Connection[AuditEvent]:
    """The audit events of one object of the viewer's namespace (e.g. ``Devbox.auditEvents``)."""
    viewer = require_viewer(info)
    query = select(AuditRow).where(
        AuditRow.namespace == viewer.namespace,
        AuditRow.target_kind == target_kind,
        AuditRow.target_name == target_name,
    )
    return await _page(info, query, first=first, after=after)


async def _audit_events(
    info: Info,
    first: int,
    after: str | None = None,
    filter: AuditEventFilter | None = None,
) -> AuditEventConnection:
    viewer = require_viewer(info)
    check_first(first)
    wanted = filter or AuditEventFilter()
    query = _scoped(viewer, wanted.namespace)
    if wanted.action is not None:
        query = query.where(AuditRow.action == wanted.action)
    if wanted.target_kind is not None:
        query = query.where(AuditRow.target_kind == wanted.target_kind)
    if wanted.target_name is not None:
        query = query.where(AuditRow.target_name == wanted.target_name)
    if wanted.outcome is not None:
        query = query.where(AuditRow.outcome == wanted.outcome.value)
    if wanted.since is not None:
        query = query.where(AuditRow.time >= wanted.since)
    return await _page(info, query, first=first, after=after)


@strawberry.type
class AuditQuery:
    """The audit log."""

    audit_events: AuditEventConnection = strawberry.field(
        resolver=_audit_events,
        description="Audit events, newest first: the viewer's namespace (admins: all).",
    )
