"""The DevboxRelease resource: an immutable, versioned image of a devbox.

Releasing re-tags the devbox's current image in the registry (no re-upload) and records the
result; a release can then be shared as a Runtime (``spec.source`` points back here).
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, Literal

from pydantic import Field

from app.resources._common import (
    AGE,
    Digest,
    DnsLabel,
    Generation,
    ImageReference,
    KindInfo,
    KubeModel,
    PrinterColumn,
    Resource,
)

RELEASE_VERSION = r"^v?[0-9]+(\.[0-9]+){0,2}([-+][0-9A-Za-z.-]+)?$"
"""A semver-like version: ``v1``, ``1.2``, ``v1.2.3-rc.1``."""


class ReleasePhase(StrEnum):
    """Progress of a release."""

    PENDING = "Pending"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class DevboxReleaseSpec(KubeModel):
    """What to release."""

    devbox: DnsLabel
    """Name of the devbox (in the same namespace) whose current image is released."""
    version: str = Field(min_length=1, max_length=128, pattern=RELEASE_VERSION)
    """Version, e.g. ``v1.2.0``; the image tag spells ``+`` as ``_`` (tags cannot hold ``+``)."""
    notes: str = Field(default="", max_length=4096)
    """Release notes."""


class DevboxReleaseStatus(KubeModel):
    """The released image."""

    phase: ReleasePhase | None = None
    """``Pending``, ``Succeeded`` or ``Failed``."""
    image: ImageReference | None = None
    """The immutable image reference of the release."""
    digest: Digest | None = None
    """Manifest digest of the released image."""
    reason: str | None = Field(default=None, max_length=32768)
    """Why the release failed (for a person to read)."""
    observed_generation: Generation | None = None
    """The ``metadata.generation`` this status describes."""


class DevboxRelease(Resource):
    """A released, immutable version of a devbox's image."""

    KIND_INFO: ClassVar[KindInfo] = KindInfo(
        plural="devboxreleases",
        short_names=("dbr",),
        columns=(
            PrinterColumn("Devbox", ".spec.devbox"),
            PrinterColumn("Version", ".spec.version"),
            PrinterColumn("Phase", ".status.phase"),
            PrinterColumn("Image", ".status.image", priority=1),
            AGE,
        ),
    )

    kind: Literal["DevboxRelease"] = "DevboxRelease"
    spec: DevboxReleaseSpec
    status: DevboxReleaseStatus = Field(default_factory=DevboxReleaseStatus)
