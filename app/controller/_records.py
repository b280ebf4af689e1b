"""Rules over a devbox's commit records: restarts and restores pending, interrupted calls,
failure codes, the progress of the commit in flight, and trimming the history to
``MAX_COMMITS``."""

from __future__ import annotations

import asyncio
from datetime import datetime

from app.controller._base import ABANDON_ANNOTATION, RESTART_ANNOTATION
from app.controller._commits import CommitTracker
from app.nodeshim_client import CommitOutcome, NodeShimError
from app.resources import (
    MAX_COMMITS,
    Commit,
    CommitMode,
    CommitProgress,
    CommitStatus,
    Devbox,
    DevboxStatus,
)

_IN_FLIGHT = (CommitStatus.PENDING, CommitStatus.COMMITTING)


def restart_pending(devbox: Devbox, status: DevboxStatus) -> bool:
    """Whether a restart was asked for that no successful stop commit has served yet."""
    raw = (devbox.metadata.annotations or {}).get(RESTART_ANNOTATION)
    if not raw:
        return False
    try:
        asked = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return False
    if asked.tzinfo is None:
        return False
    return not any(
        c.mode == CommitMode.STOP
        and c.status == CommitStatus.SUCCEEDED
        and c.started_at is not None
        and c.started_at >= asked
        for c in status.commits
    )


def interrupted(task: asyncio.Task[CommitOutcome]) -> bool:
    """Whether a finished commit call ended by a temporary error (the node-shim may still be
    committing under its request id): re-attach, never start another commit."""
    if task.cancelled():
        return True
    exc = task.exception()
    return isinstance(exc, NodeShimError) and exc.temporary


def pending_restore(devbox: Devbox, status: DevboxStatus) -> str | None:
    """The commit id ``spec.restoreCommit`` asks for, unless that restore was applied: the
    newest ``Restore`` record in the status says which one was (level-based)."""
    wanted = devbox.spec.restore_commit
    if not wanted:
        return None
    last = last_restore(status.commits)
    if last is not None and last.restored_from == wanted:
        return None
    return wanted


def last_restore(commits: list[Commit]) -> Commit | None:
    return next((c for c in reversed(commits) if c.mode == CommitMode.RESTORE), None)


def publish_progress(status: DevboxStatus, tracker: CommitTracker, now: datetime) -> float | None:
    """Copy the latest progress of the commit in flight into its record; drop it from every
    finished record.  Within a step, the record's progress changes at most once per
    ``tracker.progress_interval`` (by its ``updatedAt``): a newer report held back returns the
    seconds until it may be written, so the reconciler looks again then.  A report that
    matches the record changes nothing, so a steady commit makes no writes."""
    wait: float | None = None
    for record in status.commits:
        if record.status not in _IN_FLIGHT:
            record.progress = None
            continue
        latest = tracker.progress(record.request_id or record.id)
        if latest is None:
            continue
        shown = record.progress
        if shown is not None and (shown.step, shown.bytes_done, shown.bytes_total) == (
            latest.step,
            latest.bytes_done,
            latest.bytes_total,
        ):
            continue
        if shown is not None and shown.step == latest.step:
            left = tracker.progress_interval - (now - shown.updated_at).total_seconds()
            if left > 0:
                wait = left if wait is None else min(wait, left)
                continue
        record.progress = CommitProgress(
            step=latest.step,
            bytes_done=latest.bytes_done,
            bytes_total=latest.bytes_total,
            updated_at=now,
        )
    return wait


def failure_code(reason: str | None) -> str:
    """A low-cardinality label for a commit failure."""
    text = reason or ""
    if text.startswith("abandoned"):
        return "Abandoned"
    if "pod was gone" in text:
        return "PodGone"
    for code in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL", "UNAUTHENTICATED", "NOT_FOUND"):
        if code in text:
            return code
    return "Other"


def trim(commits: list[Commit]) -> list[Commit]:
    """At most MAX_COMMITS records: the oldest failed ones go first, then the oldest; the
    newest ``Restore`` record stays (it says the restore asked for was applied)."""
    while len(commits) > MAX_COMMITS:
        keep = last_restore(commits)
        failed = next((c for c in commits if c.status == CommitStatus.FAILED), None)
        oldest = next(c for c in commits if c is not keep)
        commits.remove(failed if failed is not None else oldest)
    return commits


def abandon_asked(devbox: Devbox) -> bool:
    return (devbox.metadata.annotations or {}).get(ABANDON_ANNOTATION) == "true"
