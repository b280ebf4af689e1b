"""Shared state and helpers of the devbox reconciler: configuration, caches, owned children,
the ``Ready`` condition and conditional status writes.

The reconciler is split by job, each module a class adding one part on top of this one:
``_running`` (children and a running pod) → ``_stopping`` (stop, commit calls, auto-stop) →
``_restoring`` (restores, abandoned changes) → ``_deleting`` (finalizer) → ``_reconcile``
(the entry point and the lifecycle that picks among them)."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from app.controller import _children as children
from app.controller import _pods as pods
from app.controller import _sshkeys as sshkeys
from app.controller import _status as st
from app.controller._activity import ActivityWatch
from app.controller._commits import CommitTracker
from app.controller._events import EventRecorder
from app.kubeclient import (
    INGRESSES,
    JSON,
    PODS,
    SECRETS,
    SERVICES,
    AlreadyExists,
    Devboxes,
    Informer,
    Kind,
    Kube,
    NotFound,
    merge_patch,
)
from app.registry_client import RegistryClient
from app.resources import (
    CommitMode,
    CommitStatus,
    ConditionStatus,
    Devbox,
    DevboxPhase,
    DevboxStatus,
    NetworkMode,
    PortStatus,
    Runtime,
    SSHEndpoint,
)

log = logging.getLogger(__name__)


FINALIZER = "devbox.dev/controller"
ABANDON_ANNOTATION = "devbox.dev/abandon-changes"
"""Set to ``"true"`` to give up changes that cannot be saved: on a devbox being deleted, do not
wait for a commit in flight; on a devbox to be started whose stopped container could not be
committed, start from the last successful commit (the controller then clears it)."""
RESTART_ANNOTATION = "devbox.dev/restart-requested-at"
"""RFC 3339 time: restart (commit, then a new pod from the commit) unless a stop commit started
after it already succeeded."""
NAME_CONFLICT_RECHECK = 30.0
"""Seconds between looks at a child name taken by someone else's object."""

Key = tuple[str, str]


class NotOwned(Exception):
    """A child's name is taken by an object this devbox does not control."""


@dataclass
class ReconcileConfig:
    """What the reconciler needs from the settings."""

    registry: str
    domain: str
    url_scheme: str = "https"
    ingress_class: str | None = None
    delete_commit_wait: float = 300.0
    commit_retry_base: float = 2.0
    commit_retry_max: float = 300.0
    activity_interval: float = 60.0
    """Seconds between two looks at a running devbox's SSH connections (idle auto-stop)."""
    storage_interval: float = 300.0
    """Seconds between two measures of a running devbox's writable layer."""


@dataclass
class Caches:
    """The informers the reconciler reads."""

    devboxes: Informer
    runtimes: Informer
    pods: Informer
    services: Informer
    secrets: Informer
    ingresses: Informer
    nodes: Informer
    releases: Informer


class ReconcilerBase:
    """State shared by every part of the reconciler, and its child/status helpers."""

    def __init__(
        self,
        kube: Kube,
        caches: Caches,
        commits: CommitTracker,
        config: ReconcileConfig,
        registry: RegistryClient | None = None,
    ) -> None:
        self.kube = kube
        self.registry = registry
        self.api = Devboxes(kube)
        self.caches = caches
        self.commits = commits
        self.config = config
        self.events = EventRecorder(kube)
        self.activity = ActivityWatch(
            commits.client,
            lambda: (config.activity_interval, config.storage_interval),
            commits.on_done,
        )
        # Re-attaching to a commit interrupted by a temporary error backs off in memory: a
        # restarted controller should re-attach at once.  A *failed* stop commit's retry
        # backs off by status alone (see _backoff).
        self._reattach_failures: dict[Key, int] = {}
        self._reattach_at: dict[Key, float] = {}

    # ------------------------------------------------------------------ children

    def _owned(self, kind: Kind, cache: Informer, devbox: Devbox, name: str) -> JSON | None:
        obj = cache.get(devbox.namespace, name)
        if obj is None:
            return None
        if children.owner_uid(obj) != devbox.metadata.uid:
            raise NotOwned(
                f"{kind.kind} {devbox.namespace}/{name} exists and is not owned by this devbox; "
                "delete it or rename the devbox"
            )
        return obj

    async def _create(self, kind: Kind, devbox: Devbox, body: JSON) -> JSON:
        """Create a child; if the name is taken, the existing object when this devbox owns it
        (our cache lags behind), else :class:`NotOwned`."""
        try:
            return await self.kube.create(kind, devbox.namespace, body)
        except AlreadyExists:
            existing = await self.kube.get(kind, devbox.namespace, body["metadata"]["name"])
        if children.owner_uid(existing) != devbox.metadata.uid:
            raise NotOwned(
                f"{kind.kind} {devbox.namespace}/{body['metadata']['name']} exists and is not "
                "owned by this devbox; delete it or rename the devbox"
            )
        return existing

    async def _ensure_secret(self, devbox: Devbox) -> JSON:
        name = children.secret_name(devbox)
        existing = self._owned(SECRETS, self.caches.secrets, devbox, name)
        if existing is not None:
            return existing
        # If an earlier run created it and the cache lags, _create returns that one: keys are
        # never generated twice.
        return await self._create(SECRETS, devbox, children.secret(devbox))

    async def _ensure_service(self, devbox: Devbox, desired: JSON | None, name: str) -> JSON | None:
        existing = self._owned(SERVICES, self.caches.services, devbox, name)
        if desired is None:
            if existing is not None and not pods.terminating(existing):
                await self._delete(SERVICES, existing)
            return None
        if existing is None:
            return await self._create(SERVICES, devbox, desired)
        patch = children.service_differs(existing, desired)
        if patch is None:
            return existing
        return await self.kube.patch(SERVICES, devbox.namespace, name, patch)

    async def _ensure_ingresses(self, devbox: Devbox) -> dict[str, str]:
        """One Ingress per public port; returns the host of each public port by name."""
        hosts: dict[str, str] = {}
        urls = {p.name: p.url for p in devbox.status.ports if p.url}
        wanted: set[str] = set()
        for port in devbox.spec.ports:
            if not port.public:
                continue
            name = children.ingress_name(devbox, port.name)
            wanted.add(name)
            existing = self._owned(INGRESSES, self.caches.ingresses, devbox, name)
            host = (children.ingress_host(existing) if existing else None) or url_host(
                urls.get(port.name)
            )
            host = host or children.new_host(self.config.domain)
            hosts[port.name] = host
            desired = children.ingress(devbox, port.name, host, self.config.ingress_class)
            if existing is None:
                await self._create(INGRESSES, devbox, desired)
            elif ingress_spec(existing) != ingress_spec(desired):
                await self.kube.patch(INGRESSES, devbox.namespace, name, {"spec": desired["spec"]})
        for obj in self.caches.ingresses.objects(devbox.namespace):
            meta = obj.get("metadata") or {}
            if (
                children.owner_uid(obj) == devbox.metadata.uid
                and meta.get("name") not in wanted
                and not meta.get("deletionTimestamp")
            ):
                await self._delete(INGRESSES, obj)
        return hosts

    async def _delete(self, kind: Kind, obj: JSON) -> None:
        meta = obj["metadata"]
        with contextlib.suppress(NotFound):
            await self.kube.delete(kind, meta.get("namespace"), meta["name"], uid=meta.get("uid"))

    async def _delete_pod(self, pod: JSON) -> None:
        await self._delete(PODS, pod)

    # ------------------------------------------------------------------ status

    def _committed(self, status: DevboxStatus, pod: JSON) -> bool:
        """Whether the newest stop commit saved this pod's container."""
        uid = str((pod.get("metadata") or {}).get("uid"))
        for record in reversed(status.commits):
            if record.mode == CommitMode.STOP:
                return record.status == CommitStatus.SUCCEEDED and (
                    record.request_id or ""
                ).startswith(uid + ":")
        return False

    def _current_image(
        self, devbox: Devbox, runtime: Runtime | None, status: DevboxStatus
    ) -> str | None:
        # A restore is a record too: the newest one wins.  Releases use the same function.
        return st.current_image(status, runtime.spec.image if runtime is not None else status.image)

    def _not_ready(
        self, devbox: Devbox, status: DevboxStatus, phase: DevboxPhase, reason: str, message: str
    ) -> None:
        status.phase = phase
        st.set_condition(
            status, st.READY, ConditionStatus.FALSE, reason, message, devbox.metadata.generation
        )

    def _node_address(self, node_name: str) -> str | None:
        node = self.caches.nodes.get("", node_name) if node_name else None
        for address in ((node or {}).get("status") or {}).get("addresses") or []:
            if address.get("type") == "InternalIP":
                return str(address.get("address"))
        return None

    def _endpoints(
        self,
        devbox: Devbox,
        runtime: Runtime | None,
        status: DevboxStatus,
        pod: JSON | None,
        ssh_service: JSON | None,
        secret: JSON | None,
        hosts: dict[str, str],
    ) -> None:
        status.image = self._current_image(devbox, runtime, status)
        live = pod is not None and status.phase in (
            DevboxPhase.RUNNING,
            DevboxPhase.STARTING,
            DevboxPhase.FAILED,
            DevboxPhase.STOPPING,
        )
        pod_spec = (pod or {}).get("spec") or {}
        pod_status = (pod or {}).get("status") or {}
        status.pod_name = children.pod_name(devbox) if live else None
        status.node_name = pod_spec.get("nodeName") if live else None
        status.pod_ip = pod_status.get("podIP") if live else None
        host_key = children.secret_value(secret, "ssh_host_ed25519_key.pub") if secret else None
        ssh = SSHEndpoint(
            user=runtime.spec.user if runtime else (status.ssh.user if status.ssh else None),
            host_key_fingerprint=children.fingerprint(host_key) if host_key else None,
            user_key_fingerprint=sshkeys.user_key_fingerprint(secret)
            or (status.ssh.user_key_fingerprint if status.ssh else None),
        )
        if live and devbox.spec.network_mode == NetworkMode.NODE_PORT and ssh_service:
            ssh.host = self._node_address(str(pod_spec.get("nodeName") or ""))
            for port in (ssh_service.get("spec") or {}).get("ports") or []:
                if port.get("name") == "ssh" and port.get("nodePort"):
                    ssh.port = int(port["nodePort"])
        status.ssh = ssh
        status.ports = [
            PortStatus(
                name=p.name,
                port=p.port,
                url=f"{self.config.url_scheme}://{hosts[p.name]}" if p.name in hosts else None,
            )
            for p in devbox.spec.ports
        ]

    async def _write_status(self, obj: JSON, status: DevboxStatus) -> JSON | None:
        """Write ``status`` if it differs from the stored one; the stored object, or None."""
        old = st.dump(Devbox.model_validate(obj).status)
        new = st.dump(status)
        if old == new:
            return None
        meta = obj["metadata"]
        stored = await self.api.patch_status(
            meta["namespace"],
            meta["name"],
            merge_patch(old, new),
            resource_version=str(meta["resourceVersion"]),
        )
        with contextlib.suppress(TimeoutError):
            await self.caches.devboxes.wait_for_resource_version(
                str(stored["metadata"]["resourceVersion"]), within=2
            )
        return stored


def sooner(a: float | None, b: float | str | None) -> float | None:
    candidates = [x for x in (a, b) if isinstance(x, float | int)]
    return float(min(candidates)) if candidates else None


def url_host(url: str | None) -> str | None:
    if not url or "://" not in url:
        return None
    return url.split("://", 1)[1].split("/", 1)[0] or None


def ingress_spec(obj: JSON) -> tuple[Any, ...]:
    spec = obj.get("spec") or {}
    return (spec.get("ingressClassName"), spec.get("rules"))
