"""Devbox subscriptions: ``devboxChanged(name)`` and ``devboxesChanged`` (the namespace).

Both are fed by the read cache's one watch per process (:meth:`app.apicache.ReadCache
.subscribe`): each event carries the type, the whole current devbox and what changed.
``devboxChanged`` ends cleanly after the devbox's DELETED event; a devbox that does not exist
in the viewer's namespace (or exists only in another) is ``NOT_FOUND``.  A subscriber that falls
too far behind is ended with ``SUBSCRIPTION_ENDED`` and should subscribe again.  Generators
unregister in ``finally``, so a client that goes away frees its queue at once.

``commitProgress(devbox)`` rides on the same subscriptions: see :mod:`app.schema.commit_progress`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator
from enum import Enum
from typing import Any

import strawberry

from app.apicache import Aspect, Change, SubscriptionEnded
from app.kubeclient import DEVBOXES
from app.resources import Devbox
from app.schema.common import ObjectNotFound, SubscriptionClosed, read_cache, subscription
from app.schema.context import Info, require_viewer
from app.schema.devboxes import DevboxNode


@strawberry.enum(name="ChangeType", description="What happened to the object.")
class ChangeType(Enum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


@strawberry.enum(name="DevboxAspect", description="Which part of a devbox changed.")
class DevboxAspect(Enum):
    SPEC = "SPEC"
    PHASE = "PHASE"
    CONDITIONS = "CONDITIONS"
    COMMITS = "COMMITS"
    STATUS = "STATUS"
    """Another status field: SSH endpoint, port URLs, current image."""
    METADATA = "METADATA"
    """Labels, annotations, deletion."""


_ORDER = list(Aspect)


@strawberry.type(description="One change of a devbox.")
class DevboxChangeEvent:
    type: ChangeType
    devbox: DevboxNode = strawberry.field(
        description="The whole devbox after the change (for DELETED: as last seen)."
    )
    changed: list[DevboxAspect]
    shared_results: strawberry.Private[dict[Any, Any]] = dataclasses.field(default_factory=dict)
    """Execution results shared by the subscribers of this event (app.schema.execution)."""

    @classmethod
    def of(cls, change: Change[Devbox]) -> DevboxChangeEvent:
        """The event for ``change``, built once and shared by all its subscribers (the
        schema only reads it)."""
        event = change.memo.get("graphql")
        if isinstance(event, DevboxChangeEvent):
            return event
        event = change.memo["graphql"] = cls(
            type=ChangeType(change.type),
            devbox=DevboxNode.of(change.object),
            changed=[DevboxAspect(a.value) for a in sorted(change.changed, key=_ORDER.index)],
        )
        return event


@strawberry.type
class DevboxSubscription:
    """Live changes of devboxes."""

    @subscription(description="Changes of one devbox; ends after its deletion.")
    async def devbox_changed(
        self, info: Info, name: str
    ) -> AsyncGenerator[DevboxChangeEvent, None]:
        viewer = require_viewer(info)
        cache = read_cache(info)
        if cache.devbox(viewer.namespace, name) is None:
            raise ObjectNotFound(f"There is no devbox named {name[:63]!r} in your namespace.")
        sub = cache.subscribe(DEVBOXES, viewer.namespace, name)
        try:
            async for change in sub:
                yield DevboxChangeEvent.of(change)
                if change.type == "DELETED":
                    return
        except SubscriptionEnded as exc:
            raise SubscriptionClosed(str(exc)) from exc
        finally:
            sub.end()

    @subscription(description="Changes of every devbox in the viewer's namespace.")
    async def devboxes_changed(self, info: Info) -> AsyncGenerator[DevboxChangeEvent, None]:
        viewer = require_viewer(info)
        sub = read_cache(info).subscribe(DEVBOXES, viewer.namespace)
        try:
            async for change in sub:
                yield DevboxChangeEvent.of(change)
        except SubscriptionEnded as exc:
            raise SubscriptionClosed(str(exc)) from exc
        finally:
            sub.end()
