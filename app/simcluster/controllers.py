"""The control loops a real control plane runs, for the simulated cluster.

- :class:`GarbageCollector` — owner references: background cascade when an owner is gone,
  the ``orphan`` and ``foregroundDeletion`` finalizers, dependents whose owners never existed.
- :class:`NamespaceController` — a deleted namespace empties itself, then disappears.
- :class:`CRDController` — a new CRD becomes Established and its resources are served; a
  deleted CRD first deletes its custom resources (waiting on their finalizers).
- :class:`ServiceAccountController` — every namespace gets its ``default`` ServiceAccount, and
  every ServiceAccount a ``<name>-token-xxxxx`` Secret (the service-account and token
  controllers of kube-controller-manager v1.20); the tokens of a deleted account go with it.

Each reacts to store events but never writes from inside the store's commit: work is queued
and done on the next turn of the event loop, like an informer-fed controller.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import logging
import secrets
from collections import defaultdict
from collections.abc import Callable

from app.simcluster.admission import (
    SECRET_KEY,
    SERVICE_ACCOUNT_KEY,
    SERVICE_ACCOUNT_NAME_ANNOTATION,
    SERVICE_ACCOUNT_UID_ANNOTATION,
    TOKEN_SECRET_TYPE,
    token_secret_of,
)
from app.simcluster.errors import ApiError
from app.simcluster.kinds import JSON, ResourceType
from app.simcluster.store import (
    CRD_CLEANUP_FINALIZER,
    FOREGROUND_FINALIZER,
    ORPHAN_FINALIZER,
    Event,
    Store,
    now,
)

log = logging.getLogger(__name__)

CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")
NAMESPACE_KEY = ("", "namespaces")
SIMULATED_CA = b"# the simulated cluster serves plain HTTP: no certificate authority\n"


class Deferred:
    """Collects work items from store events and runs them once per event-loop turn."""

    def __init__(self, loop: asyncio.AbstractEventLoop, run: Callable[[set[str]], None]) -> None:
        self._loop = loop
        self._run = run
        self._pending: set[str] = set()
        self._scheduled = False

    def add(self, item: str) -> None:
        self._pending.add(item)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._drain)

    def _drain(self) -> None:
        self._scheduled = False
        items, self._pending = self._pending, set()
        try:
            self._run(items)
        except Exception:
            log.exception("simulated controller failed")


def _rt(store: Store, key: tuple[str, str]) -> ResourceType | None:
    return store.types.any_version(key)


class GarbageCollector:
    """Deletes dependents of deleted owners, as kube-controller-manager's GC does."""

    def __init__(self, store: Store, loop: asyncio.AbstractEventLoop) -> None:
        self.store = store
        self.dependents: dict[str, set[str]] = defaultdict(set)  # owner uid → dependent uids
        self.owners: dict[str, set[str]] = {}  # dependent uid → owner uids
        self.work = Deferred(loop, self._process)
        for bucket in store.buckets.values():
            for obj in bucket.values():
                self._index(obj, deleted=False)
        for dependent, owners in list(self.owners.items()):
            if owners:
                self.work.add(dependent)
        store.listeners.append(self.on_event)

    def _index(self, obj: JSON, *, deleted: bool) -> None:
        uid = obj["metadata"].get("uid")
        if not uid:
            return
        for owner in self.owners.pop(uid, set()):
            self.dependents[owner].discard(uid)
        if deleted:
            return
        owners = {
            ref["uid"]
            for ref in obj["metadata"].get("ownerReferences") or []
            if isinstance(ref, dict) and ref.get("uid")
        }
        if owners:
            self.owners[uid] = owners
            for owner in owners:
                self.dependents[owner].add(uid)

    def on_event(self, event: Event) -> None:
        uid = event.obj["metadata"].get("uid", "")
        self._index(event.obj, deleted=event.type == "DELETED")
        if event.type == "DELETED":
            for dependent in self.dependents.get(uid, set()):
                self.work.add(dependent)
            self.dependents.pop(uid, None)
            for owner in self._owner_uids(event.prev or event.obj):
                self.work.add(owner)  # a foreground owner may be waiting for this one
            return
        if self.owners.get(uid):
            self.work.add(uid)
        meta = event.obj["metadata"]
        if meta.get("deletionTimestamp") and (
            {ORPHAN_FINALIZER, FOREGROUND_FINALIZER} & set(meta.get("finalizers") or [])
        ):
            self.work.add(uid)

    @staticmethod
    def _owner_uids(obj: JSON) -> set[str]:
        return {
            ref["uid"]
            for ref in obj["metadata"].get("ownerReferences") or []
            if isinstance(ref, dict) and ref.get("uid")
        }

    def _process(self, uids: set[str]) -> None:
        for uid in uids:
            obj = self.store.by_uid(uid)
            if obj is None:
                continue
            meta = obj["metadata"]
            finalizers = set(meta.get("finalizers") or [])
            if meta.get("deletionTimestamp") and ORPHAN_FINALIZER in finalizers:
                self._orphan_dependents(obj)
            elif meta.get("deletionTimestamp") and FOREGROUND_FINALIZER in finalizers:
                self._delete_dependents_first(obj)
            else:
                self._collect_if_owners_gone(obj)

    def _where(self, obj: JSON) -> tuple[ResourceType, str, str] | None:
        located = self.store.uids.get(obj["metadata"]["uid"])
        if located is None:
            return None
        rt = _rt(self.store, located[0])
        if rt is None:
            return None
        return rt, located[1][0], located[1][1]

    def _collect_if_owners_gone(self, obj: JSON) -> None:
        refs = [r for r in obj["metadata"].get("ownerReferences") or [] if isinstance(r, dict)]
        if not refs or obj["metadata"].get("deletionTimestamp"):
            return
        alive = []
        for ref in refs:
            owner = self.store.by_uid(ref.get("uid", ""))
            if owner is not None and _same_scope(owner, obj):
                alive.append(ref)
        where = self._where(obj)
        if where is None:
            return
        rt, namespace, name = where
        try:
            if not alive:
                self.store.delete(rt, namespace, name)
            elif len(alive) != len(refs):
                updated = copy.deepcopy(obj)
                updated["metadata"]["ownerReferences"] = alive
                self.store.update(rt, namespace, name, updated)
        except ApiError as exc:
            log.debug("gc of %s/%s: %s", namespace, name, exc.message)

    def _orphan_dependents(self, owner: JSON) -> None:
        owner_uid = owner["metadata"]["uid"]
        for dependent_uid in list(self.dependents.get(owner_uid, set())):
            dependent = self.store.by_uid(dependent_uid)
            where = self._where(dependent) if dependent else None
            if dependent is None or where is None:
                continue
            updated = copy.deepcopy(dependent)
            refs = [
                r
                for r in updated["metadata"].get("ownerReferences") or []
                if r.get("uid") != owner_uid
            ]
            if refs:
                updated["metadata"]["ownerReferences"] = refs
            else:
                updated["metadata"].pop("ownerReferences", None)
            try:
                self.store.update(where[0], where[1], where[2], updated, require_rv=False)
            except ApiError as exc:
                log.debug("orphaning %s: %s", where[2], exc.message)
        self._drop_finalizer(owner, ORPHAN_FINALIZER)

    def _delete_dependents_first(self, owner: JSON) -> None:
        owner_uid = owner["metadata"]["uid"]
        waiting = False
        for dependent_uid in list(self.dependents.get(owner_uid, set())):
            dependent = self.store.by_uid(dependent_uid)
            where = self._where(dependent) if dependent else None
            if dependent is None or where is None:
                continue
            waiting = True
            if not dependent["metadata"].get("deletionTimestamp"):
                try:
                    self.store.delete(where[0], where[1], where[2], propagation="Foreground")
                except ApiError as exc:
                    log.debug("foreground delete of %s: %s", where[2], exc.message)
        if not waiting:
            self._drop_finalizer(owner, FOREGROUND_FINALIZER)

    def _drop_finalizer(self, obj: JSON, finalizer: str) -> None:
        where = self._where(obj)
        if where is None:
            return
        updated = copy.deepcopy(obj)
        updated["metadata"]["finalizers"] = [
            f for f in updated["metadata"].get("finalizers") or [] if f != finalizer
        ]
        try:
            self.store.update(where[0], where[1], where[2], updated, require_rv=False)
        except ApiError as exc:
            log.debug("dropping finalizer %s: %s", finalizer, exc.message)


def _same_scope(owner: JSON, dependent: JSON) -> bool:
    owner_ns = owner["metadata"].get("namespace", "")
    return not owner_ns or owner_ns == dependent["metadata"].get("namespace", "")


class NamespaceController:
    """Empties a terminating namespace, then removes its ``kubernetes`` finalizer."""

    def __init__(self, store: Store, loop: asyncio.AbstractEventLoop) -> None:
        self.store = store
        self.work = Deferred(loop, self._process)
        for ns in store.objects(NAMESPACE_KEY):
            if ns["metadata"].get("deletionTimestamp"):
                self.work.add(ns["metadata"]["name"])
        store.listeners.append(self.on_event)

    def on_event(self, event: Event) -> None:
        if event.key == NAMESPACE_KEY:
            if event.type != "DELETED" and event.obj["metadata"].get("deletionTimestamp"):
                self.work.add(event.name)
        elif event.namespace and event.type == "DELETED":
            ns = self.store.find(NAMESPACE_KEY, "", event.namespace)
            if ns is not None and ns["metadata"].get("deletionTimestamp"):
                self.work.add(event.namespace)

    def _process(self, namespaces: set[str]) -> None:
        for name in namespaces:
            ns = self.store.find(NAMESPACE_KEY, "", name)
            if ns is None or not ns["metadata"].get("deletionTimestamp"):
                continue
            remaining = 0
            for rt in self._namespaced_types():
                for obj in self.store.objects(rt.storage_key, name):
                    remaining += 1
                    if obj["metadata"].get("deletionTimestamp"):
                        continue
                    try:
                        self.store.delete(rt, name, obj["metadata"]["name"])
                    except ApiError as exc:
                        log.debug("emptying namespace %s: %s", name, exc.message)
            if remaining == 0 and "kubernetes" in (ns.get("spec") or {}).get("finalizers", []):
                finalizers = [f for f in ns["spec"]["finalizers"] if f != "kubernetes"]
                self.store.finalize_namespace(name, finalizers)

    def _namespaced_types(self) -> list[ResourceType]:
        seen: dict[tuple[str, str], ResourceType] = {}
        for rt in self.store.types.all():
            if rt.namespaced:
                seen.setdefault(rt.storage_key, rt)
        return list(seen.values())


class CRDController:
    """Establishes CRDs (serving their resources) and cleans them up on deletion."""

    def __init__(self, store: Store, loop: asyncio.AbstractEventLoop) -> None:
        self.store = store
        self.work = Deferred(loop, self._process)
        for crd in store.objects(CRD_KEY):
            self.work.add(crd["metadata"]["name"])
        store.listeners.append(self.on_event)

    def on_event(self, event: Event) -> None:
        if event.key == CRD_KEY:
            if event.type == "DELETED":
                self.store.uninstall_crd_types(event.obj)
            else:
                self.work.add(event.name)
            return
        if event.type == "DELETED" and event.key in self.store.terminating_crds:
            group, plural = event.key
            self.work.add(f"{plural}.{group}")

    def _crd_type(self) -> ResourceType:
        rt = self.store.types.lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        assert rt is not None
        return rt

    def _process(self, crd_names: set[str]) -> None:
        for name in crd_names:
            crd = self.store.find(CRD_KEY, "", name)
            if crd is None:
                continue
            if crd["metadata"].get("deletionTimestamp"):
                self._clean_up(crd)
            else:
                self._establish(crd)

    def _establish(self, crd: JSON) -> None:
        self.store.install_crd_types(crd)
        spec = crd["spec"]
        status = copy.deepcopy(crd.get("status") or {})
        accepted = {k: v for k, v in spec["names"].items()}
        storage = [v["name"] for v in spec.get("versions") or [] if v.get("storage")]
        stored = list(status.get("storedVersions") or [])
        for version in storage:
            if version not in stored:
                stored.append(version)
        conditions = _set_condition(
            status.get("conditions") or [],
            "NamesAccepted",
            "True",
            "NoConflicts",
            "no conflicts found",
        )
        conditions = _set_condition(
            conditions,
            "Established",
            "True",
            "InitialNamesAccepted",
            "the initial names have been accepted",
        )
        new_status = {"conditions": conditions, "acceptedNames": accepted, "storedVersions": stored}
        if new_status == crd.get("status"):
            return
        updated = copy.deepcopy(crd)
        updated["status"] = new_status
        try:
            self.store.update(
                self._crd_type(),
                "",
                crd["metadata"]["name"],
                updated,
                subresource="status",
                require_rv=False,
            )
        except ApiError as exc:
            log.debug("establishing CRD %s: %s", crd["metadata"]["name"], exc.message)

    def _clean_up(self, crd: JSON) -> None:
        spec = crd["spec"]
        key = (spec["group"], spec["names"]["plural"])
        self.store.terminating_crds.add(key)
        rt = self.store.types.any_version(key)
        remaining = self.store.objects(key) if rt else []
        if rt is not None:
            for obj in remaining:
                if obj["metadata"].get("deletionTimestamp"):
                    continue
                try:
                    self.store.delete(
                        rt, obj["metadata"].get("namespace", ""), obj["metadata"]["name"]
                    )
                except ApiError as exc:
                    log.debug("cleaning up CRD %s: %s", crd["metadata"]["name"], exc.message)
            remaining = self.store.objects(key)
        if remaining:
            conditions = _set_condition(
                (crd.get("status") or {}).get("conditions") or [],
                "Terminating",
                "True",
                "InstanceDeletionInProgress",
                f"CustomResource deletion is in progress: {len(remaining)} remaining",
            )
            if conditions != (crd.get("status") or {}).get("conditions"):
                updated = copy.deepcopy(crd)
                updated.setdefault("status", {})["conditions"] = conditions
                try:
                    self.store.update(
                        self._crd_type(),
                        "",
                        crd["metadata"]["name"],
                        updated,
                        subresource="status",
                        require_rv=False,
                    )
                except ApiError as exc:
                    log.debug("CRD status: %s", exc.message)
            return
        updated = copy.deepcopy(self.store.find(CRD_KEY, "", crd["metadata"]["name"]) or crd)
        updated["metadata"]["finalizers"] = [
            f for f in updated["metadata"].get("finalizers") or [] if f != CRD_CLEANUP_FINALIZER
        ]
        try:
            self.store.update(
                self._crd_type(), "", crd["metadata"]["name"], updated, require_rv=False
            )
        except ApiError as exc:
            log.debug("CRD finalizer: %s", exc.message)


def _set_condition(
    conditions: list[JSON], kind: str, status: str, reason: str, message: str
) -> list[JSON]:
    result = [copy.deepcopy(c) for c in conditions]
    for condition in result:
        if condition.get("type") == kind:
            if condition.get("status") != status:
                condition["lastTransitionTime"] = now()
            condition.update({"status": status, "reason": reason, "message": message})
            return result
    result.append(
        {
            "type": kind,
            "status": status,
            "lastTransitionTime": now(),
            "reason": reason,
            "message": message,
        }
    )
    return result


class ServiceAccountController:
    """The ``default`` ServiceAccount of every namespace, and a token Secret per account."""

    def __init__(self, store: Store, loop: asyncio.AbstractEventLoop) -> None:
        self.store = store
        self.namespaces = Deferred(loop, self._ensure_default_accounts)
        self.accounts = Deferred(loop, self._ensure_tokens)
        self.orphans = Deferred(loop, self._delete_tokens_of)
        for ns in store.objects(NAMESPACE_KEY):
            self.namespaces.add(ns["metadata"]["name"])
        for account in store.objects(SERVICE_ACCOUNT_KEY):
            self.accounts.add(self._key(account))
        store.listeners.append(self.on_event)

    @staticmethod
    def _key(obj: JSON) -> str:
        return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"

    def on_event(self, event: Event) -> None:
        if event.key == NAMESPACE_KEY and event.type == "ADDED":
            self.namespaces.add(event.name)
        elif event.key == SERVICE_ACCOUNT_KEY:
            if event.type == "DELETED":
                self.orphans.add(event.obj["metadata"]["uid"])
                if event.name == "default":
                    self.namespaces.add(event.namespace)
            else:
                self.accounts.add(self._key(event.obj))
        elif event.key == SECRET_KEY and event.type == "DELETED":
            name = (event.obj["metadata"].get("annotations") or {}).get(
                SERVICE_ACCOUNT_NAME_ANNOTATION
            )
            if event.obj.get("type") == TOKEN_SECRET_TYPE and name:
                self.accounts.add(f"{event.namespace}/{name}")

    def _type(self, key: tuple[str, str]) -> ResourceType:
        rt = _rt(self.store, key)
        assert rt is not None, key
        return rt

    def _open(self, namespace: str) -> bool:
        ns = self.store.find(NAMESPACE_KEY, "", namespace)
        return ns is not None and not ns["metadata"].get("deletionTimestamp")

    def _ensure_default_accounts(self, namespaces: set[str]) -> None:
        for namespace in namespaces:
            if not self._open(namespace):
                continue
            if self.store.find(SERVICE_ACCOUNT_KEY, namespace, "default") is None:
                try:
                    self.store.create(
                        self._type(SERVICE_ACCOUNT_KEY),
                        namespace,
                        {"metadata": {"name": "default"}},
                    )
                except ApiError as exc:
                    log.debug("default service account in %s: %s", namespace, exc.message)

    def _ensure_tokens(self, keys: set[str]) -> None:
        for key in keys:
            namespace, name = key.split("/", 1)
            account = self.store.find(SERVICE_ACCOUNT_KEY, namespace, name)
            if (
                account is None
                or account["metadata"].get("deletionTimestamp")
                or not self._open(namespace)
                or token_secret_of(self.store.find, account) is not None
            ):
                continue
            try:
                self._add_token(account)
            except ApiError as exc:
                log.debug("token for service account %s: %s", key, exc.message)

    def _add_token(self, account: JSON) -> None:
        namespace = account["metadata"]["namespace"]
        name = account["metadata"]["name"]
        secret = self.store.create(
            self._type(SECRET_KEY),
            namespace,
            {
                "metadata": {
                    "generateName": f"{name}-token-",
                    "annotations": {
                        SERVICE_ACCOUNT_NAME_ANNOTATION: name,
                        SERVICE_ACCOUNT_UID_ANNOTATION: account["metadata"]["uid"],
                    },
                },
                "type": TOKEN_SECRET_TYPE,
                "data": {
                    "ca.crt": base64.b64encode(SIMULATED_CA).decode(),
                    "namespace": base64.b64encode(namespace.encode()).decode(),
                    "token": base64.b64encode(
                        f"simulated.{secrets.token_urlsafe(32)}".encode()
                    ).decode(),
                },
            },
        )
        updated = copy.deepcopy(account)
        refs = [
            ref
            for ref in updated.get("secrets") or []
            if isinstance(ref, dict)
            and self.store.find(SECRET_KEY, namespace, str(ref.get("name")))
        ]
        refs.append({"name": secret["metadata"]["name"]})
        updated["secrets"] = refs
        self.store.update(
            self._type(SERVICE_ACCOUNT_KEY), namespace, name, updated, require_rv=False
        )

    def _delete_tokens_of(self, uids: set[str]) -> None:
        secret_type = self._type(SECRET_KEY)
        for secret in self.store.objects(SECRET_KEY):
            annotations = secret["metadata"].get("annotations") or {}
            if (
                secret.get("type") == TOKEN_SECRET_TYPE
                and annotations.get(SERVICE_ACCOUNT_UID_ANNOTATION) in uids
                and not secret["metadata"].get("deletionTimestamp")
            ):
                try:
                    self.store.delete(
                        secret_type, secret["metadata"]["namespace"], secret["metadata"]["name"]
                    )
                except ApiError as exc:
                    log.debug("token secret of a deleted account: %s", exc.message)
