"""Commits in flight: one background task per node-shim request id.

A stop commit can take minutes; it must not hold a reconcile worker.  The reconciler writes
the commit record (with its request id) first, then asks this tracker to run the call; when
the call ends, the tracker queues the devbox again and the next reconcile records the outcome.
After a controller restart the reconciler finds the record still ``Pending``/``Committing`` and
calls :meth:`ensure` with the same request id: the node-shim attaches to the commit it is
already running instead of starting a second one.

The tracker also keeps each call's latest progress report (:meth:`progress`) and queues the
devbox when it is worth publishing: at once for a new step, else at most once per
``progress_interval`` (a report held back is announced when the interval ends).  The
reconciler copies it into the record in flight, with the same throttle (see
:func:`app.controller._records.publish_progress`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from devbox_node_shim.api import nodeshim_pb2 as pb

from app.nodeshim_client import CommitOutcome, NodeShimClient

log = logging.getLogger(__name__)

Key = tuple[str, str]

PROGRESS_INTERVAL = 2.0
"""Seconds between two progress writes of one devbox within a step."""


@dataclass(frozen=True)
class Progress:
    """A commit call's latest progress report."""

    step: str
    bytes_done: int
    bytes_total: int


class CommitTracker:
    """Runs node-shim commits in the background; queues the devbox (``on_done``) when a call
    ends or has progress worth publishing."""

    def __init__(
        self,
        client: NodeShimClient,
        on_done: Callable[[Key], None],
        *,
        deadline: float,
        progress_interval: float = PROGRESS_INTERVAL,
    ) -> None:
        self.client = client
        self.on_done = on_done
        self.deadline = deadline
        self.progress_interval = progress_interval
        self._tasks: dict[str, asyncio.Task[CommitOutcome]] = {}
        self._progress: dict[str, Progress] = {}
        self._announced: dict[str, float] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def ensure(self, key: Key, host: str, request: pb.CommitRequest) -> asyncio.Task[CommitOutcome]:
        """The task running ``request`` (started now if there is none)."""
        task = self._tasks.get(request.request_id)
        if task is None:
            request_id = request.request_id
            task = asyncio.create_task(
                self.client.commit(
                    host,
                    request,
                    deadline=self.deadline,
                    on_progress=lambda p: self._report(key, request_id, p),
                ),
                name=f"commit {request_id}",
            )
            task.add_done_callback(lambda _t: self.on_done(key))
            self._tasks[request.request_id] = task
            log.info("commit %s of %s/%s on %s", request.request_id, *key, host)
        return task

    def progress(self, request_id: str) -> Progress | None:
        """The latest progress report of ``request_id``'s call, if one came."""
        return self._progress.get(request_id)

    def _report(self, key: Key, request_id: str, report: pb.CommitProgress) -> None:
        new = Progress(report.step[:63], int(report.bytes_done), int(report.bytes_total))
        old = self._progress.get(request_id)
        self._progress[request_id] = new
        if old is None or old.step != new.step:
            self._announce(key, request_id)
            return
        if old == new or request_id in self._timers:
            return  # nothing new, or an announcement is already due
        now = asyncio.get_running_loop().time()
        wait = self._announced.get(request_id, -self.progress_interval) + self.progress_interval
        if now >= wait:
            self._announce(key, request_id)
        else:
            self._timers[request_id] = asyncio.get_running_loop().call_later(
                wait - now, self._announce, key, request_id
            )

    def _announce(self, key: Key, request_id: str) -> None:
        timer = self._timers.pop(request_id, None)
        if timer is not None:
            timer.cancel()
        self._announced[request_id] = asyncio.get_running_loop().time()
        self.on_done(key)

    def get(self, request_id: str) -> asyncio.Task[CommitOutcome] | None:
        """The task of ``request_id``, if this process runs or ran it."""
        return self._tasks.get(request_id)

    def forget(self, request_id: str) -> None:
        """Drop a finished (or abandoned: then cancelled) task."""
        task = self._tasks.pop(request_id, None)
        if task is not None and not task.done():
            task.cancel()
        self._drop_progress(request_id)

    def _drop_progress(self, request_id: str) -> None:
        self._progress.pop(request_id, None)
        self._announced.pop(request_id, None)
        timer = self._timers.pop(request_id, None)
        if timer is not None:
            timer.cancel()

    async def close(self) -> None:
        """Cancel every call (the node-shim carries on; a restart re-attaches)."""
        tasks = list(self._tasks.values())
        for request_id in list(self._tasks):
            self._drop_progress(request_id)
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
