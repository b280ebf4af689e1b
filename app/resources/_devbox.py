"""The Devbox resource: one user's development container, committed to an image on stop.

``spec`` is what the user asked for (runtime, desired state, size, ports, network mode,
auto-stop); ``status`` is what the controller observed and did (phase, pod, SSH endpoint,
per-port URLs and the commit history).  See DESIGN.md §4 for the lifecycle.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from app.resources._common import (
    AGE,
    CommitId,
    Condition,
    Digest,
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
    Quantity,
    Resource,
    Seconds,
    Time,
)

MAX_COMMITS = 100
"""At most this many commits are kept in ``status.commits`` (the controller drops the oldest)."""


class DevboxState(StrEnum):
    """The state the user wants."""

    RUNNING = "Running"
    STOPPED = "Stopped"


class NetworkMode(StrEnum):
    """How SSH reaches the devbox."""

    NODE_PORT = "NodePort"
    TUNNEL = "Tunnel"


class DevboxPhase(StrEnum):
    """Where the devbox is in its lifecycle."""

    PENDING = "Pending"
    STARTING = "Starting"
    RUNNING = "Running"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    FAILED = "Failed"
    DELETING = "Deleting"


class CommitMode(StrEnum):
    """Why a commit was taken."""

    STOP = "Stop"
    SNAPSHOT = "Snapshot"
    RESTORE = "Restore"
    """Not a commit of the container: the record of a restore (``restoredFrom``), whose image
    became current."""


class CommitStatus(StrEnum):
    """Progress of one commit."""

    PENDING = "Pending"
    COMMITTING = "Committing"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class RuntimeRef(KubeModel):
    """The Runtime a devbox was created from."""

    name: DnsLabel
    """Name of the Runtime."""
    namespace: DnsLabel
    """Namespace of the Runtime (``devbox-system`` for official ones)."""


class Resources(KubeModel):
    """Size of the devbox, as Kubernetes quantities."""

    cpu: Quantity = "1"
    """CPU limit, e.g. ``500m`` or ``2``."""
    memory: Quantity = "2Gi"
    """Memory limit, e.g. ``4Gi``."""
    storage: Quantity = "10Gi"
    """Node storage reserved for the container's writable layer (what a commit saves), e.g.
    ``20Gi``; requested, not enforced by eviction (an evicted container loses its changes)."""


class AutoStop(KubeModel):
    """When the controller stops the devbox by itself."""

    idle_timeout_seconds: Seconds = 0
    """Stop after this long without an SSH connection (tunnel or NodePort; 0: never)."""
    stop_at: Time | None = None
    """Stop at this time."""


class DevboxSpec(KubeModel):
    """What the user asked for."""

    runtime_ref: RuntimeRef
    """The Runtime this devbox was created from."""
    owner: str = Field(min_length=1, max_length=253)
    """Name of the user who owns the devbox (and alone gets its SSH key)."""
    state: DevboxState = DevboxState.RUNNING
    """``Running`` or ``Stopped``; stopping commits the container first."""
    resources: Resources = Field(default_factory=Resources, json_schema_extra={"default": {}})
    """CPU and memory limits; storage reserved on the node."""
    ports: Ports = Field(default_factory=list)
    """Ports the devbox serves (port 22 is reserved for SSH; the API rejects it)."""
    network_mode: NetworkMode = NetworkMode.NODE_PORT
    """``NodePort`` (SSH straight to a node port) or ``Tunnel`` (through the API server)."""
    env: EnvVars = Field(default_factory=list)
    """Environment variables, added to (and overriding) the runtime's."""
    auto_stop: AutoStop | None = None
    """Idle timeout and scheduled stop."""
    snapshot_interval_seconds: Seconds = 0
    """Commit a snapshot of the running devbox this often (0: never)."""
    restore_commit: CommitId | None = None
    """Start from this earlier commit in ``status.commits`` (a rollback).  Applied once, while
    the devbox is Stopped: a ``Restore`` record then makes that image current, and later
    commits win again."""


class SSHEndpoint(KubeModel):
    """Where to connect with SSH."""

    host: str | None = None
    """Host name or address (a node for NodePort; the API server for Tunnel)."""
    port: PortNumber | None = None
    """Port on that host."""
    user: str | None = None
    """User to log in as."""
    host_key_fingerprint: str | None = None
    """SHA256 fingerprint of the devbox's SSH host key, for ``known_hosts``."""
    user_key_fingerprint: str | None = None
    """SHA256 fingerprint of the user's public key the devbox accepts (the key pair issued to
    the owner); the controller notices from it when the keys had to be regenerated."""


class PortStatus(KubeModel):
    """How to reach one of the spec's ports."""

    name: str = Field(min_length=1, max_length=15)
    """Name of the port in ``spec.ports``."""
    port: PortNumber
    """Port number."""
    url: str | None = None
    """Public URL, if the port is public and its Ingress is ready."""


class CommitProgress(KubeModel):
    """How far a commit in flight is: the node-shim's latest report, as the controller last
    wrote it (at most every few seconds, and at each new step)."""

    step: str = Field(default="", max_length=63)
    """Step running now: ``lease``, ``pause``, ``diff``, ``compress``, ``push``…"""
    bytes_done: Annotated[int, Field(ge=0)] = 0
    """Bytes the step has handled so far."""
    bytes_total: Annotated[int, Field(ge=0)] = 0
    """Bytes the step has to handle (0: not known)."""
    updated_at: Time
    """When the controller wrote this progress."""


class Commit(KubeModel):
    """One commit of the devbox's container to an image."""

    id: CommitId
    """Commit id (also the image tag)."""
    mode: CommitMode
    """``Stop`` (on the way to Stopped), ``Snapshot`` (while running) or ``Restore``."""
    image: ImageReference
    """Image reference the commit is pushed to."""
    restored_from: CommitId | None = None
    """For a ``Restore`` record: the id of the commit that was restored."""
    request_id: str | None = Field(default=None, max_length=253)
    """Node-shim request id: a controller restarted mid-commit re-attaches with it."""
    status: CommitStatus = CommitStatus.PENDING
    """``Pending``, ``Committing``, ``Succeeded`` or ``Failed``."""
    digest: Digest | None = None
    """Manifest digest, once pushed."""
    size_bytes: Annotated[int, Field(ge=0)] | None = None
    """Compressed size of the layers uploaded for this commit."""
    layers: Annotated[int, Field(ge=0)] | None = None
    """Layer count of the image."""
    reason: str | None = Field(default=None, max_length=32768)
    """Why the commit failed (for a person to read)."""
    started_at: Time | None = None
    """When the commit started."""
    finished_at: Time | None = None
    """When the commit succeeded or failed."""
    progress: CommitProgress | None = None
    """While the commit is in flight: how far it is (dropped once it succeeded or failed)."""


class DevboxStatus(KubeModel):
    """What the controller observed and did."""

    phase: DevboxPhase | None = None
    """Lifecycle phase."""
    conditions: Annotated[list[Condition], ListMap("type")] = Field(default_factory=list)
    """Current conditions, with reasons (why it stopped, why a commit failed)."""
    observed_generation: Generation | None = None
    """The ``metadata.generation`` this status describes."""
    image: ImageReference | None = None
    """Image the devbox runs or will start from (last successful commit, else the runtime's)."""
    node_name: str | None = None
    """Node the pod runs on."""
    pod_name: str | None = None
    """Name of the devbox's pod."""
    pod_ip: str | None = Field(default=None, alias="podIP")
    """IP of the devbox's pod."""
    ssh: SSHEndpoint | None = None
    """SSH endpoint."""
    ports: Annotated[list[PortStatus], ListMap("name")] = Field(default_factory=list)
    """How to reach each port."""
    commits: Annotated[list[Commit], ListMap("id")] = Field(
        default_factory=list, max_length=MAX_COMMITS
    )
    """Commit history, oldest first."""
    last_activity_time: Time | None = None
    """Last SSH connection seen, through the tunnel or the NodePort (for the idle timeout)."""


class Devbox(Resource):
    """A cloud development environment: a container with SSH, committed on stop."""

    KIND_INFO: ClassVar[KindInfo] = KindInfo(
        plural="devboxes",
        short_names=("dbx",),
        columns=(
            PrinterColumn("Runtime", ".spec.runtimeRef.name"),
            PrinterColumn("State", ".spec.state"),
            PrinterColumn("Phase", ".status.phase"),
            PrinterColumn("Node", ".status.nodeName"),
            AGE,
        ),
    )

    kind: Literal["Devbox"] = "Devbox"
    spec: DevboxSpec
    status: DevboxStatus = Field(default_factory=DevboxStatus)
