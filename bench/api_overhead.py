"""What the API's front door costs per request: authentication, limits, GraphQL, masking.

In one process (no network: httpx's ASGI transport), against a SQLite database:

- ``plain``: ``GET /healthz`` of the same app (the floor of Starlette and the client);
- ``graphql { version }``: bearer-token check (cached), rate limiter, body read, parse and
  validation (cached), execution, error tagging — no database or Kubernetes access;
- ``graphql { viewer }``: the same plus one database read in the resolver.

Prints p50/p99 latency, requests per second and the ratio to ``plain``.

    .venv/bin/python bench/api_overhead.py [--requests 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from app.api import create_app
from app.db import users
from app.db.migrate import upgrade_to_head
from app.kube import connect
from app.kubeclient import Kube
from app.services import close_services, make_services
from app.settings import ClusterMode, Settings


async def _measure(count: int, call: Callable[[], Awaitable[httpx.Response]]) -> dict[str, float]:
    for _ in range(20):
        await call()
    times: list[float] = []
    started = time.perf_counter()
    for _ in range(count):
        begin = time.perf_counter()
        response = await call()
        times.append(time.perf_counter() - begin)
        if response.status_code != 200 or b'"errors"' in response.content:
            raise SystemExit(f"unexpected answer: {response.status_code} {response.text[:200]}")
    elapsed = time.perf_counter() - started
    times.sort()
    return {
        "p50_ms": round(statistics.median(times) * 1000, 3),
        "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))] * 1000, 3),
        "per_second": round(count / elapsed, 1),
    }


async def main(count: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="devbox-bench-"))
    url = f"sqlite+aiosqlite:///{folder / 'devbox.db'}"
    await upgrade_to_head(url)
    settings = Settings(
        cluster=ClusterMode.KUBE,
        database_url=url,
        data_dir=folder,
        rate_limit_per_second=1e9,
        rate_limit_burst=10**9,
    )
    api = await connect(url="http://127.0.0.1:9")  # never called by these queries
    services = make_services(settings, Kube(api), database_url=url)
    services.cache = None
    async with services.sessionmaker() as session:
        user = await users.create_user(session, name="bench", namespace="bench")
        _, token = await users.create_token(session, user, name="bench")
        await session.commit()
    headers = {"Authorization": f"Bearer {token}"}
    transport = httpx.ASGITransport(app=create_app(services))
    results: dict[str, dict[str, float]] = {}
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        results["plain GET /healthz"] = await _measure(count, lambda: client.get("/healthz"))

        def poster(query: str) -> Callable[[], Awaitable[httpx.Response]]:
            return lambda: client.post("/graphql", json={"query": query}, headers=headers)

        for name, query in (
            ("graphql { version }", "{ version }"),
            ("graphql { viewer }", "{ viewer { user { name } namespace role } }"),
        ):
            results[name] = await _measure(count, poster(query))
    plain = results["plain GET /healthz"]["per_second"]
    for name, figures in results.items():
        if not name.startswith("plain"):
            figures["throughput_vs_plain"] = round(figures["per_second"] / plain, 3)
    print(json.dumps({"requests": count, "results": results}, indent=2))
    await close_services(services)
    await api.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    asyncio.run(main(parser.parse_args().requests))
