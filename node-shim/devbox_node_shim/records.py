"""Commit records on disk: what makes ``Commit`` idempotent across node-shim restarts.

The state directory holds, per request id (file name: the id's SHA-256)::

    commits/<sha>.json   a finished commit's result (kept; ListCommits reads them)
    running/<sha>.json   a commit under way (removed when it ends, whatever the outcome)

A ``running`` record left behind says the node-shim died mid-commit: at start-up the server
resumes that container's task if it is still paused and drops the record, so the same request
id can run again.  Files are written to a temporary name, flushed and renamed: a crash never
leaves half a record.  Failures are not recorded: a failed commit marked nothing as done, and a
repeat of its request id runs it again.  Finished records older than the retention (the
idempotency window, :data:`RETENTION`) are removed by :meth:`CommitStore.prune` (the server
calls it at start-up and every :data:`PRUNE_INTERVAL`).

Errors::

    RecordError        a record could not be written (``path`` names it)
     └── StateDirFull  no space left in the state directory
"""

from __future__ import annotations

import datetime
import errno
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RETENTION = datetime.timedelta(days=7)
"""Finished records older than this are pruned (a request id is idempotent this long)."""
PRUNE_INTERVAL = datetime.timedelta(hours=1)


class RecordError(Exception):
    """A commit record could not be written to the state directory."""

    def __init__(self, message: str, *, path: Path) -> None:
        super().__init__(message)
        self.path = path


class StateDirFull(RecordError):
    """The state directory's disk is full."""


@dataclass(frozen=True)
class FinishedCommit:
    """A successful commit, as stored."""

    request_id: str
    container_id: str
    image: str
    manifest_digest: str
    layers: list[tuple[str, int]]
    total_size: int
    step_seconds: dict[str, float]
    finished_at: str
    """RFC 3339."""


@dataclass(frozen=True)
class RunningCommit:
    """A commit under way."""

    request_id: str
    container_id: str
    image: str
    mode: str
    started_at: str
    pid: int = field(default_factory=os.getpid)


class CommitStore:
    """The records under ``state_dir``."""

    def __init__(self, state_dir: Path) -> None:
        self.finished_dir = state_dir / "commits"
        self.running_dir = state_dir / "running"
        self.finished_dir.mkdir(parents=True, exist_ok=True)
        self.running_dir.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _name(request_id: str) -> str:
        return hashlib.sha256(request_id.encode()).hexdigest() + ".json"

    def finished(self, request_id: str) -> FinishedCommit | None:
        """The stored result of ``request_id``, if it finished."""
        data = _read(self.finished_dir / self._name(request_id))
        return _finished(data) if data is not None else None

    def save_finished(self, record: FinishedCommit) -> None:
        _write(self.finished_dir / self._name(record.request_id), asdict(record))

    def all_finished(self) -> list[FinishedCommit]:
        records = []
        for path in self.finished_dir.glob("*.json"):
            data = _read(path)
            if data is not None:
                records.append(_finished(data))
        return records

    def prune(
        self, retention: datetime.timedelta = RETENTION, *, now: datetime.datetime | None = None
    ) -> int:
        """Delete finished records older than ``retention``; how many went."""
        limit = (now or datetime.datetime.now(datetime.UTC)) - retention
        pruned = 0
        for path in self.finished_dir.glob("*.json"):
            data = _read(path)
            finished_at = _timestamp(data.get("finished_at")) if data is not None else None
            if finished_at is None:
                # Unreadable, or no time: judge by the file's age.
                try:
                    finished_at = datetime.datetime.fromtimestamp(
                        path.stat().st_mtime, datetime.UTC
                    )
                except FileNotFoundError:
                    continue
            if finished_at < limit:
                path.unlink(missing_ok=True)
                pruned += 1
        return pruned

    def delete_finished(self, request_id: str) -> None:
        (self.finished_dir / self._name(request_id)).unlink(missing_ok=True)

    def start(self, record: RunningCommit) -> None:
        _write(self.running_dir / self._name(record.request_id), asdict(record))

    def end(self, request_id: str) -> None:
        (self.running_dir / self._name(request_id)).unlink(missing_ok=True)

    def left_running(self) -> list[RunningCommit]:
        """Commits recorded as running (after a restart: interrupted by the node-shim's end)."""
        records = []
        for path in self.running_dir.glob("*.json"):
            data = _read(path)
            if data is not None:
                records.append(RunningCommit(**data))
            else:
                path.unlink(missing_ok=True)
        return records


def _finished(data: dict[str, Any]) -> FinishedCommit:
    data = dict(data)
    data["layers"] = [(str(d), int(s)) for d, s in data.get("layers", [])]
    return FinishedCommit(**data)


def _timestamp(value: object) -> datetime.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=datetime.UTC)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None  # unreadable or torn (cannot happen with _write; be safe)
    return data if isinstance(data, dict) else None


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w") as f:
            json.dump(data, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        state_dir = path.parent.parent
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StateDirFull(
                f"the state directory {state_dir} is full (no space left on device): "
                "free space there or move DEVBOX_NODE_SHIM_STATE_DIR",
                path=path,
            ) from exc
        raise RecordError(
            f"cannot write a commit record in the state directory {state_dir}: {exc.strerror}",
            path=path,
        ) from exc
