"""The Runtime resource: an image users can start a devbox from.

Official runtimes live in ``devbox-system`` with ``visibility: Public`` and are visible to every
namespace; private ones live in, and are visible to, one user's namespace.  A runtime shared
from a release records where it came from in ``spec.source``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import AliasChoices, Field

from app.resources._common import (
    AGE,
    Condition,
    DnsLabel,
    EnvVars,
    Generation,
    ImageReference,
    KindInfo,
    KubeModel,
    ListMap,
    PortNumber,
    Ports,
    PrinterColumn,
    Resource,
)

SYSTEM_NAMESPACE = "devbox-system"
"""Where the official (public) runtimes live."""


class RuntimeClass(StrEnum):
    """What a runtime provides."""

    OS = "OS"
    LANGUAGE = "Language"
    FRAMEWORK = "Framework"


class Visibility(StrEnum):
    """Who may create devboxes from a runtime."""

    PUBLIC = "Public"
    PRIVATE = "Private"


class RuntimeSource(KubeModel):
    """The release a shared runtime was created from."""

    namespace: DnsLabel
    """Namespace of the released devbox."""
    devbox: DnsLabel
    """Name of the released devbox."""
    release: DnsLabel
    """Name of the DevboxRelease."""


class RuntimeSpec(KubeModel):
    """What a runtime is and how its devboxes start."""

    # Not ``alias="class"``: type checkers would then only accept ``class=`` in the constructor.
    class_: RuntimeClass = Field(
        validation_alias=AliasChoices("class", "class_"), serialization_alias="class"
    )
    """``OS``, ``Language`` or ``Framework``."""
    title: str = Field(min_length=1, max_length=63)
    """Name shown to users, e.g. ``Python``."""
    version: str = Field(min_length=1, max_length=63)
    """Version shown to users, e.g. ``3.12``."""
    image: ImageReference
    """OCI image reference devboxes of this runtime start from."""
    description: str = Field(default="", max_length=1024)
    """A sentence or two for the runtime picker."""
    ports: Ports = Field(default_factory=list)
    """Ports new devboxes of this runtime get by default."""
    user: str = Field(default="root", min_length=1, max_length=32)
    """User the SSH session logs in as."""
    working_dir: str = Field(default="/root", max_length=4096, pattern=r"^/")
    """Absolute directory an SSH session starts in."""
    env: EnvVars = Field(default_factory=list)
    """Environment variables set in every devbox of this runtime."""
    command: list[str] = Field(default_factory=list, max_length=64)
    """Command the container runs (empty: the image's entrypoint, which must serve SSH)."""
    ssh_port: PortNumber = 22
    """Port the SSH server in the image listens on."""
    visibility: Visibility = Visibility.PRIVATE
    """``Public`` (every namespace) or ``Private`` (this namespace only)."""
    source: RuntimeSource | None = None
    """Set for a runtime shared from a release."""


class RuntimeStatus(KubeModel):
    """What the controller observed about the runtime."""

    observed_generation: Generation | None = None
    """The ``metadata.generation`` this status describes."""
    conditions: Annotated[list[Condition], ListMap("type")] = Field(default_factory=list)
    """Current conditions, e.g. whether the image can be resolved."""


class Runtime(Resource):
    """A runtime image users can create devboxes from."""

    KIND_INFO: ClassVar[KindInfo] = KindInfo(
        plural="runtimes",
        short_names=("rt",),
        columns=(
            PrinterColumn("Class", ".spec.class"),
            PrinterColumn("Title", ".spec.title"),
            PrinterColumn("Version", ".spec.version"),
            PrinterColumn("Visibility", ".spec.visibility"),
            PrinterColumn("Image", ".spec.image", priority=1),
            AGE,
        ),
    )

    kind: Literal["Runtime"] = "Runtime"
    spec: RuntimeSpec
    status: RuntimeStatus = Field(default_factory=RuntimeStatus)
