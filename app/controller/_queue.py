"""A rate-limited work queue of keys, as controller-runtime's.

- A key added while queued is queued once (de-duplication).
- A key added while a worker processes it is queued again only after that worker is done:
  the same key is never processed twice at once; different keys run in parallel.
- ``add_after(key, seconds)`` re-adds later (the earliest pending time wins);
  ``add_rate_limited(key)`` re-adds after an exponential backoff with jitter that grows with
  each failure of that key until ``forget(key)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    """De-duplicating queue with delayed and rate-limited adds."""

    def __init__(self, *, base_delay: float = 0.05, max_delay: float = 60.0) -> None:
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._queue: asyncio.Queue[K] = asyncio.Queue()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._failures: dict[K, int] = {}
        self._timers: dict[K, tuple[float, asyncio.TimerHandle]] = {}

    def __len__(self) -> int:
        """Keys waiting to be processed (the queue depth)."""
        return len(self._dirty)

    def add(self, key: K) -> None:
        """Queue ``key`` now."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer[1].cancel()
        if key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.put_nowait(key)

    def add_after(self, key: K, seconds: float) -> None:
        """Queue ``key`` after ``seconds`` (an earlier pending add wins)."""
        if seconds <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + seconds
        pending = self._timers.get(key)
        if pending is not None:
            if pending[0] <= when:
                return
            pending[1].cancel()
        self._timers[key] = (when, loop.call_at(when, self._fire, key))

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def backoff(self, key: K) -> float:
        """The delay the next ``add_rate_limited(key)`` will use."""
        failures = self._failures.get(key, 0)
        delay = min(self.base_delay * float(1 << min(failures, 30)), self.max_delay)
        return delay * random.uniform(0.5, 1.0)

    def add_rate_limited(self, key: K) -> float:
        """Queue ``key`` after its backoff, and grow the backoff; returns the delay."""
        delay = self.backoff(key)
        self._failures[key] = self._failures.get(key, 0) + 1
        self.add_after(key, delay)
        return delay

    def failures(self, key: K) -> int:
        """How many rate-limited adds ``key`` had since it was last forgotten."""
        return self._failures.get(key, 0)

    def forget(self, key: K) -> None:
        """Reset ``key``'s backoff (it succeeded)."""
        self._failures.pop(key, None)

    async def get(self) -> K:
        """The next key to process; call :meth:`done` with it afterwards."""
        key = await self._queue.get()
        self._dirty.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: K) -> None:
        """Finished processing ``key``; queue it again if it was added meanwhile."""
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.put_nowait(key)

    def shutdown(self) -> None:
        """Cancel pending delayed adds."""
        for _, timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    async def run(self, workers: int, handle: Callable[[K], Awaitable[None]]) -> None:
        """Process keys with ``workers`` concurrent workers until cancelled.  ``handle``
        decides about re-adding; an exception it raises is logged and rate-limits the key."""

        async def worker() -> None:
            while True:
                key = await self.get()
                try:
                    await handle(key)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("processing %s failed", key)
                    self.add_rate_limited(key)
                finally:
                    self.done(key)

        tasks = [asyncio.create_task(worker(), name=f"worker-{i}") for i in range(workers)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self.shutdown()
