"""The GraphQL schema, composed from per-area modules.

Only the ``system`` area exists yet (server version and health); runtimes, devboxes,
commits, releases and audit arrive with the API issue.
"""

from __future__ import annotations

import strawberry

from app.schema.system import SystemQuery


@strawberry.type
class Query(SystemQuery):
    """Root query type."""


schema = strawberry.Schema(query=Query)
