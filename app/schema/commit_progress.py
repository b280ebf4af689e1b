"""The ``commitProgress(devbox)`` subscription: how far the devbox's commit in flight is.

The controller copies the node-shim's progress reports into the record of the commit in flight
(``status.commits[].progress``, at each new step and else every few seconds), so this reads
nothing but the devbox: it rides on the read cache's one watch per process, like
``devboxChanged``, with the same rules (the viewer's namespace only; a devbox elsewhere is
``NOT_FOUND``, exactly like a missing one; a slow subscriber is ended with
``SUBSCRIPTION_ENDED``).  A subscriber first gets the current progress, if a commit is in
flight, then one event per change of it; when that commit ends, one last event with its
outcome and no progress.  It follows every commit of the devbox (stops and snapshots) and ends
cleanly after the devbox's deletion.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass

import strawberry

from app.apicache import Aspect, Change, SubscriptionEnded
from app.kubeclient import DEVBOXES
from app.resources import Commit, CommitStatus, Devbox
from app.schema.common import ObjectNotFound, SubscriptionClosed, read_cache, subscription
from app.schema.context import Info, require_viewer
from app.schema.devboxes import CommitNode, CommitProgressNode

_IN_FLIGHT = (CommitStatus.PENDING, CommitStatus.COMMITTING)


@strawberry.type(description="Progress of a devbox's commit, or its end.")
class CommitProgressEvent:
    commit: CommitNode = strawberry.field(
        description="The commit as it is now: its id, mode, image and status."
    )
    progress: CommitProgressNode | None = strawberry.field(
        description="How far it is; null in the last event of a commit, once it ended "
        "(commit.status says how)."
    )


def _in_flight(devbox: Devbox) -> Commit | None:
    return next((c for c in reversed(devbox.status.commits) if c.status in _IN_FLIGHT), None)


def _event(commit: Commit, memo: dict[str, object] | None) -> CommitProgressEvent:
    """The event of ``commit`` as it is; built once per change when ``memo`` is the change's
    (shared by every subscriber: the schema only reads it)."""
    key = f"commitProgress:{commit.id}"
    found = memo.get(key) if memo is not None else None
    if isinstance(found, CommitProgressEvent):
        return found
    event = CommitProgressEvent(
        commit=CommitNode.of(commit),
        progress=CommitProgressNode.of(commit.progress) if commit.progress else None,
    )
    if memo is not None:
        memo[key] = event
    return event


@dataclass
class _Follower:
    """One subscriber's view: the commit it reports on and the progress it last sent."""

    commit_id: str | None = None
    sent: tuple[str, int, int] | None = None

    def events(self, devbox: Devbox, memo: dict[str, object] | None) -> list[CommitProgressEvent]:
        found: list[CommitProgressEvent] = []
        record = _in_flight(devbox)
        if self.commit_id is not None and (record is None or record.id != self.commit_id):
            ended = next((c for c in devbox.status.commits if c.id == self.commit_id), None)
            if ended is not None:
                found.append(_event(ended, memo))
            self.commit_id, self.sent = None, None
        if record is not None and self.commit_id is None:
            self.commit_id = record.id  # its end is reported even if no progress came first
        if record is not None and record.progress is not None:
            now = (record.progress.step, record.progress.bytes_done, record.progress.bytes_total)
            if (record.id, now) != (self.commit_id, self.sent):
                self.commit_id, self.sent = record.id, now
                found.append(_event(record, memo))
        return found


@strawberry.type
class CommitProgressSubscription:
    """Live progress of commits."""

    @subscription(
        description="Progress of the devbox's commits (stop and snapshot): the current one "
        "first, then each change, and a last event when a commit ends; ends after the "
        "devbox's deletion."
    )
    async def commit_progress(
        self, info: Info, devbox: str
    ) -> AsyncGenerator[CommitProgressEvent, None]:
        viewer = require_viewer(info)
        cache = read_cache(info)
        current = cache.devbox(viewer.namespace, devbox)
        if current is None:
            raise ObjectNotFound(f"There is no devbox named {devbox[:63]!r} in your namespace.")
        sub = cache.subscribe(DEVBOXES, viewer.namespace, devbox)
        follower = _Follower()
        try:
            for event in follower.events(current, None):
                yield event
            async for change in sub:
                if change.type == "DELETED":
                    return
                if not _touches_commits(change):
                    continue
                for event in follower.events(change.object, change.memo):
                    yield event
        except SubscriptionEnded as exc:
            raise SubscriptionClosed(str(exc)) from exc
        finally:
            sub.end()


def _touches_commits(change: Change[Devbox]) -> bool:
    return change.type == "ADDED" or Aspect.COMMITS in change.changed
