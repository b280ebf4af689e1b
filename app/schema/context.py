"""The per-request GraphQL context, and the process-wide services it points to.

``create_app`` builds one :class:`Services` per process; the context getter builds one
:class:`Context` per HTTP request or WebSocket connection, with the authenticated
:class:`Viewer` (``None`` until authentication succeeded).  Resolvers take
``info: Info`` and reach everything through ``info.context``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import strawberry

from app.db.models import Role
from app.schema.errors import Unauthenticated

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from app.kubeclient import Kube
    from app.settings import Settings


@dataclass(frozen=True)
class Viewer:
    """Who is calling: the user and token that authenticated this request."""

    user_id: str
    user_name: str
    namespace: str
    """The Kubernetes namespace the user's objects live in; every read and write is scoped
    to it (admins may read audit events of all namespaces)."""
    role: Role
    token_id: str

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


@dataclass
class Services:
    """What every request shares: settings, the database, Kubernetes and the read cache.

    ``cache`` is the watch-fed read cache of Devbox, Runtime and DevboxRelease objects
    (:class:`app.apicache.ReadCache`); typed ``Any`` here to keep this module free of
    import cycles.
    """

    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    kube: Kube
    cache: Any
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class Context:
    """Per request (HTTP) or per connection (WebSocket)."""

    services: Services
    request_id: str
    viewer: Viewer | None = None
    client_address: str | None = None
    user_agent: str | None = None
    lists: dict[tuple[str, str, str], tuple[float, asyncio.Future[Any]]] = field(
        default_factory=dict
    )
    """Kubernetes lists shared by the fields of one request (see :func:`shared_list`)."""


Info = strawberry.Info[Context, None]
"""The ``info`` argument of every resolver."""


def require_viewer(info: Info) -> Viewer:
    """The authenticated viewer; :class:`~app.schema.errors.Unauthenticated` if there is none.

    HTTP requests without a valid token never reach a resolver (401), but a WebSocket
    operation or a test calling a resolver directly might: every resolver that reads or
    writes user data starts with this.
    """
    viewer = info.context.viewer
    if viewer is None:
        raise Unauthenticated("authentication required: send Authorization: Bearer <token>")
    return viewer
