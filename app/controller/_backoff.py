"""When a failed stop commit may be retried, derived from status alone (pure).

The delay after ``n`` consecutive ``Failed`` stop records of the pod being stopped is
``min(base * 2**(n-1), cap)`` times a jitter in ``[0.8, 1.0]`` seeded by the last failed
record's id, counted from that record's ``finishedAt``.  Nothing lives in memory, so a restarted
controller (or another replica) waits exactly what the stored history implies, and every
reconcile computes the same retry time.

Consecutive means: walking back over the ``Stop`` records of the current pod, stop at the first
one that did not fail, or whose failure was abandoned by the user.  ``Snapshot`` and
``Restore`` records are skipped; records of another pod end the run (a new pod starts from
zero).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime

from app.resources import Commit, CommitMode, CommitStatus, DevboxStatus

JITTER_LOW = 0.8
"""The smallest fraction of the nominal delay the jitter leaves."""


@dataclass(frozen=True)
class StopFailures:
    """The run of consecutive failed stop commits of one pod."""

    count: int
    last: Commit | None


def stop_failures(status: DevboxStatus, pod_uid: str) -> StopFailures:
    """The consecutive ``Failed`` stop records of pod ``pod_uid``, newest first."""
    count = 0
    last: Commit | None = None
    for record in reversed(status.commits):
        if record.mode != CommitMode.STOP:
            continue
        if not (record.request_id or "").startswith(pod_uid + ":"):
            break
        if record.status != CommitStatus.FAILED or (record.reason or "").startswith("abandoned"):
            break
        if last is None:
            last = record
        count += 1
    return StopFailures(count, last)


def delay(failures: int, base: float, cap: float, seed: str) -> float:
    """Seconds to wait after ``failures`` consecutive failures (0 when there were none)."""
    if failures <= 0:
        return 0.0
    nominal = min(base * 2.0 ** (failures - 1), cap)
    return nominal * random.Random(seed).uniform(JITTER_LOW, 1.0)


def stop_retry_in(
    status: DevboxStatus, pod_uid: str, base: float, cap: float, now: datetime
) -> float | None:
    """Seconds until the next stop commit of pod ``pod_uid`` may start, or None (now)."""
    failures = stop_failures(status, pod_uid)
    if failures.last is None or failures.last.finished_at is None:
        return None
    wait = delay(failures.count, base, cap, failures.last.id)
    remaining = (failures.last.finished_at - now).total_seconds() + wait
    return remaining if remaining > 0 else None
