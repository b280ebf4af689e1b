"""Commit records on disk: finished records older than the retention are pruned, and a full
state directory is a clear error naming it."""

from __future__ import annotations

import datetime
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from devbox_node_shim.records import (
    RETENTION,
    CommitStore,
    FinishedCommit,
    RunningCommit,
    StateDirFull,
)

NOW = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.UTC)


def _finished(request_id: str, at: datetime.datetime) -> FinishedCommit:
    return FinishedCommit(
        request_id=request_id,
        container_id="c",
        image="r.example/ns/box:t",
        manifest_digest="sha256:" + "0" * 64,
        layers=[],
        total_size=0,
        step_seconds={},
        finished_at=at.isoformat(timespec="milliseconds"),
    )


def test_finished_records_older_than_the_retention_are_pruned(tmp_path: Path) -> None:
    store = CommitStore(tmp_path)
    store.save_finished(_finished("old", NOW - RETENTION - datetime.timedelta(minutes=1)))
    store.save_finished(_finished("recent", NOW - RETENTION + datetime.timedelta(minutes=1)))
    torn = store.finished_dir / "torn.json"
    torn.write_text("{not json")
    os.utime(torn, (0, 0))  # unreadable and ancient: judged by its file time
    store.start(RunningCommit("running", "c", "r.example/ns/box:t", "SNAPSHOT", "x"))

    pruned = store.prune(now=NOW)

    assert pruned == 2
    assert store.finished("old") is None
    assert store.finished("recent") is not None
    assert not torn.exists()
    assert [r.request_id for r in store.left_running()] == ["running"]  # never pruned


@pytest.fixture
def full_state_dir() -> Iterator[Path]:
    """A 1 MiB tmpfs holding a commit store, then filled to the last byte."""
    base = Path(tempfile.mkdtemp(prefix="state-full-", dir="/tmp"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(base)], check=True)
    try:
        CommitStore(base)
        subprocess.run(
            ["dd", "if=/dev/zero", f"of={base / 'filler'}", "bs=4k"],
            check=False,
            capture_output=True,
        )
        yield base
    finally:
        subprocess.run(["umount", "-l", str(base)], check=False)
        base.rmdir()


def test_a_full_state_directory_is_an_error_naming_it(full_state_dir: Path) -> None:
    store = CommitStore(full_state_dir)

    with pytest.raises(StateDirFull) as full:
        store.save_finished(_finished("x", NOW))

    assert str(full_state_dir) in str(full.value)
    assert "no space left" in str(full.value)
    assert list(store.finished_dir.iterdir()) == []  # no half-written record left behind
