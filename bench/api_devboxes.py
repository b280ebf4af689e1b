"""``devboxes(first: 100)`` through the GraphQL API, next to a plain Starlette endpoint.

One process runs a simulated cluster (in its own thread) holding N devboxes in one namespace,
and — in one event loop, in another thread — the API server (authentication, limits, masking,
SQLite database) and, beside it, a plain Starlette endpoint that returns the same 100 devboxes
with the same fields as JSON from the same read cache: the floor of the HTTP stack and the
cache.  A client in the main thread sends sequential requests over one keep-alive connection
to each and reports p50/p99 latency and requests per second, then the GraphQL/plain ratio.

    .venv/bin/python bench/api_devboxes.py [--devboxes 1000] [--requests 300]

Targets (issue 5): GraphQL at >= 50% of the plain endpoint's throughput, p99 < 25 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.api import create_app
from app.apicache import ReadCache
from app.db import users
from app.db.migrate import upgrade_to_head
from app.kube import connect
from app.kubeclient import Kube
from app.resources.crdgen import all_crds
from app.schema.devboxes import devbox_id
from app.services import make_services
from app.settings import ClusterMode, Settings
from app.simcluster.server import SimCluster

NS = "bench"
QUERY = """
{ devboxes(first: 100) { totalCount edges { cursor node {
  id name owner state phase createdAt
  resources { cpu memory storage }
  ports { name port protocol public url }
} } } }
"""


def _seed(cluster: SimCluster, count: int) -> None:
    cluster.apply(list(all_crds()))
    cluster.run_coroutine(cluster.wait_for_crds_established())
    cluster.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}])
    cluster.apply(
        [
            {
                "apiVersion": "devbox.dev/v1alpha1",
                "kind": "Devbox",
                "metadata": {"name": f"box-{i:04d}", "namespace": NS},
                "spec": {
                    "runtimeRef": {"name": "python-3-12", "namespace": "devbox-system"},
                    "owner": "bench",
                    "state": "Stopped",
                    "ports": [{"name": "http", "port": 8000}],
                },
            }
            for i in range(count)
        ]
    )


def _plain_app(cache: ReadCache) -> Starlette:
    """The same data as the GraphQL query, as JSON, straight from the cache."""

    async def devboxes(_: Request) -> JSONResponse:
        found = sorted(cache.devboxes(NS), key=lambda d: d.name)
        page = []
        for d in found[:100]:
            urls = {p.name: p.url for p in d.status.ports}
            page.append(
                {
                    "id": devbox_id(d),
                    "name": d.name,
                    "owner": d.spec.owner,
                    "state": d.spec.state,
                    "phase": d.status.phase or "Pending",
                    "createdAt": d.metadata.creation_timestamp.isoformat()
                    if d.metadata.creation_timestamp
                    else None,
                    "resources": d.spec.resources.model_dump(),
                    "ports": [
                        {
                            "name": p.name,
                            "port": p.port,
                            "protocol": p.protocol,
                            "public": p.public,
                            "url": urls.get(p.name),
                        }
                        for p in d.spec.ports
                    ],
                }
            )
        return JSONResponse({"totalCount": len(found), "devboxes": page})

    return Starlette(routes=[Route("/devboxes", devboxes)])


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    return sock


async def _started(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the server stopped while starting")
        await asyncio.sleep(0.01)


class Servers:
    """The API and the plain endpoint, in one event loop in a thread of their own."""

    def __init__(self, cluster_url: str, data_dir: Path) -> None:
        self.cluster_url = cluster_url
        self.data_dir = data_dir
        self.ready = threading.Event()
        self.token = ""
        self.api_url = ""
        self.plain_url = ""
        self.error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True).start()
        self.ready.wait(120)
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    async def _main(self) -> None:
        try:
            await self._serve()
        except BaseException as exc:
            self.error = exc
            self.ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        url = f"sqlite+aiosqlite:///{self.data_dir / 'bench.db'}"
        await upgrade_to_head(url)
        api_sock, plain_sock = _free_socket(), _free_socket()
        settings = Settings(
            data_dir=self.data_dir,
            cluster=ClusterMode.KUBE,
            database_url=url,
            rate_limit_per_second=1e6,
            rate_limit_burst=1_000_000,
        )
        api_client = await connect(url=self.cluster_url)
        services = make_services(settings, Kube(api_client), database_url=url)
        async with services.sessionmaker() as session:
            user = await users.create_user(session, name="bench", namespace=NS)
            _, self.token = await users.create_token(session, user, name="bench")
            await session.commit()
        api = uvicorn.Server(
            uvicorn.Config(create_app(services), log_level="warning", access_log=False)
        )
        api_task = asyncio.create_task(api.serve(sockets=[api_sock]))
        await _started(api, api_task)
        plain = uvicorn.Server(
            uvicorn.Config(
                _plain_app(services.cache), log_level="warning", access_log=False, lifespan="off"
            )
        )
        plain_task = asyncio.create_task(plain.serve(sockets=[plain_sock]))
        await _started(plain, plain_task)
        self.api_url = f"http://127.0.0.1:{api_sock.getsockname()[1]}"
        self.plain_url = f"http://127.0.0.1:{plain_sock.getsockname()[1]}"
        self.ready.set()
        await self._stop.wait()
        api.should_exit = plain.should_exit = True
        await asyncio.gather(api_task, plain_task)
        await api_client.close()


def _measure(count: int, call: Callable[[], Any]) -> dict[str, float]:
    for _ in range(min(20, count)):
        call()  # warm up
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {
        "p50_ms": round(statistics.median(samples), 3),
        "p99_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 3),
        "per_second": round(1000 / statistics.fmean(samples), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--devboxes", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()

    cluster = SimCluster(state_file=None)
    cluster.start_in_thread()
    with tempfile.TemporaryDirectory() as folder:
        try:
            _seed(cluster, args.devboxes)
            servers = Servers(cluster.url, Path(folder))
            servers.start()
            try:
                headers = {"Authorization": f"Bearer {servers.token}"}
                with (
                    httpx.Client(base_url=servers.api_url, headers=headers, timeout=30) as api,
                    httpx.Client(base_url=servers.plain_url, timeout=30) as plain,
                ):
                    deadline = time.monotonic() + 60
                    while True:  # until the cache holds every devbox
                        body = api.post("/graphql", json={"query": QUERY}).json()
                        total = ((body.get("data") or {}).get("devboxes") or {}).get("totalCount")
                        if total == args.devboxes:
                            break
                        if time.monotonic() > deadline:
                            raise SystemExit(f"the API never listed the devboxes: {body}")
                        time.sleep(0.2)
                    edges = body["data"]["devboxes"]["edges"]
                    same = plain.get("/devboxes").json()["devboxes"]
                    assert [e["node"]["name"] for e in edges] == [d["name"] for d in same]

                    def graphql() -> None:
                        response = api.post("/graphql", json={"query": QUERY})
                        response.raise_for_status()

                    def baseline() -> None:
                        plain.get("/devboxes").raise_for_status()

                    results = {
                        "plain starlette JSON (same cache)": _measure(args.requests, baseline),
                        "graphql devboxes(first: 100)": _measure(args.requests, graphql),
                    }
            finally:
                servers.stop()
        finally:
            cluster.stop_thread()
    ratio = (
        results["graphql devboxes(first: 100)"]["per_second"]
        / results["plain starlette JSON (same cache)"]["per_second"]
    )
    results["graphql devboxes(first: 100)"]["throughput_vs_plain"] = round(ratio, 3)
    print(json.dumps({"devboxes": args.devboxes, "results": results}, indent=2))


if __name__ == "__main__":
    main()
