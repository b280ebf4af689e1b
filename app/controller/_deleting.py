"""Deleting a devbox: wait (bounded) for a commit in flight, delete the children, the registry
images no release uses, then drop the finalizer."""

from __future__ import annotations

import contextlib
import logging

from app.controller import _children as children
from app.controller import _records as records
from app.controller import _status as st
from app.controller._base import (
    ABANDON_ANNOTATION,
    FINALIZER,
    sooner,
)
from app.controller._restoring import RestoringReconciler
from app.kubeclient import (
    INGRESSES,
    JSON,
    PODS,
    SECRETS,
    SERVICES,
    NotFound,
)
from app.registry_client import ImageRef, RegistryError
from app.resources import (
    CommitMode,
    CommitStatus,
    Devbox,
    DevboxPhase,
    DevboxStatus,
)

log = logging.getLogger(__name__)


class DeletingReconciler(RestoringReconciler):
    """Runs the finalizer of a deleted devbox."""

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
            if task is not None and task.done() and not records.interrupted(task):
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
                again = sooner(again, records.publish_progress(status, self.commits, st.now()))
                await self._write_status(obj, status)
                return sooner(max(0.1, self.config.delete_commit_wait - waited), again)
        records.publish_progress(status, self.commits, st.now())  # drops a finished one's
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
