"""N WebSocket subscribers (graphql-transport-ws, ``devboxChanged``) receiving one status
change: p50/p99 delivery delay, and the API server's memory per subscriber.

A child process runs the simulated cluster and the API server (as in ``api_devboxes.py``);
the parent opens N WebSocket connections, each subscribed to the same devbox, then writes one
status change to the cluster and times how long until each subscriber has the event.  The
delay runs from just before the write request to the subscriber reading the message (write
round trip included).  Baseline, same run: one plain Kubernetes watch of the devboxes in that
namespace, timed the same way — what the API adds on top of the watch it is fed by.  Memory:
the child's resident set before and after the subscribers connected, divided by N.

    .venv/bin/python bench/api_subscribers.py [--subscribers 1000]

Target (issue 5): delivery p99 < 200 ms to 1,000 subscribers.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import statistics
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import websockets
from api_devboxes import NS, Servers, _seed  # type: ignore[import-not-found]
from websockets.asyncio.client import ClientConnection

from app.kube import connect
from app.kubeclient import DEVBOXES, Kube
from app.simcluster.server import SimCluster

SUBSCRIPTION = (
    'subscription { devboxChanged(name: "box-0000") { type changed devbox { name phase } } }'
)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _child(pipe: Connection) -> None:
    """Serve the cluster and the API until the parent says stop."""
    cluster = SimCluster(state_file=None)
    cluster.start_in_thread()
    with tempfile.TemporaryDirectory() as folder:
        _seed(cluster, 1)
        servers = Servers(cluster.url, Path(folder))
        servers.start()
        pipe.send({"cluster": cluster.url, "api": servers.api_url, "token": servers.token})
        pipe.recv()
        servers.stop()
        cluster.stop_thread()


async def _subscriber(url: str, token: str) -> ClientConnection:
    ws = await websockets.connect(
        url, subprotocols=[websockets.Subprotocol("graphql-transport-ws")], open_timeout=30
    )
    await ws.send(
        json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
    )
    ack = json.loads(await ws.recv())
    assert ack["type"] == "connection_ack", ack
    await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIPTION}}))
    return ws


async def _received(ws: ClientConnection, phase: str) -> float:
    message = json.loads(await ws.recv())
    stamp = time.perf_counter()
    assert message["type"] == "next", message
    assert message["payload"]["data"]["devboxChanged"]["devbox"]["phase"] == phase
    return stamp


async def _set_phase(kube: Kube, phase: str) -> None:
    await kube.patch(DEVBOXES, NS, "box-0000", {"status": {"phase": phase}}, subresource="status")


def _percentiles(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {
        "p50_ms": round(statistics.median(samples), 2),
        "p99_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 2),
        "max_ms": round(samples[-1], 2),
    }


async def _run(urls: dict[str, Any], pid: int, count: int) -> dict[str, Any]:
    api = await connect(url=urls["cluster"])
    kube = Kube(api)
    ws_url = urls["api"].replace("http://", "ws://") + "/graphql"
    await asyncio.sleep(1.0)  # let the server settle
    rss_before = _rss_kib(pid)
    clients: list[ClientConnection] = []
    for start in range(0, count, 100):  # connect in batches of 100
        clients += await asyncio.gather(
            *(_subscriber(ws_url, urls["token"]) for _ in range(start, min(count, start + 100)))
        )
    # A first change, untimed: once every subscriber has it, every subscription is live.
    warm_up = [asyncio.ensure_future(_received(ws, "STARTING")) for ws in clients]
    await _set_phase(kube, "Starting")
    await asyncio.wait_for(asyncio.gather(*warm_up), 300)
    rss_after = _rss_kib(pid)

    # Baseline: one raw watch on the same cluster.
    _, rv = await kube.list_objects(DEVBOXES, NS)
    watch = kube.watch(DEVBOXES, NS, rv)
    watched = asyncio.ensure_future(anext(watch))
    waiting = [asyncio.ensure_future(_received(ws, "RUNNING")) for ws in clients]
    await asyncio.sleep(0.2)
    started = time.perf_counter()
    await _set_phase(kube, "Running")
    await watched
    watch_delay = (time.perf_counter() - started) * 1000
    stamps = await asyncio.wait_for(asyncio.gather(*waiting), 300)
    delays = [(stamp - started) * 1000 for stamp in stamps]
    await watch.aclose()
    await asyncio.gather(*(ws.close() for ws in clients))
    await api.close()
    figures = _percentiles(delays)
    return {
        "subscribers": count,
        "delivery": figures,
        "baseline raw watch delay ms": round(watch_delay, 2),
        "p99_vs_raw_watch": round(figures["p99_ms"] / max(watch_delay, 0.001), 1),
        "server memory per subscriber KiB": round((rss_after - rss_before) / count, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    args = parser.parse_args()
    # The 1,000 clients live in this process: a full collection of their objects while the
    # event arrives (~150 ms here) would be timed as delivery delay.  Measure the server, not
    # this process's garbage collector (the server, a spawned child, keeps Python's defaults).
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_child, args=(child,), daemon=True)
    process.start()
    try:
        urls = parent.recv()
        assert process.pid is not None
        result = asyncio.run(_run(urls, process.pid, args.subscribers))
    finally:
        parent.send("stop")
        process.join(30)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
