"""A controller restarted in the middle of a commit re-attaches instead of committing twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.controller.harness import harness
from tests.fixtures.simcluster import Sim
from tests.fixtures.waiting import until


async def test_restart_mid_commit_reattaches_by_request_id(sim: Sim, tmp_path: Path) -> None:
    async with harness(sim, tmp_path) as h:
        await h.create_runtime()
        await h.start_controller()
        h.shim.mode = "hang"
        await h.create_devbox()
        await h.wait_phase("Running")
        await h.set_state("Stopped")
        await until(lambda: h.shim.calls.started, 10, "commit started")
        await h.stop_controller()  # killed mid-commit: the node-shim keeps committing

        await h.start_controller()
        await until(lambda: len(h.shim.calls.commits) >= 2, 10, "the new controller re-attaches")
        h.shim.release()
        devbox = await h.wait_phase("Stopped")
        records = devbox["status"]["commits"]
        assert [r["status"] for r in records] == ["Succeeded"]
        assert len(h.shim.calls.started) == 1  # one commit, attached twice
        assert {c.request_id for c in h.shim.calls.commits} == {records[0]["requestId"]}
        assert h.shim.calls.concurrent_per_container == 1
        assert await h.pod() is None


async def test_killed_at_any_moment_the_controller_converges_without_duplicates(
    sim: Sim, tmp_path: Path
) -> None:
    """Kill and restart the controller at staggered moments through create → stop → start;
    every time it must converge: one pod, one secret (same key), no orphan, every commit
    recorded once."""
    from app.kubeclient import PODS, SECRETS, SERVICES

    async with harness(sim, tmp_path) as h:
        await h.create_runtime()
        await h.create_devbox(ports=[{"name": "web", "port": 8080, "public": True}])
        delays = [0.0, 0.01, 0.03, 0.05, 0.08, 0.12, 0.2]
        states = ["Running"] + ["Stopped", "Running"] * 3
        key = None
        for round_, state in enumerate(states):
            if round_:
                await h.set_state(state)
            for delay in delays:
                await h.start_controller()
                await asyncio.sleep(delay)
                await h.stop_controller()
            await h.start_controller()
            await h.wait_phase(state, within=15)
            await h.stop_controller()

            pods, _ = await sim.kube.list_objects(PODS, "default")
            secrets, _ = await sim.kube.list_objects(SECRETS, "default")
            services, _ = await sim.kube.list_objects(SERVICES, "default")
            assert len(pods) == (1 if state == "Running" else 0)
            assert [s["metadata"]["name"] for s in secrets] == ["box-ssh"]
            if key is None:
                key = secrets[0]["data"]["id_ed25519"]
            assert secrets[0]["data"]["id_ed25519"] == key  # never regenerated
            assert sorted(
                s["metadata"]["name"]
                for s in services
                if s["metadata"].get("labels", {}).get("devbox.dev/devbox")
            ) == ["box", "box-ssh"]

        devbox = await h.devbox()
        records = devbox["status"]["commits"]
        assert [r["status"] for r in records] == ["Succeeded"] * 3
        assert len(h.shim.calls.started) == 3  # one commit per stop, however often killed
        assert h.shim.calls.concurrent_per_container == 1


async def test_a_dropped_commit_stream_reattaches_with_the_same_request_id(
    sim: Sim, tmp_path: Path
) -> None:
    """UNAVAILABLE mid-commit is temporary: the record stays Committing and the controller
    re-attaches with the same request id, never starting a second commit of the container."""
    async with harness(sim, tmp_path) as h:
        await h.create_runtime()
        await h.start_controller()
        await h.create_devbox()
        await h.wait_phase("Running")
        h.shim.mode = "hang"
        h.shim.drop_streams = 2  # the first call and the first re-attach lose their stream
        await h.set_state("Stopped")
        await until(lambda: len(h.shim.calls.commits) >= 3, 15, "re-attached after two drops")
        devbox = await h.devbox()
        assert [r["status"] for r in devbox["status"]["commits"]] == ["Committing"]
        h.shim.release()
        devbox = await h.wait_phase("Stopped", within=15)
        records = devbox["status"]["commits"]
        assert [r["status"] for r in records] == ["Succeeded"]
        assert h.shim.calls.started == [records[0]["requestId"]]
        assert {c.request_id for c in h.shim.calls.commits} == {records[0]["requestId"]}
        assert h.shim.calls.refused == []
        assert h.shim.calls.concurrent_per_container == 1
        assert await h.pod() is None
