"""Helpers that edit a Devbox status model in memory (no API calls)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from app.resources import Commit, CommitStatus, Condition, ConditionStatus, DevboxStatus

if TYPE_CHECKING:
    from app.nodeshim_client import CommitOutcome

READY = "Ready"
"""Condition: the devbox runs and accepts SSH; its reason says why not."""
AUTO_STOPPED = "AutoStopped"
"""Condition: the controller stopped the devbox by itself (schedule or idle timeout)."""
COMMITTED = "Committed"
"""Condition: the outcome of the last commit (a failed commit says why)."""
RESTORED = "Restored"
"""Condition: whether ``spec.restoreCommit`` was applied (a restore not applied says why)."""
SPEC_APPLIED = "SpecApplied"
"""Condition: whether the running pod has the spec's env, resources and runtime settings
(changed ones apply at the next start: ``RestartRequired`` says which)."""


def now() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


def whole_seconds(value: datetime) -> datetime:
    """``value`` without sub-second precision (as Kubernetes stores condition times)."""
    return value.replace(microsecond=0)


def set_condition(
    status: DevboxStatus,
    kind: str,
    value: ConditionStatus,
    reason: str,
    message: str,
    generation: int | None,
) -> None:
    """Set a condition; its transition time changes only when its status does."""
    existing = next((c for c in status.conditions if c.type == kind), None)
    if existing is not None and existing.status == value:
        transition = existing.last_transition_time
    else:
        transition = whole_seconds(now())
    condition = Condition(
        type=kind,
        status=value,
        reason=reason,
        message=message,
        last_transition_time=transition,
        observed_generation=generation,
    )
    status.conditions = [c for c in status.conditions if c.type != kind] + [condition]
    status.conditions.sort(key=lambda c: c.type)


def condition(status: DevboxStatus, kind: str) -> Condition | None:
    """The condition of type ``kind``, if set."""
    return next((c for c in status.conditions if c.type == kind), None)


def in_flight(status: DevboxStatus) -> Commit | None:
    """The commit that is ``Pending`` or ``Committing``, if any."""
    return next(
        (
            c
            for c in reversed(status.commits)
            if c.status in (CommitStatus.PENDING, CommitStatus.COMMITTING)
        ),
        None,
    )


def last_succeeded(status: DevboxStatus) -> Commit | None:
    """The newest successful commit."""
    return next((c for c in reversed(status.commits) if c.status == CommitStatus.SUCCEEDED), None)


def current_image(status: DevboxStatus, fallback: str | None) -> str | None:
    """The image the devbox's pod runs: the newest successful record (a ``Restore`` record
    is one, so after a restore it is the restored image), else ``fallback``."""
    saved = last_succeeded(status)
    return saved.image if saved is not None else fallback


def dump(status: DevboxStatus) -> dict[str, Any]:
    """The status as the API stores it."""
    return status.model_dump(by_alias=True, exclude_none=True, mode="json")


def record_success(status: DevboxStatus, record: Commit, outcome: CommitOutcome) -> None:
    """Mark a commit record Succeeded with the node-shim's result; its image becomes current."""
    record.status = CommitStatus.SUCCEEDED
    record.image = outcome.image or record.image
    record.digest = outcome.digest or None
    record.size_bytes = outcome.size_bytes
    record.layers = outcome.layers
    record.finished_at = now()
    record.reason = None
    status.image = record.image
