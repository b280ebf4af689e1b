"""The API server's read cache: one watch per kind per process, read by every request, and a
fan-out of its changes to GraphQL subscriptions.

:class:`ReadCache` runs one :class:`~app.kubeclient.Informer` (list + watch, relist on 410) for
each of Devbox, Runtime and DevboxRelease, across all namespaces, and keeps the objects parsed
into their pydantic models, indexed by namespace.  Requests read from it (no API call per
request); after a write, :meth:`ReadCache.wait_for` waits until the cache has seen the write's
resourceVersion, so a client reads its own writes.

Subscriptions register with :meth:`ReadCache.subscribe` for one namespace (and optionally one
name) and get a bounded queue of :class:`Change` (event type, the whole current object, what
changed).  N subscribers share the one watch.  Each subscriber remembers the resourceVersion it
last got per object and is handed only newer ones, so a watch that resumes after a disconnect,
or a relist after 410 Gone (whose differences arrive as ordinary events), neither loses nor
repeats a change.  A subscriber that does not keep up is disconnected with
:class:`SlowSubscriber` instead of letting its queue grow.

Errors::

    ReadCacheError             the cache cannot serve
     ├── NotReady              the first list has not completed (start() not awaited)
     └── SubscriptionEnded     a subscription was ended by the server
          ├── SlowSubscriber   it fell too far behind (its queue was full)
          └── CacheStopped     the cache is shutting down

Never mutate the models handed out: they are shared by every reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

from app.kubeclient import (
    DEVBOXES,
    JSON,
    RELEASES,
    RUNTIMES,
    EventType,
    Handler,
    Informer,
    Kind,
    Kube,
    object_key,
    rv_int,
)
from app.resources import Devbox, DevboxRelease, Resource, Runtime

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Resource)

DEFAULT_QUEUE_SIZE = 256
"""Changes a subscriber may have waiting before it counts as too slow."""
MODELS: dict[Kind, type[Resource]] = {DEVBOXES: Devbox, RUNTIMES: Runtime, RELEASES: DevboxRelease}


class ReadCacheError(Exception):
    """The read cache cannot serve this."""


class NotReady(ReadCacheError):
    """The cache has not loaded its first list yet."""


class SubscriptionEnded(ReadCacheError):
    """The server ended a subscription."""


class SlowSubscriber(SubscriptionEnded):
    """The subscriber did not read its changes fast enough and was disconnected."""


class CacheStopped(SubscriptionEnded):
    """The cache (the server) is shutting down."""


class Aspect(StrEnum):
    """What part of an object a change touched."""

    SPEC = "SPEC"
    PHASE = "PHASE"
    CONDITIONS = "CONDITIONS"
    COMMITS = "COMMITS"
    STATUS = "STATUS"
    """Any other status field (SSH endpoint, port URLs, image, node…)."""
    METADATA = "METADATA"
    """Labels, annotations, finalizers, deletion."""


_META_FIELDS = ("labels", "annotations", "finalizers", "deletionTimestamp")


def changed_aspects(old: JSON | None, new: JSON) -> frozenset[Aspect]:
    """Which aspects differ between two versions of an object (all present ones if no old)."""
    before: JSON = old or {}
    aspects: set[Aspect] = set()
    if before.get("spec") != new.get("spec"):
        aspects.add(Aspect.SPEC)
    old_status: JSON = dict(before.get("status") or {})
    new_status: JSON = dict(new.get("status") or {})
    for key, aspect in (
        ("phase", Aspect.PHASE),
        ("conditions", Aspect.CONDITIONS),
        ("commits", Aspect.COMMITS),
    ):
        if old_status.pop(key, None) != new_status.pop(key, None):
            aspects.add(aspect)
    if old_status != new_status:
        aspects.add(Aspect.STATUS)
    old_meta = before.get("metadata") or {}
    new_meta = new.get("metadata") or {}
    if any(old_meta.get(k) != new_meta.get(k) for k in _META_FIELDS):
        aspects.add(Aspect.METADATA)
    return frozenset(aspects)


@dataclass(frozen=True)
class Change(Generic[R]):
    """One change of one object, as a subscriber receives it."""

    type: EventType
    object: R
    """The whole object after the change (for DELETED: as it was last seen)."""
    changed: frozenset[Aspect]
    resource_version: int
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """Views of the change that readers derive once and share (every subscriber of the
    change gets this same object; never mutate ``object``)."""


@dataclass
class _KindCache:
    informer: Informer
    model: type[Resource]
    by_namespace: dict[str, dict[str, Resource]] = field(default_factory=dict)
    memos: dict[tuple[str, str], tuple[Resource, dict[str, Any]]] = field(default_factory=dict)
    by_name: dict[str, list[Resource]] = field(default_factory=dict)
    """Per namespace, its objects ordered by name (until the namespace changes)."""
    """Per (namespace, name): the object held and the views readers derived from it."""


class Subscription(Generic[R]):
    """One subscriber's bounded queue of changes; iterate it, and close it when done
    (``async with cache.subscribe(...) as sub``)."""

    def __init__(
        self,
        cache: ReadCache,
        kind: Kind,
        namespace: str,
        name: str | None,
        maxsize: int,
    ) -> None:
        self.cache = cache
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self.queue: asyncio.Queue[Change[R] | None] = asyncio.Queue(maxsize)
        self.error: SubscriptionEnded | None = None
        self.closed = False
        self.delivered = 0
        self._seen: dict[str, int] = {}
        """Last resourceVersion handed out per object name (negative: its deletion)."""

    def _remember(self, name: str, rv: int) -> None:
        self._seen[name] = rv

    def offer(self, change: Change[R]) -> None:
        """Queue ``change`` unless this subscriber already has it or a newer version."""
        if self.closed:
            return
        name = change.object.name
        last = self._seen.get(name)
        if change.type == "DELETED":
            if last is not None and last < 0:
                return  # its deletion was already handed out
            self._seen[name] = -max(change.resource_version, abs(last or 0), 1)
        else:
            if last is not None and change.resource_version <= abs(last) and last > 0:
                return  # an old or repeated version (a resumed watch, a relist)
            self._seen[name] = change.resource_version
        try:
            self.queue.put_nowait(change)
        except asyncio.QueueFull:
            self.end(
                SlowSubscriber(
                    f"the subscription fell more than {self.queue.maxsize} changes behind "
                    "and was ended; subscribe again and re-read the current state"
                )
            )

    def end(self, error: SubscriptionEnded | None = None) -> None:
        """Stop delivering; the reader gets ``error`` (or a normal end) after the queue."""
        if self.closed:
            return
        self.closed = True
        self.error = error
        self.cache._unregister(self)
        if error is not None:
            while not self.queue.empty():
                self.queue.get_nowait()
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)

    async def get(self) -> Change[R] | None:
        """The next change; ``None`` once the subscription ended normally.  Raises the
        :class:`SubscriptionEnded` it was ended with."""
        if self.closed and self.queue.empty():
            if self.error is not None:
                raise self.error
            return None
        item = await self.queue.get()
        if item is None:
            if self.error is not None:
                raise self.error
            return None
        self.delivered += 1
        return item

    def __aiter__(self) -> AsyncIterator[Change[R]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Change[R]]:
        while True:
            item = await self.get()
            if item is None:
                return
            yield item

    async def __aenter__(self) -> Subscription[R]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.end()


class ReadCache:
    """Watch-fed, process-wide cache of the Devbox custom resources (see the module doc)."""

    def __init__(
        self,
        kube: Kube,
        *,
        watch_timeout: int = 300,
        queue_size: int = DEFAULT_QUEUE_SIZE,
    ) -> None:
        self.kube = kube
        self.queue_size = queue_size
        self._kinds: dict[Kind, _KindCache] = {}
        for kind, model in MODELS.items():
            informer = Informer(kube, kind, watch_timeout=watch_timeout)
            cache = _KindCache(informer, model)
            informer.add_handler(self._handler(kind, cache))
            self._kinds[kind] = cache
        self._subscribers: dict[Kind, dict[str, set[Subscription[Any]]]] = {
            kind: {} for kind in MODELS
        }
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ lifecycle

    async def start(self, within: float = 30.0) -> None:
        """Start the watches and wait until every kind has been listed once."""
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._run(c.informer), name=f"cache-{k.plural}")
                for k, c in self._kinds.items()
            ]
        await asyncio.gather(*(c.informer.wait_synced(within) for c in self._kinds.values()))

    async def stop(self) -> None:
        """Stop the watches; open subscriptions end with :class:`CacheStopped`."""
        for kind in MODELS:
            for subs in list(self._subscribers[kind].values()):
                for sub in list(subs):
                    sub.end(CacheStopped("the server is shutting down; subscribe again"))
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    @property
    def ready(self) -> bool:
        """Whether every kind has been listed once."""
        return all(c.informer.synced for c in self._kinds.values())

    def informer(self, kind: Kind) -> Informer:
        """The informer behind ``kind`` (for tests and metrics)."""
        return self._kinds[kind].informer

    async def _run(self, informer: Informer) -> None:
        """Run an informer forever; a bug that ends it is logged and it starts again."""
        while True:
            try:
                await informer.run()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("watch of %s ended; starting it again", informer.kind.plural)
                await asyncio.sleep(1.0)

    # ------------------------------------------------------------------ reading

    def _cache(self, kind: Kind) -> _KindCache:
        cache = self._kinds[kind]
        if not cache.informer.synced:
            raise NotReady(f"the {kind.plural} cache has not loaded yet")
        return cache

    def get(self, kind: Kind, namespace: str, name: str) -> Resource | None:
        """One object of ``kind``, or None."""
        return self._cache(kind).by_namespace.get(namespace, {}).get(name)

    def in_namespace(self, kind: Kind, namespace: str) -> list[Resource]:
        """All objects of ``kind`` in ``namespace`` (unordered)."""
        return list(self._cache(kind).by_namespace.get(namespace, {}).values())

    def by_name(self, kind: Kind, namespace: str) -> list[Resource]:
        """All objects of ``kind`` in ``namespace``, ordered by name (sorted once per change
        of the namespace; a fresh list each call)."""
        cache = self._cache(kind)
        ordered = cache.by_name.get(namespace)
        if ordered is None:
            objects = cache.by_namespace.get(namespace, {})
            ordered = cache.by_name[namespace] = [objects[name] for name in sorted(objects)]
        return list(ordered)

    def all(self, kind: Kind) -> list[Resource]:
        """All objects of ``kind`` in every namespace."""
        return [
            obj for objects in self._cache(kind).by_namespace.values() for obj in objects.values()
        ]

    def memo(self, kind: Kind, obj: Resource) -> dict[str, Any]:
        """Where readers keep views derived from ``obj`` (a schema object, a serialized
        form), shared by every reader until the object changes; a fresh dict if the cache no
        longer holds this version.  Never mutate what is kept there."""
        cache = self._kinds[kind]
        key = (obj.namespace, obj.name)
        held = cache.memos.get(key)
        if held is not None and held[0] is obj:
            return held[1]
        if cache.by_namespace.get(key[0], {}).get(key[1]) is not obj:
            return {}
        memo: dict[str, Any] = {}
        cache.memos[key] = (obj, memo)
        return memo

    def devbox(self, namespace: str, name: str) -> Devbox | None:
        obj = self.get(DEVBOXES, namespace, name)
        return obj if isinstance(obj, Devbox) else None

    def devboxes(self, namespace: str) -> list[Devbox]:
        return [obj for obj in self.in_namespace(DEVBOXES, namespace) if isinstance(obj, Devbox)]

    def runtime(self, namespace: str, name: str) -> Runtime | None:
        obj = self.get(RUNTIMES, namespace, name)
        return obj if isinstance(obj, Runtime) else None

    def runtimes(self, namespace: str | None = None) -> list[Runtime]:
        found = self.all(RUNTIMES) if namespace is None else self.in_namespace(RUNTIMES, namespace)
        return [obj for obj in found if isinstance(obj, Runtime)]

    def release(self, namespace: str, name: str) -> DevboxRelease | None:
        obj = self.get(RELEASES, namespace, name)
        return obj if isinstance(obj, DevboxRelease) else None

    def releases(self, namespace: str) -> list[DevboxRelease]:
        return [
            obj for obj in self.in_namespace(RELEASES, namespace) if isinstance(obj, DevboxRelease)
        ]

    async def wait_for(
        self, resource_version: str | None, kind: Kind = DEVBOXES, within: float = 5.0
    ) -> bool:
        """Wait until the cache of ``kind`` has seen ``resource_version`` (that of a write),
        so the next read shows the write.  False if it did not within ``within`` seconds."""
        if not resource_version:
            return True
        try:
            await self._kinds[kind].informer.wait_for_resource_version(resource_version, within)
        except TimeoutError:
            log.warning(
                "the %s cache did not reach %s in %ss", kind.plural, resource_version, within
            )
            return False
        return True

    # ------------------------------------------------------------------ subscribing

    def subscribe(
        self,
        kind: Kind,
        namespace: str,
        name: str | None = None,
        *,
        maxsize: int | None = None,
    ) -> Subscription[Any]:
        """Changes of ``kind`` in ``namespace`` (only ``name`` when given), from now on.

        The subscriber starts knowing the current versions, so it is handed only what
        changes after this call."""
        sub: Subscription[Any] = Subscription(
            self, kind, namespace, name, maxsize or self.queue_size
        )
        current = self._kinds[kind].by_namespace.get(namespace, {})
        known = current.values() if name is None else [o for o in [current.get(name)] if o]
        for obj in known:
            sub._remember(obj.name, rv_int(obj.metadata.resource_version))
        self._subscribers[kind].setdefault(namespace, set()).add(sub)
        return sub

    def subscriber_count(self, kind: Kind = DEVBOXES) -> int:
        return sum(len(s) for s in self._subscribers[kind].values())

    def _unregister(self, sub: Subscription[Any]) -> None:
        subs = self._subscribers[sub.kind].get(sub.namespace)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subscribers[sub.kind][sub.namespace]

    # ------------------------------------------------------------------ feeding

    def _handler(self, kind: Kind, cache: _KindCache) -> Handler:
        def handle(event: EventType, obj: JSON, old: JSON | None) -> None:
            namespace, name = object_key(obj)
            cache.memos.pop((namespace, name), None)
            cache.by_name.pop(namespace, None)
            objects = cache.by_namespace.setdefault(namespace, {})
            if event == "DELETED":
                model = objects.pop(name, None)
                if not objects:
                    cache.by_namespace.pop(namespace, None)
                if model is None:
                    model = self._parse(cache, obj)
            else:
                model = self._parse(cache, obj)
                if model is None:
                    return
                objects[name] = model
            if model is None:
                return
            subs = self._subscribers[kind].get(namespace)
            if not subs:
                return
            rv = rv_int((obj.get("metadata") or {}).get("resourceVersion"))
            changed = frozenset() if event == "DELETED" else changed_aspects(old, obj)
            change: Change[Any] = Change(event, model, changed, rv)
            for sub in list(subs):
                if sub.name is None or sub.name == name:
                    sub.offer(change)

        return handle

    @staticmethod
    def _parse(cache: _KindCache, obj: JSON) -> Resource | None:
        try:
            return cache.model.model_validate(obj)
        except ValidationError as exc:
            log.warning(
                "skipping %s %s/%s that does not match its schema: %s",
                cache.model.kind_name(),
                *object_key(obj),
                exc,
            )
            return None
