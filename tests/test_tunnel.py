"""The SSH tunnel (``/tunnel/{namespace}/{devbox}``): an owner's bytes reach their running
devbox's SSH port and nothing else; everyone else is refused without learning anything."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from app.kubeclient import DEVBOXES, PODS
from app.simcluster.network import FORWARD_PREFIX
from app.tunnel import SUBPROTOCOL, encode_subprotocol_token
from tests.api.stack import Stack
from tests.client.helpers import SSH_PORT, Box, product, running_devbox
from tests.fixtures.waiting import until_async

BANNER = b"SSH-2.0-fake-devbox\r\n"


@pytest.fixture
def tunnel_settings() -> dict[str, Any]:
    return {}


@pytest.fixture
async def stack(
    api_database: str, tmp_path: Path, tunnel_settings: dict[str, Any]
) -> AsyncIterator[Stack]:
    async with product(api_database, tmp_path, tunnel_settings) as running:
        yield running


@pytest.fixture
async def ssh_port() -> AsyncIterator[str]:
    """A stand-in SSH server: sends a banner, echoes lines, closes on ``quit``."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(BANNER)
        await writer.drain()
        while (line := await reader.readline()) and line != b"quit\n":
            writer.write(line)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"


@pytest.fixture
async def box(stack: Stack, ssh_port: str) -> Box:
    return await running_devbox(stack, address=ssh_port)


def url(stack: Stack, namespace: str, name: str, query: str = "") -> str:
    return f"{stack.server.url.replace('http://', 'ws://')}/tunnel/{namespace}/{name}{query}"


@contextlib.asynccontextmanager
async def tunnel(
    stack: Stack,
    namespace: str,
    name: str,
    token: str | None,
    *,
    query: str = "",
    subprotocols: list[str] | None = None,
) -> AsyncIterator[ClientConnection]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    connection = await websockets.connect(
        url(stack, namespace, name, query),
        additional_headers=headers,
        subprotocols=[websockets.Subprotocol(s) for s in subprotocols or [SUBPROTOCOL]],
        open_timeout=10,
    )
    try:
        yield connection
    finally:
        await connection.close()


async def refusal(stack: Stack, namespace: str, name: str, token: str | None) -> tuple[int, str]:
    """The close code and reason the server ends a tunnel attempt with."""
    async with tunnel(stack, namespace, name, token) as connection:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(connection.recv(), 10)
        assert connection.close_code is not None
        return connection.close_code, connection.close_reason or ""


async def test_owner_talks_to_the_devbox_ssh_port(stack: Stack, box: Box) -> None:
    async with tunnel(stack, box.namespace, box.name, box.token) as connection:
        assert connection.subprotocol == SUBPROTOCOL
        assert await asyncio.wait_for(connection.recv(), 10) == BANNER
        await connection.send(b"hello\n")
        assert await asyncio.wait_for(connection.recv(), 10) == b"hello\n"


async def test_browser_sends_the_token_as_a_subprotocol(stack: Stack, box: Box) -> None:
    offered = [SUBPROTOCOL, encode_subprotocol_token(box.token)]
    async with tunnel(stack, box.namespace, box.name, None, subprotocols=offered) as connection:
        assert connection.subprotocol == SUBPROTOCOL  # the token is never echoed
        assert await asyncio.wait_for(connection.recv(), 10) == BANNER


async def test_a_host_or_port_from_the_client_is_ignored(stack: Stack, box: Box) -> None:
    api_port = stack.server.url.rsplit(":", 1)[1]
    query = f"?host=127.0.0.1&port={api_port}&target=127.0.0.1:{api_port}"
    async with tunnel(stack, box.namespace, box.name, box.token, query=query) as connection:
        assert await asyncio.wait_for(connection.recv(), 10) == BANNER  # still the SSH port
    for path in (f"{box.name}/{api_port}", f"{box.name}:{api_port}"):
        with pytest.raises((websockets.InvalidStatus, ConnectionClosed)):
            async with tunnel(stack, box.namespace, path, box.token) as connection:
                await asyncio.wait_for(connection.recv(), 10)


async def test_no_token_or_a_bad_one_is_refused(stack: Stack, box: Box) -> None:
    assert (await refusal(stack, box.namespace, box.name, None))[0] == 4401
    assert (await refusal(stack, box.namespace, box.name, "not-a-token"))[0] == 4401


async def test_another_namespace_devbox_looks_like_a_missing_one(stack: Stack, box: Box) -> None:
    _, bob = await stack.server.make_user("bob")
    other = await refusal(stack, box.namespace, box.name, bob)
    bob_ns = (await stack.gql(bob, "{ viewer { namespace } }"))["viewer"]["namespace"]
    missing = await refusal(stack, bob_ns, "no-such-box", bob)
    assert other == missing
    assert other[0] == 4404


async def test_a_user_who_is_not_the_owner_is_refused(stack: Stack, box: Box) -> None:
    _, carol = await stack.server.make_user("carol", namespace=box.namespace)
    assert (await refusal(stack, box.namespace, box.name, carol))[0] == 4403


async def test_a_stopped_devbox_is_refused(stack: Stack, box: Box) -> None:
    data = await stack.gql(
        box.token,
        'mutation { devboxStop(input: {name: "box"}) { userErrors { code message } } }',
    )
    assert data["devboxStop"]["userErrors"] == []
    await stack.wait_phase(box.namespace, box.name, "Stopped")
    assert (await refusal(stack, box.namespace, box.name, box.token))[0] == 4409


async def test_the_devbox_closing_the_connection_closes_the_tunnel(stack: Stack, box: Box) -> None:
    async with tunnel(stack, box.namespace, box.name, box.token) as connection:
        assert await asyncio.wait_for(connection.recv(), 10) == BANNER
        await connection.send(b"quit\n")
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(connection.recv(), 10)
        assert connection.close_code == 1000


@pytest.mark.parametrize("tunnel_settings", [{"tunnel_max_per_token": 2}])
async def test_a_token_may_hold_only_so_many_tunnels(stack: Stack, box: Box) -> None:
    async with (
        tunnel(stack, box.namespace, box.name, box.token) as first,
        tunnel(stack, box.namespace, box.name, box.token) as second,
    ):
        for connection in (first, second):
            assert await asyncio.wait_for(connection.recv(), 10) == BANNER
        assert (await refusal(stack, box.namespace, box.name, box.token))[0] == 4429
    async with tunnel(stack, box.namespace, box.name, box.token) as again:
        assert await asyncio.wait_for(again.recv(), 10) == BANNER


@pytest.mark.parametrize("tunnel_settings", [{"tunnel_max_per_token": 1}])
async def test_an_unexpected_failure_gives_the_tunnel_slot_back(
    stack: Stack, box: Box, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.tunnel import Tunnels

    async def broken(self: Tunnels, devbox: object) -> object:
        raise RuntimeError("unexpected")

    with monkeypatch.context() as patched:
        patched.setattr(Tunnels, "_target", broken)
        assert (await refusal(stack, box.namespace, box.name, box.token))[0] == 1011
    async with tunnel(stack, box.namespace, box.name, box.token) as again:  # slot was freed
        assert await asyncio.wait_for(again.recv(), 10) == BANNER


@pytest.mark.parametrize("tunnel_settings", [{"tunnel_idle_timeout_seconds": 0.5}])
async def test_an_idle_tunnel_is_closed(stack: Stack, box: Box) -> None:
    async with tunnel(stack, box.namespace, box.name, box.token) as connection:
        assert await asyncio.wait_for(connection.recv(), 10) == BANNER
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(connection.recv(), 10)
        assert connection.close_code == 4408


async def last_activity(stack: Stack, box: Box) -> str | None:
    """The devbox's ``status.lastActivityTime`` (None before the first write)."""
    obj = await stack.sim.kube.get(DEVBOXES, box.namespace, box.name)
    found: str | None = (obj.get("status") or {}).get("lastActivityTime")
    return found


@pytest.mark.parametrize("tunnel_settings", [{"tunnel_activity_interval_seconds": 0.2}])
async def test_an_open_tunnel_keeps_recording_activity(stack: Stack, box: Box) -> None:
    async def activity() -> str | None:
        return await last_activity(stack, box)

    assert await activity() is None
    async with tunnel(stack, box.namespace, box.name, box.token) as connection:
        assert await asyncio.wait_for(connection.recv(), 10) == BANNER
        first = await until_async(activity, 5, "lastActivityTime written")

        async def newer() -> bool:
            now = await activity()
            return now is not None and now > first

        await until_async(newer, 5, "lastActivityTime refreshed while open")


async def test_metrics_count_tunnels_and_bytes(stack: Stack, box: Box) -> None:
    async def metric(name: str) -> float:
        text = (await stack.server.http.get(f"{stack.server.url}/metrics")).text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name) and not line.startswith("#")
        )

    opened = await metric("devbox_tunnels_opened_total")
    sent = await metric('devbox_tunnel_bytes_total{direction="to_devbox"}')
    async with tunnel(stack, box.namespace, box.name, box.token) as connection:
        await asyncio.wait_for(connection.recv(), 10)
        assert await metric("devbox_tunnels_active") >= 1
        await connection.send(b"12345\n")
        await asyncio.wait_for(connection.recv(), 10)
    assert await metric("devbox_tunnels_opened_total") == opened + 1
    assert await metric('devbox_tunnel_bytes_total{direction="to_devbox"}') == sent + 6

    async def closed() -> bool:
        return await metric("devbox_tunnels_active") == 0

    await until_async(closed, 5, "tunnel counted as closed")


async def test_an_ssh_port_that_does_not_answer_is_reported(stack: Stack, box: Box) -> None:
    await stack.sim.kube.patch(
        PODS,
        box.namespace,
        box.name,
        {"metadata": {"annotations": {f"{FORWARD_PREFIX}{SSH_PORT}": None}}},
    )

    async def refused() -> bool:
        return (await refusal(stack, box.namespace, box.name, box.token))[0] == 4502

    await until_async(refused, 10, "the tunnel reports the unreachable SSH port")


@pytest.mark.parametrize("tunnel_settings", [{"tunnel_activity_interval_seconds": 0.2}])
async def test_an_open_tunnel_keeps_idle_auto_stop_away(stack: Stack, ssh_port: str) -> None:
    box = await running_devbox(stack, address=ssh_port, autoStop={"idleTimeoutSeconds": 2})
    async with tunnel(stack, box.namespace, box.name, box.token) as connection:
        assert await asyncio.wait_for(connection.recv(), 10) == BANNER
        for _ in range(3):  # three idle timeouts with the tunnel open but no traffic
            await asyncio.sleep(2)
            obj = await stack.sim.kube.get(DEVBOXES, box.namespace, box.name)
            assert obj["spec"]["state"] == "Running"
    await stack.wait_phase(box.namespace, box.name, "Stopped", within=30)  # idle once closed


async def test_reconnecting_tunnels_write_activity_at_most_once_per_interval(
    stack: Stack, box: Box
) -> None:
    async def activity() -> str | None:
        return await last_activity(stack, box)

    async def connect_once() -> None:
        async with tunnel(stack, box.namespace, box.name, box.token) as connection:
            assert await asyncio.wait_for(connection.recv(), 10) == BANNER

    await connect_once()
    first = await until_async(activity, 5, "lastActivityTime written")
    for _ in range(3):
        await asyncio.sleep(0.5)  # a rewrite would carry a later second
        await connect_once()
    assert await activity() == first  # the default interval is a minute


async def test_revoking_the_token_closes_its_open_tunnel(stack: Stack, box: Box) -> None:
    from app.tunnel import tunnels_of

    tunnels_of(stack.server.services).revalidate_seconds = 0.2
    async with tunnel(stack, box.namespace, box.name, box.token) as connection:
        assert await asyncio.wait_for(connection.recv(), 10) == BANNER
        listed = await stack.gql(box.token, "{ apiTokens(first: 5) { edges { node { id } } } }")
        token_id = listed["apiTokens"]["edges"][0]["node"]["id"]
        await stack.gql(
            box.token,
            "mutation($id: ID!) { apiTokenRevoke(input: {id: $id}) { userErrors { code } } }",
            id=token_id,
        )
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(connection.recv(), 10)
        assert connection.close_code == 4401


async def test_a_database_outage_is_a_retry_later_not_a_server_error(
    stack: Stack, box: Box
) -> None:
    from app.db.engine import create_engine, session_factory

    services = stack.server.services
    working = services.sessionmaker
    dead = create_engine("postgresql+asyncpg://postgres@127.0.0.1:9/nowhere")
    services.sessionmaker = session_factory(dead)
    services.extras.pop("authenticator", None)  # forget verified tokens
    try:
        code, _ = await refusal(stack, box.namespace, box.name, box.token)
    finally:
        services.sessionmaker = working
        services.extras.pop("authenticator", None)
        await dead.dispose()
    assert code == 1013
