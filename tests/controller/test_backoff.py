"""A failed stop commit's retry backoff is derived from status, so it survives a restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from app.controller import _backoff as backoff
from app.resources import Devbox
from tests.controller.harness import harness
from tests.fixtures.simcluster import Sim
from tests.fixtures.waiting import until, until_async

BASE = 0.75


async def test_after_failures_and_a_restart_the_next_commit_waits_the_implied_backoff(
    sim: Sim, tmp_path: Path
) -> None:
    async with harness(sim, tmp_path) as h:
        await h.create_runtime()
        await h.start_controller(commit_retry_base=BASE)
        h.shim.mode = "fail"
        await h.create_devbox()
        await h.wait_phase("Running")
        await h.set_state("Stopped")

        async def three_failed() -> bool:
            records = (await h.devbox()).get("status", {}).get("commits") or []
            return sum(r["status"] == "Failed" for r in records) >= 3

        await until_async(three_failed, 15, "three failed stop commits")
        await h.stop_controller()
        attempts = len(h.shim.calls.commits)
        assert attempts == 3
        devbox = Devbox.model_validate(await h.devbox())
        pod = await h.pod()
        assert pod is not None
        failures = backoff.stop_failures(devbox.status, pod["metadata"]["uid"])
        assert failures.count == 3
        assert failures.last is not None
        assert failures.last.finished_at is not None
        wait = backoff.delay(3, BASE, h.settings.commit_retry_max_seconds, failures.last.id)
        assert wait >= 0.8 * BASE * 4
        due = failures.last.finished_at + timedelta(seconds=wait)

        h.shim.mode = "succeed"
        await h.start_controller(commit_retry_base=BASE)
        await until(lambda: len(h.shim.calls.commits) > attempts, wait + 10, "the retry")
        retried_at = datetime.now(UTC)
        assert retried_at >= due, f"retried {(due - retried_at).total_seconds():.2f}s early"
        assert retried_at <= due + timedelta(seconds=3)
        await h.wait_phase("Stopped", within=10)


def test_the_backoff_grows_per_failure_and_is_capped() -> None:
    delays = [backoff.delay(n, 1.0, 5.0, "seed") for n in range(0, 6)]
    assert delays[0] == 0.0
    assert 0.8 <= delays[1] <= 1.0
    assert 1.6 <= delays[2] <= 2.0
    assert 3.2 <= delays[3] <= 4.0
    assert all(4.0 <= d <= 5.0 for d in delays[4:])
    assert backoff.delay(3, 1.0, 5.0, "x") == backoff.delay(3, 1.0, 5.0, "x")  # stable
