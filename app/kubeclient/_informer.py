"""A watch-fed cache of one resource kind: list once, then watch from the list's version.

The informer keeps every object of its kind (in one namespace, or all) by ``(namespace,
name)``, calls its handlers for each change, and survives what a long watch meets:

- the server closes the stream (``timeoutSeconds``) or the connection drops: it watches again
  from the last resourceVersion it saw (BOOKMARK events keep that fresh on quiet kinds), with
  exponential backoff while the server is unreachable;
- the version has been compacted (410 Gone): it lists again and reports the difference to the
  handlers as ADDED / MODIFIED / DELETED, so nothing is missed.

The cached dicts are shared: **never mutate them** — ``copy.deepcopy`` first.  The controller and
the API server's read cache both build on this class.

Example::

    pods = Informer(kube, PODS, label_selector="app.kubernetes.io/managed-by=devbox")
    pods.add_handler(lambda event, obj, old: print(event, obj["metadata"]["name"]))
    task = asyncio.create_task(pods.run())
    await pods.wait_synced(within=10)
    pods.get("ns", "name")
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterable
from typing import Literal

from app.kubeclient._client import JSON, Kube
from app.kubeclient._errors import Gone, KubeError
from app.kubeclient._kinds import Kind

log = logging.getLogger(__name__)

EventType = Literal["ADDED", "MODIFIED", "DELETED"]
Handler = Callable[[EventType, JSON, JSON | None], None]
"""Called as ``handler(event, obj, old)``; ``old`` is the previous object for MODIFIED."""
Key = tuple[str, str]
"""``(namespace, name)``; namespace is ``""`` for cluster-scoped kinds."""


def object_key(obj: JSON) -> Key:
    """The cache key of an object."""
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def rv_int(value: str | None) -> int:
    """A resourceVersion as an integer for ordering (etcd's revisions are; others count 0)."""
    try:
        return int(value or 0)
    except ValueError:
        return 0


class Informer:
    """List + watch of one kind into an in-memory store, with event handlers."""

    def __init__(
        self,
        kube: Kube,
        kind: Kind,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        watch_timeout: int = 300,
        max_backoff: float = 10.0,
    ) -> None:
        self.kube = kube
        self.kind = kind
        self.namespace = namespace
        self.label_selector = label_selector
        self.watch_timeout = watch_timeout
        self.max_backoff = max_backoff
        self.resource_version = ""
        """The newest resourceVersion seen (from lists, events and bookmarks)."""
        self._store: dict[Key, JSON] = {}
        self._handlers: list[Handler] = []
        self._synced = asyncio.Event()
        self._progress = asyncio.Condition()
        self.relists = 0
        """How many times the informer listed (1 at start, +1 per 410 Gone)."""

    # ------------------------------------------------------------------ reading

    def get(self, namespace: str, name: str) -> JSON | None:
        """The cached object, or None.  Do not mutate it."""
        return self._store.get((namespace, name))

    def objects(self, namespace: str | None = None) -> list[JSON]:
        """Cached objects (of one namespace when given).  Do not mutate them."""
        if namespace is None:
            return list(self._store.values())
        return [obj for (ns, _), obj in self._store.items() if ns == namespace]

    def keys(self) -> Iterable[Key]:
        """Keys of all cached objects."""
        return list(self._store)

    def __len__(self) -> int:
        return len(self._store)

    @property
    def synced(self) -> bool:
        """Whether the first list has been loaded."""
        return self._synced.is_set()

    def add_handler(self, handler: Handler) -> None:
        """Call ``handler`` on every change (also for the objects of the first list)."""
        self._handlers.append(handler)

    async def wait_synced(self, within: float = 30.0) -> None:
        """Wait until the first list is loaded."""
        await asyncio.wait_for(self._synced.wait(), within)

    async def wait_for_resource_version(self, resource_version: str, within: float = 10.0) -> None:
        """Wait until the cache has seen ``resource_version`` (e.g. that of our own write), so
        a read right after a write does not see the state before it."""
        target = rv_int(resource_version)

        async def reached() -> None:
            async with self._progress:
                await self._progress.wait_for(lambda: rv_int(self.resource_version) >= target)

        await asyncio.wait_for(reached(), within)

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        """List and watch until cancelled.  Run again after a cancellation, it resumes the
        watch from the last resourceVersion seen (and lists again only if that is gone)."""
        backoff = 0.1
        need_list = not self.synced
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                async for event in self.kube.watch(
                    self.kind,
                    self.namespace,
                    self.resource_version,
                    label_selector=self.label_selector,
                    timeout_seconds=self.watch_timeout,
                ):
                    await self._apply(event)
                    backoff = 0.1
            except Gone:
                log.info("watch of %s: resourceVersion expired; listing again", self.kind.plural)
                need_list = True
            except KubeError as exc:
                log.warning(
                    "watch of %s failed (%s); retrying in %.1fs", self.kind.plural, exc, backoff
                )
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
                backoff = min(backoff * 2, self.max_backoff)

    async def _relist(self) -> None:
        items, rv = await self.kube.list_objects(
            self.kind, self.namespace, label_selector=self.label_selector
        )
        self.relists += 1
        fresh = {object_key(item): item for item in items}
        old_store = self._store
        self._store = fresh
        for key, obj in fresh.items():
            previous = old_store.get(key)
            if previous is None:
                self._notify("ADDED", obj, None)
            elif previous["metadata"].get("resourceVersion") != obj["metadata"].get(
                "resourceVersion"
            ):
                self._notify("MODIFIED", obj, previous)
        for key, obj in old_store.items():
            if key not in fresh:
                self._notify("DELETED", obj, None)
        await self._advance(rv)
        self._synced.set()

    async def _apply(self, event: JSON) -> None:
        kind = event.get("type")
        obj: JSON = event.get("object") or {}
        rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        if kind == "BOOKMARK":
            await self._advance(rv)
            return
        key = object_key(obj)
        obj.setdefault("apiVersion", self.kind.api_version)
        obj.setdefault("kind", self.kind.kind)
        if kind == "DELETED":
            self._store.pop(key, None)
            self._notify("DELETED", obj, None)
        elif kind in ("ADDED", "MODIFIED"):
            previous = self._store.get(key)
            self._store[key] = obj
            self._notify("MODIFIED" if previous is not None else "ADDED", obj, previous)
        await self._advance(rv)

    async def _advance(self, rv: str) -> None:
        if rv and rv_int(rv) >= rv_int(self.resource_version):
            self.resource_version = rv
            async with self._progress:
                self._progress.notify_all()

    def _notify(self, event: EventType, obj: JSON, old: JSON | None) -> None:
        for handler in self._handlers:
            try:
                handler(event, obj, old)
            except Exception:
                log.exception("informer handler failed on %s %s", event, object_key(obj))
