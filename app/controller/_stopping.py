"""Stopping a devbox: the stop commit record, the node-shim call and its outcome (succeeded,
interrupted → re-attach with the same request id, failed → pod kept, retried with backoff), and
the automatic stops (scheduled time, idle timeout)."""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from typing import Any

from devbox_node_shim.api import nodeshim_pb2 as pb

from app.controller import _backoff as backoff
from app.controller import _pods as pods
from app.controller import _records as records
from app.controller import _snapshots as snapshots
from app.controller import _status as st
from app.controller._base import Key
from app.controller._running import RunningReconciler
from app.kubeclient import (
    DEVBOXES,
    JSON,
)
from app.nodeshim_client import CommitOutcome, NodeShimError
from app.registry_client import ImageRef, RegistryError, RegistryUnavailable
from app.resources import (
    Commit,
    CommitMode,
    CommitStatus,
    ConditionStatus,
    Devbox,
    DevboxPhase,
    DevboxState,
    DevboxStatus,
)

log = logging.getLogger(__name__)


class StoppingReconciler(RunningReconciler):
    """Drives stop commits and automatic stops."""

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
        if pods.terminating(pod):
            self._not_ready(
                devbox, status, DevboxPhase.STOPPING, "PodTerminating", "the pod is stopping"
            )
            return None
        if pods.container_id(pod) is None:
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
        status.commits = records.trim([*status.commits, record])
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
            if records.interrupted(task):
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
            container = pods.container_id(pod) if pod is not None else None
            pod_uid = str((pod or {}).get("metadata", {}).get("uid"))
            if pod is None or container is None or not request_id.startswith(pod_uid + ":"):
                return await self._commit_without_pod(key, devbox, status, record)
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

    async def _commit_without_pod(
        self, key: Key, devbox: Devbox, status: DevboxStatus, record: Commit
    ) -> float | None:
        """The record's pod is gone and no call of ours is running.  A commit that was called
        (``Committing``) may still have finished — the node-shim pushes the manifest last, so
        the target tag in the registry means it did (e.g. the controller restarted after the
        push and someone deleted the pod meanwhile): record that success.  Otherwise the
        changes since the last commit are lost with the pod, and the record says so."""
        if record.status == CommitStatus.COMMITTING and self.registry is not None:
            try:
                manifest = await self.registry.get_manifest(ImageRef.parse(record.image))
            except RegistryUnavailable as exc:
                delay = self.config.commit_retry_base * random.uniform(1.0, 2.0)
                message = (
                    f"the pod of commit {record.id} is gone; cannot ask the registry whether the "
                    f"commit was pushed ({exc.message}); asking again in {delay:.0f}s"
                )
                if record.mode == CommitMode.STOP:
                    self._not_ready(devbox, status, DevboxPhase.STOPPING, "CommitUnknown", message)
                return delay
            except (RegistryError, ValueError) as exc:
                log.warning("%s/%s: reading %s: %s", *key, record.image, exc)
                manifest = None
            if manifest is not None:
                summary = manifest.summary()
                outcome = CommitOutcome(
                    image=record.image,
                    digest=manifest.digest,
                    size_bytes=summary.size_bytes,
                    layers=summary.layers,
                )
                log.info("%s/%s: commit %s found in the registry", *key, record.id)
                return self._commit_succeeded(key, devbox, status, record, outcome)
        return self._commit_failed(
            key,
            devbox,
            status,
            record,
            "the pod was gone before its commit finished; changes since the last "
            "commit could not be saved",
            retry=False,
        )

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
