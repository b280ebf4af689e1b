"""The node-shim's gRPC server: ``devbox.nodeshim.v1.NodeShim`` over ``grpc.aio``.

Every call must carry ``authorization: Bearer <token>`` (checked by :class:`BearerAuth` with
``hmac.compare_digest``); anything else is refused with UNAUTHENTICATED before a servicer runs.

``Commit`` semantics (the API contract in the .proto):

* each commit runs as a task of its own: a caller that disconnects does not stop it;
* the same request id while it runs attaches to it (the latest event, then the following ones);
* after it succeeded, the stored result (:mod:`records`, on disk: survives restarts) comes back
  at once (the same request id with another target image is INVALID_ARGUMENT); after it
  failed, the same request id runs it again (a failure marks nothing done);
* a second request id for a container whose commit runs gets FAILED_PRECONDITION;
* failures become precise status codes with the step that failed in the message:
  NOT_FOUND (container or image gone), UNAVAILABLE (containerd or registry unreachable —
  temporary), RESOURCE_EXHAUSTED (a disk full: the content store, or the state directory —
  then named — where records and work files go), PERMISSION_DENIED (the registry refused the
  credentials), INVALID_ARGUMENT (a malformed request: no mode, ``max_layers`` 1, a target
  without a tag…), INTERNAL (anything else).

``ContainerActivity`` says whether a container's task runs, counts the ESTABLISHED TCP
connections on a local port in its network namespace (:mod:`sockets`, from ``/proc/<pid>/net``)
and measures its writable layer (containerd's snapshot usage): NOT_FOUND for an unknown
container, FAILED_PRECONDITION when the task's process is not visible (no host PID namespace).

``Health`` says ``serving`` when containerd answers, and ``degraded`` (with the reason) when a
registry the node-shim is configured for or pushed to does not answer ``GET /v2/`` or refuses
its credentials (commits would fail at their push step), or when the last local copy of a
committed image into containerd failed (:class:`commit.LocalCopy`; a full content store: the
registry has the image, the node's kubelet pulls it); the RPC itself succeeds.

At start-up, commits recorded as running (the node-shim died mid-commit) are cleaned up: a
task they left paused is resumed, so no user's container stays frozen; their leases are
deleted and their work files (a layer blob can be gigabytes) removed.  Finished records older
than :data:`records.RETENTION` are pruned at start-up and every :data:`records.PRUNE_INTERVAL`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hmac
import logging
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc

from devbox_node_shim import __version__, commit, sockets
from devbox_node_shim import containerd as ctrd
from devbox_node_shim.api import FAILED_STEP_METADATA
from devbox_node_shim.api import nodeshim_pb2 as pb
from devbox_node_shim.api import nodeshim_pb2_grpc as pb_grpc
from devbox_node_shim.records import (
    PRUNE_INTERVAL,
    RETENTION,
    CommitStore,
    FinishedCommit,
    RecordError,
    RunningCommit,
    StateDirFull,
)
from devbox_node_shim.registry import Reference
from devbox_node_shim.settings import Settings

log = logging.getLogger(__name__)

API_VERSION = "devbox.nodeshim.v1"
MAX_LAYERS = 120
"""Ceiling on any requested layer bound (Docker refuses ~125 layers; the kernel's overlay 500)."""
PROGRESS_INTERVAL = 0.25
"""Seconds between two byte-progress events of one step (step changes are always sent)."""


class RegistryOps(Protocol):
    """What the server needs from the registry besides pushing (see :mod:`registry`)."""

    async def delete_tag(self, reference: str) -> bool: ...

    async def health(self) -> list[str]:
        """What is wrong with the registries pushed to, one line each ([]: all well)."""
        ...


class BearerAuth(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuses every call without ``authorization: Bearer <token>`` (UNAUTHENTICATED)."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        metadata = dict(handler_call_details.invocation_metadata or ())
        given = str(metadata.get("authorization", "")).encode()
        handler = await continuation(handler_call_details)
        if hmac.compare_digest(given, self._expected) or handler is None:
            return handler
        message = (
            "missing bearer token" if not given else "wrong bearer token"
        ) + ": send 'authorization: Bearer <node-shim token>'"

        async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

        async def refuse_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
            yield  # pragma: no cover - makes this an async generator

        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(
                refuse_stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return grpc.unary_unary_rpc_method_handler(
            refuse,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


@dataclass
class _RunningCommit:
    """A commit task and the callers following it."""

    request: pb.CommitRequest
    task: asyncio.Task[pb.CommitResult] | None = None
    last: pb.CommitEvent | None = None
    followers: set[asyncio.Queue[pb.CommitEvent | None]] = field(default_factory=set)
    _last_bytes_event: float = 0.0

    def publish(self, progress: commit.Progress) -> None:
        loop_time = asyncio.get_running_loop().time()
        step_changed = self.last is None or self.last.progress.step != progress.step
        finished_bytes = progress.bytes_total and progress.bytes_done >= progress.bytes_total
        recent = loop_time - self._last_bytes_event < PROGRESS_INTERVAL
        if not step_changed and not finished_bytes and recent:
            return
        self._last_bytes_event = loop_time
        event = pb.CommitEvent(
            progress=pb.CommitProgress(
                step=progress.step,
                bytes_done=progress.bytes_done,
                bytes_total=progress.bytes_total,
            )
        )
        self.last = event
        for queue in self.followers:
            queue.put_nowait(event)

    def follow(self) -> asyncio.Queue[pb.CommitEvent | None]:
        queue: asyncio.Queue[pb.CommitEvent | None] = asyncio.Queue()
        if self.last is not None:
            queue.put_nowait(self.last)
        self.followers.add(queue)
        return queue

    def close(self) -> None:
        for queue in self.followers:
            queue.put_nowait(None)


def _status(exc: commit.CommitError) -> grpc.StatusCode:
    if isinstance(exc, commit.ContainerNotFound):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(exc, commit.ContainerdUnavailable | commit.RegistryUnavailable):
        return grpc.StatusCode.UNAVAILABLE
    if isinstance(exc, commit.OutOfSpace):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    if isinstance(exc, commit.RegistryRefused):
        return grpc.StatusCode.PERMISSION_DENIED
    return grpc.StatusCode.INTERNAL


def _result_pb(record: FinishedCommit) -> pb.CommitResult:
    return pb.CommitResult(
        image=record.image,
        manifest_digest=record.manifest_digest,
        layers=[pb.Layer(digest=d, size=s) for d, s in record.layers],
        total_size=record.total_size,
        layer_count=len(record.layers),
        step_durations=[
            pb.StepDuration(step=step, seconds=seconds)
            for step, seconds in record.step_seconds.items()
        ],
    )


def _retrieve(task: asyncio.Task[pb.CommitResult]) -> None:
    """Mark a commit task's exception as seen (its callers, if any, report it)."""
    if not task.cancelled():
        task.exception()


@contextlib.contextmanager
def _records_step(step: str) -> Iterator[None]:
    """Commit records that cannot be written become commit errors of ``step``."""
    try:
        yield
    except StateDirFull as exc:
        raise commit.OutOfSpace(step, str(exc), temporary=True) from exc
    except RecordError as exc:
        raise commit.CommitError(step, str(exc)) from exc


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


class NodeShimService(pb_grpc.NodeShimServicer):
    """The servicer: commits, their records, images, health."""

    def __init__(
        self,
        settings: Settings,
        containerd: ctrd.ContainerdClient,
        committer: commit.Committer,
        store: CommitStore,
        registry: RegistryOps | None = None,
    ) -> None:
        self.settings = settings
        self.containerd = containerd
        self.committer = committer
        self.store = store
        self.registry = registry
        self._running: dict[str, _RunningCommit] = {}
        self._by_container: dict[str, str] = {}

    # --- start-up --------------------------------------------------------------------------

    async def recover(self) -> None:
        """Clean up after commits a previous node-shim process did not finish."""
        # No commit runs yet: every work directory is a dead process's.
        for leftover in self.committer.workdir.glob("commit-*"):
            await asyncio.to_thread(shutil.rmtree, leftover, True)
        for record in self.store.left_running():
            try:
                task = await self.containerd.task(record.container_id)
                if task.status in ("PAUSED", "PAUSING"):
                    await self.containerd.resume(record.container_id)
                    log.warning(
                        "resumed container %s, left paused by interrupted commit %s",
                        record.container_id,
                        record.request_id,
                    )
            except ctrd.NotFound:
                pass
            except ctrd.ContainerdError as exc:
                log.warning("could not check container %s: %s", record.container_id, exc)
                continue  # keep the record: the next start tries again
            self.store.end(record.request_id)
        # Leases of commits that died with a previous process: drop them now rather than
        # letting their content pin the disk until they expire.
        try:
            stale = await self.containerd.leases(f'labels."{commit.LABEL_LEASE}"')
        except ctrd.ContainerdError as exc:
            log.warning("could not list leftover commit leases: %s", exc.message)
            return
        for lease_id, _labels in stale:
            try:
                await self.containerd.delete_lease(lease_id)
            except ctrd.ContainerdError as exc:
                log.warning("could not delete leftover lease %s: %s", lease_id, exc.message)

    async def drain(self) -> None:
        """Cancel running commits (their ``finally`` resumes tasks and drops leases; a local
        copy handed over drops its own, see :meth:`commit.Committer.aclose`)."""
        tasks = [run.task for run in self._running.values() if run.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task

    # --- Commit ----------------------------------------------------------------------------

    def _spec(self, request: pb.CommitRequest) -> commit.CommitSpec:
        mode = commit.Mode.STOP if request.mode == pb.COMMIT_MODE_STOP else commit.Mode.SNAPSHOT
        # (_validate refused UNSPECIFIED and max_layers 1 before this.)
        return commit.CommitSpec(
            container_id=request.container_id,
            target_image=request.target_image,
            mode=mode,
            stop_timeout=float(request.stop_timeout_seconds or self.settings.stop_timeout_seconds),
            max_layers=min(int(request.max_layers or self.settings.max_layers), MAX_LAYERS),
            labels=dict(request.labels),
            compression=commit.Compression(self.settings.compression),
        )

    async def _run(self, run: _RunningCommit) -> pb.CommitResult:
        request = run.request
        try:
            with _records_step("start"):
                self.store.start(
                    RunningCommit(
                        request_id=request.request_id,
                        container_id=request.container_id,
                        image=request.target_image,
                        mode=pb.CommitMode.Name(request.mode),
                        started_at=_now(),
                    )
                )
            log.info(
                "commit %s of container %s to %s started (%s)",
                request.request_id,
                request.container_id,
                request.target_image,
                pb.CommitMode.Name(request.mode),
            )
            try:
                result = await self.committer.commit(self._spec(request), run.publish)
            except commit.CommitError as exc:
                log.warning(
                    "commit %s failed at step %s: %s", request.request_id, exc.step, exc.message
                )
                raise
            log.info(
                "commit %s done: %s (%d layers, %d bytes)",
                request.request_id,
                result.manifest_digest,
                len(result.layers),
                result.total_size,
            )
            record = FinishedCommit(
                request_id=request.request_id,
                container_id=request.container_id,
                image=result.image,
                manifest_digest=result.manifest_digest,
                layers=[(layer.digest, layer.size) for layer in result.layers],
                total_size=result.total_size,
                step_seconds=dict(result.step_seconds),
                finished_at=_now(),
            )
            with _records_step("record"):
                self.store.save_finished(record)
            return _result_pb(record)
        finally:
            self.store.end(request.request_id)
            self._running.pop(request.request_id, None)
            if self._by_container.get(request.container_id) == request.request_id:
                del self._by_container[request.container_id]
            run.close()

    def _validate(self, request: pb.CommitRequest) -> str | None:
        if not request.request_id:
            return "request_id is required"
        if not request.container_id:
            return "container_id is required"
        if request.mode not in (pb.COMMIT_MODE_STOP, pb.COMMIT_MODE_SNAPSHOT):
            return (
                "mode is required: COMMIT_MODE_SNAPSHOT (pause, diff, resume a running devbox) "
                "or COMMIT_MODE_STOP (stop it, then commit)"
            )
        if request.max_layers == 1:
            return (
                "max_layers 1 cannot work: an image holds its runtime image's layers plus at "
                "least one of the devbox's own; ask for 0 (the node-shim's default, "
                f"{self.settings.max_layers}) or at least 2"
            )
        try:
            reference = Reference.parse(request.target_image)
        except ValueError as exc:
            return f"target_image: {exc}"
        if (
            reference.tag is None
            or reference.digest is not None
            or ":" not in (request.target_image.rsplit("/", 1)[-1])
        ):
            return f"target_image {request.target_image!r} needs a tag (and no digest)"
        return None

    async def Commit(
        self, request: pb.CommitRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.CommitEvent]:
        problem = self._validate(request)
        if problem is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
            return
        finished = self.store.finished(request.request_id)
        if finished is not None:
            if finished.image != request.target_image:
                # (The container may differ: one restarted in its pod after the commit.)
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"request id {request.request_id} was used for image {finished.image}",
                )
                return
            yield pb.CommitEvent(result=_result_pb(finished))
            return
        run = self._running.get(request.request_id)
        if run is None:
            other = self._by_container.get(request.container_id)
            if other is not None:
                await context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"container {request.container_id} is being committed by request {other}; "
                    "wait for it to finish (or attach to it with its request id)",
                )
                return
            run = _RunningCommit(request)
            self._running[request.request_id] = run
            self._by_container[request.container_id] = request.request_id
            run.task = asyncio.create_task(self._run(run), name=f"commit {request.request_id}")
            run.task.add_done_callback(_retrieve)
        elif run.request.container_id != request.container_id:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"request id {request.request_id} is in use for container "
                f"{run.request.container_id}",
            )
            return
        assert run.task is not None
        queue = run.follow()
        try:
            while (event := await queue.get()) is not None:
                yield event
            try:
                result = await asyncio.shield(run.task)
            except commit.CommitError as exc:
                await context.abort(
                    _status(exc),
                    f"commit of container {request.container_id} failed at step {exc.step}: "
                    f"{exc.message}",
                    trailing_metadata=((FAILED_STEP_METADATA, exc.step),),
                )
                return
            except asyncio.CancelledError:
                if run.task.cancelled():
                    await context.abort(
                        grpc.StatusCode.UNAVAILABLE, "the node-shim is shutting down; retry"
                    )
                raise
            except Exception:
                log.exception("commit %s failed unexpectedly", request.request_id)
                await context.abort(
                    grpc.StatusCode.INTERNAL,
                    f"commit of container {request.container_id} failed unexpectedly; "
                    "see the node-shim's log",
                )
                return
            yield pb.CommitEvent(result=result)
        finally:
            run.followers.discard(queue)

    # --- ListCommits / DeleteImage ---------------------------------------------------------

    async def ListCommits(
        self, request: pb.ListCommitsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCommitsResponse:
        repository = request.repository.rstrip("/")
        if not repository:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "repository is required")
        records = [
            r
            for r in self.store.all_finished()
            if r.image.rsplit(":", 1)[0] == repository or r.image.startswith(repository + "@")
        ]
        records.sort(key=lambda r: r.finished_at, reverse=True)
        return pb.ListCommitsResponse(
            commits=[
                pb.CommitRecord(
                    request_id=r.request_id,
                    image=r.image,
                    manifest_digest=r.manifest_digest,
                    finished_at=r.finished_at,
                )
                for r in records
            ]
        )

    async def DeleteImage(
        self, request: pb.DeleteImageRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteImageResponse:
        if not request.image:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "image is required")
        if request.registry:
            try:
                Reference.parse(request.image)  # refused before anything is deleted
            except ValueError as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"image: {exc}")
        deleted = False
        # A local copy pending would put the image back after its deletion: drop it.
        await self.committer.drop_copies(request.image)
        try:
            await self.containerd.delete_image(request.image)
            deleted = True
        except ctrd.NotFound:
            pass
        except ctrd.ContainerdUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, exc.message)
        except ctrd.ContainerdError as exc:
            await context.abort(grpc.StatusCode.INTERNAL, exc.message)
        if request.registry:
            if self.registry is None:
                await context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION, "this node-shim has no registry client"
                )
            else:
                try:
                    deleted = await self.registry.delete_tag(request.image) or deleted
                except commit.CommitError as exc:
                    await context.abort(_status(exc), exc.message)
        for record in self.store.all_finished():
            if record.image == request.image:
                self.store.delete_finished(record.request_id)
        return pb.DeleteImageResponse(deleted=deleted)

    # --- Health / Version ------------------------------------------------------------------

    async def Health(
        self, request: pb.HealthRequest, context: grpc.aio.ServicerContext
    ) -> pb.HealthResponse:
        try:
            await self.containerd.version()
        except ctrd.ContainerdError as exc:
            return pb.HealthResponse(
                serving=False,
                message=f"containerd at {self.settings.containerd_socket} does not answer: "
                f"{exc.message}",
            )
        problems = await self.registry.health() if self.registry is not None else []
        if self.committer.copy_problem is not None:
            problems.append(self.committer.copy_problem)
        if problems:
            return pb.HealthResponse(
                serving=True,
                degraded=True,
                message="containerd answers, but: " + "; ".join(problems),
            )
        return pb.HealthResponse(serving=True, message="containerd and the known registries answer")

    async def Version(
        self, request: pb.VersionRequest, context: grpc.aio.ServicerContext
    ) -> pb.VersionResponse:
        try:
            containerd_version = await self.containerd.version()
        except ctrd.ContainerdError:
            containerd_version = ""
        return pb.VersionResponse(
            version=__version__, containerd_version=containerd_version, api_version=API_VERSION
        )

    # --- ContainerActivity -----------------------------------------------------------------

    async def ContainerActivity(
        self, request: pb.ContainerActivityRequest, context: grpc.aio.ServicerContext
    ) -> pb.ContainerActivityResponse:
        container_id = request.container_id
        if not container_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "container_id is required")
        if request.port > 65535:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"port {request.port} is not a TCP port"
            )
        try:
            return await self._activity(request)
        except ctrd.NotFound:
            code, message = grpc.StatusCode.NOT_FOUND, f"container {container_id} not found"
        except ctrd.ContainerdUnavailable as exc:
            code, message = grpc.StatusCode.UNAVAILABLE, exc.message
        except ctrd.ContainerdError as exc:
            code, message = grpc.StatusCode.INTERNAL, exc.message
        except sockets.ProcessGone as exc:
            code = grpc.StatusCode.FAILED_PRECONDITION
            message = (
                f"container {container_id}'s task runs as pid {exc.pid}, which this node-shim "
                "cannot see in /proc: run it in the host's PID namespace (hostPID: true)"
            )
        await context.abort(code, message)
        return pb.ContainerActivityResponse()  # (abort raises)

    async def _live_task(self, container_id: str) -> ctrd.Task | None:
        """The container's task if it runs (or is paused), else None."""
        try:
            task = await self.containerd.task(container_id)
        except ctrd.NotFound:
            return None  # created, never started, or its task deleted
        return task if task.status in ("RUNNING", "PAUSED", "PAUSING") else None

    async def _activity(self, request: pb.ContainerActivityRequest) -> pb.ContainerActivityResponse:
        container = await self.containerd.container(request.container_id)
        task = await self._live_task(request.container_id)
        connections = 0
        if task is not None and request.port:
            try:
                connections = await asyncio.to_thread(sockets.established, task.pid, request.port)
            except sockets.ProcessGone:
                if await self._live_task(request.container_id) is not None:
                    raise  # it runs, yet its process is invisible: no host PID namespace
                task = None  # it exited meanwhile
        writable = 0
        if not request.skip_writable_bytes and container.snapshot_key:
            with contextlib.suppress(ctrd.NotFound):  # a container whose snapshot is gone
                writable = await self.containerd.usage(
                    container.snapshotter, container.snapshot_key
                )
        return pb.ContainerActivityResponse(
            running=task is not None, connections=connections, writable_bytes=writable
        )


class Server:
    """The node-shim: containerd client, committer, gRPC server; started and stopped."""

    def __init__(
        self,
        settings: Settings,
        *,
        pusher: commit.Pusher | None = None,
        registry: RegistryOps | None = None,
    ) -> None:
        self.settings = settings
        self.containerd = ctrd.ContainerdClient(
            settings.containerd_socket, settings.containerd_namespace
        )
        workdir = Path(settings.state_dir) / "work"
        self.store = CommitStore(Path(settings.state_dir))
        self.committer = commit.Committer(
            self.containerd,
            workdir=workdir,
            pusher=pusher,
            fast_path=settings.overlay_fast_path,
            local_copy=commit.LocalCopy(settings.local_copy),
        )
        self.service = NodeShimService(
            settings, self.containerd, self.committer, self.store, registry
        )
        self._server: grpc.aio.Server | None = None
        self._pruner: asyncio.Task[None] | None = None
        self.port = 0

    async def start(self) -> int:
        """Recover interrupted commits, prune old records, then listen; the port."""
        token = self.settings.bearer_token()
        await self.service.recover()
        await self.prune()
        self._pruner = asyncio.create_task(self._prune_periodically(), name="prune records")
        self._server = grpc.aio.server(interceptors=[BearerAuth(token)])
        pb_grpc.add_NodeShimServicer_to_server(self.service, self._server)  # type: ignore[no-untyped-call]
        address = f"{self.settings.listen_address}:{self.settings.port}"
        self.port = self._server.add_insecure_port(address)
        if not self.port:
            raise OSError(f"cannot listen on {address}")
        await self._server.start()
        log.info("node-shim %s listening on %s", __version__, address)
        return self.port

    async def prune(self) -> None:
        """Delete finished commit records older than the retention (best effort)."""
        try:
            pruned = await asyncio.to_thread(self.store.prune)
        except OSError as exc:
            log.warning("could not prune commit records in %s: %s", self.settings.state_dir, exc)
            return
        if pruned:
            log.info("pruned %d commit records older than %s", pruned, RETENTION)

    async def _prune_periodically(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_INTERVAL.total_seconds())
            await self.prune()

    async def stop(self, grace: float = 5.0) -> None:
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner
        await self.service.drain()
        await self.committer.aclose()
        if self._server is not None:
            await self._server.stop(grace)
        await self.containerd.close()

    async def wait(self) -> None:
        assert self._server is not None
        await self._server.wait_for_termination()
