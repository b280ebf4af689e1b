"""Devbox mutations: one per action (``devboxCreate``, ``devboxUpdate``, ``devboxDelete``,
``devboxStart``, ``devboxStop``, ``devboxRestart``, ``devboxRestore``, ``devboxRelease``,
``runtimeCreateFromRelease``).

Each takes ``input`` (with an optional ``idempotencyKey``) and returns a payload with the
object and ``userErrors``.  Each runs through :func:`~app.schema.mutation.run_mutation`
(idempotency, audit), whose ``perform`` validates first (:mod:`app.validation`; invalid input
writes nothing), then writes exactly one object to Kubernetes in the viewer's namespace.  The
payload is read from the read cache once it has seen the write (read-your-writes).

How the actions map onto the resources (see :mod:`app.controller`):

- start / stop set ``spec.state``; ``abandonChanges`` sets the controller's abandon annotation;
- restart sets the ``devbox.dev/restart-requested-at`` annotation (commit, then a new pod);
- restore sets ``spec.restoreCommit`` on a Stopped devbox (and ``spec.state: Running`` unless
  ``start: false``); the controller applies it once;
- release creates a ``DevboxRelease``; runtimeCreateFromRelease a ``Runtime`` whose image is
  the release's and whose ``spec.source`` names the release.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import strawberry
from pydantic import ValidationError

from app import validation as v
from app.controller import ABANDON_ANNOTATION, RESTART_ANNOTATION
from app.kubeclient import (
    DEVBOXES,
    JSON,
    RELEASES,
    RUNTIMES,
    AlreadyExists,
    KubeError,
    NotFound,
)
from app.resources import (
    AutoStop,
    CommitMode,
    CommitStatus,
    Devbox,
    DevboxPhase,
    DevboxRelease,
    DevboxReleaseSpec,
    DevboxSpec,
    DevboxState,
    EnvVar,
    ObjectMeta,
    Port,
    ReleasePhase,
    Resources,
    Runtime,
    RuntimeRef,
    RuntimeSource,
    RuntimeSpec,
    Visibility,
)
from app.schema.common import Protocol, field, limits, read_cache
from app.schema.context import Info, Viewer, require_viewer
from app.schema.devboxes import (
    RELEASE_TYPE,
    DevboxNode,
    NetworkModeEnum,
    ReleaseNode,
    StateEnum,
    devbox_id,
)
from app.schema.errors import UserError, UserErrorCode, user_error
from app.schema.mutation import REDACTED, MutationResult, run_mutation
from app.schema.relay import decode_global_id
from app.schema.runtimes import RuntimeNode, VisibilityEnum, runtime_from_id

Path = list[str]
INPUT: Path = ["input"]
RUNTIME_TITLE_MAX = 63
RUNTIME_DESCRIPTION_MAX = 1024


# ---------------------------------------------------------------------- inputs


@strawberry.input(description="CPU, memory and storage limits; omitted ones keep their value.")
class ResourcesInput:
    cpu: str | None = None
    memory: str | None = None
    storage: str | None = None


@strawberry.input(description="A port the devbox serves.")
class PortInput:
    port: int
    name: str | None = strawberry.field(default=None, description="Default: port-<number>.")
    protocol: Protocol = Protocol.TCP
    public: bool = strawberry.field(default=False, description="Give it a public URL.")


@strawberry.input(description="An environment variable.")
class EnvVarInput:
    name: str
    value: str = ""


@strawberry.input(description="When the devbox stops by itself.")
class AutoStopInput:
    idle_timeout_seconds: int = strawberry.field(default=0, description="0: never.")
    stop_at: datetime | None = None


@strawberry.input
class DevboxCreateInput:
    name: str
    runtime: strawberry.ID = strawberry.field(description="Id of a runtime the viewer can see.")
    resources: ResourcesInput | None = None
    ports: list[PortInput] | None = strawberry.field(
        default=None, description="Default: the runtime's ports."
    )
    env: list[EnvVarInput] | None = None
    network_mode: NetworkModeEnum = NetworkModeEnum.NODE_PORT
    auto_stop: AutoStopInput | None = None
    state: StateEnum = StateEnum.RUNNING
    idempotency_key: str | None = None


@strawberry.input(description="What to change; omitted fields keep their value.")
class DevboxUpdateInput:
    name: str
    resources: ResourcesInput | None = None
    ports: list[PortInput] | None = None
    env: list[EnvVarInput] | None = None
    network_mode: NetworkModeEnum | None = None
    auto_stop: AutoStopInput | None = None
    idempotency_key: str | None = None


@strawberry.input
class DevboxDeleteInput:
    name: str
    abandon_changes: bool = strawberry.field(
        default=False, description="Do not wait for a commit in flight (its changes are lost)."
    )
    idempotency_key: str | None = None


@strawberry.input
class DevboxStartInput:
    name: str
    abandon_changes: bool = strawberry.field(
        default=False,
        description="If the last stop could not save the container's changes, start from the "
        "last successful commit anyway (the unsaved changes are lost).",
    )
    idempotency_key: str | None = None


@strawberry.input
class DevboxStopInput:
    name: str
    idempotency_key: str | None = None


@strawberry.input
class DevboxRestartInput:
    name: str
    idempotency_key: str | None = None


@strawberry.input
class DevboxRestoreInput:
    name: str
    commit_id: str = strawberry.field(description="A successful commit of the devbox.")
    start: bool = strawberry.field(default=True, description="Start it from that commit.")
    idempotency_key: str | None = None


@strawberry.input
class DevboxReleaseInput:
    name: str = strawberry.field(description="The devbox to release.")
    version: str = strawberry.field(description="e.g. v1.2.0")
    notes: str = ""
    idempotency_key: str | None = None


@strawberry.input
class RuntimeCreateFromReleaseInput:
    release: strawberry.ID
    name: str = strawberry.field(description="Name of the new runtime.")
    visibility: VisibilityEnum = VisibilityEnum.PRIVATE
    title: str | None = strawberry.field(default=None, description="Default: the devbox name.")
    description: str | None = None
    idempotency_key: str | None = None


# ---------------------------------------------------------------------- payloads


@strawberry.type
class DevboxCreatePayload:
    devbox: DevboxNode | None
    user_errors: list[UserError]


@strawberry.type
class DevboxUpdatePayload:
    devbox: DevboxNode | None
    user_errors: list[UserError]


@strawberry.type
class DevboxDeletePayload:
    deleted_devbox_id: strawberry.ID | None
    devbox: DevboxNode | None = strawberry.field(
        description="The devbox while its finalizer runs (phase Deleting); null once gone."
    )
    user_errors: list[UserError]


@strawberry.type
class DevboxStartPayload:
    devbox: DevboxNode | None
    user_errors: list[UserError]


@strawberry.type
class DevboxStopPayload:
    devbox: DevboxNode | None
    user_errors: list[UserError]


@strawberry.type
class DevboxRestartPayload:
    devbox: DevboxNode | None
    user_errors: list[UserError]


@strawberry.type
class DevboxRestorePayload:
    devbox: DevboxNode | None
    user_errors: list[UserError]


@strawberry.type
class DevboxReleasePayload:
    release: ReleaseNode | None
    user_errors: list[UserError]


@strawberry.type
class RuntimeCreateFromReleasePayload:
    runtime: RuntimeNode | None
    user_errors: list[UserError]


# ---------------------------------------------------------------------- helpers


def jsonable(value: Any) -> Any:
    """An input object as JSON (for the audit row and the idempotency hash)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {_camel(f.name): jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, Mapping):
        return {str(k): jsonable(item) for k, item in value.items()}
    return value


def audited(value: dict[str, Any]) -> dict[str, Any]:
    """The input as the audit row keeps it: environment values (often secrets) redacted, so
    the row shows which variables were set and nothing of their values (a digest of a short
    secret could be reversed by trying every candidate)."""
    return _env_values(value, lambda _v: REDACTED)


def fingerprinted(value: dict[str, Any]) -> dict[str, Any]:
    """The input as an idempotency key's request hash sees it: environment values as digests,
    so a retry with other values is still told apart from the first request."""
    # The same digest format as the audit rows had: keys claimed before an upgrade still match.
    return _env_values(value, lambda v: "sha256:" + hashlib.sha256(v.encode()).hexdigest()[:16])


def _env_values(value: dict[str, Any], replace: Callable[[str], str]) -> dict[str, Any]:
    env = value.get("env")
    if not isinstance(env, list):
        return value
    hidden = [
        {**item, "value": replace(str(item.get("value")))}
        if isinstance(item, dict) and item.get("value")
        else item
        for item in env
    ]
    return {**value, "env": hidden}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _failed(name: str, *errors: UserError) -> MutationResult:
    return MutationResult(target_name=name, user_errors=list(errors))


def _not_found(name: str, path: Path | None = None) -> MutationResult:
    return _failed(
        name,
        user_error(
            path or [*INPUT, "name"],
            f"There is no devbox named {name[:63]!r} in your namespace.",
            UserErrorCode.NOT_FOUND,
        ),
    )


def _model_errors(exc: ValidationError, path: Path) -> list[UserError]:
    """A model that refused what validation let through (a safety net: never a 500)."""
    return [
        user_error(
            [*path, *(str(part) for part in error["loc"])],
            f"invalid value: {error['msg']}",
            UserErrorCode.INVALID,
        )
        for error in exc.errors()
    ]


def _written_rv(obj: JSON) -> str | None:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "") or None


def _ports(items: list[PortInput]) -> list[v.PortInput]:
    return [
        v.PortInput(name=p.name, port=p.port, protocol=p.protocol.value, public=p.public)
        for p in items
    ]


def _port_models(items: list[PortInput]) -> list[Port]:
    return [
        Port(
            name=p.name if p.name is not None else v.default_port_name(p.port),
            port=p.port,
            protocol=p.protocol.value,
            public=p.public,
        )
        for p in items
    ]


def _env(items: list[EnvVarInput]) -> list[v.EnvInput]:
    return [v.EnvInput(name=e.name, value=e.value) for e in items]


def _ssh_port(info: Info, devbox_or_runtime: Devbox | Runtime | None) -> int:
    if isinstance(devbox_or_runtime, Runtime):
        return devbox_or_runtime.spec.ssh_port
    if isinstance(devbox_or_runtime, Devbox):
        ref = devbox_or_runtime.spec.runtime_ref
        runtime = read_cache(info).runtime(ref.namespace, ref.name)
        return runtime.spec.ssh_port if runtime else v.SSH_PORT
    return v.SSH_PORT


def _spec_errors(
    info: Info,
    *,
    resources: ResourcesInput | None,
    ports: list[PortInput] | None,
    env: list[EnvVarInput] | None,
    auto_stop: AutoStopInput | None,
    ssh_port: int,
) -> list[UserError]:
    errors: list[UserError] = []
    if resources is not None:
        errors += v.resources_errors(
            resources.cpu, resources.memory, resources.storage, [*INPUT, "resources"], limits(info)
        )
    if ports is not None:
        errors += v.ports_errors(_ports(ports), [*INPUT, "ports"], ssh_port=ssh_port)
    if env is not None:
        errors += v.env_errors(_env(env), [*INPUT, "env"])
    if auto_stop is not None:
        errors += v.idle_timeout_errors(
            auto_stop.idle_timeout_seconds, [*INPUT, "autoStop", "idleTimeoutSeconds"]
        )
    return errors


def _auto_stop(value: AutoStopInput) -> AutoStop:
    return AutoStop(idle_timeout_seconds=value.idle_timeout_seconds, stop_at=value.stop_at)


async def _devbox_payload(info: Info, viewer: Viewer, result: MutationResult) -> DevboxNode | None:
    if not result.ok:
        return None
    cache = read_cache(info)
    await cache.wait_for(result.resource_version, DEVBOXES)
    found = cache.devbox(viewer.namespace, result.target_name)
    return DevboxNode.of(found) if found is not None else None


async def _mutate(
    info: Info,
    *,
    action: str,
    target_kind: str,
    name: str,
    input: Any,
    perform: Callable[[Viewer], Awaitable[MutationResult]],
) -> tuple[Viewer, MutationResult]:
    """Run ``perform`` through :func:`run_mutation` with ``input`` as the audited input."""
    viewer = require_viewer(info)
    result = await run_mutation(
        info,
        action=action,
        target_kind=target_kind,
        target_name=name[:253],
        input=audited(jsonable(input)),
        idempotency_key=input.idempotency_key,
        perform=perform,
        fingerprint=fingerprinted(jsonable(input)),
    )
    return viewer, result


# ---------------------------------------------------------------------- create / update


async def _create(info: Info, input: DevboxCreateInput) -> DevboxCreatePayload:
    async def perform(viewer: Viewer) -> MutationResult:
        errors = v.name_errors(input.name, [*INPUT, "name"])
        runtime = runtime_from_id(info, viewer, input.runtime)
        if runtime is None:
            errors.append(
                user_error(
                    [*INPUT, "runtime"],
                    "There is no runtime with this id that you can use.",
                    UserErrorCode.NOT_FOUND,
                )
            )
        errors += _spec_errors(
            info,
            resources=input.resources,
            ports=input.ports,
            env=input.env,
            auto_stop=input.auto_stop,
            ssh_port=_ssh_port(info, runtime),
        )
        if errors:
            return _failed(input.name, *errors)
        assert runtime is not None
        if read_cache(info).devbox(viewer.namespace, input.name) is not None:
            return _failed(input.name, _exists(input.name))
        try:
            resources = Resources()
            if input.resources is not None:
                given = {
                    k: getattr(input.resources, k)
                    for k in ("cpu", "memory", "storage")
                    if getattr(input.resources, k) is not None
                }
                resources = Resources(**given)
            devbox = Devbox(
                metadata=ObjectMeta(name=input.name, namespace=viewer.namespace),
                spec=DevboxSpec(
                    runtime_ref=RuntimeRef(name=runtime.name, namespace=runtime.namespace),
                    owner=viewer.user_name,
                    state=DevboxState(input.state.value),
                    resources=resources,
                    ports=(
                        _port_models(input.ports)
                        if input.ports is not None
                        else list(runtime.spec.ports)
                    ),
                    network_mode=input.network_mode.value,
                    env=[EnvVar(name=e.name, value=e.value) for e in input.env or []],
                    auto_stop=_auto_stop(input.auto_stop) if input.auto_stop else None,
                ),
            )
        except ValidationError as exc:
            return _failed(input.name, *_model_errors(exc, INPUT))
        kube = info.context.services.kube
        try:
            created = await kube.create(DEVBOXES, viewer.namespace, devbox.to_k8s())
        except AlreadyExists:
            return _failed(input.name, _exists(input.name))
        return MutationResult(target_name=input.name, resource_version=_written_rv(created))

    viewer, result = await _mutate(
        info,
        action="devboxCreate",
        target_kind="Devbox",
        name=input.name,
        input=input,
        perform=perform,
    )
    return DevboxCreatePayload(
        devbox=await _devbox_payload(info, viewer, result), user_errors=result.user_errors
    )


def _exists(name: str) -> UserError:
    return user_error(
        [*INPUT, "name"],
        f"A devbox named {name!r} already exists in your namespace.",
        UserErrorCode.ALREADY_EXISTS,
    )


def _not_owner(viewer: Viewer, devbox: Devbox, verb: str) -> MutationResult | None:
    """A FORBIDDEN result unless the viewer owns the devbox or is an admin.  Users of one
    namespace see each other's devboxes, but only the owner changes, stops, deletes or
    releases one (its files and SSH key are the owner's)."""
    if devbox.spec.owner == viewer.user_name or viewer.is_admin:
        return None
    return _failed(
        devbox.name,
        user_error(
            [*INPUT, "name"],
            f"Only the devbox's owner ({devbox.spec.owner}) or an admin may {verb} it.",
            UserErrorCode.FORBIDDEN,
        ),
    )


async def _update(info: Info, input: DevboxUpdateInput) -> DevboxUpdatePayload:
    async def perform(viewer: Viewer) -> MutationResult:
        devbox = read_cache(info).devbox(viewer.namespace, input.name)
        if devbox is None:
            return _not_found(input.name)
        if (refused := _not_owner(viewer, devbox, "change")) is not None:
            return refused
        errors = _spec_errors(
            info,
            resources=input.resources,
            ports=input.ports,
            env=input.env,
            auto_stop=input.auto_stop,
            ssh_port=_ssh_port(info, devbox),
        )
        if errors:
            return _failed(input.name, *errors)
        spec: JSON = {}
        try:
            if input.resources is not None:
                merged = devbox.spec.resources.model_copy(
                    update={
                        k: getattr(input.resources, k)
                        for k in ("cpu", "memory", "storage")
                        if getattr(input.resources, k) is not None
                    }
                )
                spec["resources"] = Resources.model_validate(merged.model_dump()).model_dump(
                    by_alias=True
                )
            if input.ports is not None:
                spec["ports"] = [
                    p.model_dump(by_alias=True, mode="json") for p in _port_models(input.ports)
                ]
            if input.env is not None:
                spec["env"] = [
                    EnvVar(name=e.name, value=e.value).model_dump(by_alias=True) for e in input.env
                ]
            if input.network_mode is not None:
                spec["networkMode"] = input.network_mode.value
            if input.auto_stop is not None:
                dumped = _auto_stop(input.auto_stop).model_dump(by_alias=True, mode="json")
                spec["autoStop"] = dumped  # stopAt: null clears a scheduled stop
            DevboxSpec.model_validate({**devbox.spec.model_dump(by_alias=True), **spec})
        except ValidationError as exc:
            return _failed(input.name, *_model_errors(exc, INPUT))
        return await _patch(info, viewer, input.name, {"spec": spec} if spec else {})

    viewer, result = await _mutate(
        info,
        action="devboxUpdate",
        target_kind="Devbox",
        name=input.name,
        input=input,
        perform=perform,
    )
    return DevboxUpdatePayload(
        devbox=await _devbox_payload(info, viewer, result), user_errors=result.user_errors
    )


async def _patch(info: Info, viewer: Viewer, name: str, body: JSON) -> MutationResult:
    """Merge-patch the viewer's devbox ``name``; a missing one is NOT_FOUND."""
    kube = info.context.services.kube
    if not body:
        current = read_cache(info).devbox(viewer.namespace, name)
        rv = current.metadata.resource_version if current else None
        return MutationResult(target_name=name, resource_version=rv)
    try:
        written = await kube.patch(DEVBOXES, viewer.namespace, name, body)
    except NotFound:
        return _not_found(name)
    return MutationResult(target_name=name, resource_version=_written_rv(written))


# ---------------------------------------------------------------------- actions


async def _state_action(
    info: Info,
    *,
    action: str,
    name: str,
    input: Any,
    body: Callable[[Devbox], JSON | UserError],
) -> tuple[Viewer, MutationResult]:
    async def perform(viewer: Viewer) -> MutationResult:
        devbox = read_cache(info).devbox(viewer.namespace, name)
        if devbox is None:
            return _not_found(name)
        if (refused := _not_owner(viewer, devbox, "start, stop or restore")) is not None:
            return refused
        patch = body(devbox)
        if isinstance(patch, UserError):
            return _failed(name, patch)
        return await _patch(info, viewer, name, patch)

    return await _mutate(
        info, action=action, target_kind="Devbox", name=name, input=input, perform=perform
    )


def _abandon(asked: bool) -> JSON:
    return {"metadata": {"annotations": {ABANDON_ANNOTATION: "true"}}} if asked else {}


async def _start(info: Info, input: DevboxStartInput) -> DevboxStartPayload:
    def body(devbox: Devbox) -> JSON:
        patch: JSON = _abandon(input.abandon_changes)
        if devbox.spec.state != DevboxState.RUNNING:
            patch["spec"] = {"state": DevboxState.RUNNING.value}
        return patch

    viewer, result = await _state_action(
        info, action="devboxStart", name=input.name, input=input, body=body
    )
    return DevboxStartPayload(
        devbox=await _devbox_payload(info, viewer, result), user_errors=result.user_errors
    )


async def _stop(info: Info, input: DevboxStopInput) -> DevboxStopPayload:
    def body(devbox: Devbox) -> JSON:
        if devbox.spec.state == DevboxState.STOPPED:
            return {}
        return {"spec": {"state": DevboxState.STOPPED.value}}

    viewer, result = await _state_action(
        info, action="devboxStop", name=input.name, input=input, body=body
    )
    return DevboxStopPayload(
        devbox=await _devbox_payload(info, viewer, result), user_errors=result.user_errors
    )


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


async def _restart(info: Info, input: DevboxRestartInput) -> DevboxRestartPayload:
    def body(devbox: Devbox) -> JSON | UserError:
        if devbox.spec.state != DevboxState.RUNNING:
            return user_error(
                [*INPUT, "name"],
                "The devbox is stopped; start it instead of restarting it.",
                UserErrorCode.INVALID_STATE,
            )
        return {"metadata": {"annotations": {RESTART_ANNOTATION: now_rfc3339()}}}

    viewer, result = await _state_action(
        info, action="devboxRestart", name=input.name, input=input, body=body
    )
    return DevboxRestartPayload(
        devbox=await _devbox_payload(info, viewer, result), user_errors=result.user_errors
    )


async def _restore(info: Info, input: DevboxRestoreInput) -> DevboxRestorePayload:
    def body(devbox: Devbox) -> JSON | UserError:
        path = [*INPUT, "commitId"]
        problems = v.commit_id_errors(input.commit_id, path)
        if problems:
            return problems[0]
        commits = devbox.status.commits
        source = next(
            (c for c in commits if c.id == input.commit_id and c.status == CommitStatus.SUCCEEDED),
            None,
        )
        if source is None:
            return user_error(
                path,
                f"{input.commit_id!r} is not a successful commit of this devbox.",
                UserErrorCode.NOT_FOUND,
            )
        stopped = (
            devbox.spec.state == DevboxState.STOPPED and devbox.status.phase == DevboxPhase.STOPPED
        )
        if not stopped:
            return user_error(
                [*INPUT, "name"],
                "A restore applies to a stopped devbox: stop it, wait until it is Stopped, "
                "then restore.",
                UserErrorCode.INVALID_STATE,
            )
        target = source.id
        last = next((c for c in reversed(commits) if c.mode == CommitMode.RESTORE), None)
        if last is not None and last.restored_from == source.id and last.id != source.id:
            # The controller applies a restore once per id; restoring the same commit again
            # goes through its Restore record (see app.controller).
            target = last.id
        spec: JSON = {"restoreCommit": target}
        if input.start:
            spec["state"] = DevboxState.RUNNING.value
        return {"spec": spec}

    viewer, result = await _state_action(
        info, action="devboxRestore", name=input.name, input=input, body=body
    )
    return DevboxRestorePayload(
        devbox=await _devbox_payload(info, viewer, result), user_errors=result.user_errors
    )


async def _delete(info: Info, input: DevboxDeleteInput) -> DevboxDeletePayload:
    async def perform(viewer: Viewer) -> MutationResult:
        devbox = read_cache(info).devbox(viewer.namespace, input.name)
        if devbox is None:
            return _not_found(input.name)
        if (refused := _not_owner(viewer, devbox, "delete")) is not None:
            return refused
        kube = info.context.services.kube
        try:
            if input.abandon_changes:
                await kube.patch(
                    DEVBOXES, viewer.namespace, input.name, _abandon(input.abandon_changes)
                )
            try:
                answer = await kube.delete(
                    DEVBOXES, viewer.namespace, input.name, uid=devbox.metadata.uid
                )
            except KubeError:
                if input.abandon_changes:  # not deleted: take the abandon request back
                    with contextlib.suppress(KubeError):
                        await kube.patch(
                            DEVBOXES,
                            viewer.namespace,
                            input.name,
                            {"metadata": {"annotations": {ABANDON_ANNOTATION: None}}},
                        )
                raise
        except NotFound:
            return _not_found(input.name)
        rv = _written_rv(answer) if answer.get("kind") == "Devbox" else None
        return MutationResult(
            target_name=input.name, resource_version=rv, data={"id": str(devbox_id(devbox))}
        )

    viewer, result = await _mutate(
        info,
        action="devboxDelete",
        target_kind="Devbox",
        name=input.name,
        input=input,
        perform=perform,
    )
    if not result.ok:
        return DevboxDeletePayload(
            deleted_devbox_id=None, devbox=None, user_errors=result.user_errors
        )
    cache = read_cache(info)
    await cache.wait_for(result.resource_version, DEVBOXES, within=2.0)
    found = cache.devbox(viewer.namespace, input.name)
    return DevboxDeletePayload(
        deleted_devbox_id=strawberry.ID(str(result.data.get("id") or "")),
        devbox=DevboxNode.of(found)
        if found is not None and found.metadata.deletion_timestamp
        else None,
        user_errors=[],
    )


# ---------------------------------------------------------------------- releases


def release_name(devbox: str, version: str) -> str:
    """The DevboxRelease name of ``version`` of ``devbox``: readable, unique per version."""
    slug = re.sub(r"[^a-z0-9]+", "-", version.lower()).strip("-") or "v"
    digest = hashlib.sha256(version.encode()).hexdigest()[:6]
    head = f"{devbox}-{slug}"[: 63 - len(digest) - 1].rstrip("-")
    return f"{head}-{digest}"


def _tag(version: str) -> str:
    return version.replace("+", "_")


async def _release(info: Info, input: DevboxReleaseInput) -> DevboxReleasePayload:
    async def perform(viewer: Viewer) -> MutationResult:
        errors = v.collect(
            v.version_errors(input.version, [*INPUT, "version"]),
            v.notes_errors(input.notes, [*INPUT, "notes"]),
        )
        cache = read_cache(info)
        devbox = cache.devbox(viewer.namespace, input.name)
        if devbox is None:
            return _not_found(input.name)
        # A release is a copy of the devbox's files: whoever starts a devbox from it owns
        # that one and gets its SSH key.  Only the owner (or an admin) releases.
        if (refused := _not_owner(viewer, devbox, "release")) is not None:
            return refused
        if errors:
            return _failed(input.name, *errors)
        if not any(c.status == CommitStatus.SUCCEEDED for c in devbox.status.commits):
            return _failed(
                input.name,
                user_error(
                    [*INPUT, "name"],
                    "The devbox has no saved image yet: stop it once (its changes are "
                    "committed), then release.",
                    UserErrorCode.INVALID_STATE,
                ),
            )
        taken = [
            r
            for r in cache.releases(viewer.namespace)
            if r.spec.devbox == input.name
            and _tag(r.spec.version) == _tag(input.version)
            and r.status.phase != ReleasePhase.FAILED
        ]
        name = release_name(input.name, input.version)
        if taken:
            return _failed(name, _version_taken(input.version))
        try:
            release = DevboxRelease(
                metadata=ObjectMeta(name=name, namespace=viewer.namespace),
                spec=DevboxReleaseSpec(devbox=input.name, version=input.version, notes=input.notes),
            )
        except ValidationError as exc:
            return _failed(name, *_model_errors(exc, INPUT))
        kube = info.context.services.kube
        try:
            created = await kube.create(RELEASES, viewer.namespace, release.to_k8s())
        except AlreadyExists:
            return _failed(name, _version_taken(input.version))
        return MutationResult(target_name=name, resource_version=_written_rv(created))

    viewer, result = await _mutate(
        info,
        action="devboxRelease",
        target_kind="DevboxRelease",
        name=input.name,
        input=input,
        perform=perform,
    )
    payload: ReleaseNode | None = None
    if result.ok:
        cache = read_cache(info)
        await cache.wait_for(result.resource_version, RELEASES)
        found = cache.release(viewer.namespace, result.target_name)
        payload = ReleaseNode.of(found) if found is not None else None
    return DevboxReleasePayload(release=payload, user_errors=result.user_errors)


def _version_taken(version: str) -> UserError:
    return user_error(
        [*INPUT, "version"],
        f"Version {version[:128]!r} of this devbox was already released; releases are "
        "immutable, choose another version.",
        UserErrorCode.ALREADY_EXISTS,
    )


def _release_from_id(info: Info, viewer: Viewer, value: str) -> DevboxRelease | None:
    try:
        type_name, key = decode_global_id(value)
    except ValueError:
        return None
    namespace, _, name = key.partition("/")
    if type_name != RELEASE_TYPE or namespace != viewer.namespace:
        return None
    return read_cache(info).release(namespace, name)


async def _runtime_from_release(
    info: Info, input: RuntimeCreateFromReleaseInput
) -> RuntimeCreateFromReleasePayload:
    async def perform(viewer: Viewer) -> MutationResult:
        errors = v.collect(
            v.name_errors(input.name, [*INPUT, "name"]),
            v.text_errors(
                input.title or "",
                [*INPUT, "title"],
                what="title",
                limit=RUNTIME_TITLE_MAX,
            ),
            v.text_errors(
                input.description or "",
                [*INPUT, "description"],
                what="description",
                limit=RUNTIME_DESCRIPTION_MAX,
            ),
        )
        release = _release_from_id(info, viewer, input.release)
        if release is None:
            errors.append(
                user_error(
                    [*INPUT, "release"],
                    "There is no release with this id in your namespace.",
                    UserErrorCode.NOT_FOUND,
                )
            )
        if errors:
            return _failed(input.name, *errors)
        assert release is not None
        if release.status.phase != ReleasePhase.SUCCEEDED or not release.status.image:
            return _failed(
                input.name,
                user_error(
                    [*INPUT, "release"],
                    f"The release is {release.status.phase or 'Pending'}; only a released "
                    "image can be shared.",
                    UserErrorCode.INVALID_STATE,
                ),
            )
        cache = read_cache(info)
        if cache.runtime(viewer.namespace, input.name) is not None:
            return _failed(input.name, _runtime_exists(input.name))
        devbox = cache.devbox(viewer.namespace, release.spec.devbox)
        base: Runtime | None = None
        if devbox is not None:
            ref = devbox.spec.runtime_ref
            base = cache.runtime(ref.namespace, ref.name)
        try:
            runtime = Runtime(
                metadata=ObjectMeta(name=input.name, namespace=viewer.namespace),
                spec=RuntimeSpec(
                    class_=base.spec.class_ if base else "OS",
                    title=(input.title or release.spec.devbox)[:RUNTIME_TITLE_MAX],
                    version=release.spec.version[:63],
                    image=release.status.image,
                    description=input.description
                    if input.description is not None
                    else release.spec.notes[:RUNTIME_DESCRIPTION_MAX],
                    ports=list(devbox.spec.ports) if devbox else [],
                    user=base.spec.user if base else "root",
                    working_dir=base.spec.working_dir if base else "/root",
                    # A devbox's env often holds secrets: never hand them to every namespace.
                    env=list(devbox.spec.env)
                    if devbox and input.visibility is VisibilityEnum.PRIVATE
                    else [],
                    command=list(base.spec.command) if base else [],
                    ssh_port=base.spec.ssh_port if base else v.SSH_PORT,
                    visibility=Visibility(input.visibility.value),
                    source=RuntimeSource(
                        namespace=release.namespace,
                        devbox=release.spec.devbox,
                        release=release.name,
                    ),
                ),
            )
        except ValidationError as exc:
            return _failed(input.name, *_model_errors(exc, INPUT))
        kube = info.context.services.kube
        try:
            created = await kube.create(RUNTIMES, viewer.namespace, runtime.to_k8s())
        except AlreadyExists:
            return _failed(input.name, _runtime_exists(input.name))
        return MutationResult(target_name=input.name, resource_version=_written_rv(created))

    viewer, result = await _mutate(
        info,
        action="runtimeCreateFromRelease",
        target_kind="Runtime",
        name=input.name,
        input=input,
        perform=perform,
    )
    payload: RuntimeNode | None = None
    if result.ok:
        cache = read_cache(info)
        await cache.wait_for(result.resource_version, RUNTIMES)
        found = cache.runtime(viewer.namespace, result.target_name)
        payload = RuntimeNode.of(found, info) if found is not None else None
    return RuntimeCreateFromReleasePayload(runtime=payload, user_errors=result.user_errors)


def _runtime_exists(name: str) -> UserError:
    return user_error(
        [*INPUT, "name"],
        f"A runtime named {name!r} already exists in your namespace.",
        UserErrorCode.ALREADY_EXISTS,
    )


# ---------------------------------------------------------------------- root


@strawberry.type
class DevboxMutation:
    """Mutations of devboxes, their releases, and runtimes shared from releases."""

    @field(description="Create a devbox from a runtime.")
    async def devbox_create(self, info: Info, input: DevboxCreateInput) -> DevboxCreatePayload:
        return await _create(info, input)

    @field(description="Change a devbox's size, ports, environment or auto-stop.")
    async def devbox_update(self, info: Info, input: DevboxUpdateInput) -> DevboxUpdatePayload:
        return await _update(info, input)

    @field(description="Delete a devbox (a commit in flight finishes first, unless abandoned).")
    async def devbox_delete(self, info: Info, input: DevboxDeleteInput) -> DevboxDeletePayload:
        return await _delete(info, input)

    @field(description="Start a stopped devbox from its last commit.")
    async def devbox_start(self, info: Info, input: DevboxStartInput) -> DevboxStartPayload:
        return await _start(info, input)

    @field(description="Stop a devbox: its changes are committed first.")
    async def devbox_stop(self, info: Info, input: DevboxStopInput) -> DevboxStopPayload:
        return await _stop(info, input)

    @field(description="Commit the running devbox and start it again from the commit.")
    async def devbox_restart(self, info: Info, input: DevboxRestartInput) -> DevboxRestartPayload:
        return await _restart(info, input)

    @field(description="Start a stopped devbox from an earlier commit.")
    async def devbox_restore(self, info: Info, input: DevboxRestoreInput) -> DevboxRestorePayload:
        return await _restore(info, input)

    @field(description="Release a version of the devbox's current image.")
    async def devbox_release(self, info: Info, input: DevboxReleaseInput) -> DevboxReleasePayload:
        return await _release(info, input)

    @field(description="Share a release as a runtime (private to the namespace, or public).")
    async def runtime_create_from_release(
        self, info: Info, input: RuntimeCreateFromReleaseInput
    ) -> RuntimeCreateFromReleasePayload:
        return await _runtime_from_release(info, input)
