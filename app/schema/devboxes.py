"""Devboxes in the schema: the ``Devbox``, ``Commit`` and ``Release`` types and the
``devboxes`` / ``devbox`` / ``node`` queries.

Every read is scoped to the viewer's namespace and comes from the read cache; a devbox of
another namespace reads exactly like a missing one (null).  Two fields call Kubernetes, and only
when asked for: ``ssh.privateKey`` (the devbox's SSH Secret, and only for the devbox's owner)
and ``events`` (recent core/v1 Events about the devbox).
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterable
from datetime import datetime
from enum import Enum
from typing import Any

import strawberry

from app.apicache import ReadCache
from app.kubeclient import DEVBOXES, EVENTS, JSON, SECRETS
from app.resources import (
    Commit,
    CommitProgress,
    Devbox,
    DevboxPhase,
    DevboxRelease,
    Runtime,
)
from app.schema.audit import AuditEventConnection, audit_events_connection
from app.schema.common import (
    EnvVar,
    Protocol,
    field,
    map_connection,
    read_cache,
    shared_list,
)
from app.schema.context import Info, Viewer, require_viewer
from app.schema.relay import (
    Connection,
    Node,
    check_first,
    decode_global_id,
    encode_global_id,
    paginate,
)
from app.schema.runtimes import (
    RUNTIME_TYPE,
    RuntimeNode,
    find_runtime,
    runtime_from_id,
)

DEVBOX_TYPE = "Devbox"
RELEASE_TYPE = "Release"
DEVBOX_LABEL = "devbox.dev/devbox"
"""Label the controller puts on a devbox's children (``app.controller`` sets it)."""
PRIVATE_KEY = "id_ed25519"
"""Key of the user's private key in the devbox's SSH Secret."""
MAX_EVENTS = 100


# ---------------------------------------------------------------------- enums


@strawberry.enum(name="DevboxPhase", description="Where a devbox is in its lifecycle.")
class PhaseEnum(Enum):
    PENDING = "Pending"
    STARTING = "Starting"
    RUNNING = "Running"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    FAILED = "Failed"
    DELETING = "Deleting"


@strawberry.enum(name="DevboxState", description="The state the user wants.")
class StateEnum(Enum):
    RUNNING = "Running"
    STOPPED = "Stopped"


@strawberry.enum(name="NetworkMode", description="How SSH reaches a devbox.")
class NetworkModeEnum(Enum):
    NODE_PORT = "NodePort"
    TUNNEL = "Tunnel"


@strawberry.enum(name="ConditionStatus")
class ConditionStatusEnum(Enum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


@strawberry.enum(name="CommitMode", description="Why a commit was taken.")
class CommitModeEnum(Enum):
    STOP = "Stop"
    SNAPSHOT = "Snapshot"
    RESTORE = "Restore"


@strawberry.enum(name="CommitStatus")
class CommitStatusEnum(Enum):
    PENDING = "Pending"
    COMMITTING = "Committing"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@strawberry.enum(name="ReleasePhase")
class ReleasePhaseEnum(Enum):
    PENDING = "Pending"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@strawberry.enum(name="DevboxOrderField")
class DevboxOrderField(Enum):
    NAME = "NAME"
    CREATED_AT = "CREATED_AT"


@strawberry.enum(name="OrderDirection")
class OrderDirection(Enum):
    ASC = "ASC"
    DESC = "DESC"


# ---------------------------------------------------------------------- small types


@strawberry.type(description="One aspect of a devbox's state, with a reason a person can read.")
class Condition:
    type: str
    status: ConditionStatusEnum
    reason: str
    message: str
    last_transition_time: datetime


@strawberry.type(description="CPU, memory and storage limits, as Kubernetes quantities.")
class Resources:
    cpu: str
    memory: str
    storage: str


@strawberry.type(description="A port the devbox serves.")
class DevboxPort:
    name: str
    port: int
    protocol: Protocol
    public: bool
    url: str | None = strawberry.field(
        description="Public URL (public ports, once their Ingress is ready)."
    )


@strawberry.type(description="When the devbox stops by itself.")
class AutoStop:
    idle_timeout_seconds: int
    stop_at: datetime | None


@strawberry.type(
    name="CommitProgress",
    description="How far a commit in flight is (the node-shim's latest report, as the "
    "controller last wrote it: at each new step, else every few seconds).",
)
class CommitProgressNode:
    step: str = strawberry.field(description="Step running now: pause, diff, compress, push…")
    bytes_done: float = strawberry.field(
        description="Bytes the step has handled so far (a Float: sizes pass 2^31)."
    )
    bytes_total: float = strawberry.field(description="Bytes the step has to handle (0: unknown).")
    updated_at: datetime

    @classmethod
    def of(cls, progress: CommitProgress) -> CommitProgressNode:
        return cls(
            step=progress.step,
            bytes_done=float(progress.bytes_done),
            bytes_total=float(progress.bytes_total),
            updated_at=progress.updated_at,
        )


@strawberry.type(name="Commit", description="One commit of the devbox's container to an image.")
class CommitNode:
    id: str
    mode: CommitModeEnum
    image: str
    digest: str | None
    size_bytes: float | None = strawberry.field(
        description="Compressed size of the layers uploaded (a Float: sizes pass 2^31)."
    )
    layers: int | None
    status: CommitStatusEnum
    reason: str | None
    restored_from: str | None = strawberry.field(
        description="For a Restore record: the commit that was restored."
    )
    started_at: datetime | None
    finished_at: datetime | None
    progress: CommitProgressNode | None = strawberry.field(
        description="How far the commit is while in flight (null once it ended)."
    )

    @field(description="Seconds from start to finish, once finished.")
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    @classmethod
    def of(cls, commit: Commit) -> CommitNode:
        return cls(
            id=commit.id,
            mode=CommitModeEnum(commit.mode),
            image=commit.image,
            digest=commit.digest,
            size_bytes=float(commit.size_bytes) if commit.size_bytes is not None else None,
            layers=commit.layers,
            status=CommitStatusEnum(commit.status),
            reason=commit.reason,
            restored_from=commit.restored_from,
            started_at=commit.started_at,
            finished_at=commit.finished_at,
            progress=CommitProgressNode.of(commit.progress) if commit.progress else None,
        )


@strawberry.type(description="A Kubernetes Event about the devbox.")
class DevboxEvent:
    type: str
    reason: str
    message: str
    count: int
    first_time: datetime | None
    last_time: datetime | None


def _host_alias(devbox: Devbox) -> str:
    return f"devbox-{devbox.namespace}-{devbox.name}"


@strawberry.type(description="How to connect to the devbox with SSH.")
class SSHAccess:
    devbox: strawberry.Private[Devbox]
    working_dir: strawberry.Private[str]
    host: str | None = strawberry.field(description="Null until the devbox runs (NodePort).")
    port: int | None
    user: str | None
    host_key_fingerprint: str | None

    @field(description="Host alias used by the config snippet and the IDE links.")
    def host_alias(self) -> str:
        return _host_alias(self.devbox)

    @field(description="An ~/.ssh/config entry (with the private key saved as its IdentityFile).")
    def config_snippet(self) -> str | None:
        if not self.host or not self.port:
            return None
        alias = _host_alias(self.devbox)
        lines = [
            f"Host {alias}",
            f"  HostName {self.host}",
            f"  Port {self.port}",
            f"  User {self.user or 'root'}",
            f"  IdentityFile ~/.ssh/{alias}",
            "  IdentitiesOnly yes",
        ]
        return "\n".join(lines) + "\n"

    @field(description="Opens the devbox in VS Code (Remote - SSH, using the config entry).")
    def vscode_uri(self) -> str | None:
        if not self.host or not self.port:
            return None
        return f"vscode://vscode-remote/ssh-remote+{_host_alias(self.devbox)}{self.working_dir}"

    @field(description="Opens the devbox in JetBrains Gateway.")
    def jetbrains_uri(self) -> str | None:
        if not self.host or not self.port:
            return None
        return (
            f"jetbrains-gateway://connect#type=ssh&deploy=false&host={self.host}"
            f"&port={self.port}&user={self.user or 'root'}&projectPath={self.working_dir}"
        )

    @field(description="The private key (OpenSSH format); only for the devbox's owner.")
    async def private_key(self, info: Info) -> str | None:
        viewer = require_viewer(info)
        if viewer.user_name != self.devbox.spec.owner or viewer.namespace != self.devbox.namespace:
            return None
        secret = await _ssh_secret(info, self.devbox)
        if secret is None:
            return None
        raw = (secret.get("data") or {}).get(PRIVATE_KEY)
        if not raw:
            return None
        return base64.b64decode(raw).decode()


async def _ssh_secret(info: Info, devbox: Devbox) -> JSON | None:
    """The devbox's SSH Secret (a child the controller made: labelled and owned by it)."""
    secrets = await shared_list(info, SECRETS, devbox.namespace, label_selector=DEVBOX_LABEL)
    for secret in secrets:
        owners = (secret.get("metadata") or {}).get("ownerReferences") or []
        owned = any(
            ref.get("kind") == "Devbox" and ref.get("uid") == devbox.metadata.uid for ref in owners
        )
        if owned and PRIVATE_KEY in (secret.get("data") or {}):
            return secret
    return None


# ---------------------------------------------------------------------- releases


def release_id(release: DevboxRelease) -> strawberry.ID:
    return encode_global_id(RELEASE_TYPE, f"{release.namespace}/{release.name}")


@strawberry.type(name="Release", description="A released, immutable version of a devbox image.")
class ReleaseNode(Node):
    obj: strawberry.Private[DevboxRelease]

    @classmethod
    def of(cls, release: DevboxRelease) -> ReleaseNode:
        return cls(id=release_id(release), obj=release)

    @strawberry.field
    def name(self) -> str:
        return self.obj.name

    @strawberry.field
    def version(self) -> str:
        return self.obj.spec.version

    @strawberry.field
    def notes(self) -> str:
        return self.obj.spec.notes

    @field(description="The released devbox (null once it is deleted).")
    def devbox(self, info: Info) -> DevboxNode | None:
        found = read_cache(info).devbox(self.obj.namespace, self.obj.spec.devbox)
        return DevboxNode.of(found) if found is not None else None

    @strawberry.field
    def phase(self) -> ReleasePhaseEnum:
        return ReleasePhaseEnum(self.obj.status.phase or "Pending")

    @field(description="The immutable image reference, once released.")
    def image(self) -> str | None:
        return self.obj.status.image

    @strawberry.field
    def digest(self) -> str | None:
        return self.obj.status.digest

    @field(description="Why the release failed or waits.")
    def reason(self) -> str | None:
        return self.obj.status.reason

    @strawberry.field
    def created_at(self) -> datetime | None:
        return self.obj.metadata.creation_timestamp


# ---------------------------------------------------------------------- devbox


def devbox_key(devbox: Devbox) -> str:
    return f"{devbox.namespace}/{devbox.name}"


def devbox_id(devbox: Devbox) -> strawberry.ID:
    return encode_global_id(DEVBOX_TYPE, devbox_key(devbox))


def _newest_first(items: Iterable[Any]) -> list[Any]:
    return list(reversed(list(items)))


@strawberry.type(name="Devbox", description="A cloud development environment.")
class DevboxNode(Node):
    """Plain fields are filled in by :meth:`of` (cheap to serve); fields that read more than
    the devbox itself (runtime, SSH, commits, releases, events, audit) are resolvers."""

    obj: strawberry.Private[Devbox]
    name: str
    namespace: str
    owner: str = strawberry.field(
        description="The user who owns the devbox (and alone gets its SSH key)."
    )
    state: StateEnum = strawberry.field(description="The state the user asked for.")
    phase: PhaseEnum = strawberry.field(
        description="Where the devbox is in its lifecycle (Pending until first seen)."
    )
    conditions: list[Condition]
    resources: Resources
    env: list[EnvVar]
    ports: list[DevboxPort]
    network_mode: NetworkModeEnum
    auto_stop: AutoStop | None
    image: str | None = strawberry.field(description="Image the devbox runs or will start from.")
    created_at: datetime | None = strawberry.field(description="When the devbox was created.")
    shared_completions: strawberry.Private[dict[Any, Any]] = dataclasses.field(default_factory=dict)
    """Completed selections of plain fields, kept for every request (app.schema.execution)."""

    @classmethod
    def of(cls, devbox: Devbox) -> DevboxNode:
        spec, status = devbox.spec, devbox.status
        urls = {p.name: p.url for p in status.ports}
        auto = spec.auto_stop
        return cls(
            id=devbox_id(devbox),
            obj=devbox,
            name=devbox.name,
            namespace=devbox.namespace,
            owner=spec.owner,
            state=StateEnum(spec.state),
            phase=PhaseEnum(status.phase or DevboxPhase.PENDING),
            conditions=[
                Condition(
                    type=c.type,
                    status=ConditionStatusEnum(c.status),
                    reason=c.reason,
                    message=c.message,
                    last_transition_time=c.last_transition_time,
                )
                for c in status.conditions
            ],
            resources=Resources(
                cpu=spec.resources.cpu, memory=spec.resources.memory, storage=spec.resources.storage
            ),
            env=[EnvVar(name=e.name, value=e.value) for e in spec.env],
            ports=[
                DevboxPort(
                    name=p.name,
                    port=p.port,
                    protocol=Protocol(p.protocol),
                    public=p.public,
                    url=urls.get(p.name) if p.public else None,
                )
                for p in spec.ports
            ],
            network_mode=NetworkModeEnum(spec.network_mode),
            auto_stop=AutoStop(idle_timeout_seconds=auto.idle_timeout_seconds, stop_at=auto.stop_at)
            if auto is not None
            else None,
            image=status.image,
            created_at=devbox.metadata.creation_timestamp,
        )

    @classmethod
    def shared(cls, cache: ReadCache, devbox: Devbox) -> DevboxNode:
        """:meth:`of`, built once per version of a cached devbox and shared by every
        request (the schema only reads it)."""
        memo = cache.memo(DEVBOXES, devbox)
        node = memo.get("graphql")
        if not isinstance(node, DevboxNode):
            node = memo["graphql"] = cls.of(devbox)
        return node

    @field(description="The runtime it was created from (null if gone or no longer visible).")
    def runtime(self, info: Info) -> RuntimeNode | None:
        ref = self.obj.spec.runtime_ref
        found = find_runtime(info, require_viewer(info), ref.namespace, ref.name)
        return RuntimeNode.of(found, info) if found is not None else None

    @field(description="SSH access (null until the controller has set the devbox up).")
    def ssh(self, info: Info) -> SSHAccess | None:
        endpoint = self.obj.status.ssh
        if endpoint is None:
            return None
        ref = self.obj.spec.runtime_ref
        runtime: Runtime | None = read_cache(info).runtime(ref.namespace, ref.name)
        return SSHAccess(
            devbox=self.obj,
            working_dir=runtime.spec.working_dir if runtime else "/root",
            host=endpoint.host,
            port=endpoint.port,
            user=endpoint.user,
            host_key_fingerprint=endpoint.host_key_fingerprint,
        )

    @field(description="Commit history, newest first.")
    def commits(self, first: int, after: str | None = None) -> Connection[CommitNode]:
        page = paginate(
            _newest_first(self.obj.status.commits),
            first=first,
            after=after,
            position=lambda c: str(c.id),
        )
        return map_connection(page, CommitNode.of)

    @field(description="Releases of this devbox, newest first.")
    def releases(self, info: Info, first: int, after: str | None = None) -> Connection[ReleaseNode]:
        found = [
            r
            for r in read_cache(info).releases(self.obj.namespace)
            if r.spec.devbox == self.obj.name
        ]
        found.sort(key=lambda r: (r.metadata.creation_timestamp or datetime.min, r.name))
        page = paginate(
            _newest_first(found), first=first, after=after, position=lambda r: str(r.name)
        )
        return map_connection(page, ReleaseNode.of)

    @field(description="Recent Kubernetes Events about the devbox, newest first.")
    async def events(
        self, info: Info, first: int, after: str | None = None
    ) -> Connection[DevboxEvent]:
        check_first(first)
        items = await shared_list(info, EVENTS, self.obj.namespace)
        mine = [e for e in items if _about(e, self.obj)]
        mine.sort(key=_event_time, reverse=True)
        page = paginate(
            mine[:MAX_EVENTS],
            first=first,
            after=after,
            position=lambda e: str((e.get("metadata") or {}).get("name")),
        )
        return map_connection(page, _event)

    @field(description="Audit events of this devbox (every mutation of it), newest first.")
    async def audit_events(
        self, info: Info, first: int, after: str | None = None
    ) -> AuditEventConnection:
        return await audit_events_connection(
            info, target_kind="Devbox", target_name=self.obj.name, first=first, after=after
        )


def _about(event: JSON, devbox: Devbox) -> bool:
    involved = event.get("involvedObject") or {}
    return (
        involved.get("kind") == "Devbox"
        and involved.get("name") == devbox.name
        and involved.get("uid") in (None, devbox.metadata.uid)
    )


def _event_time(event: JSON) -> str:
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _event(event: JSON) -> DevboxEvent:
    return DevboxEvent(
        type=str(event.get("type") or "Normal"),
        reason=str(event.get("reason") or ""),
        message=str(event.get("message") or ""),
        count=int(event.get("count") or 1),
        first_time=_parse_time(event.get("firstTimestamp") or event.get("eventTime")),
        last_time=_parse_time(event.get("lastTimestamp") or event.get("eventTime")),
    )


# ---------------------------------------------------------------------- queries


@strawberry.input(description="Which devboxes to list.")
class DevboxFilter:
    phase: PhaseEnum | None = None
    search: str | None = strawberry.field(
        default=None, description="Case-insensitive text in the name."
    )


@strawberry.input(description="How to order devboxes.")
class DevboxOrder:
    field: DevboxOrderField = DevboxOrderField.NAME
    direction: OrderDirection = OrderDirection.ASC


def list_devboxes(
    info: Info, viewer: Viewer, filter: DevboxFilter | None, order: DevboxOrder | None
) -> list[Devbox]:
    """The viewer's devboxes, filtered and ordered."""
    order = order or DevboxOrder()
    cache = read_cache(info)
    found: list[Devbox] = [
        d
        for d in (
            cache.by_name(DEVBOXES, viewer.namespace)  # already in the default order
            if order.field == DevboxOrderField.NAME
            else cache.devboxes(viewer.namespace)
        )
        if isinstance(d, Devbox)
    ]
    if filter is not None and filter.phase is not None:
        wanted = filter.phase.value
        found = [d for d in found if (d.status.phase or DevboxPhase.PENDING) == wanted]
    if filter is not None and filter.search:
        needle = filter.search.casefold()
        found = [d for d in found if needle in d.name.casefold()]
    if order.field == DevboxOrderField.CREATED_AT:
        found.sort(key=lambda d: (d.metadata.creation_timestamp or datetime.min, d.name))
    if order.direction == OrderDirection.DESC:
        found.reverse()
    return found


def find_devbox(info: Info, viewer: Viewer, name: str) -> Devbox | None:
    """The viewer's devbox ``name``, or None."""
    return read_cache(info).devbox(viewer.namespace, name)


def node_from_id(info: Info, viewer: Viewer, value: str) -> Node | None:
    """The object a global id names, if the viewer may see it."""
    try:
        type_name, key = decode_global_id(value)
    except ValueError:
        return None
    namespace, _, name = key.partition("/")
    if type_name == RUNTIME_TYPE:
        runtime = runtime_from_id(info, viewer, value)
        return RuntimeNode.of(runtime, info) if runtime is not None else None
    if namespace != viewer.namespace:
        return None
    if type_name == DEVBOX_TYPE:
        devbox = read_cache(info).devbox(namespace, name)
        return DevboxNode.of(devbox) if devbox is not None else None
    if type_name == RELEASE_TYPE:
        release = read_cache(info).release(namespace, name)
        return ReleaseNode.of(release) if release is not None else None
    return None


@strawberry.type
class DevboxQuery:
    """Queries about devboxes."""

    @field(description="The viewer's devboxes.")
    def devboxes(
        self,
        info: Info,
        first: int,
        after: str | None = None,
        filter: DevboxFilter | None = None,
        order_by: DevboxOrder | None = None,
    ) -> Connection[DevboxNode]:
        viewer = require_viewer(info)
        check_first(first)
        found = list_devboxes(info, viewer, filter, order_by)
        page = paginate(found, first=first, after=after, position=lambda d: str(d.name))
        cache = read_cache(info)
        return map_connection(page, lambda d: DevboxNode.shared(cache, d))

    @field(description="One of the viewer's devboxes by name (null if there is none).")
    def devbox(self, info: Info, name: str) -> DevboxNode | None:
        found = find_devbox(info, require_viewer(info), name)
        return DevboxNode.of(found) if found is not None else None

    @field(description="Any object by its global id (null if missing or not visible).")
    def node(self, info: Info, id: strawberry.ID) -> Node | None:
        return node_from_id(info, require_viewer(info), id)
