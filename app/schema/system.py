"""System queries: what server this is."""

from __future__ import annotations

import strawberry

from app import __version__


@strawberry.type
class SystemQuery:
    """Queries about the server itself."""

    @strawberry.field(description="The Devbox server version.")
    def version(self) -> str:
        return __version__
