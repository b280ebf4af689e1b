"""Reconcile of a DevboxRelease: re-tag the devbox's current image as the release version.

The copy is a manifest GET + PUT in the same repository (no blob moves).  A release is done
once ``Succeeded`` or ``Failed`` and is never re-done (a later commit of the devbox does not
move a released tag).  The image released is the one the devbox's pod runs
(:func:`app.controller._status.current_image`; after a restore, the restored one).  An existing
tag is never overwritten: if it already holds the same manifest and no other release claims the
version (an earlier run of this release crashed after the PUT) the release succeeds; otherwise
it fails with ``version exists: ...``.
"""

from __future__ import annotations

import logging

from app.controller._release_claims import claimed_by, tag_of
from app.controller._status import current_image
from app.kubeclient import JSON, Devboxes, Informer, Kube, merge_patch
from app.registry_client import ImageRef, RegistryClient, RegistryError
from app.resources import Devbox, DevboxRelease, DevboxReleaseStatus, ReleasePhase

log = logging.getLogger(__name__)

Key = tuple[str, str]


class ReleaseReconciler:
    """Drives DevboxRelease objects to Succeeded or Failed."""

    def __init__(
        self, kube: Kube, releases: Informer, devboxes: Informer, registry: RegistryClient
    ) -> None:
        self.api = Devboxes(kube)
        self.releases = releases
        self.devboxes = devboxes
        self.registry = registry

    async def reconcile(self, key: Key) -> float | None:
        obj = self.releases.get(*key)
        if obj is None:
            return None
        release = DevboxRelease.model_validate(obj)
        if release.metadata.deletion_timestamp is not None or release.status.phase in (
            ReleasePhase.SUCCEEDED,
            ReleasePhase.FAILED,
        ):
            return None
        status = release.status.model_copy(deep=True)
        status.observed_generation = release.metadata.generation
        devbox_obj = self.devboxes.get(release.namespace, release.spec.devbox)
        if devbox_obj is None:
            return await self._done(obj, status, f"devbox {release.spec.devbox} does not exist")
        # The image the devbox's pod runs (after a restore: the restored one); never the
        # runtime's image, which lives in another registry.
        current = current_image(Devbox.model_validate(devbox_obj).status, None)
        if current is None:
            status.phase = ReleasePhase.PENDING
            status.reason = "the devbox has no commit yet; stop it once and the release proceeds"
            await self._write(obj, status)
            return None  # the devbox's next change queues this release again
        source = ImageRef.parse(current)
        target = source.with_tag(tag_of(release.spec.version))
        owner = claimed_by(release, self.releases.objects(release.namespace))
        if owner is not None:
            return await self._done(
                obj,
                status,
                f"version exists: {release.spec.version} was already released as {target} by "
                f"DevboxRelease {owner}; releases are immutable, choose another version",
            )
        try:
            manifest = await self.registry.get_manifest(source)
            if manifest is None:
                return await self._done(obj, status, f"the image {source} is not in the registry")
            existing = await self.registry.get_manifest(target)
            if existing is not None and existing.digest != manifest.digest:
                return await self._done(
                    obj,
                    status,
                    f"version exists: {release.spec.version} is already in the registry as "
                    f"{target} ({existing.digest}); releases are immutable, choose another "
                    "version",
                )
            digest = (
                existing.digest if existing else await self.registry.put_manifest(target, manifest)
            )
        except RegistryError as exc:
            if exc.temporary:
                raise
            return await self._done(obj, status, exc.message)
        status.phase = ReleasePhase.SUCCEEDED
        status.image = str(target)
        status.digest = digest
        status.reason = None
        await self._write(obj, status)
        log.info("released %s/%s as %s", *key, target)
        return None

    async def _done(self, obj: JSON, status: DevboxReleaseStatus, reason: str) -> float | None:
        """Record a terminal failure; nothing more to do."""
        status.phase = ReleasePhase.FAILED
        status.reason = reason
        await self._write(obj, status)
        return None

    async def _write(self, obj: JSON, status: DevboxReleaseStatus) -> None:
        old = DevboxRelease.model_validate(obj).status.model_dump(
            by_alias=True, exclude_none=True, mode="json"
        )
        new = status.model_dump(by_alias=True, exclude_none=True, mode="json")
        if old == new:
            return
        meta = obj["metadata"]
        await self.api.patch_release_status(
            meta["namespace"],
            meta["name"],
            merge_patch(old, new),
            resource_version=str(meta["resourceVersion"]),
        )
