"""Restoring a devbox to an earlier commit (``spec.restoreCommit``, once, while Stopped), and
starting over when a stopped container's changes could not be saved and the user abandons them."""

from __future__ import annotations

import logging
import secrets

from app.controller import _pods as pods
from app.controller import _records as records
from app.controller import _status as st
from app.controller._base import ABANDON_ANNOTATION
from app.controller._stopping import StoppingReconciler
from app.kubeclient import (
    DEVBOXES,
    JSON,
)
from app.resources import (
    Commit,
    CommitMode,
    CommitStatus,
    ConditionStatus,
    Devbox,
    DevboxPhase,
    DevboxState,
    DevboxStatus,
    Runtime,
)

log = logging.getLogger(__name__)


class RestoringReconciler(StoppingReconciler):
    """Applies restores and abandoned changes."""

    def _restore(self, devbox: Devbox, status: DevboxStatus, pod: JSON | None) -> None:
        """Apply ``spec.restoreCommit`` once, if the devbox is stopped: append a ``Restore``
        record (its image becomes current); otherwise say in a condition why not."""
        wanted = records.pending_restore(devbox, status)
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
        status.commits = records.trim([*status.commits, record])
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
        if not records.abandon_asked(devbox):
            reason, message = pods.pod_failure(pod) or ("ContainerExited", "the container stopped")
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
            not records.abandon_asked(devbox)
            or devbox.spec.state != DevboxState.RUNNING
            or st.in_flight(status) is not None
            or (pod is not None and pods.unsaved(pod) and not self._committed(status, pod))
        ):
            return
        annotations: JSON = {ABANDON_ANNOTATION: None}
        await self.kube.patch(
            DEVBOXES, devbox.namespace, devbox.name, {"metadata": {"annotations": annotations}}
        )
