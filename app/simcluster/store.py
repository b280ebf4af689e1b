"""The object store of the simulated API server: MVCC like etcd, with watch history.

Every write gets the next value of one cluster-wide counter as its ``resourceVersion`` and is
appended to a bounded history of events.  The history serves watches from a given version
(older than the history → 410 Expired), and consistent paginated lists (a ``continue`` token
reads the state as it was at the first page's version, by rolling the history back).

Stored objects are never mutated: every write builds a new dict.  Callers that want to change
an object they read must copy it first (``copy.deepcopy``).

The store applies the generic registry rules of a kube-apiserver: server-owned metadata,
generation on spec changes, the status subresource, optimistic concurrency, finalizers and
``deletionTimestamp``, graceful pod deletion, namespace termination, and no-op updates that
write nothing.  Kind-specific rules come from each type's :class:`~app.simcluster.kinds.Strategy`.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime as dt
import json
import logging
import random
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from app.simcluster import names, selectors, shapes
from app.simcluster.admission import admit_pod
from app.simcluster.errors import (
    AlreadyExists,
    ApiError,
    BadRequest,
    Cause,
    Conflict,
    Gone,
    Invalid,
    MethodNotAllowed,
    NotFound,
    qualified,
)
from app.simcluster.kinds import JSON, Allocator, ResourceType, builtin_types, custom_types

log = logging.getLogger(__name__)

StorageKey = tuple[str, str]
ObjectKey = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects

GENERATE_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
CRD_CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
ORPHAN_FINALIZER = "orphan"
FOREGROUND_FINALIZER = "foregroundDeletion"


def now() -> str:
    """The current time in the API's RFC 3339 seconds format."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> dt.datetime:
    return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class Event:
    """One committed change, as watches see it."""

    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    key: StorageKey
    namespace: str
    name: str
    obj: JSON
    prev: JSON | None
    at: float = field(default_factory=time.monotonic)


Predicate = Callable[[JSON], bool]


@dataclass(eq=False)
class Watcher:
    """A watch stream's subscription: filters events and buffers them for the client."""

    key: StorageKey
    namespace: str | None
    predicate: Predicate
    api_version: str = ""
    queue: asyncio.Queue[tuple[str, JSON] | None] = field(
        default_factory=lambda: asyncio.Queue(maxsize=100_000)
    )
    closed: bool = False

    def offer(self, event: Event) -> None:
        if self.closed or event.key != self.key:
            return
        if self.namespace is not None and event.namespace != self.namespace:
            return
        now_matches = event.type != "DELETED" and self.predicate(event.obj)
        before_matched = event.prev is not None and self.predicate(event.prev)
        if event.type == "DELETED":
            before_matched = self.predicate(event.obj)
        if event.type == "DELETED":
            item = ("DELETED", event.obj) if before_matched else None
        elif now_matches and before_matched:
            item = ("MODIFIED", event.obj)
        elif now_matches:
            item = ("ADDED", event.obj)
        elif before_matched and event.prev is not None:
            gone = copy.deepcopy(event.prev)
            gone["metadata"]["resourceVersion"] = str(event.rv)
            item = ("DELETED", gone)
        else:
            item = None
        if item is None:
            return
        if self.api_version and item[1].get("apiVersion") != self.api_version:
            item = (item[0], {**item[1], "apiVersion": self.api_version})
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            # A real API server drops a watcher that cannot keep up; the client re-watches.
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.queue.put_nowait(None)
            except asyncio.QueueFull:
                self.queue.get_nowait()
                self.queue.put_nowait(None)


@dataclass
class ListResult:
    """A page of a list, with the list's metadata."""

    items: list[JSON]
    resource_version: int
    continue_token: str
    remaining: int | None


class TypeRegistry:
    """Resource types currently served, by group/version/plural and by storage bucket."""

    def __init__(self) -> None:
        self._by_path: dict[tuple[str, str, str], ResourceType] = {}

    def add(self, rt: ResourceType) -> None:
        self._by_path[(rt.group, rt.version, rt.plural)] = rt

    def remove_group_resource(self, group: str, plural: str) -> None:
        for path in [p for p in self._by_path if p[0] == group and p[2] == plural]:
            del self._by_path[path]

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_path.get((group, version, plural))

    def all(self) -> list[ResourceType]:
        return list(self._by_path.values())

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        for rt in self._by_path.values():
            if rt.api_version == api_version and rt.kind == kind:
                return rt
        return None

    def any_version(self, key: StorageKey) -> ResourceType | None:
        for rt in self._by_path.values():
            if rt.storage_key == key:
                return rt
        return None


class Store:
    """Objects of every kind, one resourceVersion counter, and the event history."""

    def __init__(self, history_limit: int = 50_000) -> None:
        self.types = TypeRegistry()
        for rt in builtin_types():
            self.types.add(rt)
        self.buckets: dict[StorageKey, dict[ObjectKey, JSON]] = {}
        self.uids: dict[str, tuple[StorageKey, ObjectKey]] = {}
        self.rv = 0
        self.history: deque[Event] = deque(maxlen=history_limit)
        self.compacted_rv = 0
        self.watchers: set[Watcher] = set()
        self.listeners: list[Callable[[Event], None]] = []
        self.allocator = Allocator()
        self.terminating_crds: set[StorageKey] = set()
        self.service_account_admission = False
        """Run the ServiceAccount admission plugin on new pods (see ``admission.py``)."""
        self._random = random.Random()

    # ------------------------------------------------------------------ reads

    def bucket(self, key: StorageKey) -> dict[ObjectKey, JSON]:
        return self.buckets.setdefault(key, {})

    def get(self, rt: ResourceType, namespace: str, name: str) -> JSON:
        """The stored object (do not mutate it), or NotFound."""
        obj = self.bucket(rt.storage_key).get((namespace if rt.namespaced else "", name))
        if obj is None:
            raise NotFound(rt.plural, rt.group, name)
        return self._as_version(obj, rt)

    def find(self, key: StorageKey, namespace: str, name: str) -> JSON | None:
        return self.bucket(key).get((namespace, name))

    def by_uid(self, uid: str) -> JSON | None:
        where = self.uids.get(uid)
        if where is None:
            return None
        return self.bucket(where[0]).get(where[1])

    def objects(self, key: StorageKey, namespace: str | None = None) -> list[JSON]:
        bucket = self.bucket(key)
        if namespace is None:
            return list(bucket.values())
        return [obj for (ns, _), obj in bucket.items() if ns == namespace]

    def list_objects(
        self,
        rt: ResourceType,
        namespace: str | None,
        *,
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 0,
        continue_token: str = "",
        resource_version: str = "",
        resource_version_match: str = "",
    ) -> ListResult:
        predicate = self.predicate(rt, label_selector, field_selector)
        start_after: ObjectKey | None = None
        at_rv = self.rv
        if resource_version_match not in ("", "Exact", "NotOlderThan"):
            raise BadRequest(
                f'resourceVersionMatch: Unsupported value: "{resource_version_match}": '
                'supported values: "Exact", "NotOlderThan"'
            )
        if resource_version_match and not resource_version:
            raise BadRequest("resourceVersionMatch is forbidden unless resourceVersion is provided")
        if continue_token:
            at_rv, start_after = self._decode_continue(continue_token)
        elif resource_version and resource_version != "0":
            wanted = self._parse_rv(resource_version)
            if wanted > self.rv:
                raise ApiError(
                    504,
                    "Timeout",
                    f"Too large resource version: {wanted}, current: {self.rv}",
                    {
                        "causes": [
                            {
                                "reason": "ResourceVersionTooLarge",
                                "message": "Too large resource version",
                            }
                        ],
                        "retryAfterSeconds": 1,
                    },
                )
            # A paginated list (limit) at a version, or resourceVersionMatch=Exact, reads the
            # state exactly as of that version; otherwise "not older than" serves the latest.
            if resource_version_match == "Exact" or (limit and resource_version_match == ""):
                at_rv = wanted
        if at_rv < self.rv and at_rv < self.compacted_rv:
            if continue_token:
                raise Gone(
                    "The provided continue parameter is too old to display a consistent list "
                    "result. You can start a new list without the continue parameter.",
                )
            raise Gone(f"too old resource version: {at_rv} ({self.compacted_rv + 1})")
        state = self._state_at(rt.storage_key, at_rv)
        keys = sorted(k for k in state if namespace is None or k[0] == namespace)
        if start_after is not None:
            keys = [k for k in keys if k > start_after]
        matched: list[JSON] = []
        last_key: ObjectKey | None = None
        remaining_keys: list[ObjectKey] = []
        for index, k in enumerate(keys):
            obj = state[k]
            if not predicate(obj):
                continue
            if limit and len(matched) >= limit:
                remaining_keys = keys[index:]
                break
            matched.append(self._as_version(obj, rt))
            last_key = k
        token = ""
        remaining: int | None = None
        if remaining_keys and last_key is not None:
            token = self._encode_continue(at_rv, last_key)
            if not label_selector and not field_selector:
                remaining = len(remaining_keys)
        return ListResult(matched, at_rv, token, remaining)

    def predicate(self, rt: ResourceType, label_selector: str, field_selector: str) -> Predicate:
        labels = selectors.LabelSelector.parse(label_selector or "")
        fields = selectors.FieldSelector.parse(field_selector or "")
        kind = "" if rt.custom else rt.kind
        supported = selectors.field_values(kind, {}, namespaced=rt.namespaced).keys()
        selectors.require_supported(fields, supported, kind=kind or None)

        def matches(obj: JSON) -> bool:
            metadata = obj.get("metadata") or {}
            if not labels.matches(metadata.get("labels") or {}):
                return False
            return fields.matches(selectors.field_values(kind, obj, namespaced=rt.namespaced))

        return matches

    def _state_at(self, key: StorageKey, at_rv: int) -> dict[ObjectKey, JSON]:
        current = self.bucket(key)
        if at_rv >= self.rv:
            return current
        state = dict(current)
        for event in reversed(self.history):
            if event.rv <= at_rv:
                break
            if event.key != key:
                continue
            object_key = (event.namespace, event.name)
            if event.type == "ADDED":
                state.pop(object_key, None)
            else:
                previous = event.prev if event.type == "MODIFIED" else event.prev or event.obj
                if previous is not None:
                    state[object_key] = previous
        return state

    @staticmethod
    def _encode_continue(rv: int, last: ObjectKey) -> str:
        start = f"{last[0]}/{last[1]}\x00" if last[0] else f"{last[1]}\x00"
        raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start})
        return base64.urlsafe_b64encode(raw.encode()).decode()

    @staticmethod
    def _decode_continue(token: str) -> tuple[int, ObjectKey]:
        try:
            padded = token + "=" * (-len(token) % 4)
            data = json.loads(base64.urlsafe_b64decode(padded.encode()))
            start = str(data["start"]).rstrip("\x00")
            rv = int(data["rv"])
        except (ValueError, KeyError, TypeError) as exc:
            raise BadRequest(f"continue key is not valid: {exc}") from exc
        namespace, _, name = start.rpartition("/")
        return rv, (namespace, name)

    @staticmethod
    def _parse_rv(value: str) -> int:
        try:
            rv = int(value)
        except ValueError as exc:
            raise BadRequest(f'invalid resource version "{value}"') from exc
        if rv < 0:
            raise BadRequest(f'invalid resource version "{value}"')
        return rv

    @staticmethod
    def _as_version(obj: JSON, rt: ResourceType) -> JSON:
        """Objects are stored at one version; reads at another only relabel apiVersion."""
        if obj.get("apiVersion") == rt.api_version:
            return obj
        relabelled = dict(obj)
        relabelled["apiVersion"] = rt.api_version
        return relabelled

    # ------------------------------------------------------------------ watches

    def watch(
        self,
        rt: ResourceType,
        namespace: str | None,
        *,
        resource_version: str = "",
        label_selector: str = "",
        field_selector: str = "",
    ) -> Watcher:
        """Subscribe; the queue first gets what happened after ``resource_version``."""
        predicate = self.predicate(rt, label_selector, field_selector)
        watcher = Watcher(rt.storage_key, namespace, predicate, rt.api_version)
        if resource_version in ("", "0"):
            for obj in sorted(
                self.objects(rt.storage_key, namespace),
                key=lambda o: int(o["metadata"]["resourceVersion"]),
            ):
                if predicate(obj):
                    watcher.queue.put_nowait(("ADDED", self._as_version(obj, rt)))
        else:
            since = self._parse_rv(resource_version)
            if since < self.compacted_rv:
                raise Gone(f"too old resource version: {since} ({self.compacted_rv + 1})")
            if since > self.rv:
                raise ApiError(
                    504, "Timeout", f"Too large resource version: {since}, current: {self.rv}"
                )
            for event in self.history:
                if event.rv > since:
                    watcher.offer(event)
        self.watchers.add(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        watcher.close()
        self.watchers.discard(watcher)

    # ------------------------------------------------------------------ commit

    def _commit(
        self,
        rt: ResourceType,
        kind: str,
        namespace: str,
        name: str,
        obj: JSON,
        prev: JSON | None,
    ) -> JSON:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        bucket = self.bucket(rt.storage_key)
        object_key = (namespace, name)
        uid = obj["metadata"].get("uid")
        if kind == "DELETED":
            bucket.pop(object_key, None)
            if uid:
                self.uids.pop(uid, None)
        else:
            bucket[object_key] = obj
            if uid:
                self.uids[uid] = (rt.storage_key, object_key)
        if len(self.history) == self.history.maxlen:
            self.compacted_rv = self.history[0].rv
        event = Event(self.rv, kind, rt.storage_key, namespace, name, obj, prev)
        self.history.append(event)
        for watcher in list(self.watchers):
            watcher.offer(event)
            if watcher.closed:
                self.watchers.discard(watcher)
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:  # a broken controller must not break the API
                log.exception("simulated controller failed on %s %s/%s", kind, namespace, name)
        return obj

    # ------------------------------------------------------------------ create

    def create(self, rt: ResourceType, namespace: str, body: Any, *, dry_run: bool = False) -> JSON:
        obj = self._check_body(rt, body)
        metadata = obj.setdefault("metadata", {})
        if not isinstance(metadata, dict):
            raise BadRequest("metadata must be an object")
        if rt.namespaced:
            body_ns = metadata.get("namespace")
            if body_ns and body_ns != namespace:
                raise BadRequest(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request"
                )
            metadata["namespace"] = namespace
        else:
            metadata.pop("namespace", None)
            namespace = ""
        if rt.custom and rt.storage_key in self.terminating_crds:
            raise MethodNotAllowed(
                "create not allowed while custom resource definition is terminating"
            )
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = str(metadata["generateName"]) + "".join(
                self._random.choice(GENERATE_NAME_ALPHABET) for _ in range(5)
            )
        if rt.namespaced:
            self._check_namespace_open(rt, namespace, str(metadata.get("name") or ""))
        for key in (
            "uid",
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
            "managedFields",
        ):
            metadata.pop(key, None)
        metadata["uid"] = str(uuid.uuid4())
        metadata["creationTimestamp"] = now()
        if rt.tracks_generation:
            metadata["generation"] = 1
        else:
            metadata.pop("generation", None)
        if rt.status_subresource and rt.custom:
            obj.pop("status", None)
        rt.strategy.prepare_create(obj, self.allocator)
        if self.service_account_admission and rt.storage_key == ("", "pods"):
            admit_pod(obj, namespace, self.find)
        causes = self._validate_meta(rt, obj) + rt.strategy.validate(obj)
        name = str(metadata.get("name") or "")
        if causes:
            raise Invalid(rt.kind, rt.group, name, causes)
        if (namespace, name) in self.bucket(rt.storage_key):
            raise AlreadyExists(rt.plural, rt.group, name)
        if dry_run:
            return self._as_version(obj, rt)
        causes = rt.strategy.allocate(obj, None, self.allocator)
        if causes:
            raise Invalid(rt.kind, rt.group, name, causes)
        return self._as_version(self._commit(rt, "ADDED", namespace, name, obj, None), rt)

    def _check_body(self, rt: ResourceType, body: Any) -> JSON:
        shapes.check_decodable(rt, body)
        obj: JSON = copy.deepcopy(body)
        kind, api_version = obj.get("kind"), obj.get("apiVersion")
        if (kind and kind != rt.kind) or (api_version and api_version != rt.api_version):
            raise BadRequest(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({rt.api_version})"
                if api_version != rt.api_version
                else f"the object provided is unrecognized (must be of type {rt.kind})"
            )
        obj["kind"] = rt.kind
        obj["apiVersion"] = (
            f"{rt.group}/{rt.storage_version}" if rt.storage_version else rt.api_version
        )
        return obj

    def _check_namespace_open(self, rt: ResourceType, namespace: str, name: str) -> None:
        ns = self.find(("", "namespaces"), "", namespace)
        if ns is None:
            raise NotFound("namespaces", "", namespace)
        if ns["metadata"].get("deletionTimestamp"):
            resource = qualified(rt.plural, rt.group)
            details: JSON = {"name": name}
            if rt.group:
                details["group"] = rt.group
            details["kind"] = rt.plural
            details["causes"] = [
                {
                    "reason": "NamespaceTerminating",
                    "message": f"namespace {namespace} is being terminated",
                    "field": "metadata.namespace",
                }
            ]
            raise ApiError(
                403,
                "Forbidden",
                f'{resource} "{name}" is forbidden: unable to create new content in namespace '
                f"{namespace} because it is being terminated",
                details,
            )

    def _validate_meta(self, rt: ResourceType, obj: JSON) -> list[Cause]:
        metadata = obj.get("metadata") or {}
        causes = names.validate_object_meta(
            metadata, namespaced=rt.namespaced, name_rule=rt.strategy.name_rule
        )
        for i, ref in enumerate(metadata.get("ownerReferences") or []):
            path = f"metadata.ownerReferences[{i}]"
            if not isinstance(ref, dict):
                causes.append(Cause("FieldValueInvalid", "Invalid value: must be an object", path))
                continue
            for key in ("apiVersion", "kind", "name", "uid"):
                if not ref.get(key):
                    causes.append(
                        Cause(
                            "FieldValueInvalid",
                            f'Invalid value: "": {key} must not be empty',
                            f"{path}.{key}",
                        )
                    )
        return causes

    # ------------------------------------------------------------------ update

    def update(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        *,
        subresource: str = "",
        dry_run: bool = False,
        require_rv: bool = True,
    ) -> JSON:
        if not rt.namespaced:
            namespace = ""
        new = self._check_body(rt, body)
        metadata = new.get("metadata")
        if not isinstance(metadata, dict):
            raise BadRequest("metadata must be an object")
        body_name = metadata.get("name")
        if body_name and body_name != name:
            raise BadRequest(
                f"the name of the object ({body_name}) does not match the name on the URL ({name})"
            )
        if rt.namespaced:
            body_ns = metadata.get("namespace")
            if body_ns and body_ns != namespace:
                raise BadRequest(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request"
                )
        old = self.find(rt.storage_key, namespace, name)
        if old is None:
            raise NotFound(rt.plural, rt.group, name)
        body_uid = metadata.get("uid")
        if body_uid and body_uid != old["metadata"].get("uid"):
            raise Invalid(
                rt.kind,
                rt.group,
                name,
                [
                    Cause(
                        "FieldValueInvalid",
                        f'Invalid value: "{body_uid}": field is immutable',
                        "metadata.uid",
                    )
                ],
            )
        wanted_rv = metadata.get("resourceVersion")
        if wanted_rv:
            if str(wanted_rv) != old["metadata"]["resourceVersion"]:
                raise Conflict(rt.plural, rt.group, name)
        elif require_rv and not rt.unconditional_update:
            # The real server names the resource here, not the kind.
            raise Invalid(
                rt.plural,
                rt.group,
                name,
                [
                    Cause(
                        "FieldValueInvalid",
                        "Invalid value: 0x0: must be specified for an update",
                        "metadata.resourceVersion",
                    )
                ],
            )
        if subresource == "status":
            merged = copy.deepcopy(old)
            if "status" in new:
                merged["status"] = new["status"]
            else:
                merged.pop("status", None)
            new = merged
        else:
            self._carry_server_metadata(new, old)
            if rt.status_subresource:
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
            rt.strategy.prepare_update(new, old, self.allocator)
        causes = self._validate_meta(rt, new) + rt.strategy.validate(new)
        causes += rt.strategy.validate_update(new, old)
        old_finalizers = set(old["metadata"].get("finalizers") or [])
        added = [f for f in new["metadata"].get("finalizers") or [] if f not in old_finalizers]
        if old["metadata"].get("deletionTimestamp") and added:
            causes.append(
                Cause(
                    "FieldValueForbidden",
                    "Forbidden: no new finalizers can be added if the object is being deleted, "
                    f"found new finalizers []string{{{', '.join(json.dumps(f) for f in added)}}}",
                    "metadata.finalizers",
                )
            )
        if causes:
            raise Invalid(rt.kind, rt.group, name, causes)
        if rt.tracks_generation and _spec_part(new, rt) != _spec_part(old, rt):
            new["metadata"]["generation"] = int(old["metadata"].get("generation") or 0) + 1
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        if new == old:
            return self._as_version(old, rt)  # a no-op update writes nothing
        if dry_run:
            return self._as_version(new, rt)
        causes = rt.strategy.allocate(new, old, self.allocator)
        if causes:
            raise Invalid(rt.kind, rt.group, name, causes)
        meta = new["metadata"]
        if (
            meta.get("deletionTimestamp")
            and not meta.get("finalizers")
            and meta.get("deletionGracePeriodSeconds") == 0
            and not self._namespace_pending(rt, new)
        ):
            return self._remove(rt, namespace, name, new, old)
        return self._as_version(self._commit(rt, "MODIFIED", namespace, name, new, old), rt)

    @staticmethod
    def _carry_server_metadata(new: JSON, old: JSON) -> None:
        meta, old_meta = new["metadata"], old["metadata"]
        for key in (
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "name",
            "namespace",
        ):
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        for key in ("selfLink", "managedFields"):
            meta.pop(key, None)
        for key in ("labels", "annotations", "finalizers", "ownerReferences"):
            if key in meta and not meta[key]:
                del meta[key]

    def _namespace_pending(self, rt: ResourceType, obj: JSON) -> bool:
        return rt.storage_key == ("", "namespaces") and bool(
            (obj.get("spec") or {}).get("finalizers")
        )

    def finalize_namespace(self, name: str, finalizers: list[str]) -> JSON:
        """The ``namespaces/{name}/finalize`` subresource: set ``spec.finalizers``."""
        rt = self.types.lookup("", "v1", "namespaces")
        assert rt is not None
        old = self.find(rt.storage_key, "", name)
        if old is None:
            raise NotFound("namespaces", "", name)
        new = copy.deepcopy(old)
        new.setdefault("spec", {})["finalizers"] = finalizers
        if new == old:
            return old
        meta = new["metadata"]
        if meta.get("deletionTimestamp") and not finalizers and not meta.get("finalizers"):
            return self._remove(rt, "", name, new, old)
        return self._commit(rt, "MODIFIED", "", name, new, old)

    def commit_internal(self, rt: ResourceType, new: JSON, prev: JSON) -> JSON:
        """Write a change made by a simulated control-plane component (scheduler, kubelet).

        ``prev`` is the version the change was computed from; a concurrent change in between
        is a Conflict, as it would be for the real component's update.
        """
        meta = new["metadata"]
        namespace, name = meta.get("namespace", ""), meta["name"]
        current = self.find(rt.storage_key, namespace, name)
        if current is None or current["metadata"]["uid"] != prev["metadata"]["uid"]:
            raise NotFound(rt.plural, rt.group, name)
        if current["metadata"]["resourceVersion"] != prev["metadata"]["resourceVersion"]:
            raise Conflict(rt.plural, rt.group, name)
        return self._commit(rt, "MODIFIED", namespace, name, new, current)

    # ------------------------------------------------------------------ delete

    def delete(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        *,
        grace_period: int | None = None,
        propagation: str | None = None,
        preconditions: dict[str, Any] | None = None,
        dry_run: bool = False,
    ) -> tuple[JSON, bool]:
        """Delete or start deleting; returns the object and whether it is gone now."""
        if not rt.namespaced:
            namespace = ""
        old = self.find(rt.storage_key, namespace, name)
        if old is None:
            raise NotFound(rt.plural, rt.group, name)
        meta = old["metadata"]
        preconditions = preconditions or {}
        if preconditions.get("uid") and preconditions["uid"] != meta.get("uid"):
            raise Conflict(
                rt.plural,
                rt.group,
                name,
                f"Precondition failed: UID in precondition: {preconditions['uid']}, "
                f"UID in object meta: {meta.get('uid')}",
            )
        if preconditions.get("resourceVersion") and preconditions["resourceVersion"] != meta.get(
            "resourceVersion"
        ):
            raise Conflict(
                rt.plural,
                rt.group,
                name,
                "Precondition failed: ResourceVersion in precondition: "
                f"{preconditions['resourceVersion']}, ResourceVersion in object meta: "
                f"{meta.get('resourceVersion')}",
            )
        if propagation not in (None, "", "Orphan", "Background", "Foreground"):
            raise Invalid(
                "DeleteOptions",
                "",
                "",
                [
                    Cause(
                        "FieldValueNotSupported",
                        f'Unsupported value: "{propagation}": supported values: "Foreground", '
                        '"Background", "Orphan", "nil"',
                        "propagationPolicy",
                    )
                ],
            )
        new = copy.deepcopy(old)
        new_meta = new["metadata"]
        finalizers: list[str] = list(new_meta.get("finalizers") or [])
        if propagation == "Orphan" and ORPHAN_FINALIZER not in finalizers:
            finalizers.append(ORPHAN_FINALIZER)
        elif propagation == "Foreground" and FOREGROUND_FINALIZER not in finalizers:
            finalizers.append(FOREGROUND_FINALIZER)
        if (
            rt.storage_key == ("apiextensions.k8s.io", "customresourcedefinitions")
            and CRD_CLEANUP_FINALIZER not in finalizers
            and not meta.get("deletionTimestamp")
        ):
            finalizers.append(CRD_CLEANUP_FINALIZER)
        if propagation in ("Orphan", "Foreground") and meta.get("deletionTimestamp"):
            finalizers = list(meta.get("finalizers") or [])  # cannot change once deleting
        grace = self._grace_period(rt, old, grace_period)
        namespace_pending = rt.storage_key == ("", "namespaces") and bool(
            (old.get("spec") or {}).get("finalizers")
        )
        if finalizers:
            new_meta["finalizers"] = finalizers
        if grace > 0 or finalizers or namespace_pending:
            if meta.get("deletionTimestamp"):
                current = meta.get("deletionGracePeriodSeconds") or 0
                if grace < current:
                    new_meta["deletionGracePeriodSeconds"] = grace
                    new_meta["deletionTimestamp"] = _in_seconds(grace)
            else:
                new_meta["deletionTimestamp"] = _in_seconds(grace)
                new_meta["deletionGracePeriodSeconds"] = grace
                if rt.tracks_generation:
                    new_meta["generation"] = int(meta.get("generation") or 0) + 1
                if rt.storage_key == ("", "namespaces"):
                    new.setdefault("status", {})["phase"] = "Terminating"
            pending = grace > 0 or bool(finalizers) or namespace_pending
            if pending:
                if dry_run or new == old:
                    return self._as_version(old, rt), False
                return self._as_version(
                    self._commit(rt, "MODIFIED", namespace, name, new, old), rt
                ), False
        if dry_run:
            return self._as_version(old, rt), True
        return self._remove(rt, namespace, name, new, old), True

    @staticmethod
    def _grace_period(rt: ResourceType, obj: JSON, requested: int | None) -> int:
        if rt.storage_key != ("", "pods"):
            return 0
        spec = obj.get("spec") or {}
        phase = (obj.get("status") or {}).get("phase")
        if not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
            return 0
        if requested is not None:
            return max(0, requested)
        return int(spec.get("terminationGracePeriodSeconds", 30))

    def _remove(self, rt: ResourceType, namespace: str, name: str, last: JSON, prev: JSON) -> JSON:
        gone = self._commit(rt, "DELETED", namespace, name, last, prev)
        rt.strategy.release(gone, self.allocator)
        return self._as_version(gone, rt)

    # ------------------------------------------------------------------ types

    def _builtin(self, key: StorageKey) -> bool:
        existing = self.types.any_version(key)
        return existing is not None and not existing.custom

    def install_crd_types(self, crd: JSON) -> None:
        """Serve the resources a CRD defines (the CRD controller calls this)."""
        spec = crd.get("spec") or {}
        key = (spec["group"], spec["names"]["plural"])
        if self._builtin(key):
            return  # built-in handlers always take precedence, as in a real server
        self.types.remove_group_resource(*key)
        for rt in custom_types(crd):
            self.types.add(rt)

    def uninstall_crd_types(self, crd: JSON) -> None:
        """Stop serving a deleted CRD's resources; their watches end."""
        spec = crd.get("spec") or {}
        key = (spec["group"], spec["names"]["plural"])
        if self._builtin(key):
            return
        self.types.remove_group_resource(*key)
        self.terminating_crds.discard(key)
        self.buckets.pop(key, None)
        for watcher in [w for w in self.watchers if w.key == key]:
            self.unwatch(watcher)

    # ------------------------------------------------------------------ persistence

    def dump(self) -> JSON:
        """Everything needed to come back after a restart (not the watch history)."""
        return {
            "resourceVersion": self.rv,
            "objects": [
                {"group": key[0], "resource": key[1], "items": list(bucket.values())}
                for key, bucket in self.buckets.items()
                if bucket
            ],
        }

    def load(self, state: JSON) -> None:
        """Restore :meth:`dump` output; watches from before the restart get 410."""
        self.rv = int(state.get("resourceVersion", 0))
        self.compacted_rv = self.rv
        crd_key = ("apiextensions.k8s.io", "customresourcedefinitions")
        for entry in state.get("objects", []):
            key = (entry["group"], entry["resource"])
            bucket = self.bucket(key)
            for obj in entry["items"]:
                meta = obj["metadata"]
                object_key = (meta.get("namespace", ""), meta["name"])
                bucket[object_key] = obj
                if meta.get("uid"):
                    self.uids[meta["uid"]] = (key, object_key)
        for crd in self.objects(crd_key):
            try:
                self.install_crd_types(crd)
            except (KeyError, TypeError, ValueError) as exc:
                log.error(
                    "CRD %s in the saved state cannot be served: %s",
                    crd["metadata"].get("name"),
                    exc,
                )
        for svc in self.objects(("", "services")):
            spec = svc.get("spec") or {}
            if spec.get("clusterIP") and spec["clusterIP"] != "None":
                self.allocator.cluster_ips.add(spec["clusterIP"])
            for port in spec.get("ports") or []:
                if port.get("nodePort"):
                    self.allocator.node_ports.add(int(port["nodePort"]))

    def compact(self, older_than: float) -> None:
        """Forget history older than ``older_than`` seconds (watches from before get 410)."""
        limit = time.monotonic() - older_than
        while self.history and self.history[0].at < limit:
            self.compacted_rv = self.history.popleft().rv

    def resource_types(self) -> Iterable[ResourceType]:
        return self.types.all()


def _spec_part(obj: JSON, rt: ResourceType) -> JSON:
    """What generation tracks: everything but metadata (and status, with its subresource)."""
    ignored = ("metadata", "status") if rt.status_subresource else ("metadata",)
    return {k: v for k, v in obj.items() if k not in ignored}


def _in_seconds(seconds: int) -> str:
    moment = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
