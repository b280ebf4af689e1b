"""Commits in flight: one background task per node-shim request id.

A stop commit can take minutes; it must not hold a reconcile worker.  The reconciler writes
the commit record (with its request id) first, then asks this tracker to run the call; when
the call ends, the tracker queues the devbox again and the next reconcile records the outcome.
After a controller restart the reconciler finds the record still ``Pending``/``Committing`` and
calls :meth:`ensure` with the same request id: the node-shim attaches to the commit it is
already running instead of starting a second one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from devbox_node_shim.api import nodeshim_pb2 as pb

from app.nodeshim_client import CommitOutcome, NodeShimClient

log = logging.getLogger(__name__)

Key = tuple[str, str]


class CommitTracker:
    """Runs node-shim commits in the background and reports their ends."""

    def __init__(
        self, client: NodeShimClient, on_done: Callable[[Key], None], *, deadline: float
    ) -> None:
        self.client = client
        self.on_done = on_done
        self.deadline = deadline
        self._tasks: dict[str, asyncio.Task[CommitOutcome]] = {}

    def ensure(self, key: Key, host: str, request: pb.CommitRequest) -> asyncio.Task[CommitOutcome]:
        """The task running ``request`` (started now if there is none)."""
        task = self._tasks.get(request.request_id)
        if task is None:
            task = asyncio.create_task(
                self.client.commit(host, request, deadline=self.deadline),
                name=f"commit {request.request_id}",
            )
            task.add_done_callback(lambda _t: self.on_done(key))
            self._tasks[request.request_id] = task
            log.info("commit %s of %s/%s on %s", request.request_id, *key, host)
        return task

    def get(self, request_id: str) -> asyncio.Task[CommitOutcome] | None:
        """The task of ``request_id``, if this process runs or ran it."""
        return self._tasks.get(request_id)

    def forget(self, request_id: str) -> None:
        """Drop a finished (or abandoned: then cancelled) task."""
        task = self._tasks.pop(request_id, None)
        if task is not None and not task.done():
            task.cancel()

    async def close(self) -> None:
        """Cancel every call (the node-shim carries on; a restart re-attaches)."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
