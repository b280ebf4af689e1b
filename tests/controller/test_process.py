"""``devboxctl controller``: the controller as its own process (its Deployment in k8s/devbox).

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
    async with harness(sim, tmp_path) as h:
        await h.create_runtime()
        process = await asyncio.create_subprocess_exec(
            DEVBOXCTL,
            "controller",
            env=_env(
                DEVBOX_CLUSTER="kube",
                KUBECONFIG=str(kubeconfig),
                DEVBOX_HOST="127.0.0.1",
                DEVBOX_CONTROLLER_METRICS_PORT=str(metrics_port),
                DEVBOX_NODE_SHIM_PORT=str(h.settings.node_shim_port),
                DEVBOX_NODE_SHIM_TOKEN=h.settings.node_shim_token.get_secret_value(),
                DEVBOX_REGISTRY=h.settings.registry,
                DEVBOX_REGISTRY_INSECURE="true",
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
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
            assert process.stderr is not None
            assert b"Traceback" not in await process.stderr.read()
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
