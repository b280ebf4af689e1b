"""Running a devbox: the pod from the current image and its readiness, snapshots when due, and
the events and metrics a status change announces (children and endpoints: ``_base``)."""

from __future__ import annotations

import logging
from datetime import datetime

from app.controller import _children as children
from app.controller import _metrics as metrics
from app.controller import _nodes as nodes
from app.controller import _pods as pods
from app.controller import _records as records
from app.controller import _snapshots as snapshots
from app.controller import _sshkeys as sshkeys
from app.controller import _status as st
from app.controller._base import ReconcilerBase
from app.kubeclient import (
    JSON,
    PODS,
)
from app.resources import (
    CommitMode,
    CommitStatus,
    ConditionStatus,
    Devbox,
    DevboxPhase,
    DevboxStatus,
    Runtime,
)

log = logging.getLogger(__name__)


class RunningReconciler(ReconcilerBase):
    """Brings a devbox to Running and keeps its children and endpoints current."""

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
        if pods.terminating(pod):
            self._not_ready(
                devbox, status, DevboxPhase.STARTING, "PodTerminating", "the old pod is stopping"
            )
            return None
        node = self.caches.nodes.get("", str((pod.get("spec") or {}).get("nodeName") or ""))
        failure = pods.pod_failure(pod) or nodes.pod_lost(pod, node)
        if failure is not None:
            self._not_ready(devbox, status, DevboxPhase.FAILED, *failure)
            return None
        if runtime is not None:
            self._spec_applied(devbox, runtime, status, pod)
        if pods.pod_ready(pod):
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

    def _spec_applied(
        self, devbox: Devbox, runtime: Runtime, status: DevboxStatus, pod: JSON
    ) -> None:
        """Say whether the pod runs with the spec's settings.  A pod's env and resources cannot
        change in place; the new ones apply at the next start (a restart commits first, so
        nothing is lost) — the condition says so instead of silently ignoring the change."""
        desired = children.pod(devbox, runtime, pods.pod_image(pod))
        drift = children.pod_drift(pod, desired)
        if drift:
            st.set_condition(
                status,
                st.SPEC_APPLIED,
                ConditionStatus.FALSE,
                "RestartRequired",
                f"{', '.join(drift)} changed since the devbox started; the change applies at "
                "the next start: restart the devbox to apply it now (its files are saved first)",
                devbox.metadata.generation,
            )
        else:
            st.set_condition(
                status,
                st.SPEC_APPLIED,
                ConditionStatus.TRUE,
                "Applied",
                "the devbox runs with its spec's settings",
                devbox.metadata.generation,
            )

    def _snapshot(self, devbox: Devbox, status: DevboxStatus, pod: JSON | None) -> float | None:
        """Start a snapshot if one is due (its record; the status write brings the devbox
        back to call the node-shim); else seconds until the next one, or None."""
        wait = snapshots.due_in(devbox, status, st.now())
        if wait is None or pod is None or pods.container_id(pod) is None:
            return None
        if wait > 0:
            return wait
        uid = str((pod.get("metadata") or {}).get("uid"))
        record = snapshots.new_record(devbox, uid, self.config.registry)
        status.commits = records.trim([*status.commits, record])
        return None

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
                metrics.COMMIT_FAILURES.labels(records.failure_code(record.reason)).inc()
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
