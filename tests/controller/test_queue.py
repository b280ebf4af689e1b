"""The work queue de-duplicates, never runs one key twice at once, and backs off."""

from __future__ import annotations

import asyncio
import contextlib

from app.controller._queue import WorkQueue
from tests.fixtures.waiting import until


async def test_a_key_added_twice_is_processed_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    queue.add("a")
    queue.add("b")
    assert len(queue) == 2
    assert await queue.get() == "a"
    assert await queue.get() == "b"
    assert len(queue) == 0


async def test_the_same_key_never_runs_twice_at_once_and_is_not_lost() -> None:
    queue: WorkQueue[str] = WorkQueue()
    running: set[str] = set()
    overlaps = 0
    runs: list[str] = []

    async def handle(key: str) -> None:
        nonlocal overlaps
        if key in running:
            overlaps += 1
        running.add(key)
        runs.append(key)
        await asyncio.sleep(0.05)
        running.discard(key)

    task = asyncio.create_task(queue.run(4, handle))
    try:
        queue.add("a")
        await asyncio.sleep(0.01)
        queue.add("a")  # while "a" is processed: runs again afterwards, not in parallel
        queue.add("b")
        await until(lambda: len(runs) >= 3, within=2)
        await asyncio.sleep(0.1)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert overlaps == 0
    assert sorted(runs) == ["a", "a", "b"]


async def test_different_keys_run_in_parallel() -> None:
    queue: WorkQueue[int] = WorkQueue()
    started = asyncio.Event()
    concurrent = 0
    peak = 0

    async def handle(key: int) -> None:
        nonlocal concurrent, peak
        concurrent += 1
        peak = max(peak, concurrent)
        await asyncio.sleep(0.05)
        concurrent -= 1
        started.set()

    for key in range(8):
        queue.add(key)
    task = asyncio.create_task(queue.run(4, handle))
    await asyncio.sleep(0.2)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert peak == 4


async def test_rate_limited_adds_back_off_exponentially_until_forgotten() -> None:
    queue: WorkQueue[str] = WorkQueue(base_delay=0.1, max_delay=1.0)
    delays = [queue.add_rate_limited("k") for _ in range(6)]
    assert 0.05 <= delays[0] <= 0.1
    assert 0.1 <= delays[1] <= 0.2
    assert 0.5 <= delays[5] <= 1.0  # capped
    assert queue.failures("k") == 6
    queue.forget("k")
    assert queue.failures("k") == 0
    queue.shutdown()


async def test_add_after_requeues_later_and_the_earliest_time_wins() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add_after("k", 5.0)
    queue.add_after("k", 0.05)
    queue.add_after("k", 3.0)
    async with asyncio.timeout(1):
        assert await queue.get() == "k"
    queue.shutdown()
