"""Building the API server's :class:`~app.schema.context.Services` for one process.

One async engine and session factory (``expire_on_commit=False``), the Kubernetes client, and
the watch-fed read cache (:class:`app.apicache.ReadCache`, started by the app's lifespan).
:func:`close_services` releases the engine (the caller owns the Kubernetes connection).
"""

from __future__ import annotations

from app.apicache import ReadCache
from app.db.engine import create_engine, session_factory
from app.kubeclient import Kube
from app.schema.context import Services
from app.settings import Settings


def make_services(settings: Settings, kube: Kube, *, database_url: str | None = None) -> Services:
    """Services for ``settings`` (database URL: ``database_url`` or the settings')."""
    engine = create_engine(database_url or settings.effective_database_url)
    services = Services(
        settings=settings,
        sessionmaker=session_factory(engine),
        kube=kube,
        cache=ReadCache(kube),
    )
    services.extras["engine"] = engine
    return services


async def close_services(services: Services) -> None:
    """Dispose of the database engine made by :func:`make_services`."""
    engine = services.extras.get("engine")
    if engine is not None:
        await engine.dispose()
