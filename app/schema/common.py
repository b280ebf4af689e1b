"""What the runtime, devbox and subscription areas of the schema share: the read cache and
limits of a request, shared enums and small types, and the errors they raise on purpose.

Errors (top-level, shown to the client; all are :class:`~app.schema.errors.ApiError`)::

    ApiError
     ├── ObjectNotFound          NOT_FOUND: no such object in the viewer's namespace (the
     │                           same answer for one that exists in another namespace)
     ├── KubernetesUnavailable   UNAVAILABLE: a field that reads Kubernetes (SSH key, events)
     │                           could not; retry later
     └── SubscriptionClosed      SUBSCRIPTION_ENDED: the server ended a subscription (too
                                 slow, shutting down); subscribe again
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from enum import Enum
from typing import Any, TypeVar

import strawberry

from app import validation
from app.apicache import ReadCache
from app.kubeclient import JSON, Kind, KubeError
from app.resources import Port as PortModel
from app.schema.context import Info
from app.schema.errors import ApiError
from app.schema.relay import Connection, Edge

T = TypeVar("T")
U = TypeVar("U")
F = TypeVar("F", bound=Callable[..., Any])


def field(*, description: str | None = None, name: str | None = None) -> Callable[[F], F]:
    """``@strawberry.field(...)`` with arguments, typed so the method keeps its signature."""
    decorator: Callable[[F], F] = strawberry.field(description=description, name=name)
    return decorator


def subscription(*, description: str | None = None) -> Callable[[F], F]:
    """``@strawberry.subscription(...)`` with arguments, typed like :func:`field`."""
    decorator: Callable[[F], F] = strawberry.subscription(description=description)
    return decorator


class ObjectNotFound(ApiError):
    """The object does not exist in the viewer's namespace (or is not visible to it)."""

    code = "NOT_FOUND"


class KubernetesUnavailable(ApiError):
    """Kubernetes could not be reached to read this field."""

    code = "UNAVAILABLE"


class SubscriptionClosed(ApiError):
    """The server ended the subscription; subscribe again."""

    code = "SUBSCRIPTION_ENDED"


def read_cache(info: Info) -> ReadCache:
    """The process's read cache."""
    cache = info.context.services.cache
    if not isinstance(cache, ReadCache):
        raise TypeError("services.cache is not a ReadCache")
    return cache


def limits(info: Info) -> validation.Limits:
    """The configured devbox size limits (parsed once per process)."""
    extras = info.context.services.extras
    found = extras.get("limits")
    if not isinstance(found, validation.Limits):
        found = validation.Limits.from_settings(info.context.services.settings)
        extras["limits"] = found
    return found


@strawberry.enum(description="Transport protocol of a port.")
class Protocol(Enum):
    TCP = "TCP"
    UDP = "UDP"


@strawberry.type(description="A port a runtime offers new devboxes by default.")
class RuntimePort:
    name: str
    port: int
    protocol: Protocol
    public: bool

    @classmethod
    def of(cls, port: PortModel) -> RuntimePort:
        return cls(
            name=port.name, port=port.port, protocol=Protocol(port.protocol), public=port.public
        )


@strawberry.type(description="An environment variable.")
class EnvVar:
    name: str
    value: str


def map_connection(page: Connection[T], node: Callable[[T], U]) -> Connection[U]:
    """The same page with each node turned into its schema type."""
    return Connection(
        edges=[Edge(cursor=edge.cursor, node=node(edge.node)) for edge in page.edges],
        page_info=page.page_info,
        total_count=page.total_count,
    )


SHARED_LIST_SECONDS = 1.0
"""How long fields of one request (or one WebSocket connection) share a Kubernetes list."""


async def shared_list(
    info: Info, kind: Kind, namespace: str, label_selector: str = ""
) -> list[JSON]:
    """``kind`` objects of ``namespace``, listed once for all the fields that ask within
    :data:`SHARED_LIST_SECONDS` — so ``devboxes(first: 100) { events … ssh { privateKey } }``
    costs one list per kind, not one per devbox (and aliases cannot multiply it).  Kubernetes
    failures raise :class:`KubernetesUnavailable`."""
    loop = asyncio.get_running_loop()
    key = (kind.plural, namespace, label_selector)
    lists = info.context.lists
    held = lists.get(key)
    if held is None or loop.time() - held[0] > SHARED_LIST_SECONDS:
        kube = info.context.services.kube
        future = asyncio.ensure_future(
            kube.list_objects(kind, namespace, label_selector=label_selector or None)
        )
        held = (loop.time(), future)
        lists[key] = held
    try:
        items, _ = await asyncio.shield(held[1])
    except KubeError as exc:
        lists.pop(key, None)
        raise KubernetesUnavailable(f"{kind.plural} could not be read; retry later") from exc
    return list(items)
