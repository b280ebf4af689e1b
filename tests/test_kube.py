"""``app.kube.connect``: what a client built for a URL really sends."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from app.kube import SIM_TOKEN, connect
from app.kubeclient import NODES, Kube


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A real HTTP server on a free loopback port that records every request's headers."""
    seen: list[dict[str, str]] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response({"kind": "Node", "metadata": {"name": "node-1"}})

    app = web.Application()
    app.router.add_route("*", "/{path:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def test_a_url_client_sends_the_bearer_token(
    recorder: tuple[str, list[dict[str, str]]],
) -> None:
    url, seen = recorder
    api = await connect(url=url, token="s3cret")
    try:
        await Kube(api).get(NODES, None, "node-1")
    finally:
        await api.close()
    assert [headers.get("Authorization") for headers in seen] == ["Bearer s3cret"]


async def test_a_url_client_sends_the_simulated_token_by_default(
    recorder: tuple[str, list[dict[str, str]]],
) -> None:
    url, seen = recorder
    api = await connect(url=url)
    try:
        await Kube(api).get(NODES, None, "node-1")
    finally:
        await api.close()
    assert seen[0].get("Authorization") == f"Bearer {SIM_TOKEN}"
