"""Which DevboxRelease owns a version tag (pure): a version belongs to the first release that
succeeded with it, so a second release of the same version is refused even when the tag
already holds the very same manifest."""

from __future__ import annotations

from collections.abc import Iterable

from app.kubeclient import JSON
from app.resources import DevboxRelease, ReleasePhase


def tag_of(version: str) -> str:
    """The image tag of a release version (tags cannot hold ``+``)."""
    return version.replace("+", "_")


def claimed_by(release: DevboxRelease, others: Iterable[JSON]) -> str | None:
    """The name of another ``Succeeded`` release of the same devbox and tag, if any."""
    tag = tag_of(release.spec.version)
    for obj in others:
        other = DevboxRelease.model_validate(obj)
        if (
            other.metadata.uid != release.metadata.uid
            and other.spec.devbox == release.spec.devbox
            and tag_of(other.spec.version) == tag
            and other.status.phase == ReleasePhase.SUCCEEDED
        ):
            return other.name
    return None
