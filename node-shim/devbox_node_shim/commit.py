"""The commit pipeline: a container's changes → a new layer → a new image → the registry.

A commit is a sequence of named steps; a failure names its step, and whatever a step acquired
is released in ``finally`` — above all, a paused task is always resumed, and as soon as the
diff is captured (the user's container is never frozen while we compress or upload)::

    inspect   Containers.Get, Snapshots.Stat, the parent image's manifest and config
    lease     Leases.Create (gc.expire): GC cannot collect what the commit writes
    stop      (mode STOP) SIGTERM, wait stop_timeout, SIGKILL; the exited container is committed
    prepare   (mode SNAPSHOT, overlayfs) the capture's data files made at their size before the
              pause (:func:`overlay_diff.prepare_capture`), so the pause only copies
    pause     (mode SNAPSHOT) Tasks.Pause; a task that is not running is committed as it is
    diff      overlayfs: the upper directory captured (:func:`overlay_diff.capture_layer`:
              metadata in memory, file data copied by the kernel into the work directory —
              no tar, no compression, no hashing while the task is paused; cost ∝ the change);
              other snapshotters: containerd's Diff service against a view of the parent
    resume    Tasks.Resume (in ``finally``; retried while containerd restarts)
    compress  the layer tar → zstd (or gzip) blob, with diff_id and digest, in a thread; a
              large new layer is meanwhile uploaded to the registry (one streamed PATCH, the
              digest with the final PUT) — and, with ``LocalCopy.IN_COMMIT``, written into the
              content store — as it is compressed, so compress, upload and store overlap; the
              devbox's own layers are squashed into one when the image would exceed max_layers
    write     config (diff_ids, history) and manifest (OCI media types, GC labels); with
              ``IN_COMMIT``, they and the layers not stored yet go into the content store
              while the push runs
    push      blobs the registry lacks (HEAD / cross-repository mount), then the manifest; a
              layer whose streamed upload failed is uploaded again here (and a failure then
              is the push step's)
    image     Images.Create, or Update when the name exists (once its content is stored)

The local copy (``write`` and ``image``: the new image in containerd's content and image
stores, so a devbox restarted on this node unpacks it without a download) is made in one of
two ways, :class:`LocalCopy`:

* ``AFTER_PUSH`` (the default when there is a registry): the commit ends once the registry holds
  the image — the copy the devbox's next start depends on — and the local copy follows in the
  background, reading the blob the work directory still holds.  containerd's ingest is the
  costliest part of a large commit (it hashes and writes every byte, single-threaded: 3.4 s for
  a 540 MB layer on the 2-core machine of bench/node_shim_commit.py, as long as compressing
  the whole 1 GB diff), so a stop ends seconds earlier.  Until the copy is done, the node has no
  image of that name, and a kubelet pulls it from the registry.  A copy that fails (a full
  content store) is logged, makes ``Health`` degraded until a later copy succeeds, and loses
  nothing: the registry has the image.  Before the hand-over the work directory keeps only the
  blobs the copy reads; :data:`LOCAL_COPIES` copies run at once, and a commit waits (in its
  ``write`` step) while :data:`MAX_PENDING_COPIES` are pending, so a burst of stops cannot
  fill the node's disk.  :meth:`Committer.settle` waits for the copies pending,
  :meth:`Committer.drop_copies` (an image being deleted) and :meth:`Committer.aclose` cancel
  them; a copy however it ends removes its work files and its lease.
* ``IN_COMMIT``: the commit ends once both are done; a full content store fails it
  (``OutOfSpace``, step ``write``).  Always used without a registry.

In mode STOP the task has exited, so nothing is captured: the compressor reads the upper
directory itself (:func:`overlay_diff.write_layer`).

Bounded layers: the manifest annotation :data:`image.ANNOTATION_RUNTIME_LAYERS` records how many of
an image's layers belong to the runtime image; the layers above are the devbox's own.  When
runtime + own + 1 would exceed ``max_layers``, the own layers and the new one are squashed into
one layer holding the devbox's current state (:mod:`squash`, on the layer tars: cost ∝ the
devbox's own data) — a file rewritten on every commit (a log) is then stored once, at its latest
size, instead of once per commit.  When the own layers' blobs are no longer in the content store,
the same layer is re-based from snapshots instead: the parent snapshot with the new layer
applied, diffed by containerd against the runtime image's snapshot (no pause either way).

Errors::

    CommitError                 a commit step failed; ``step`` names it, ``temporary`` says
     │                          whether the same request can succeed later
     ├── ContainerNotFound      the container (or its snapshot or image) does not exist
     ├── ContainerdUnavailable  containerd could not be reached (``temporary``)
     ├── OutOfSpace             a disk (content store or work directory) is full
     ├── RegistryRefused        the registry refused the credentials or the push
     └── RegistryUnavailable    the registry could not be reached or failed (``temporary``)
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import enum
import errno
import json
import logging
import shutil
import signal
import threading
import time
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
)
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal, Protocol, TypeVar

from devbox_node_shim import containerd as ctrd
from devbox_node_shim import image
from devbox_node_shim.compress import CompressedLayer, CompressError, LayerCompressor
from devbox_node_shim.containerd import ContainerdClient, Descriptor
from devbox_node_shim.overlay_diff import (
    CapturedLayer,
    LayerError,
    capture_layer,
    prepare_capture,
    write_captured,
    write_layer,
)
from devbox_node_shim.spool import SpoolAborted
from devbox_node_shim.squash import SquashError, squash_layers

log = logging.getLogger(__name__)
_T = TypeVar("_T")

LABEL_COMMITTED_BY = "dev.devbox.committed-by"
LABEL_LEASE = "dev.devbox.node-shim.commit"
"""Label of the leases commits take (value: the container id); found again after a crash."""
LEASE_EXPIRY = datetime.timedelta(hours=2)
RESUME_ATTEMPTS = 30
STOP_KILL_WAIT = 60.0
"""Seconds to wait for a task to exit after SIGKILL."""
CHUNK = 1 << 20
LOCAL_COPIES = 2
"""Local copies into containerd at once (more would only share its ingest; the rest wait)."""
MAX_PENDING_COPIES = 8
"""Local copies pending (running or waiting) before a commit waits for one to end."""
STREAM_MIN = 8 << 20
"""A new layer with at least this much file data is uploaded and stored while compressed."""


class CommitError(Exception):
    """A commit step failed."""

    def __init__(self, step: str, message: str, *, temporary: bool = False) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step
        self.message = message
        self.temporary = temporary


class ContainerNotFound(CommitError):
    """The container, its snapshot or its image does not exist."""


class ContainerdUnavailable(CommitError):
    """containerd could not be reached."""


class OutOfSpace(CommitError):
    """A disk filled up (containerd's content store or the node-shim's work directory)."""


class RegistryRefused(CommitError):
    """The registry refused the credentials or the push (not worth retrying as is)."""


class RegistryUnavailable(CommitError):
    """The registry could not be reached or failed; a retry may succeed."""


class Mode(enum.Enum):
    """How the container is treated while its changes are captured."""

    STOP = "stop"
    SNAPSHOT = "snapshot"


class LocalCopy(enum.Enum):
    """When the new image goes into containerd's stores; see the module docstring."""

    AFTER_PUSH = "after-push"
    IN_COMMIT = "in-commit"


class Compression(enum.Enum):
    """Layer compression: zstd (fast, multi-threaded) or gzip (for old runtimes)."""

    ZSTD = "zstd"
    GZIP = "gzip"

    @property
    def kind(self) -> Literal["zstd", "gzip"]:
        return "zstd" if self is Compression.ZSTD else "gzip"


@dataclass(frozen=True)
class CommitSpec:
    """What to commit, and how."""

    container_id: str
    target_image: str
    mode: Mode = Mode.SNAPSHOT
    stop_timeout: float = 10.0
    max_layers: int = 0
    """Upper bound on the image's layer count (0: no bound)."""
    labels: Mapping[str, str] = field(default_factory=dict)
    compression: Compression = Compression.ZSTD


@dataclass(frozen=True)
class Progress:
    """Where a commit is: the step running and, where it moves bytes, how many."""

    step: str
    bytes_done: int = 0
    bytes_total: int = 0


@dataclass(frozen=True)
class CommitResult:
    """What a commit produced."""

    image: str
    manifest_digest: str
    layers: tuple[Descriptor, ...]
    total_size: int
    step_seconds: Mapping[str, float]

    @property
    def layer_count(self) -> int:
        return len(self.layers)


ProgressCallback = Callable[[Progress], None]


class Pusher(Protocol):
    """Pushes an image from the content store to its registry (see :mod:`registry`)."""

    async def push_image(
        self,
        reference: str,
        manifest: Descriptor,
        manifest_bytes: bytes,
        blobs: list[Descriptor],
        open_blob: Callable[[Descriptor], AsyncIterator[bytes]],
        progress: Callable[[int, int], None],
        sources: Iterable[str] = (),
    ) -> None:
        """Push ``blobs`` then the manifest to ``reference``; ``sources``: images the blobs
        may already be in (candidates for a cross-repository mount)."""

    async def upload_stream(
        self,
        reference: str,
        chunks: AsyncIterator[bytes],
        digest: Callable[[], Awaitable[str]],
    ) -> None:
        """Upload one blob of ``reference`` while it is produced (``digest()`` once ``chunks``
        ended); a later ``push_image`` takes it as present."""


@dataclass
class _Layer:
    """A compressed layer blob: in the content store, or (``path``) in the work directory
    until the ``write`` step puts it there."""

    descriptor: Descriptor
    diff_id: str
    path: Path | None = None
    stored_early: bool = False
    """Written into the content store while it was compressed (``_Run.storing_layer``)."""


class Committer:
    """Runs commits against one containerd (and one registry pusher)."""

    def __init__(
        self,
        containerd: ContainerdClient,
        *,
        workdir: Path,
        pusher: Pusher | None = None,
        fast_path: bool = True,
        local_copy: LocalCopy = LocalCopy.AFTER_PUSH,
    ) -> None:
        self.containerd = containerd
        self.workdir = workdir
        self.pusher = pusher
        self.fast_path = fast_path
        self.local_copy = local_copy if pusher is not None else LocalCopy.IN_COMMIT
        self._copies: dict[str, asyncio.Task[None]] = {}
        """Target image → its latest local copy (``LocalCopy.AFTER_PUSH``; the next one of the
        same image waits for it)."""
        self._jobs: set[_LocalCopyJob] = set()
        """Every local copy pending."""
        self._copy_slots = asyncio.Semaphore(LOCAL_COPIES)
        self._closed = False
        self.copy_problem: str | None = None
        """Why the last local copy failed (None once one succeeds again)."""
        self.stream_min = STREAM_MIN
        """A new layer with this much file data or more is uploaded and stored while it is
        compressed (a smaller one costs less in one piece)."""
        self.step_hook: Callable[[str], Awaitable[None]] | None = None
        """Awaited as each step starts, with its name (fault-injection tests use it)."""

    async def commit(
        self, spec: CommitSpec, on_progress: ProgressCallback | None = None
    ) -> CommitResult:
        """Run the commit described by ``spec``; see the module docstring."""
        run = _Run(self, spec, on_progress or (lambda _p: None))
        return await run.run()

    def start_local_copy(
        self,
        image_name: str,
        copy: Callable[[], Awaitable[None]],
        release: Callable[[], Awaitable[None]],
    ) -> bool:
        """Run ``copy`` in the background (after the previous copy of the same name, and when
        one of :data:`LOCAL_COPIES` slots is free), then ``release`` — also when it is dropped
        before it starts.  False (nothing started) once :meth:`aclose` was called."""
        if self._closed:
            return False
        previous = self._copies.get(image_name)
        job = _LocalCopyJob(image_name, release)

        async def run() -> None:
            try:
                if previous is not None:
                    await asyncio.wait([previous])
                async with self._copy_slots:
                    started = time.monotonic()
                    await copy()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.copy_problem = f"the local copy of {image_name} failed ({exc})"
                log.warning("%s; the registry has it, a kubelet will pull it", self.copy_problem)
            else:
                self.copy_problem = None
                log.info(
                    "local copy of %s into containerd done in %.2f s",
                    image_name,
                    time.monotonic() - started,
                )
            finally:
                await job.release_once()
                self._forget(job)

        job.task = asyncio.ensure_future(run())
        self._jobs.add(job)
        self._copies[image_name] = job.task
        return True

    def _forget(self, job: _LocalCopyJob) -> None:
        self._jobs.discard(job)
        if self._copies.get(job.image) is job.task:
            del self._copies[job.image]

    async def room_for_copy(self) -> None:
        """Wait while :data:`MAX_PENDING_COPIES` local copies are pending (each holds its
        layer blobs in the work directory): a burst of commits cannot fill the disk."""
        while len(self._jobs) >= MAX_PENDING_COPIES:
            await asyncio.wait(
                [job.task for job in self._jobs if job.task is not None],
                return_when=asyncio.FIRST_COMPLETED,
            )

    async def settle(self, image_name: str | None = None) -> None:
        """Wait until the local copies pending (of ``image_name``, or all) have ended."""
        tasks = [j.task for j in self._jobs if image_name in (None, j.image) and j.task]
        if tasks:
            await asyncio.wait(tasks)

    async def drop_copies(self, image_name: str) -> None:
        """Cancel the local copies of ``image_name`` (an image being deleted); each removes
        its work files and lease."""
        await self._cancel([j for j in self._jobs if j.image == image_name])

    async def aclose(self) -> None:
        """Cancel the local copies pending; each still removes its work files and lease (the
        registry has the images: nothing is lost).  No copy starts after this."""
        self._closed = True
        await self._cancel(list(self._jobs))

    async def _cancel(self, jobs: list[_LocalCopyJob]) -> None:
        for job in jobs:
            if job.task is not None:
                job.task.cancel()
        for job in jobs:
            if job.task is not None:
                with contextlib.suppress(BaseException):
                    await job.task
            await job.release_once()  # (a task cancelled before it started never ran it)
            self._forget(job)


@dataclass(eq=False)
class _LocalCopyJob:
    """A local copy pending: its task, and what it must release however it ends."""

    image: str
    release: Callable[[], Awaitable[None]]
    task: asyncio.Task[None] | None = None
    released: bool = False

    async def release_once(self) -> None:
        if not self.released:
            self.released = True
            await self.release()


class _Run:
    """One commit's state: what it acquired (released in ``finally``) and its timings."""

    def __init__(self, committer: Committer, spec: CommitSpec, on_progress: ProgressCallback):
        self.c = committer
        self.spec = spec
        self.on_progress = on_progress
        self.cd = committer.containerd
        self.timings: dict[str, float] = {}
        self.work = committer.workdir / f"commit-{uuid.uuid4().hex}"
        self.views: list[tuple[str, str]] = []
        self.paused = False
        self.current_step = ""
        self.compressing: asyncio.Future[CompressedLayer] | None = None
        self.capturing: asyncio.Future[CapturedLayer] | None = None
        self.preparing: asyncio.Future[None] | None = None
        self.uploading: asyncio.Future[bool] | None = None
        self.storing_layer: asyncio.Future[None] | None = None
        self.storing: asyncio.Future[None] | None = None
        self.squashing = False
        self.copy_after_push = committer.local_copy is LocalCopy.AFTER_PUSH
        self.handed_over = False
        """The lease and the work directory belong to the background local copy now."""
        self.container: ctrd.Container | None = None
        self.snapshot: ctrd.Snapshot | None = None

    # --- step bookkeeping ------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def step(self, name: str) -> AsyncIterator[None]:
        self.current_step = name
        self.on_progress(Progress(name))
        started = time.monotonic()
        try:
            if self.c.step_hook is not None:
                await self.c.step_hook(name)
            yield
        except CommitError:
            raise
        except ctrd.NotFound as exc:
            raise ContainerNotFound(name, exc.message) from exc
        except ctrd.ContainerdUnavailable as exc:
            raise ContainerdUnavailable(
                name, f"containerd is not reachable ({exc.message})", temporary=True
            ) from exc
        except ctrd.ContainerdError as exc:
            if "no space left" in exc.message:
                raise OutOfSpace(name, exc.message, temporary=True) from exc
            raise CommitError(name, exc.message) from exc
        except (LayerError, SpoolAborted, SquashError, image.ImageError) as exc:
            raise CommitError(name, str(exc)) from exc
        except CompressError as exc:
            if "No space left" in str(exc):
                raise OutOfSpace(name, str(exc), temporary=True) from exc
            raise CommitError(name, str(exc)) from exc
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise OutOfSpace(name, f"no space left on device ({exc})", temporary=True) from exc
            raise CommitError(name, str(exc)) from exc
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.monotonic() - started

    # --- the pipeline ----------------------------------------------------------------------

    async def run(self) -> CommitResult:
        spec = self.spec
        async with self.step("inspect"):
            container = self.container = await self.cd.container(spec.container_id)
            snapshot = self.snapshot = await self.cd.snapshot(
                container.snapshotter, container.snapshot_key
            )
            parent = await self._parent(container.image)
            bound = spec.max_layers
            self.squashing = bool(
                bound and parent.own and len(parent.runtime) + len(parent.own) + 1 > bound
            )
        lease = ""
        try:
            async with self.step("lease"):
                lease = await self.cd.create_lease(
                    expire=LEASE_EXPIRY, labels={LABEL_LEASE: spec.container_id}
                )
                self.cd = self.cd.leased(lease)
            try:
                if spec.mode is Mode.STOP:
                    async with self.step("stop"):
                        await self._stop(container.id)
                else:
                    if self.c.fast_path:
                        async with self.step("prepare"):
                            await self._prepare(container)
                    async with self.step("pause"):
                        self.paused = await self._pause(container.id)
                async with self.step("diff"):
                    capture = await self._diff(container, snapshot)
            finally:
                if self.paused:
                    async with self.step("resume"):
                        await self._resume(container.id)
            async with self.step("compress"):
                layers, own = await self._layers(parent, capture)
            async with self.step("write"):
                if self.storing_layer is not None and self.storing_layer.done():
                    self.storing_layer.result()  # failed already (a full disk): say so now
                written = self._write(parent, layers, own)
                if not self.copy_after_push:
                    # Content-store writes run while the push uploads from the work directory
                    # and memory: the slower of the two sets the pace, not their sum.
                    self.storing = asyncio.ensure_future(self._store(written, layers))
            if self.c.pusher is not None:
                async with self.step("push"):
                    if self.uploading is not None:
                        await self.uploading  # (never fails: the push uploads what it missed)
                    await self._push(written, layers, container.image)
            if self.copy_after_push:
                async with self.step("write"):
                    await self.c.room_for_copy()
                    await self._keep_only(layers)
                    self.handed_over = self.c.start_local_copy(
                        spec.target_image,
                        lambda: self._copy_locally(written, layers),
                        lambda: self._release_copy(lease),
                    )
            else:
                async with self.step("write"):
                    assert self.storing is not None
                    await self.storing
                async with self.step("image"):
                    await self._put_image(written)
            manifest = written.manifest
            config_size = written.config.size
            return CommitResult(
                image=spec.target_image,
                manifest_digest=manifest.digest,
                layers=tuple(layer.descriptor for layer in layers),
                total_size=sum(layer.descriptor.size for layer in layers) + config_size,
                step_seconds=dict(self.timings),
            )
        finally:
            await self._release("" if self.handed_over else lease)

    async def _put_image(self, written: image.Documents) -> None:
        await self.cd.put_image(
            self.spec.target_image,
            written.manifest,
            {LABEL_COMMITTED_BY: "devbox-node-shim", **self.spec.labels},
        )

    async def _copy_locally(self, written: image.Documents, layers: list[_Layer]) -> None:
        """The local copy after the push (``LocalCopy.AFTER_PUSH``): content, then the image
        record.  Errors name their step."""
        step = "write"
        try:
            await self._store(written, layers)
            step = "image"
            await self._put_image(written)
        except ctrd.ContainerdError as exc:
            raise CommitError(step, exc.message) from exc
        except OSError as exc:
            raise CommitError(step, str(exc)) from exc

    async def _keep_only(self, layers: list[_Layer]) -> None:
        """Before the hand-over: of the work files, only the blobs the local copy reads stay
        (not the captured data, nor a squash's tars)."""
        keep = {layer.path for layer in layers if layer.path is not None}

        def trim() -> None:
            for path in self.work.iterdir():
                if path not in keep:
                    if path.is_dir():
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink(missing_ok=True)

        await asyncio.to_thread(trim)

    async def _release_copy(self, lease: str) -> None:
        """After the local copy (or instead of it): the work directory and the lease go."""
        await asyncio.to_thread(shutil.rmtree, self.work, True)
        try:
            await self.c.containerd.delete_lease(lease)
        except ctrd.ContainerdError as exc:
            log.warning("could not delete lease %s: %s", lease, exc.message)

    async def _release(self, lease: str) -> None:
        """Remove views, work files and the lease (best effort: never masks the real error);
        once handed over to the local copy, the work files and the lease are its to remove."""
        base = self.c.containerd
        for task in (self.uploading, self.storing_layer, self.storing):
            if task is not None and not task.done():
                task.cancel()
            if task is not None:
                with contextlib.suppress(BaseException):
                    await task
        await self._remove_views()
        if self.preparing is not None:
            await asyncio.wait([self.preparing])  # (it writes into the work folder)
        if self.capturing is not None:
            # The capture thread (and its copier threads) write into the work folder until
            # they end, even when the commit was cancelled meanwhile.
            await asyncio.wait([self.capturing])
            if not self.capturing.cancelled():
                self.capturing.exception()  # retrieved: the commit reported its own error
        if self.compressing is not None:
            # The compressor thread ends once the spool is closed or failed; wait for it
            # before its files go.
            with contextlib.suppress(BaseException):
                await asyncio.wait([self.compressing])
        if not self.handed_over:
            shutil.rmtree(self.work, ignore_errors=True)
        if lease:
            try:
                await base.delete_lease(lease)
            except ctrd.ContainerdError as exc:
                # The lease expires on its own (gc.expire); nothing is lost.
                log.warning("could not delete lease %s: %s", lease, exc.message)

    # --- inspect ---------------------------------------------------------------------------

    async def _parent(self, image_name: str) -> image.Parent:
        if not image_name:
            raise ContainerNotFound("inspect", f"container {self.spec.container_id} has no image")
        target = (await self.cd.image(image_name)).target
        try:
            if target.media_type in image.INDEX_TYPES:
                target = image.pick_platform(json.loads(await self.cd.read_all(target.digest)))
            manifest = json.loads(await self.cd.read_all(target.digest))
            config = json.loads(await self.cd.read_all(manifest["config"]["digest"]))
            return image.parent(manifest, config)
        except (ValueError, KeyError, TypeError) as exc:
            raise image.ImageError(f"image {image_name}: {exc}") from exc

    # --- stop / pause / resume -------------------------------------------------------------

    async def _stop(self, container_id: str) -> None:
        try:
            task = await self.cd.task(container_id)
        except ctrd.NotFound:
            return  # no task: the container is stopped already
        if task.status in ("STOPPED", "CREATED", "UNKNOWN"):
            return
        if task.status in ("PAUSED", "PAUSING"):
            await self.cd.resume(container_id)
        # Wait for the exit before signalling, so an exit in between is not missed.
        exited = asyncio.ensure_future(self.cd.wait(container_id, max_seconds=3600.0))
        try:
            await self._signal(container_id, signal.SIGTERM)
            try:
                await asyncio.wait_for(
                    asyncio.shield(exited), timeout=max(self.spec.stop_timeout, 0.1)
                )
                return
            except TimeoutError:
                pass
            await self._signal(container_id, signal.SIGKILL)
            await asyncio.wait_for(asyncio.shield(exited), timeout=STOP_KILL_WAIT)
        except TimeoutError as exc:
            raise CommitError(
                "stop", f"the task did not exit {STOP_KILL_WAIT:.0f}s after SIGKILL"
            ) from exc
        finally:
            if not exited.done():
                exited.cancel()
            with contextlib.suppress(BaseException):
                await exited

    async def _signal(self, container_id: str, signum: int) -> None:
        with contextlib.suppress(ctrd.NotFound, ctrd.FailedPrecondition):
            await self.cd.kill(container_id, signum)

    async def _pause(self, container_id: str) -> bool:
        """Pause the task if it runs; whether it was paused (and must be resumed)."""
        try:
            task = await self.cd.task(container_id)
        except ctrd.NotFound:
            return False
        if task.status != "RUNNING":
            return False
        try:
            await self.cd.pause(container_id)
        except (ctrd.NotFound, ctrd.FailedPrecondition):
            return False  # it exited meanwhile: commit what it left
        return True

    async def _resume(self, container_id: str) -> None:
        """Resume the task; while containerd restarts, keep trying (the user waits on this)."""
        delay = 0.1
        for attempt in range(RESUME_ATTEMPTS):
            try:
                await self.c.containerd.resume(container_id)
            except (ctrd.NotFound, ctrd.FailedPrecondition):
                pass  # exited meanwhile, or not paused any more
            except ctrd.ContainerdUnavailable:
                if attempt == RESUME_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            except ctrd.ContainerdError:
                # containerd says UNKNOWN for "cannot resume a stopped container": what
                # matters is whether the task is still paused.
                if await self._still_paused(container_id):
                    raise
            self.paused = False
            return

    async def _still_paused(self, container_id: str) -> bool:
        try:
            task = await self.c.containerd.task(container_id)
        except ctrd.NotFound:
            return False
        return task.status in ("PAUSED", "PAUSING")

    # --- prepare / diff ---------------------------------------------------------------------

    async def _prepare(self, container: ctrd.Container) -> None:
        """Before a pause: the capture's data files, their pages allocated (see
        :func:`overlay_diff.prepare_capture`), so the pause only copies."""
        mounts = await self.cd.mounts(container.snapshotter, container.snapshot_key)
        upper = _upper_dir(container.snapshotter, mounts)
        if upper is None:
            return  # containerd's differ: nothing to prepare
        self.work.mkdir(parents=True, exist_ok=True)
        data = self.work / "layer.data"
        self.preparing = _in_thread(lambda: prepare_capture(upper, data), "prepare")
        await asyncio.shield(self.preparing)

    async def _diff(self, container: ctrd.Container, snapshot: ctrd.Snapshot) -> _Capture:
        mounts = await self.cd.mounts(container.snapshotter, container.snapshot_key)
        upper = _upper_dir(container.snapshotter, mounts) if self.c.fast_path else None
        self.work.mkdir(parents=True, exist_ok=True)
        if upper is not None:
            return await self._diff_upper(upper)
        lower: list[ctrd.Mount] = []
        if snapshot.parent:
            key = f"devbox-node-shim-view-{uuid.uuid4().hex}"
            lower = await self.cd.view(container.snapshotter, key, snapshot.parent)
            self.views.append((container.snapshotter, key))
        try:
            descriptor = await self.cd.diff(
                lower,
                mounts,
                media_type=image.MEDIA_LAYER_TAR,
                ref=f"devbox-node-shim-diff-{uuid.uuid4()}",
            )
        finally:
            await self._remove_views()
        return _Capture(descriptor=descriptor)

    async def _diff_upper(self, upper: str) -> _Capture:
        """Capture the upper directory (all the pause waits for), then compress it in a thread
        — and, unless it is to be squashed, upload it and store it while it is compressed."""
        if self.spec.mode is Mode.STOP:
            captured = None  # the task has exited: the upper directory no longer changes
        else:
            data = self.work / "layer.data"
            self.capturing = _in_thread(lambda: capture_layer(upper, data), "capture")
            # Shielded: a cancelled commit still lets the copy end before its files go.
            captured = await asyncio.shield(self.capturing)
        loop = asyncio.get_running_loop()
        # About the tar's size (data and a header block per entry); unknown in mode STOP.
        total = captured.data_bytes + 512 * len(captured.entries) if captured else 0

        def report(done: int) -> None:
            if self.current_step == "compress":
                progress = Progress("compress", min(done, total) if total else done, total)
                loop.call_soon_threadsafe(self.on_progress, progress)

        def write_tar(out: BinaryIO) -> None:
            if captured is not None:
                write_captured(captured, out)
            else:
                write_layer(upper, out)

        sink = LayerCompressor(
            self.work / "layer.blob",
            compression=self.spec.compression.kind,
            progress=report,
            follow=True,
        )

        def compress() -> CompressedLayer:
            with sink:
                write_tar(sink)  # type: ignore[arg-type]  # file-like enough
                if captured is not None and not self.squashing:
                    # Not needed again: gone before its dirty pages cost a write to disk.
                    captured.discard()
            assert sink.result is not None
            return sink.result

        compressing = self.compressing = _in_thread(compress, "compress")
        if not self.squashing and (captured is None or captured.data_bytes >= self.c.stream_min):
            if self.c.pusher is not None:
                self.uploading = asyncio.ensure_future(self._upload_early(sink, compressing))
            if not self.copy_after_push:
                self.storing_layer = asyncio.ensure_future(self._store_early(sink, compressing))
        return _Capture(compressing=compressing, write_tar=write_tar)

    async def _upload_early(
        self, sink: LayerCompressor, compressing: asyncio.Future[CompressedLayer]
    ) -> bool:
        """Upload the new layer while it is compressed; whether that worked (if not, the push
        step uploads it from the work directory, and reports what fails then)."""
        assert self.c.pusher is not None

        async def digest() -> str:
            return (await compressing).digest

        chunks = _following(sink.follow())
        try:
            await self.c.pusher.upload_stream(self.spec.target_image, chunks, digest)
        except Exception as exc:  # a fallback follows: log, never fail here
            log.info("commit of %s: streamed upload failed (%s)", self.spec.container_id, exc)
            return False
        finally:
            # (Still running in the consumer's task if that failed mid-stream: it ends there.)
            with contextlib.suppress(RuntimeError):
                await chunks.aclose()
        return True

    async def _store_early(
        self, sink: LayerCompressor, compressing: asyncio.Future[CompressedLayer]
    ) -> None:
        """Write the new layer into the content store while it is compressed."""

        async def done() -> tuple[str, int, Mapping[str, str]]:
            layer = await compressing
            return layer.digest, layer.size, {ctrd.LABEL_UNCOMPRESSED: layer.diff_id}

        chunks = _following(sink.follow())
        try:
            await self.cd.write_content_stream(
                f"devbox-node-shim-layer-{uuid.uuid4().hex}", chunks, done
            )
        finally:
            # (Still running in the consumer's task if that failed mid-stream: it ends there.)
            with contextlib.suppress(RuntimeError):
                await chunks.aclose()

    async def _remove_views(self) -> None:
        base = self.c.containerd
        while self.views:
            snapshotter, key = self.views.pop()
            try:
                await base.remove_snapshot(snapshotter, key)
            except ctrd.ContainerdError as exc:
                log.warning("could not remove view snapshot %s: %s", key, exc.message)

    # --- compress (and squash) -------------------------------------------------------------

    async def _layers(self, parent: image.Parent, capture: _Capture) -> tuple[list[_Layer], int]:
        """The new image's layers, and how many of them are the devbox's own."""
        base = [_Layer(layer.descriptor, layer.diff_id) for layer in parent.runtime]
        own = [_Layer(layer.descriptor, layer.diff_id) for layer in parent.own]
        new = await self._compress(capture)
        bound = self.spec.max_layers
        if self.squashing:
            try:
                squashed = await self._squash(own, new, capture)
                how = "squashed"
            except ctrd.NotFound:
                # The own layers' blobs are gone from the content store (e.g. containerd
                # discards unpacked layers): rebuild the layer from snapshots instead.
                squashed = await self._rebase(parent, new)
                how = "re-based from snapshots"
            log.info(
                "container %s: %d own layers and the new one %s into one (max_layers %d)",
                self.spec.container_id,
                len(own),
                how,
                bound,
            )
            return [*base, squashed], 1
        return [*base, *own, new], len(own) + 1

    async def _squash(self, own: list[_Layer], new: _Layer, capture: _Capture) -> _Layer:
        """The devbox's own layers and the new one merged into one layer (squash.py): only
        the last state of each path is kept, so a file rewritten on every commit is stored
        once.  Cost: the size of the devbox's own layers, not of the image."""
        tars = []
        for i, layer in enumerate(own):
            tars.append(await self._uncompressed(layer.descriptor, self.work / f"own-{i}.tar"))
        if capture.write_tar is not None:
            new_tar = self.work / "new.tar"

            def write_new() -> None:
                with new_tar.open("wb") as out:
                    assert capture.write_tar is not None
                    capture.write_tar(out)

            await asyncio.to_thread(write_new)
            tars.append(new_tar)
        elif capture.descriptor is not None:
            tars.append(await self._uncompressed(capture.descriptor, self.work / "new.tar"))
        else:  # pragma: no cover - a capture is one or the other
            raise CommitError("compress", "the new layer's tar is gone")
        loop = asyncio.get_running_loop()
        total = sum(path.stat().st_size for path in tars)

        def report(done: int) -> None:  # called in the squashing thread
            loop.call_soon_threadsafe(self.on_progress, Progress("compress", done, total))

        def squash() -> CompressedLayer:
            with LayerCompressor(
                self.work / "squashed.blob", compression=self.spec.compression.kind, progress=report
            ) as sink:
                squash_layers(tars, sink)  # type: ignore[arg-type]  # file-like enough
            assert sink.result is not None
            return sink.result

        compressed = await asyncio.to_thread(squash)
        descriptor = Descriptor(compressed.media_type, compressed.digest, compressed.size)
        return _Layer(descriptor, compressed.diff_id, compressed.path)

    async def _uncompressed(self, blob: Descriptor, path: Path) -> Path:
        """Blob ``blob`` of the content store, decompressed into the file ``path``."""
        raw = path.with_suffix(".blob")
        with raw.open("wb") as out:
            async for chunk in self.cd.read_content(blob.digest):
                await asyncio.to_thread(out.write, chunk)
        await asyncio.to_thread(image.decompress_blob, raw, blob.media_type, path)
        raw.unlink()
        return path

    async def _compress(self, capture: _Capture) -> _Layer:
        if capture.compressing is not None:
            compressed = await capture.compressing
        else:
            assert capture.descriptor is not None
            compressed = await self._compress_blob(capture.descriptor)
        descriptor = Descriptor(compressed.media_type, compressed.digest, compressed.size)
        early = capture.compressing is not None and self.storing_layer is not None
        return _Layer(descriptor, compressed.diff_id, compressed.path, stored_early=early)

    async def _compress_blob(self, tar: Descriptor) -> CompressedLayer:
        """Compress an uncompressed layer blob of the content store into the work directory."""
        loop = asyncio.get_running_loop()

        def report(done: int) -> None:  # called in the compressing thread
            loop.call_soon_threadsafe(self.on_progress, Progress("compress", done, tar.size))

        sink = LayerCompressor(
            self.work / f"layer-{uuid.uuid4().hex}.blob",
            compression=self.spec.compression.kind,
            progress=report,
        )
        try:
            async for chunk in self.cd.read_content(tar.digest):
                await asyncio.to_thread(sink.write, chunk)
            return await asyncio.to_thread(sink.finish)
        except BaseException:
            sink.abort()
            raise

    async def _rebase(self, parent: image.Parent, new: _Layer) -> _Layer:
        """One layer holding the devbox's whole state above the runtime image: the parent
        snapshot (runtime + own layers) with the new layer applied, diffed against the runtime
        image's snapshot by containerd.  Needs no pause: it works on snapshots, not on the
        running container."""
        assert self.container is not None
        assert self.snapshot is not None
        snapshotter = self.container.snapshotter
        await self._store_layer(new)  # Diff.Apply reads it from the content store
        key = f"devbox-node-shim-rebase-{uuid.uuid4().hex}"
        upper = await self.cd.prepare(snapshotter, key, self.snapshot.parent)
        self.views.append((snapshotter, key))
        await self.cd.apply(new.descriptor, upper)
        lower: list[ctrd.Mount] = []
        diff_ids = [layer.diff_id for layer in parent.runtime]
        if diff_ids:
            view = f"devbox-node-shim-view-{uuid.uuid4().hex}"
            lower = await self.cd.view(snapshotter, view, image.chain_id(diff_ids))
            self.views.append((snapshotter, view))
        try:
            tar = await self.cd.diff(
                lower, upper, media_type=image.MEDIA_LAYER_TAR, ref=f"devbox-node-shim-rebase-{key}"
            )
        finally:
            await self._remove_views()
        compressed = await self._compress_blob(tar)
        descriptor = Descriptor(compressed.media_type, compressed.digest, compressed.size)
        return _Layer(descriptor, compressed.diff_id, compressed.path)

    def _bytes_progress(self, step: str) -> Callable[[int, int], None]:
        def report(done: int, total: int) -> None:
            self.on_progress(Progress(step, done, total))

        return report

    # --- write -----------------------------------------------------------------------------

    def _write(self, parent: image.Parent, layers: list[_Layer], own: int) -> image.Documents:
        """The new image's config and manifest."""
        return image.build(
            parent,
            layers,
            own,
            created_by=f"devbox-node-shim commit ({self.spec.mode.value})",
            comment=f"container {self.spec.container_id}",
        )

    async def _store_layer(self, layer: _Layer) -> None:
        assert layer.path is not None
        await self.cd.write_content(
            f"devbox-node-shim-layer-{uuid.uuid4().hex}",  # (two copies of one blob at once)
            _read_file(layer.path),
            expected=layer.descriptor.digest,
            size=layer.descriptor.size,
            labels={ctrd.LABEL_UNCOMPRESSED: layer.diff_id},
        )

    async def _store(self, written: image.Documents, layers: list[_Layer]) -> None:
        """Put config, manifest (with its GC labels, or GC collects the blobs once the lease
        is gone) and the layers this commit made into the content store, all at once."""
        writes: list[Awaitable[None]] = [
            self.cd.write_content(
                f"devbox-node-shim-config-{uuid.uuid4().hex}",
                written.config_bytes,
                expected=written.config.digest,
                size=written.config.size,
            ),
            self.cd.write_content(
                f"devbox-node-shim-manifest-{uuid.uuid4().hex}",
                written.manifest_bytes,
                expected=written.manifest.digest,
                size=written.manifest.size,
                labels=written.gc_labels,
            ),
        ]
        for layer in layers:
            if layer.stored_early:
                assert self.storing_layer is not None
                writes.append(self.storing_layer)
            elif layer.path is not None:
                writes.append(self._store_layer(layer))
        await _all(writes)

    # --- push ------------------------------------------------------------------------------

    async def _push(
        self, written: image.Documents, layers: list[_Layer], source_image: str
    ) -> None:
        assert self.c.pusher is not None
        blobs = [written.config, *(layer.descriptor for layer in layers)]
        local = {layer.descriptor.digest: layer.path for layer in layers if layer.path}

        def open_blob(d: Descriptor) -> AsyncIterator[bytes]:
            if d.digest == written.config.digest:
                return _chunks_of(written.config_bytes)
            path = local.get(d.digest)
            return _read_file(path) if path is not None else self.cd.read_content(d.digest)

        await self.c.pusher.push_image(
            self.spec.target_image,
            written.manifest,
            written.manifest_bytes,
            blobs,
            open_blob,
            self._bytes_progress("push"),
            sources=[source_image],
        )


@dataclass
class _Capture:
    """The captured diff: being compressed by a thread (overlay fast path), or an uncompressed
    tar blob in the content store (containerd's differ)."""

    compressing: asyncio.Future[CompressedLayer] | None = None
    descriptor: Descriptor | None = None
    write_tar: Callable[[BinaryIO], None] | None = None
    """Writes the fast path's uncompressed tar again (for a squash)."""


async def _all(awaitables: list[Awaitable[None]]) -> None:
    """Await them side by side; when one fails, the others are cancelled (and awaited) before
    its error is raised — none outlives the lease and the files it writes under."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _following(chunks: Iterator[bytes]) -> AsyncGenerator[bytes, None]:
    """A blocking iterator (a spool's reader) as an async one, each step in a thread."""
    try:
        while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            # (Cancelled while a thread is in next(): that step ends when the writer does.)
            with contextlib.suppress(ValueError):
                close()


def _in_thread(work: Callable[[], _T], name: str) -> asyncio.Future[_T]:
    """Run ``work`` in a thread of its own (never queued behind other work in the default
    executor: a paused task waits on the capture); its result as a future."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_T] = loop.create_future()

    def settle(result: _T | None, error: BaseException | None) -> None:
        if future.done():
            return  # cancelled meanwhile
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result = work()
        except BaseException as exc:
            outcome: tuple[_T | None, BaseException | None] = (None, exc)
        else:
            outcome = (result, None)
        with contextlib.suppress(RuntimeError):  # the loop is gone (the process is ending)
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=run, name=f"commit-{name}", daemon=True).start()
    return future


def _upper_dir(snapshotter: str, mounts: list[ctrd.Mount]) -> str | None:
    """The overlayfs upper directory of a snapshot's mounts, if there is one."""
    if snapshotter != "overlayfs" or len(mounts) != 1:
        return None
    mount = mounts[0]
    if mount.type == "overlay":
        return mount.option("upperdir")
    if mount.type == "bind" and not mount.option("upperdir"):
        return mount.source  # a snapshot without parent: all of it is the change
    return None


async def _read_file(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while chunk := await asyncio.to_thread(f.read, 4 * CHUNK):
            yield chunk


async def _chunks_of(data: bytes) -> AsyncIterator[bytes]:
    yield data
