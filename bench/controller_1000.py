"""1,000 devboxes created at once against the simulated cluster: how fast the controller brings
them all to Running, how many API requests it needs, and whether it stays quiet afterwards.

    .venv/bin/python bench/controller_1000.py [--devboxes 1000] [--workers 8] [--quiet 60]

The simulated API server runs in a child process (so the figures are the controller's own:
its CPU, its memory); the controller runs in this process exactly as ``devboxctl serve`` runs
it.  Printed: time until all are Running, reconciles per second, API requests and writes per
devbox, API writes during a quiet period once everything is steady (target 0), and the
controller's memory per devbox (RSS growth / devboxes; target < 100 KiB).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydantic import SecretStr

from app.controller import Controller
from app.kube import connect
from app.kubeclient import DEVBOXES, RUNTIMES, Kube
from app.settings import Settings

SIM = """
import asyncio, sys
from app.resources.crdgen import all_crds
from app.simcluster.nodes import NodeSettings
from app.simcluster.server import SimCluster

async def main():
    # Ten simulated nodes big enough for 1,000 devboxes of 1 CPU / 2 GiB (the scheduler fits
    # resource requests and pod counts as a real one does).
    cluster = SimCluster(
        state_file=None,
        node_settings=NodeSettings(count=10, cpu="128", memory="512Gi", pods="150"),
    )
    await cluster.start()
    cluster.apply(list(all_crds()))
    await cluster.wait_for_crds_established()
    print(cluster.url, flush=True)
    while True:
        await asyncio.sleep(3600)

asyncio.run(main())
"""


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def store_rv(kube: Kube) -> int:
    """The cluster's current resourceVersion (a list of an empty kind returns it)."""
    _, rv = await kube.list_objects(RUNTIMES, "bench-empty")
    return int(rv)


async def bench(url: str, count: int, workers: int, quiet: float) -> dict[str, object]:
    api = await connect(url=url)
    client_api = await connect(url=url)
    kube = Kube(client_api)
    await kube.create(
        RUNTIMES,
        "default",
        {
            "apiVersion": "devbox.dev/v1alpha1",
            "kind": "Runtime",
            "metadata": {"name": "python"},
            "spec": {
                "class": "Language",
                "title": "Python",
                "version": "3.12",
                "image": "docker.io/library/python:3.12",
            },
        },
    )
    with tempfile.TemporaryDirectory() as data:
        settings = Settings(
            data_dir=Path(data),
            controller_workers=workers,
            node_shim_token=SecretStr("bench"),
        )
        before_rss = rss_kib()
        controller = Controller(api, settings)
        task = asyncio.create_task(controller.run())
        await asyncio.wait_for(controller.ready.wait(), 30)
        started = time.monotonic()
        gate = asyncio.Semaphore(64)

        async def create(index: int) -> None:
            async with gate:
                await kube.create(
                    DEVBOXES,
                    "default",
                    {
                        "apiVersion": "devbox.dev/v1alpha1",
                        "kind": "Devbox",
                        "metadata": {"name": f"box-{index:04d}"},
                        "spec": {
                            "runtimeRef": {"name": "python", "namespace": "default"},
                            "owner": "bench",
                        },
                    },
                )

        await asyncio.gather(*(create(i) for i in range(count)))
        created = time.monotonic() - started

        def running() -> int:
            return sum(
                1
                for obj in controller.caches.devboxes.objects("default")
                if (obj.get("status") or {}).get("phase") == "Running"
            )

        deadline = started + 300
        while True:
            if running() >= count or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        all_running = time.monotonic() - started
        reconciles = controller.reconciles
        requests = controller.kube.requests
        writes = controller.kube.writes
        await asyncio.sleep(2)  # let the last events drain
        rv_before = await store_rv(kube)
        writes_before = controller.kube.writes
        await asyncio.sleep(quiet)
        rv_after = await store_rv(kube)
        steady_writes = controller.kube.writes - writes_before
        after_rss = rss_kib()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await api.close()
    await client_api.close()
    return {
        "devboxes": count,
        "workers": workers,
        "running": running(),
        "seconds_to_create_all": round(created, 2),
        "seconds_until_all_running": round(all_running, 2),
        "reconciles": reconciles,
        "reconciles_per_second": round(reconciles / all_running, 1),
        "api_requests_per_devbox": round(requests / count, 2),
        "api_writes_per_devbox": round(writes / count, 2),
        "quiet_seconds": quiet,
        "controller_writes_while_steady": steady_writes,
        "cluster_writes_while_steady": rv_after - rv_before,
        "steady_writes_per_minute": round((rv_after - rv_before) * 60 / quiet, 2),
        "controller_rss_growth_kib_per_devbox": round((after_rss - before_rss) / count, 1),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devboxes", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--quiet", type=float, default=60.0, help="seconds of steady state")
    args = parser.parse_args()
    root = Path(__file__).resolve().parent.parent
    sim = subprocess.Popen([sys.executable, "-c", SIM], cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        assert sim.stdout is not None
        url = sim.stdout.readline().strip()
        result = asyncio.run(bench(url, args.devboxes, args.workers, args.quiet))
    finally:
        sim.terminate()
        sim.wait(10)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
