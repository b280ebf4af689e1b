"""The GraphQL schema, composed from per-area modules.

Each area (system, accounts, audit, devboxes, runtimes, releases…) defines its own
``…Query`` / ``…Mutation`` / ``…Subscription`` classes; this module only lists them as base
classes of the root types — one import line and one base class per area.

:data:`schema` is the product's schema without limits (for printing ``schema.graphql``:
``python -m app.schema --write`` / ``--check``); :func:`build_schema` is the served one, with
the limits and error masking of :mod:`app.schema.extensions`.
"""

from __future__ import annotations

import strawberry
from strawberry.schema import BaseSchema

from app.schema.accounts import AccountMutation, AccountQuery
from app.schema.audit import AuditQuery
from app.schema.commit_progress import CommitProgressSubscription
from app.schema.devbox_mutations import DevboxMutation
from app.schema.devboxes import DevboxQuery
from app.schema.runtimes import RuntimeQuery
from app.schema.subscriptions import DevboxSubscription
from app.schema.system import SystemQuery
from app.settings import Settings


@strawberry.type
class Query(SystemQuery, AccountQuery, AuditQuery, RuntimeQuery, DevboxQuery):
    """Root query type."""


@strawberry.type
class Mutation(AccountMutation, DevboxMutation):
    """Root mutation type."""


@strawberry.type
class Subscription(DevboxSubscription, CommitProgressSubscription):
    """Root subscription type."""


SUBSCRIPTION: type | None = Subscription
"""Root subscription type."""


def build_schema(settings: Settings | None = None) -> BaseSchema:
    """The schema; with ``settings``, with its limits and error masking.  Selections of plain
    fields are completed by a plan (:mod:`app.schema.execution`)."""
    from app.schema.execution import PlannedExecutionContext
    from app.schema.extensions import schema_extensions

    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        subscription=SUBSCRIPTION,
        extensions=schema_extensions(settings) if settings is not None else (),
        execution_context_class=PlannedExecutionContext,
    )


schema = build_schema()
