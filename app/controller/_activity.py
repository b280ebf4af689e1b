"""A running devbox seen through its node-shim: open SSH connections and the writable layer.

Idle auto-stop must see SSH straight to the node port, which never passes the API server's
tunnel.  For a Running devbox with ``spec.autoStop.idleTimeoutSeconds``, the reconciler asks
the node-shim on the pod's node (``ContainerActivity``) for the ESTABLISHED connections on the
container's SSH port at most once per ``activity_interval`` — and once more just before an idle
stop — and connections > 0 set ``status.lastActivityTime`` to now (at most once per interval,
like the tunnel).

Every ``storage_interval`` (any Running devbox) it also reads the writable layer's size (costly
for the node: containerd walks the layer) and sets the condition ``StorageWithinLimit``: False
(``StorageExceeded``) above ``spec.resources.storage`` — pods request that storage but have no
limit, since a kubelet eviction would delete the container and its uncommitted changes — True
otherwise.  It is changed only when its status changes: a steady devbox makes no writes.

Checks are scheduled through the reconcile's requeue delay; the first comes one interval after
the controller first sees the pod (a fresh pod has nothing to report).  A call runs in a task
of its own, never in a reconcile worker (a node that does not answer would hold one for the
call's deadline); its answer queues the devbox, and the next reconcile notes it.  Before an
idle stop the reconciler waits for the answer of the call in flight.  A node-shim that cannot
be reached (the simulated cluster has none) is logged at debug and asked again one interval
later; nothing is written.  Status edits are in memory; the reconciler writes the status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from devbox_node_shim.api import nodeshim_pb2 as pb

from app.controller import _children as children
from app.controller import _pods as pods
from app.controller import _status as st
from app.kubeclient import JSON
from app.nodeshim_client import NodeShimClient, NodeShimError
from app.quantity import QuantityError, parse_quantity
from app.resources import ConditionStatus, Devbox, DevboxPhase, DevboxState, DevboxStatus

log = logging.getLogger(__name__)

STORAGE = "StorageWithinLimit"
"""Condition: whether the writable layer fits in ``spec.resources.storage``."""
CALL_DEADLINE = 5.0
"""Seconds an activity call may take (a node-shim that does not answer holds a worker)."""

Key = tuple[str, str]


@dataclass
class _Answer:
    """What a call in its own task brought back, for the next reconcile to note."""

    pod_uid: str
    activity: bool
    storage: bool
    response: pb.ContainerActivityResponse | None
    """None: the call failed (the node-shim is down, too old, or has no hostPID)."""


@dataclass
class _Due:
    """When one devbox's pod is next asked about (monotonic seconds)."""

    pod_uid: str
    activity_at: float
    storage_at: float


def ssh_port(pod: JSON) -> int:
    """The container port named ``ssh`` in the pod's spec (0: none)."""
    for container in (pod.get("spec") or {}).get("containers") or []:
        if container.get("name") != children.CONTAINER:
            continue
        for port in container.get("ports") or []:
            if port.get("name") == "ssh":
                return int(port.get("containerPort") or 0)
    return 0


def idle_timeout(devbox: Devbox) -> int:
    auto = devbox.spec.auto_stop
    return int(auto.idle_timeout_seconds) if auto is not None else 0


def note_connections(
    devbox: Devbox, status: DevboxStatus, connections: int, now: datetime, interval: float
) -> None:
    """Open connections are activity: ``lastActivityTime`` becomes now, unless it was set less
    than an interval ago (or, for a shorter idle timeout, less than that timeout ago)."""
    if connections <= 0:
        return
    last = status.last_activity_time
    every = min(interval, idle_timeout(devbox) or interval)
    if last is None or (now - last).total_seconds() >= every:
        status.last_activity_time = st.whole_seconds(now)


def _size(n: Decimal | int) -> str:
    value = Decimal(n)
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value} bytes"


def note_storage(devbox: Devbox, status: DevboxStatus, used: int) -> None:
    """Set ``StorageWithinLimit`` from the writable layer's size, if its status changes."""
    reserved_text = devbox.spec.resources.storage
    try:
        reserved = parse_quantity(reserved_text)
    except QuantityError:
        return  # the API refuses these; nothing sensible to compare with
    exceeded = used > reserved
    value = ConditionStatus.FALSE if exceeded else ConditionStatus.TRUE
    existing = st.condition(status, STORAGE)
    if existing is not None and existing.status == value:
        return  # only a change is written: the size itself moves all the time
    if exceeded:
        reason = "StorageExceeded"
        message = (
            f"the devbox's files use {_size(used)}, more than the {reserved_text} reserved "
            "(spec.resources.storage): the node may run out of disk, and commits take longer "
            "the more there is to save. Delete files you do not need, or raise "
            "resources.storage (applies at the next start)"
        )
    else:
        reason = "WithinLimit"
        message = f"the devbox's files use {_size(used)} of the {reserved_text} reserved"
    st.set_condition(status, STORAGE, value, reason, message, devbox.metadata.generation)


class ActivityWatch:
    """Asks node-shims about running devboxes, each at most once per interval."""

    def __init__(
        self,
        client: NodeShimClient,
        intervals: Callable[[], tuple[float, float]],
        on_answer: Callable[[Key], None],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.intervals = intervals
        """``(activity, storage)`` intervals in seconds, read at every look."""
        self.on_answer = on_answer
        """Queues the devbox once a call ended (its answer is noted by the next reconcile)."""
        self.clock = clock
        self._due: dict[Key, _Due] = {}
        self._asking: dict[Key, asyncio.Task[None]] = {}
        self._asking_activity: set[Key] = set()
        self._answers: dict[Key, _Answer] = {}

    def forget(self, key: Key) -> None:
        self._due.pop(key, None)
        self._answers.pop(key, None)
        self._asking_activity.discard(key)
        task = self._asking.pop(key, None)
        if task is not None:
            task.cancel()

    def asking(self, key: Key) -> bool:
        """Whether a call about ``key``'s connections is in flight (an idle stop waits for its
        answer)."""
        return key in self._asking_activity

    async def close(self) -> None:
        """Cancel the calls in flight."""
        tasks = list(self._asking.values())
        self._asking.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def watch(
        self,
        key: Key,
        devbox: Devbox,
        status: DevboxStatus,
        pod: JSON | None,
        host: str | None,
        *,
        urgent: bool = False,
    ) -> float | None:
        """Ask the pod's node-shim what is due (``urgent``: the activity now, an idle stop is
        about to happen) and note the answer in ``status``; seconds until the next look."""
        container = pods.container_id(pod) if pod is not None else None
        if (
            pod is None
            or container is None
            or pods.terminating(pod)
            or devbox.spec.state != DevboxState.RUNNING
            or status.phase != DevboxPhase.RUNNING
        ):
            self.forget(key)
            return None
        activity_every, storage_every = self.intervals()
        now = self.clock()
        uid = str((pod.get("metadata") or {}).get("uid"))
        due = self._due.get(key)
        if due is None or due.pod_uid != uid:
            due = _Due(uid, now + activity_every, now + storage_every)
            self._due[key] = due
        idle = idle_timeout(devbox) > 0
        fresh = False  # an activity answer noted just now: an urgent look needs no other
        answer = self._answers.pop(key, None)
        if answer is not None and answer.pod_uid == uid:
            # A failed call counts as asked: an idle stop then goes by the tunnel's evidence
            # instead of asking again and again (and never stopping).
            fresh = answer.activity
            response = answer.response
            if response is not None and answer.activity:
                note_connections(devbox, status, response.connections, st.now(), activity_every)
            if response is not None and answer.storage and response.running:
                note_storage(devbox, status, int(response.writable_bytes))
        if key not in self._asking:
            # Not again right after an answer: the reconciler acts on that one first.
            ask_activity = idle and not fresh and (urgent or now >= due.activity_at)
            ask_storage = now >= due.storage_at
            if ask_activity:
                due.activity_at = now + activity_every
            if ask_storage:
                due.storage_at = now + storage_every
            if (ask_activity or ask_storage) and host:
                if ask_activity:
                    self._asking_activity.add(key)
                self._asking[key] = asyncio.create_task(
                    self._ask(key, uid, host, container, pod, ask_activity, ask_storage),
                    name=f"activity {key[0]}/{key[1]}",
                )
        if key in self._asking:
            return None  # its answer queues the devbox
        waits = [due.storage_at - now] + ([due.activity_at - now] if idle else [])
        return max(0.0, min(waits))

    async def _ask(
        self,
        key: Key,
        pod_uid: str,
        host: str,
        container: str,
        pod: JSON,
        ask_activity: bool,
        ask_storage: bool,
    ) -> None:
        port = ssh_port(pod) if ask_activity else 0
        response: pb.ContainerActivityResponse | None = None
        try:
            response = await self.client.activity(
                host, container, port, writable_bytes=ask_storage, deadline=CALL_DEADLINE
            )
        except NodeShimError as exc:
            log.debug("%s/%s: no activity from the node-shim on %s: %s", *key, host, exc)
        finally:
            if self._asking.get(key) is asyncio.current_task():
                del self._asking[key]
                self._asking_activity.discard(key)
        self._answers[key] = _Answer(pod_uid, ask_activity, ask_storage, response)
        self.on_answer(key)
