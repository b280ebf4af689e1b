"""``devboxctl controller``: the controller as its own process (its Deployment in k8s/devbox),
alone and as two replicas with leader election.

Run as the real console script against the simulated cluster's kubeconfig (``DEVBOX_CLUSTER=
kube``, as against any cluster): it reconciles a devbox into its pod, serves its metrics on its
own port, and stops cleanly on SIGTERM.  The simulated cluster is refused with a clear message,
since it only exists inside ``devboxctl serve``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from app.kubeclient import PODS, NotFound
from tests.controller.harness import NS, Harness, harness
from tests.fixtures.simcluster import Sim, start_sim
from tests.fixtures.waiting import until_async

DEVBOXCTL = str(Path(sys.executable).parent / "devboxctl")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVBOX_")}
    env.pop("KUBECONFIG", None)
    env.pop("DATABASE_URL", None)
    return {**env, **extra}


def _controller_env(
    h: Harness, kubeconfig: Path, metrics_port: int, **extra: str
) -> dict[str, str]:
    """``devboxctl controller``'s environment: the simulated cluster as a real one, the
    harness's fake node-shim and registry, metrics on ``metrics_port``."""
    return _env(
        DEVBOX_CLUSTER="kube",
        KUBECONFIG=str(kubeconfig),
        DEVBOX_HOST="127.0.0.1",
        DEVBOX_CONTROLLER_METRICS_PORT=str(metrics_port),
        DEVBOX_NODE_SHIM_PORT=str(h.settings.node_shim_port),
        DEVBOX_NODE_SHIM_TOKEN=h.settings.node_shim_token.get_secret_value(),
        DEVBOX_REGISTRY=h.settings.registry,
        DEVBOX_REGISTRY_INSECURE="true",
        **extra,
    )


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    running = await start_sim(nodes=1)
    try:
        yield running
    finally:
        await running.api.close()
        await running.cluster.stop()


def test_the_simulated_cluster_is_refused_with_a_clear_message() -> None:
    result = subprocess.run(
        [DEVBOXCTL, "controller"],
        env=_env(DEVBOX_CLUSTER="sim", COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "needs a real cluster" in result.stderr
    assert "Traceback" not in result.stderr


async def test_the_controller_process_reconciles_serves_metrics_and_stops(
    sim: Sim, tmp_path: Path
) -> None:
    kubeconfig = sim.cluster.write_kubeconfig(tmp_path / "kubeconfig")
    metrics_port = _free_port()
    log = tmp_path / "controller.log"
    async with harness(sim, tmp_path) as h:
        await h.create_runtime()
        process = await asyncio.create_subprocess_exec(
            DEVBOXCTL,
            "controller",
            env=_controller_env(h, kubeconfig, metrics_port),
            stdout=subprocess.DEVNULL,
            stderr=log.open("wb"),  # a file: a pipe read only at the end could fill and block it
        )
        try:
            await h.create_devbox()
            await h.wait_phase("Running", within=30)
            assert await _pod_exists(h)
            async with httpx.AsyncClient() as http:
                response = await http.get(f"http://127.0.0.1:{metrics_port}/metrics")
            assert response.status_code == 200
            assert 'devbox_controller_reconciles_total{result="ok"}' in response.text

            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 20) == 0
            assert "Traceback" not in log.read_text()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def _pod_exists(h: Harness) -> bool:
    async def found() -> bool:
        try:
            await h.sim.kube.get(PODS, NS, "box")
        except NotFound:
            return False
        return True

    return bool(await until_async(found, 10, "the devbox's pod"))


async def _reconciles(http: httpx.AsyncClient, port: int) -> float:
    """How many reconciles a controller process did (0 while it does not lead)."""
    text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("devbox_controller_reconciles_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_two_controller_processes_one_acts_and_the_other_takes_over(
    sim: Sim, tmp_path: Path
) -> None:
    """Two replicas with leader election (as the Deployment runs them): only the Lease holder
    reconciles; SIGKILLed, the other takes the Lease over once it expires and carries on."""
    kubeconfig = sim.cluster.write_kubeconfig(tmp_path / "kubeconfig")
    async with harness(sim, tmp_path) as h:
        await h.create_runtime()
        sim.cluster.apply(
            [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "devbox-system"}}]
        )
        ports = [_free_port(), _free_port()]
        processes = [
            await asyncio.create_subprocess_exec(
                DEVBOXCTL,
                "controller",
                env=_controller_env(h, kubeconfig, port, DEVBOX_LEADER_ELECTION="true"),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for port in ports
        ]
        try:
            async with httpx.AsyncClient() as http:

                async def both_serve_metrics() -> bool:
                    try:
                        for port in ports:
                            await _reconciles(http, port)
                    except httpx.TransportError:
                        return False
                    return True

                await until_async(both_serve_metrics, 60, "both replicas serve /metrics")
                await h.create_devbox("first")
                await h.wait_phase("Running", name="first", within=30)
                counts = [await _reconciles(http, port) for port in ports]
                assert sorted(c > 0 for c in counts) == [False, True], counts
                leader = counts.index(max(counts))
                follower = 1 - leader

                processes[leader].kill()
                await processes[leader].wait()
                await h.create_devbox("second")
                # The Lease lasts 15 s after the leader's last renewal: then the other acts.
                await h.wait_phase("Running", name="second", within=45)
                assert await _reconciles(http, ports[follower]) > 0
                assert await h.pod("first") is not None  # the first devbox kept its one pod
        finally:
            for process in processes:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
