"""Snapshots of a running devbox: when the next one is due, its record, and its outcome.

A devbox with ``spec.snapshotIntervalSeconds > 0`` that is Running gets a commit in mode
``Snapshot`` (the node-shim pauses the container, diffs it and resumes it: the container keeps
running) every interval, so a lost node costs at most one interval of work.  The record goes
through ``Pending → Committing → Succeeded/Failed`` in ``status.commits`` like a stop commit
(the reconciler writes it before calling the node-shim, so a restarted controller re-attaches
by request id); a successful snapshot becomes the devbox's current image.

When is one due?  One interval after the latest of: the start of the last successful commit
of any mode (what it captured is safe), the last time the devbox became Ready (it then runs
exactly its current image: nothing to save yet), and the start of the last *failed* snapshot
(a failure is retried at the next interval, not at once, and never stops the devbox).  No
snapshot starts while another commit of the devbox is in flight.  The reconciler asks to be
queued again when the next one is due, so a steady devbox between snapshots makes no writes.

Pure functions on the status model: no API calls here.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from app.controller import _status as st
from app.nodeshim_client import CommitOutcome
from app.resources import (
    Commit,
    CommitMode,
    CommitStatus,
    ConditionStatus,
    Devbox,
    DevboxPhase,
    DevboxState,
    DevboxStatus,
)


def due_in(devbox: Devbox, status: DevboxStatus, now: datetime) -> float | None:
    """Seconds until the next snapshot (0: now), or None when none is wanted."""
    interval = devbox.spec.snapshot_interval_seconds
    if not interval or devbox.spec.state != DevboxState.RUNNING:
        return None
    ready = st.condition(status, st.READY)
    if status.phase != DevboxPhase.RUNNING or ready is None:
        return None
    if ready.status != ConditionStatus.TRUE or st.in_flight(status) is not None:
        return None
    marks: list[datetime | None] = [ready.last_transition_time]
    for record in status.commits:
        counts = record.status == CommitStatus.SUCCEEDED or (
            record.mode == CommitMode.SNAPSHOT and record.status == CommitStatus.FAILED
        )
        if counts:
            marks.append(record.started_at or record.finished_at)
    known = [mark for mark in marks if mark is not None]
    since = max(known) if known else now
    return max(0.0, interval - (now - since).total_seconds())


def new_record(devbox: Devbox, pod_uid: str, registry: str) -> Commit:
    """A ``Pending`` snapshot record of the pod ``pod_uid``."""
    commit_id = f"s{st.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
    return Commit(
        id=commit_id,
        mode=CommitMode.SNAPSHOT,
        image=f"{registry}/{devbox.namespace}/{devbox.name}:{commit_id}",
        request_id=f"{pod_uid}:{commit_id}",
        status=CommitStatus.PENDING,
    )


def succeeded(devbox: Devbox, status: DevboxStatus, record: Commit, outcome: CommitOutcome) -> None:
    """Record a successful snapshot; its image becomes current."""
    st.record_success(status, record, outcome)
    st.set_condition(
        status,
        st.COMMITTED,
        ConditionStatus.TRUE,
        "SnapshotSucceeded",
        f"snapshot saved to {record.image} ({outcome.size_bytes} bytes, {outcome.layers} layers)",
        devbox.metadata.generation,
    )


def failed(devbox: Devbox, status: DevboxStatus, record: Commit, reason: str) -> None:
    """Record a failed snapshot; the devbox keeps running and the next interval retries."""
    record.status = CommitStatus.FAILED
    record.reason = reason[:32768]
    record.finished_at = st.now()
    interval = devbox.spec.snapshot_interval_seconds
    retry = f"; retried in {interval}s" if interval else ""
    st.set_condition(
        status,
        st.COMMITTED,
        ConditionStatus.FALSE,
        "SnapshotFailed",
        f"snapshot {record.id} failed: {reason}; the devbox keeps running{retry}",
        devbox.metadata.generation,
    )
