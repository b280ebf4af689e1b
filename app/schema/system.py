"""System queries: what server this is."""

from __future__ import annotations

import strawberry

from app import __version__


def _version() -> str:
    return __version__


@strawberry.type
class SystemQuery:
    """Queries about the server itself."""

    version: str = strawberry.field(resolver=_version, description="The Devbox server version.")
