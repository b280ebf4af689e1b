"""Level-based reconcile of one Devbox: read the world from the caches, make it match the spec.

``reconcile(key)`` never looks at the event that queued the key.  It returns ``None`` (done
until something changes) or seconds after which to look again; a temporary error it raises
(:class:`app.kubeclient.KubeError` or :class:`app.nodeshim_client.NodeShimError` with
``temporary``) makes the caller retry with backoff.  Every write is conditional or idempotent,
so a crash at any line converges on the next run:

- children are created by fixed names (``AlreadyExists`` means done) and updated only when they
  differ; the pod is deleted only by uid;
- a commit record (with its node-shim request id, ``<pod uid>:<commit id>``) is written before
  the node-shim is called, so a restarted controller re-attaches with the same request id;
- a commit call that ends by a temporary error (UNAVAILABLE, DEADLINE_EXCEEDED, a stream without
  a result, a cancelled call) leaves the record ``Committing`` and re-attaches with the same
  request id after a backoff (the node-shim may still be committing: a new id would be a second
  commit of the container); only a permanent error marks the record ``Failed``;
- status is written through the status subresource, conditional on the resourceVersion read,
  and only when it differs from what is stored (a steady devbox causes no writes); the
  progress of a commit in flight is copied into its record at most every few seconds within
  a step (:func:`app.controller._records.publish_progress`).
"""

from __future__ import annotations

import logging

from app.controller import _children as children
from app.controller import _pods as pods
from app.controller import _records as records
from app.controller import _sshkeys as sshkeys
from app.controller import _status as st
from app.controller._activity import CALL_DEADLINE as ACTIVITY_ANSWER_WAIT
from app.controller._base import (
    ABANDON_ANNOTATION,
    FINALIZER,
    NAME_CONFLICT_RECHECK,
    RESTART_ANNOTATION,
    Caches,
    Key,
    NotOwned,
    ReconcileConfig,
    sooner,
    url_host,
)
from app.controller._deleting import DeletingReconciler
from app.kubeclient import (
    JSON,
    PODS,
    SECRETS,
    SERVICES,
)
from app.resources import (
    CommitMode,
    Devbox,
    DevboxPhase,
    DevboxState,
    DevboxStatus,
    Runtime,
)

log = logging.getLogger(__name__)

__all__ = [
    "ABANDON_ANNOTATION",
    "FINALIZER",
    "RESTART_ANNOTATION",
    "Caches",
    "DevboxReconciler",
    "ReconcileConfig",
]


class DevboxReconciler(DeletingReconciler):
    """Reconciles Devbox resources into their children and drives stop/commit/start."""

    # ------------------------------------------------------------------ entry point

    async def reconcile(self, key: Key) -> float | None:
        """Make the world match devbox ``key``'s spec; seconds until another look, or None."""
        namespace, name = key
        obj = self.caches.devboxes.get(namespace, name)
        if obj is None:
            self._reattach_failures.pop(key, None)
            self._reattach_at.pop(key, None)
            self.activity.forget(key)
            return None
        devbox = Devbox.model_validate(obj)  # a copy: the cached dict is never touched
        if devbox.metadata.deletion_timestamp is not None:
            return await self._finalize(obj, devbox)
        finalizers = list(devbox.metadata.finalizers or [])
        if FINALIZER not in finalizers:
            await self.api.set_finalizers(
                namespace,
                name,
                [*finalizers, FINALIZER],
                resource_version=str(devbox.metadata.resource_version),
            )
            return None  # the watch event of this write brings the devbox back
        status = devbox.status.model_copy(deep=True)
        status.observed_generation = devbox.metadata.generation
        if status.phase is None:
            status.phase = DevboxPhase.PENDING
        ref = devbox.spec.runtime_ref
        runtime_obj = self.caches.runtimes.get(ref.namespace, ref.name)
        runtime = Runtime.model_validate(runtime_obj) if runtime_obj is not None else None
        try:
            pod = self._owned(PODS, self.caches.pods, devbox, children.pod_name(devbox))
            if runtime is None:
                # Without its runtime a devbox cannot get new children, but what it has keeps
                # being driven: a running pod can still be stopped and committed.
                secret = self._owned(
                    SECRETS, self.caches.secrets, devbox, children.secret_name(devbox)
                )
                ssh_service = self._owned(
                    SERVICES, self.caches.services, devbox, children.ssh_service_name(devbox)
                )
                hosts = {p.name: host for p in devbox.status.ports if (host := url_host(p.url))}
            else:
                secret = await self._ensure_secret(devbox)
                ssh_service = await self._ensure_service(
                    devbox,
                    children.ssh_service(devbox, runtime),
                    children.ssh_service_name(devbox),
                )
                await self._ensure_service(
                    devbox, children.ports_service(devbox), children.ports_service_name(devbox)
                )
                hosts = await self._ensure_ingresses(devbox)
            auto_stop = self._auto_stop(devbox, status)
            watch = await self._watch(key, devbox, status, pod, urgent=isinstance(auto_stop, str))
            if isinstance(auto_stop, str):
                auto_stop = self._auto_stop(devbox, status)  # a connection seen just now counts
            if isinstance(auto_stop, str) and self.activity.asking(key):
                auto_stop = ACTIVITY_ANSWER_WAIT  # its answer (which queues us) may be activity
            if isinstance(auto_stop, str):
                await self._stop_automatically(obj, devbox, status, auto_stop)
                return None  # the spec change comes back as an event
            requeue = await self._lifecycle(key, devbox, runtime, status, pod)
            requeue = sooner(requeue, records.publish_progress(status, self.commits, st.now()))
        except NotOwned as exc:
            self._not_ready(devbox, status, DevboxPhase.FAILED, "NameConflict", str(exc))
            await self._write_status(obj, status)
            return NAME_CONFLICT_RECHECK  # a foreign object sends us no events
        requeue = sooner(sooner(requeue, auto_stop), watch)
        sshkeys.note_regeneration(
            status, secret, children.secret_name(devbox), devbox.metadata.generation
        )
        self._endpoints(devbox, runtime, status, pod, ssh_service, secret, hosts)
        if await self._write_status(obj, status) is not None:
            await self._announce(devbox, status, pod)
        await self._clear_abandon(devbox, status, pod)
        return requeue

    async def _watch(
        self, key: Key, devbox: Devbox, status: DevboxStatus, pod: JSON | None, *, urgent: bool
    ) -> float | None:
        """Ask the pod's node-shim about connections and storage when due (see _activity)."""
        node = str(((pod or {}).get("spec") or {}).get("nodeName") or "")
        host = self._node_address(node)
        return await self.activity.watch(key, devbox, status, pod, host, urgent=urgent)

    # ------------------------------------------------------------------ lifecycle

    async def _lifecycle(
        self,
        key: Key,
        devbox: Devbox,
        runtime: Runtime | None,
        status: DevboxStatus,
        pod: JSON | None,
    ) -> float | None:
        record = st.in_flight(status)
        if record is not None and record.mode == CommitMode.SNAPSHOT:
            # The container keeps running; a stop or restart waits for the snapshot to end.
            again = await self._drive_commit(key, devbox, status, pod, record)
            if st.in_flight(status) is not None:
                if devbox.spec.state == DevboxState.RUNNING:
                    return sooner(await self._run(devbox, runtime, status, pod), again)
                self._not_ready(
                    devbox,
                    status,
                    DevboxPhase.STOPPING,
                    "SnapshotInProgress",
                    f"waiting for snapshot {record.id} to end before saving the container",
                )
                return again
            record = None  # it ended just now: go on from the world as it is
        if record is not None:
            return await self._drive_commit(key, devbox, status, pod, record)
        if pod is not None and self._committed(status, pod):
            # This pod's container is saved (and stopped): it never runs again.  A pod already
            # terminating was deleted before: deleting it again on every pod event is a write
            # that changes nothing.
            if not pods.terminating(pod):
                await self._delete_pod(pod)
            phase = (
                DevboxPhase.STOPPING
                if devbox.spec.state == DevboxState.STOPPED
                else DevboxPhase.STARTING
            )
            self._not_ready(devbox, status, phase, "PodStopping", "the saved pod is being removed")
            return None
        self._restore(devbox, status, pod)
        if devbox.spec.state == DevboxState.STOPPED:
            return await self._stop(key, devbox, status, pod)
        if (
            pod is not None
            and not pods.terminating(pod)
            and records.restart_pending(devbox, status)
        ):
            return await self._stop(key, devbox, status, pod)
        if pod is not None and pods.unsaved(pod):
            return await self._start_over_unsaved(devbox, runtime, status, pod)
        self._reattach_at.pop(key, None)
        self._reattach_failures.pop(key, None)
        status.conditions = [c for c in status.conditions if c.type != st.AUTO_STOPPED]
        requeue = await self._run(devbox, runtime, status, pod)
        return sooner(requeue, self._snapshot(devbox, status, pod))
