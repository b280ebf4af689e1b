"""Waiting for a devbox to reach a phase, with progress, fed by ``devboxChanged``.

The subscription is opened *before* the mutation is sent, so no change is missed; the current
state is also re-read every few seconds (and right after the mutation), so a subscription that
the server registered late, or that dropped, cannot make the wait hang.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from rich.console import Console

from app.client import _documents as docs
from app.client._errors import ClientError, NotFound, OperationFailed, Timeout
from app.client._graphql import JSON, GraphQLClient

RECHECK_SECONDS = 3.0


def describe(devbox: JSON) -> str:
    """One line about where a devbox is: phase, latest commit, the Ready condition."""
    parts = [str(devbox.get("phase", "?")).capitalize()]
    commits = ((devbox.get("commits") or {}).get("edges")) or []
    if commits:
        commit = commits[0]["node"]
        parts.append(f"commit {commit['id']} {str(commit['status']).lower()}")
    for condition in devbox.get("conditions") or []:
        if condition.get("type") == "Ready" and condition.get("message"):
            parts.append(str(condition["message"]))
    return " · ".join(parts)


class PhaseGoal:
    """Done once the devbox is in ``phase`` (after leaving it first, with ``via_other``)."""

    def __init__(self, phase: str, *, via_other: bool = False) -> None:
        self.phase = phase
        self.left = not via_other

    def reached(self, devbox: JSON | None) -> bool:
        if devbox is None:
            raise NotFound("the devbox no longer exists")
        phase = devbox.get("phase")
        if phase == "FAILED" and self.phase != "FAILED":
            raise OperationFailed(f"{devbox['name']} failed: {describe(devbox)}")
        if phase != self.phase:
            self.left = True
            return False
        return self.left


class GoneGoal:
    """Done once the devbox no longer exists."""

    def reached(self, devbox: JSON | None) -> bool:
        return devbox is None


async def _pump(events: AsyncIterator[JSON], queue: asyncio.Queue[JSON | ClientError]) -> None:
    try:
        async for data in events:
            await queue.put(data)
    except ClientError as exc:
        await queue.put(exc)


async def act_and_wait(
    client: GraphQLClient,
    name: str,
    act: Callable[[], Any],
    goal: PhaseGoal | GoneGoal,
    *,
    within: float,
    console: Console | None,
) -> JSON | None:
    """Run ``act()`` (a coroutine function sending the mutation) and wait for ``goal``;
    the devbox as last seen (None once deleted)."""
    async with client.subscription(docs.CHANGED, {"name": name}) as events:
        queue: asyncio.Queue[JSON | ClientError] = asyncio.Queue()
        pump = asyncio.create_task(_pump(events, queue))
        try:
            await act()
            return await _wait(client, name, goal, queue, within, console)
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump


async def _current(client: GraphQLClient, name: str) -> JSON | None:
    found: JSON | None = (await client.execute(docs.DEVBOX, {"name": name}))["devbox"]
    return found


async def _wait(
    client: GraphQLClient,
    name: str,
    goal: PhaseGoal | GoneGoal,
    queue: asyncio.Queue[JSON | ClientError],
    within: float,
    console: Console | None,
) -> JSON | None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    shown = ""
    devbox = await _current(client, name)
    status = console.status(f"{name}: waiting") if console is not None else None
    with status or contextlib.nullcontext():
        while True:
            if devbox is not None and console is not None:
                line = describe(devbox)
                if line != shown:
                    console.print(f"[dim]{name}:[/dim] {line}")
                    shown = line
            if goal.reached(devbox):
                return devbox
            left = deadline - loop.time()
            if left <= 0:
                raise Timeout(f"{name} did not get there within {within:g}s ({shown or '?'})")
            try:
                item = await asyncio.wait_for(queue.get(), min(left, RECHECK_SECONDS))
            except TimeoutError:
                devbox = await _current(client, name)
                continue
            if isinstance(item, ClientError):
                devbox = await _current(client, name)  # the subscription ended: poll on
                continue
            event = item.get("devboxChanged") or {}
            devbox = None if event.get("type") == "DELETED" else event.get("devbox")
