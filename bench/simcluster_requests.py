"""Request latency and throughput of the simulated Kubernetes API server.

Measured in one run, next to a baseline: a plain Starlette endpoint on uvicorn in the same kind
of thread, returning a JSON object of the same size as a ConfigMap — the HTTP stack's floor.
Reports p50/p99 latency of GET of one object, POST (create), and LIST of N objects, sequential
requests over one keep-alive connection from a client in the main thread.

    .venv/bin/python bench/simcluster_requests.py [--objects 1000] [--requests 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import threading
import time
from collections.abc import Callable

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.simcluster.server import SimCluster

SAMPLE = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {
        "name": "sample",
        "namespace": "default",
        "uid": "0" * 36,
        "resourceVersion": "1",
        "creationTimestamp": "2026-01-01T00:00:00Z",
    },
    "data": {"a": "b"},
}


def _baseline_server() -> str:
    async def sample(_: Request) -> JSONResponse:
        return JSONResponse(SAMPLE)

    app = Starlette(routes=[Route("/sample", sample)])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))

    def run() -> None:
        asyncio.run(server.serve(sockets=[sock]))

    threading.Thread(target=run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return f"http://127.0.0.1:{port}"


def _measure(count: int, call: Callable[[int], None]) -> tuple[float, float, float]:
    samples = []
    for i in range(count):
        started = time.perf_counter()
        call(i)
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    p50 = statistics.median(samples)
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return p50, p99, 1000 / statistics.fmean(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()

    baseline_url = _baseline_server()
    cluster = SimCluster()
    cluster.start_in_thread()
    results: dict[str, dict[str, float]] = {}
    try:
        with (
            httpx.Client(base_url=baseline_url) as plain,
            httpx.Client(base_url=cluster.url) as sim,
        ):
            cms = "/api/v1/namespaces/default/configmaps"
            for i in range(args.objects):
                sim.post(cms, json={"metadata": {"name": f"seed-{i}"}, "data": {"a": "b"}})

            def record(name: str, figures: tuple[float, float, float]) -> None:
                results[name] = {
                    "p50_ms": round(figures[0], 3),
                    "p99_ms": round(figures[1], 3),
                    "per_second": round(figures[2], 1),
                }

            record(
                "baseline GET (plain starlette)",
                _measure(args.requests, lambda i: plain.get("/sample").raise_for_status()),
            )
            record(
                "GET one object",
                _measure(
                    args.requests,
                    lambda i: sim.get(f"{cms}/seed-{i % args.objects}").raise_for_status(),
                ),
            )
            record(
                "POST create",
                _measure(
                    args.requests,
                    lambda i: sim.post(
                        cms, json={"metadata": {"name": f"new-{i}"}, "data": {"a": "b"}}
                    ).raise_for_status(),
                ),
            )
            record(
                f"LIST {args.objects + args.requests} objects",
                _measure(max(10, args.requests // 20), lambda i: sim.get(cms).raise_for_status()),
            )
    finally:
        cluster.stop_thread()
    base = results["baseline GET (plain starlette)"]["p50_ms"]
    for figures in results.values():
        figures["p50_vs_baseline"] = round(figures["p50_ms"] / base, 2)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
