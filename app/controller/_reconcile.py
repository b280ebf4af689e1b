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
  and only when it differs from what is stored (a steady devbox causes no writes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from devbox_node_shim.api import nodeshim_pb2 as pb

from app.controller import _backoff as backoff
from app.controller import _children as children
from app.controller import _metrics as metrics
from app.controller import _nodes as nodes
from app.controller import _snapshots as snapshots
from app.controller import _sshkeys as sshkeys
from app.controller import _status as st
from app.controller._commits import CommitTracker
from app.controller._events import EventRecorder
from app.kubeclient import (
    DEVBOXES,
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
from app.nodeshim_client import CommitOutcome, NodeShimError
from app.registry_client import ImageRef, RegistryClient, RegistryError
from app.resources import (
    MAX_COMMITS,
    Commit,
    CommitMode,
    CommitStatus,
    ConditionStatus,
    Devbox,
    DevboxPhase,
    DevboxState,
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
PULL_ERRORS = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
)
START_ERRORS = frozenset({"CrashLoopBackOff", "CreateContainerError", "CreateContainerConfigError"})

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


class DevboxReconciler:
    """Reconciles Devbox resources into their children and drives stop/commit/start."""

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
        # Re-attaching to a commit interrupted by a temporary error backs off in memory: a
        # restarted controller should re-attach at once.  A *failed* stop commit's retry
        # backs off by status alone (see _backoff).
        self._reattach_failures: dict[Key, int] = {}
        self._reattach_at: dict[Key, float] = {}

    # ------------------------------------------------------------------ entry point

    async def reconcile(self, key: Key) -> float | None:
        """Make the world match devbox ``key``'s spec; seconds until another look, or None."""
        namespace, name = key
        obj = self.caches.devboxes.get(namespace, name)
        if obj is None:
            self._reattach_failures.pop(key, None)
            self._reattach_at.pop(key, None)
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
                hosts = {p.name: host for p in devbox.status.ports if (host := _url_host(p.url))}
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
            if isinstance(auto_stop, str):
                await self._stop_automatically(obj, devbox, status, auto_stop)
                return None  # the spec change comes back as an event
            requeue = await self._lifecycle(key, devbox, runtime, status, pod)
        except NotOwned as exc:
            self._not_ready(devbox, status, DevboxPhase.FAILED, "NameConflict", str(exc))
            await self._write_status(obj, status)
            return NAME_CONFLICT_RECHECK  # a foreign object sends us no events
        requeue = _sooner(requeue, auto_stop)
        sshkeys.note_regeneration(
            status, secret, children.secret_name(devbox), devbox.metadata.generation
        )
        self._endpoints(devbox, runtime, status, pod, ssh_service, secret, hosts)
        if await self._write_status(obj, status) is not None:
            await self._announce(devbox, status, pod)
        await self._clear_abandon(devbox, status, pod)
        return requeue

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
                    return _sooner(await self._run(devbox, runtime, status, pod), again)
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
            if not _terminating(pod):
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
        if pod is not None and not _terminating(pod) and _restart_pending(devbox, status):
            return await self._stop(key, devbox, status, pod)
        if pod is not None and _unsaved(pod):
            return await self._start_over_unsaved(devbox, runtime, status, pod)
        self._reattach_at.pop(key, None)
        self._reattach_failures.pop(key, None)
        status.conditions = [c for c in status.conditions if c.type != st.AUTO_STOPPED]
        requeue = await self._run(devbox, runtime, status, pod)
        return _sooner(requeue, self._snapshot(devbox, status, pod))

    def _restore(self, devbox: Devbox, status: DevboxStatus, pod: JSON | None) -> None:
        """Apply ``spec.restoreCommit`` once, if the devbox is stopped: append a ``Restore``
        record (its image becomes current); otherwise say in a condition why not."""
        wanted = pending_restore(devbox, status)
        generation = devbox.metadata.generation
        if wanted is None:
            restored = st.condition(status, st.RESTORED)
            if restored is not None and restored.status == ConditionStatus.FALSE:
                status.conditions = [c for c in status.conditions if c.type != st.RESTORED]
            return
        source = next(
            (c for c in status.commits if c.id == wanted and c.status == CommitStatus.SUCCEEDED),
            None,
        )
        if source is None:
            st.set_condition(
                status,
                st.RESTORED,
                ConditionStatus.FALSE,
                "RestoreNotFound",
                f"commit {wanted} is not a successful commit in status.commits; pick another",
                generation,
            )
            return
        if pod is not None or status.phase not in (DevboxPhase.STOPPED, DevboxPhase.STOPPING):
            st.set_condition(
                status,
                st.RESTORED,
                ConditionStatus.FALSE,
                "RestoreNotApplied",
                f"commit {wanted} was not restored: the devbox is {status.phase}, and a restore "
                "applies only to a Stopped devbox; it applies once the devbox is Stopped "
                "(clear spec.restoreCommit to cancel)",
                generation,
            )
            return
        now = st.now()
        record = Commit(
            id=f"r{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}",
            mode=CommitMode.RESTORE,
            image=source.image,
            digest=source.digest,
            restored_from=source.id,
            status=CommitStatus.SUCCEEDED,
            started_at=now,
            finished_at=now,
        )
        status.commits = _trim([*status.commits, record])
        status.image = record.image
        st.set_condition(
            status,
            st.RESTORED,
            ConditionStatus.TRUE,
            "Restored",
            f"restored commit {source.id} ({source.image}); the devbox starts from it, later "
            "commits are kept",
            generation,
        )

    async def _start_over_unsaved(
        self, devbox: Devbox, runtime: Runtime | None, status: DevboxStatus, pod: JSON
    ) -> float | None:
        """Start asked for while the pod's stopped container holds changes no commit saved:
        refused (the pod is kept) unless the user abandons them with the annotation."""
        saved = self._current_image(devbox, runtime, status) or "the runtime's image"
        if not _abandon_asked(devbox):
            reason, message = pod_failure(pod) or ("ContainerExited", "the container stopped")
            self._not_ready(
                devbox,
                status,
                DevboxPhase.FAILED,
                reason,
                f"{message}; or, to start from {saved} and lose the unsaved changes, set the "
                f'annotation {ABANDON_ANNOTATION}: "true"',
            )
            return None
        uid = str((pod.get("metadata") or {}).get("uid"))
        for record in reversed(status.commits):
            if (record.request_id or "").startswith(uid + ":"):
                if record.status == CommitStatus.FAILED and not (record.reason or "").startswith(
                    "abandoned"
                ):
                    record.reason = (
                        "abandoned: the user started the devbox without these changes "
                        f"(the commit had failed: {record.reason})"
                    )[:32768]
                break
        await self._delete_pod(pod)
        self._not_ready(
            devbox,
            status,
            DevboxPhase.STARTING,
            "ChangesAbandoned",
            f"the unsaved changes were abandoned; starting from {saved}",
        )
        return None

    async def _clear_abandon(self, devbox: Devbox, status: DevboxStatus, pod: JSON | None) -> None:
        """Drop the abandon annotation once a started devbox has nothing left to abandon."""
        if (
            not _abandon_asked(devbox)
            or devbox.spec.state != DevboxState.RUNNING
            or st.in_flight(status) is not None
            or (pod is not None and _unsaved(pod) and not self._committed(status, pod))
        ):
            return
        annotations: JSON = {ABANDON_ANNOTATION: None}
        await self.kube.patch(
            DEVBOXES, devbox.namespace, devbox.name, {"metadata": {"annotations": annotations}}
        )

    def _snapshot(self, devbox: Devbox, status: DevboxStatus, pod: JSON | None) -> float | None:
        """Start a snapshot if one is due (its record; the status write brings the devbox
        back to call the node-shim); else seconds until the next one, or None."""
        wait = snapshots.due_in(devbox, status, st.now())
        if wait is None or pod is None or _container_id(pod) is None:
            return None
        if wait > 0:
            return wait
        uid = str((pod.get("metadata") or {}).get("uid"))
        record = snapshots.new_record(devbox, uid, self.config.registry)
        status.commits = _trim([*status.commits, record])
        return None

    async def _run(
        self, devbox: Devbox, runtime: Runtime | None, status: DevboxStatus, pod: JSON | None
    ) -> float | None:
        if pod is None and runtime is None:
            ref = devbox.spec.runtime_ref
            self._not_ready(
                devbox,
                status,
                DevboxPhase.FAILED,
                "RuntimeNotFound",
                f"runtime {ref.namespace}/{ref.name} does not exist; pick another runtime",
            )
            return None
        if pod is None:
            assert runtime is not None
            image = self._current_image(devbox, runtime, status) or runtime.spec.image
            await self._create(PODS, devbox, children.pod(devbox, runtime, image))
            self._not_ready(
                devbox, status, DevboxPhase.STARTING, "PodCreated", f"starting from {image}"
            )
            return None
        if _terminating(pod):
            self._not_ready(
                devbox, status, DevboxPhase.STARTING, "PodTerminating", "the old pod is stopping"
            )
            return None
        node = self.caches.nodes.get("", str((pod.get("spec") or {}).get("nodeName") or ""))
        failure = pod_failure(pod) or nodes.pod_lost(pod, node)
        if failure is not None:
            self._not_ready(devbox, status, DevboxPhase.FAILED, *failure)
            return None
        if _pod_ready(pod):
            status.phase = DevboxPhase.RUNNING
            st.set_condition(
                status,
                st.READY,
                ConditionStatus.TRUE,
                "Running",
                "the devbox is running",
                devbox.metadata.generation,
            )
            return None
        self._not_ready(
            devbox, status, DevboxPhase.STARTING, "ContainersNotReady", "waiting for SSH to answer"
        )
        return None

    async def _stop(
        self, key: Key, devbox: Devbox, status: DevboxStatus, pod: JSON | None
    ) -> float | None:
        if pod is None:
            self._reattach_failures.pop(key, None)
            self._reattach_at.pop(key, None)
            saved = st.last_succeeded(status)
            message = f"stopped; changes are saved in {saved.image}" if saved else "stopped"
            self._not_ready(devbox, status, DevboxPhase.STOPPED, "Stopped", message)
            return None
        if _terminating(pod):
            self._not_ready(
                devbox, status, DevboxPhase.STOPPING, "PodTerminating", "the pod is stopping"
            )
            return None
        if _container_id(pod) is None:
            # No container ever ran: nothing to save.
            await self._delete_pod(pod)
            self._not_ready(
                devbox, status, DevboxPhase.STOPPING, "PodStopping", "no container ran; removing"
            )
            return None
        uid = str((pod.get("metadata") or {}).get("uid"))
        wait = backoff.stop_retry_in(
            status, uid, self.config.commit_retry_base, self.config.commit_retry_max, st.now()
        )
        if wait is not None:
            # Failed stop commits back off by what status.commits says, so a restarted
            # controller waits as long as the one that saw the failures would have.
            status.phase = DevboxPhase.STOPPING
            return wait
        commit_id = f"c{st.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
        record = Commit(
            id=commit_id,
            mode=CommitMode.STOP,
            image=f"{self.config.registry}/{devbox.namespace}/{devbox.name}:{commit_id}",
            request_id=f"{uid}:{commit_id}",
            status=CommitStatus.PENDING,
        )
        status.commits = _trim([*status.commits, record])
        self._not_ready(
            devbox, status, DevboxPhase.STOPPING, "Committing", "saving the container's changes"
        )
        return None  # the status write comes back as an event; then the commit is called

    async def _drive_commit(
        self, key: Key, devbox: Devbox, status: DevboxStatus, pod: JSON | None, record: Commit
    ) -> float | None:
        request_id = record.request_id or record.id
        task = self.commits.get(request_id)
        generation = devbox.metadata.generation
        if task is not None and task.done():
            self.commits.forget(request_id)
            if _interrupted(task):
                return self._commit_interrupted(key, devbox, status, record, task)
            try:
                outcome: CommitOutcome | None = task.result()
                error: str | None = None
            except NodeShimError as exc:
                outcome, error = None, exc.message
            if outcome is not None:
                return self._commit_succeeded(key, devbox, status, record, outcome)
            return self._commit_failed(key, devbox, status, record, error or "unknown error")
        if task is None:
            container = _container_id(pod) if pod is not None else None
            pod_uid = str((pod or {}).get("metadata", {}).get("uid"))
            if pod is None or container is None or not request_id.startswith(pod_uid + ":"):
                return self._commit_failed(
                    key,
                    devbox,
                    status,
                    record,
                    "the pod was gone before its commit finished; changes since the last "
                    "commit could not be saved",
                    retry=False,
                )
            retry_at = self._reattach_at.get(key)
            loop = asyncio.get_running_loop()
            if record.status == CommitStatus.COMMITTING and retry_at and loop.time() < retry_at:
                # Interrupted by a temporary error: re-attach (same request id) after a backoff.
                return retry_at - loop.time()
            host = self._node_address(str((pod.get("spec") or {}).get("nodeName") or ""))
            if host is None:
                return self._commit_failed(
                    key, devbox, status, record, "the pod's node has no InternalIP address"
                )
            self.commits.ensure(
                key,
                host,
                pb.CommitRequest(
                    request_id=request_id,
                    container_id=container,
                    target_image=record.image,
                    mode=pb.COMMIT_MODE_STOP
                    if record.mode == CommitMode.STOP
                    else pb.COMMIT_MODE_SNAPSHOT,
                ),
            )
        if record.status == CommitStatus.PENDING:
            record.status = CommitStatus.COMMITTING
            record.started_at = st.now()
        if record.mode == CommitMode.SNAPSHOT:
            return None  # the devbox keeps running; the tracker queues it when the call ends
        status.phase = DevboxPhase.STOPPING
        st.set_condition(
            status,
            st.READY,
            ConditionStatus.FALSE,
            "Committing",
            f"saving the container's changes to {record.image}",
            generation,
        )
        return None  # the tracker queues the devbox when the call ends

    def _commit_succeeded(
        self,
        key: Key,
        devbox: Devbox,
        status: DevboxStatus,
        record: Commit,
        outcome: CommitOutcome,
    ) -> float | None:
        if record.mode == CommitMode.SNAPSHOT:
            snapshots.succeeded(devbox, status, record, outcome)
            return None
        self._reattach_failures.pop(key, None)
        self._reattach_at.pop(key, None)
        st.record_success(status, record, outcome)
        st.set_condition(
            status,
            st.COMMITTED,
            ConditionStatus.TRUE,
            "CommitSucceeded",
            f"saved to {record.image} ({outcome.size_bytes} bytes, {outcome.layers} layers)",
            devbox.metadata.generation,
        )
        self._not_ready(
            devbox, status, DevboxPhase.STOPPING, "PodStopping", "changes saved; removing the pod"
        )
        return 0.0  # the pod is deleted on the next pass, after this record is stored

    def _commit_interrupted(
        self,
        key: Key,
        devbox: Devbox,
        status: DevboxStatus,
        record: Commit,
        task: asyncio.Task[CommitOutcome],
    ) -> float:
        """The call ended by a temporary error (UNAVAILABLE, DEADLINE_EXCEEDED, a stream
        without a result, a cancelled call): the node-shim may still be committing, so the
        record stays ``Committing`` and, after a backoff, the same request id re-attaches to
        it (a new request id would be a second commit of the same container)."""
        why = "the commit call was cancelled" if task.cancelled() else str(task.exception())
        failures = self._reattach_failures.get(key, 0) + 1
        self._reattach_failures[key] = failures
        delay: float = min(
            self.config.commit_retry_base * 2.0 ** (failures - 1), self.config.commit_retry_max
        )
        delay *= random.uniform(0.8, 1.0)
        self._reattach_at[key] = asyncio.get_running_loop().time() + delay
        message = (
            f"lost the node-shim during commit {record.id} ({why}); re-attaching to it in "
            f"{delay:.0f}s"
        )
        log.warning("%s/%s: %s", *key, message)
        if record.mode == CommitMode.STOP:
            self._not_ready(devbox, status, DevboxPhase.STOPPING, "CommitInterrupted", message)
        return delay

    def _commit_failed(
        self,
        key: Key,
        devbox: Devbox,
        status: DevboxStatus,
        record: Commit,
        reason: str,
        *,
        retry: bool = True,
    ) -> float | None:
        if record.mode == CommitMode.SNAPSHOT:
            snapshots.failed(devbox, status, record, reason)
            return None
        record.status = CommitStatus.FAILED
        record.reason = reason[:32768]
        record.finished_at = st.now()
        self._reattach_failures.pop(key, None)
        self._reattach_at.pop(key, None)
        uid = (record.request_id or "").partition(":")[0]
        delay = backoff.stop_retry_in(
            status, uid, self.config.commit_retry_base, self.config.commit_retry_max, st.now()
        )
        delay = delay or 0.0
        message = f"commit {record.id} failed: {reason}"
        if retry and devbox.spec.state == DevboxState.STOPPED:
            message += f"; the pod is kept and the commit is retried in {delay:.0f}s"
        st.set_condition(
            status,
            st.COMMITTED,
            ConditionStatus.FALSE,
            "CommitFailed",
            message,
            devbox.metadata.generation,
        )
        status.phase = DevboxPhase.STOPPING
        log.warning("%s/%s: %s", *key, message)
        return delay if retry else 0.0

    # ------------------------------------------------------------------ events, metrics

    async def _announce(self, devbox: Devbox, status: DevboxStatus, pod: JSON | None) -> None:
        """Events and metrics for what a stored status changed (once per transition)."""
        before = devbox.status
        regenerated = sshkeys.newly_regenerated(before, status)
        if regenerated is not None:
            await self.events.record(
                devbox, "Warning", sshkeys.SSH_KEYS_REGENERATED, regenerated.message or ""
            )
        old_records = {c.id: c.status for c in before.commits}
        for record in status.commits:
            if old_records.get(record.id) == record.status:
                continue
            if record.mode == CommitMode.RESTORE:
                await self.events.record(
                    devbox, "Normal", "Restored", f"restored commit {record.restored_from}"
                )
                continue
            if record.status == CommitStatus.SUCCEEDED:
                if record.started_at and record.finished_at:
                    seconds = (record.finished_at - record.started_at).total_seconds()
                    metrics.COMMIT_SECONDS.observe(seconds)
                metrics.COMMIT_BYTES.observe(record.size_bytes or 0)
                await self.events.record(devbox, "Normal", "Committed", f"saved to {record.image}")
            elif record.status == CommitStatus.FAILED:
                metrics.COMMIT_FAILURES.labels(_failure_code(record.reason)).inc()
                await self.events.record(
                    devbox, "Warning", "CommitFailed", f"commit {record.id}: {record.reason}"
                )
        if status.phase == before.phase:
            return
        if status.phase == DevboxPhase.RUNNING:
            since = devbox.metadata.creation_timestamp
            if before.phase not in (None, DevboxPhase.PENDING) and pod is not None:
                created = (pod.get("metadata") or {}).get("creationTimestamp")
                since = datetime.fromisoformat(created.replace("Z", "+00:00")) if created else None
            if since is not None:
                metrics.START_SECONDS.observe(max(0.0, (st.now() - since).total_seconds()))
        ready = st.condition(status, st.READY)
        kind = "Warning" if status.phase == DevboxPhase.FAILED else "Normal"
        await self.events.record(
            devbox,
            kind,
            str(status.phase),
            ready.message if ready is not None and ready.message else str(status.phase),
        )

    # ------------------------------------------------------------------ auto-stop

    def _auto_stop(self, devbox: Devbox, status: DevboxStatus) -> str | float | None:
        """Why the devbox must stop now (a message), or seconds until it may, or None."""
        auto = devbox.spec.auto_stop
        if auto is None or devbox.spec.state != DevboxState.RUNNING:
            return None
        now = st.now()
        waits: list[float] = []
        if auto.stop_at is not None:
            if now >= auto.stop_at:
                return f"stopped at the scheduled time {auto.stop_at.isoformat()}"
            waits.append((auto.stop_at - now).total_seconds())
        ready = st.condition(status, st.READY)
        if (
            auto.idle_timeout_seconds
            and status.phase == DevboxPhase.RUNNING
            and ready is not None
            and ready.status == ConditionStatus.TRUE
        ):
            since = max(
                filter(None, (status.last_activity_time, ready.last_transition_time)),
            )
            idle = (now - since).total_seconds()
            if idle >= auto.idle_timeout_seconds:
                return f"stopped after {auto.idle_timeout_seconds}s without SSH or port activity"
            waits.append(auto.idle_timeout_seconds - idle)
        return min(waits) if waits else None

    async def _stop_automatically(
        self, obj: JSON, devbox: Devbox, status: DevboxStatus, why: str
    ) -> None:
        spec: JSON = {"state": DevboxState.STOPPED.value}
        if devbox.spec.auto_stop is not None and devbox.spec.auto_stop.stop_at is not None:
            spec["autoStop"] = {"stopAt": None}  # done: starting again must not stop at once
        stored = await self.kube.patch(
            DEVBOXES,
            devbox.namespace,
            devbox.name,
            {"spec": spec, "metadata": {"resourceVersion": devbox.metadata.resource_version}},
        )
        log.info("%s/%s: %s", devbox.namespace, devbox.name, why)
        st.set_condition(
            status,
            st.AUTO_STOPPED,
            ConditionStatus.TRUE,
            "IdleTimeout" if "activity" in why else "ScheduledStop",
            why,
            stored["metadata"].get("generation"),
        )
        status.observed_generation = stored["metadata"].get("generation")
        await self._write_status(stored, status)

    # ------------------------------------------------------------------ deletion

    async def _finalize(self, obj: JSON, devbox: Devbox) -> float | None:
        key = (devbox.namespace, devbox.name)
        finalizers = list(devbox.metadata.finalizers or [])
        if FINALIZER not in finalizers:
            return None
        status = devbox.status.model_copy(deep=True)
        status.phase = DevboxPhase.DELETING
        record = st.in_flight(status)
        if record is not None:
            request_id = record.request_id or record.id
            task = self.commits.get(request_id)
            annotations = devbox.metadata.annotations or {}
            deleted_at = devbox.metadata.deletion_timestamp
            assert deleted_at is not None
            waited = (st.now() - deleted_at).total_seconds()
            abandon = annotations.get(ABANDON_ANNOTATION) == "true"
            if task is not None and task.done() and not _interrupted(task):
                self._drive_done(key, devbox, status, record, task)
            elif abandon or waited >= self.config.delete_commit_wait:
                self.commits.forget(request_id)
                record.status = CommitStatus.FAILED
                record.reason = "abandoned: the devbox was deleted" + (
                    " without saving" if abandon else " and the commit did not finish in time"
                )
                record.finished_at = st.now()
            else:
                pod = self.caches.pods.get(devbox.namespace, children.pod_name(devbox))
                again = await self._drive_commit(key, devbox, status, pod, record)
                status.phase = DevboxPhase.DELETING
                self._not_ready(
                    devbox, status, DevboxPhase.DELETING, "Deleting", "waiting for the commit"
                )
                await self._write_status(obj, status)
                return _sooner(max(0.1, self.config.delete_commit_wait - waited), again)
        self._not_ready(devbox, status, DevboxPhase.DELETING, "Deleting", "removing the devbox")
        stored = await self._write_status(obj, status)
        remaining = 0
        for kind, informer in (
            (PODS, self.caches.pods),
            (INGRESSES, self.caches.ingresses),
            (SERVICES, self.caches.services),
            (SECRETS, self.caches.secrets),
        ):
            for child in informer.objects(devbox.namespace):
                meta = child.get("metadata") or {}
                if children.owner_uid(child) != devbox.metadata.uid:
                    continue
                remaining += 1
                if meta.get("deletionTimestamp"):
                    continue
                with contextlib.suppress(NotFound):
                    await self.kube.delete(kind, devbox.namespace, meta["name"], uid=meta["uid"])
        if remaining:
            return 1.0  # the children's delete events bring us back sooner
        self._reattach_failures.pop(key, None)
        self._reattach_at.pop(key, None)
        await self._delete_images(devbox, status)
        current = stored or obj
        rv = str(current["metadata"]["resourceVersion"])
        keep = [f for f in (current["metadata"].get("finalizers") or []) if f != FINALIZER]
        with contextlib.suppress(NotFound):
            await self.api.set_finalizers(devbox.namespace, devbox.name, keep, resource_version=rv)
        return None

    async def _delete_images(self, devbox: Devbox, status: DevboxStatus) -> None:
        """Delete the devbox's commit images from the registry, except those a release uses
        (a release tag shares its commit's manifest).  Best effort: a failure is logged."""
        if self.registry is None:
            return
        released = {
            (r.get("status") or {}).get("digest")
            for r in self.caches.releases.objects(devbox.namespace)
        }
        for record in status.commits:
            if record.status != CommitStatus.SUCCEEDED or not record.digest:
                continue
            if record.mode == CommitMode.RESTORE:
                continue  # its image is the restored commit's, deleted with that record
            if record.digest in released:
                continue
            try:
                await self.registry.delete_manifest(ImageRef.parse(record.image), record.digest)
            except (RegistryError, ValueError) as exc:
                log.warning("could not delete %s from the registry: %s", record.image, exc)

    def _drive_done(
        self, key: Key, devbox: Devbox, status: DevboxStatus, record: Commit, task: Any
    ) -> None:
        self.commits.forget(record.request_id or record.id)
        try:
            outcome = task.result()
        except (NodeShimError, asyncio.CancelledError) as exc:
            self._commit_failed(key, devbox, status, record, str(exc), retry=False)
            return
        self._commit_succeeded(key, devbox, status, record, outcome)

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
            if existing is not None and not _terminating(existing):
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
            host = (children.ingress_host(existing) if existing else None) or _url_host(
                urls.get(port.name)
            )
            host = host or children.new_host(self.config.domain)
            hosts[port.name] = host
            desired = children.ingress(devbox, port.name, host, self.config.ingress_class)
            if existing is None:
                await self._create(INGRESSES, devbox, desired)
            elif _ingress_spec(existing) != _ingress_spec(desired):
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


# ---------------------------------------------------------------------- pod reading


def _restart_pending(devbox: Devbox, status: DevboxStatus) -> bool:
    """Whether a restart was asked for that no successful stop commit has served yet."""
    raw = (devbox.metadata.annotations or {}).get(RESTART_ANNOTATION)
    if not raw:
        return False
    try:
        asked = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return False
    if asked.tzinfo is None:
        return False
    return not any(
        c.mode == CommitMode.STOP
        and c.status == CommitStatus.SUCCEEDED
        and c.started_at is not None
        and c.started_at >= asked
        for c in status.commits
    )


def _interrupted(task: asyncio.Task[CommitOutcome]) -> bool:
    """Whether a finished commit call ended by a temporary error (the node-shim may still be
    committing under its request id): re-attach, never start another commit."""
    if task.cancelled():
        return True
    exc = task.exception()
    return isinstance(exc, NodeShimError) and exc.temporary


def pending_restore(devbox: Devbox, status: DevboxStatus) -> str | None:
    """The commit id ``spec.restoreCommit`` asks for, unless that restore was applied: the
    newest ``Restore`` record in the status says which one was (level-based)."""
    wanted = devbox.spec.restore_commit
    if not wanted:
        return None
    last = _last_restore(status.commits)
    if last is not None and last.restored_from == wanted:
        return None
    return wanted


def _last_restore(commits: list[Commit]) -> Commit | None:
    return next((c for c in reversed(commits) if c.mode == CommitMode.RESTORE), None)


def _abandon_asked(devbox: Devbox) -> bool:
    return (devbox.metadata.annotations or {}).get(ABANDON_ANNOTATION) == "true"


def _unsaved(pod: JSON) -> bool:
    """Whether the pod's container ran and stopped (its changes, unless a commit saved them,
    exist only in the stopped container)."""
    if _terminating(pod) or _container_id(pod) is None:
        return False
    state = (_container_status(pod) or {}).get("state") or {}
    return bool(state.get("terminated")) or (pod.get("status") or {}).get("phase") in (
        "Failed",
        "Succeeded",
    )


def _failure_code(reason: str | None) -> str:
    """A low-cardinality label for a commit failure."""
    text = reason or ""
    if text.startswith("abandoned"):
        return "Abandoned"
    if "pod was gone" in text:
        return "PodGone"
    for code in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL", "UNAUTHENTICATED", "NOT_FOUND"):
        if code in text:
            return code
    return "Other"


def _sooner(a: float | None, b: float | str | None) -> float | None:
    candidates = [x for x in (a, b) if isinstance(x, float | int)]
    return float(min(candidates)) if candidates else None


def _terminating(obj: JSON) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def _pod_ready(pod: JSON) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def _container_status(pod: JSON) -> JSON | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == children.CONTAINER:
            return dict(status)
    return None


def _container_id(pod: JSON) -> str | None:
    status = _container_status(pod)
    raw = str((status or {}).get("containerID") or "")
    return raw.split("://", 1)[-1] or None


def pod_failure(pod: JSON) -> tuple[str, str] | None:
    """Why the pod cannot run (reason, message with a suggested action), or None."""
    pod_status = pod.get("status") or {}
    container = _container_status(pod) or {}
    state = container.get("state") or {}
    waiting = state.get("waiting") or {}
    image = container.get("image") or _pod_image(pod)
    if waiting.get("reason") in PULL_ERRORS:
        detail = waiting.get("message") or waiting["reason"]
        return (
            str(waiting["reason"]),
            f"cannot pull image {image}: {detail}. Check that the image exists and its registry "
            "is reachable, or restore an earlier commit",
        )
    if waiting.get("reason") in START_ERRORS:
        return (
            str(waiting["reason"]),
            f"the container cannot start: {waiting.get('message') or waiting['reason']}. "
            "Check the runtime's command, then stop and start the devbox",
        )
    phase = pod_status.get("phase")
    if phase in ("Failed", "Succeeded"):
        reason = str(pod_status.get("reason") or "ContainerExited")
        terminated = state.get("terminated") or {}
        detail = pod_status.get("message") or (
            f"exit code {terminated.get('exitCode')}" if terminated else "the container exited"
        )
        return (
            reason if reason.isalnum() else "ContainerExited",
            f"the devbox's container stopped ({detail}); stop the devbox to save its changes, "
            "then start it again",
        )
    return None


def _pod_image(pod: JSON) -> str:
    for container in (pod.get("spec") or {}).get("containers") or []:
        if container.get("name") == children.CONTAINER:
            return str(container.get("image"))
    return ""


def _url_host(url: str | None) -> str | None:
    if not url or "://" not in url:
        return None
    return url.split("://", 1)[1].split("/", 1)[0] or None


def _ingress_spec(obj: JSON) -> tuple[Any, ...]:
    spec = obj.get("spec") or {}
    return (spec.get("ingressClassName"), spec.get("rules"))


def _trim(commits: list[Commit]) -> list[Commit]:
    """At most MAX_COMMITS records: the oldest failed ones go first, then the oldest; the
    newest ``Restore`` record stays (it says the restore asked for was applied)."""
    while len(commits) > MAX_COMMITS:
        keep = _last_restore(commits)
        failed = next((c for c in commits if c.status == CommitStatus.FAILED), None)
        oldest = next(c for c in commits if c is not keep)
        commits.remove(failed if failed is not None else oldest)
    return commits
