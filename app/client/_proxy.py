"""``devboxctl ssh-proxy``: standard input/output ↔ the API server's SSH tunnel WebSocket.

OpenSSH runs it as ``ProxyCommand`` and speaks SSH over its stdin/stdout; this module relays
those bytes through ``/tunnel/<namespace>/<devbox>`` (see :mod:`app.tunnel` for the
protocol).  Both directions apply back-pressure (a chunk is read only after the previous one
was sent), and WebSocket pings every 20 s keep proxies from dropping an idle session.
The server's close code becomes the client's exception (and so the exit code).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from typing import BinaryIO

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from app.client._config import ClientConfig
from app.client._errors import (
    AuthError,
    ClientError,
    NotFound,
    OperationFailed,
    Unavailable,
)
from app.client._graphql import USER_AGENT

SUBPROTOCOL = "devbox.tunnel.v1"
CHUNK = 64 * 1024
PING_SECONDS = 20.0


def refusal(code: int | None, reason: str) -> ClientError | None:
    """The error a tunnel close code stands for (None for a normal close)."""
    if code in (None, 1000, 1001):
        return None
    text = reason or f"the tunnel was closed (code {code})"
    if code == 4401:
        return AuthError("the server refused the API token")
    if code == 4403:
        return AuthError(text)
    if code == 4404:
        return NotFound(text)
    if code in (4502, 1013, 1011):
        return Unavailable(text)
    return OperationFailed(text)


def tunnel_url(config: ClientConfig, namespace: str, name: str) -> str:
    return f"{config.ws_base}/tunnel/{namespace}/{name}"


async def open_tunnel(config: ClientConfig, namespace: str, name: str) -> ClientConnection:
    """A WebSocket to the devbox's SSH port."""
    url = tunnel_url(config, namespace, name)
    try:
        return await websockets.connect(
            url,
            subprotocols=[websockets.Subprotocol(SUBPROTOCOL)],
            additional_headers={"Authorization": f"Bearer {config.token}"},
            user_agent_header=USER_AGENT,
            compression=None,  # SSH traffic is encrypted: deflate would only cost CPU
            ping_interval=PING_SECONDS,
            ping_timeout=PING_SECONDS,
            max_size=4 * CHUNK,
            open_timeout=15,
        )
    except InvalidStatus as exc:
        if exc.response.status_code == 404:
            raise Unavailable(f"{config.server} has no SSH tunnel endpoint") from exc
        raise Unavailable(f"the tunnel was refused: HTTP {exc.response.status_code}") from exc
    except (OSError, InvalidHandshake, TimeoutError) as exc:
        raise Unavailable(f"cannot reach {url}: {exc}") from exc


async def relay(
    connection: ClientConnection, stdin: BinaryIO, stdout: BinaryIO
) -> ClientError | None:
    """Relay until either side ends; the error the server's close code stands for."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=CHUNK)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stdin)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, stdout)
    writer = asyncio.StreamWriter(transport, protocol, None, loop)

    async def upstream() -> None:
        while chunk := await reader.read(CHUNK):
            await connection.send(chunk)
        await connection.close()

    async def downstream() -> None:
        async for message in connection:
            data = message if isinstance(message, bytes) else message.encode()
            writer.write(data)
            await writer.drain()

    jobs = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
    try:
        await asyncio.wait(jobs, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for job in jobs:
            job.cancel()
        for job in jobs:
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed, OSError):
                await job
        with contextlib.suppress(OSError):
            await writer.drain()
        transport.close()
    return refusal(connection.close_code, connection.close_reason or "")


async def proxy_stdio(config: ClientConfig, namespace: str, name: str) -> None:
    """Relay this process's stdin/stdout through the devbox's tunnel."""
    connection = await open_tunnel(config, namespace, name)
    stdin = os.fdopen(os.dup(sys.stdin.fileno()), "rb", buffering=0)
    stdout = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    try:
        error = await relay(connection, stdin, stdout)
    finally:
        await connection.close()
    if error is not None:
        raise error
