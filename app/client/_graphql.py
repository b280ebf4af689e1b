"""A small GraphQL client for the Devbox API: queries and mutations over HTTP (httpx),
subscriptions over WebSocket (``graphql-transport-ws``, the ``websockets`` package).

HTTP and protocol failures become the client's exceptions (see :mod:`app.client._errors`):
401 → :class:`AuthError`, 5xx / unreachable → :class:`Unavailable`, GraphQL ``errors`` →
:class:`OperationFailed` (with the server's code, e.g. ``NOT_FOUND``), a payload's
``userErrors`` → :class:`OperationFailed` listing them (:func:`check_payload`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from app import __version__
from app.client._config import ClientConfig
from app.client._errors import AuthError, ClientError, NotFound, OperationFailed, Unavailable

JSON = dict[str, Any]
USER_AGENT = f"devboxctl/{__version__}"
TRANSPORT_WS = "graphql-transport-ws"


def _first_error(errors: list[JSON]) -> ClientError:
    first = errors[0] if errors else {}
    code = (first.get("extensions") or {}).get("code")
    message = str(first.get("message") or "the server reported an error")
    if code == "UNAUTHENTICATED":
        return AuthError(message)
    if code == "NOT_FOUND":
        return NotFound(message)
    return OperationFailed(message, code=code)


def check_payload(payload: JSON) -> JSON:
    """``payload`` when it has no ``userErrors``; else :class:`OperationFailed` naming them
    (:class:`NotFound` when every one is ``NOT_FOUND``)."""
    errors = payload.get("userErrors") or []
    if not errors:
        return payload
    lines = []
    for error in errors:
        field = ".".join(str(part) for part in (error.get("field") or [])[1:])
        lines.append(f"{field}: {error.get('message')}" if field else str(error.get("message")))
    message = "; ".join(lines)
    if all(e.get("code") == "NOT_FOUND" for e in errors):
        raise NotFound(message)
    raise OperationFailed(message, code=str(errors[0].get("code")))


class GraphQLClient:
    """One server and token; use ``async with``."""

    def __init__(self, config: ClientConfig, *, timeout: float = 30.0) -> None:
        self.config = config
        self._http = httpx.AsyncClient(
            base_url=config.server,
            timeout=timeout,
            headers={"Authorization": f"Bearer {config.token}", "User-Agent": USER_AGENT},
        )

    async def __aenter__(self) -> GraphQLClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    async def execute(self, document: str, variables: JSON | None = None) -> JSON:
        """Run a query or mutation; its ``data``."""
        try:
            response = await self._http.post(
                "/graphql", json={"query": document, "variables": variables or {}}
            )
        except httpx.HTTPError as exc:
            raise Unavailable(f"cannot reach {self.config.server}: {exc}") from exc
        if response.status_code == 401:
            raise AuthError("the server refused the API token (unknown, expired or revoked)")
        if response.status_code == 429:
            raise Unavailable("rate limited by the server; retry in a moment")
        if response.status_code >= 500:
            raise Unavailable(f"the server answered {response.status_code}")
        try:
            body = response.json()
        except ValueError as exc:
            raise Unavailable(
                f"{self.config.server} did not answer like a Devbox API server"
            ) from exc
        if body.get("errors"):
            raise _first_error(body["errors"])
        if response.status_code != 200 or not isinstance(body.get("data"), dict):
            raise Unavailable(f"unexpected answer from the server (HTTP {response.status_code})")
        data: JSON = body["data"]
        return data

    @contextlib.asynccontextmanager
    async def subscription(
        self, document: str, variables: JSON | None = None
    ) -> AsyncIterator[AsyncIterator[JSON]]:
        """``async with client.subscription(doc) as events: async for data in events``.

        The subscription is registered when the block is entered (the ``subscribe`` message
        is sent), so a mutation sent inside the block is seen."""
        url = f"{self.config.ws_base}/graphql"
        try:
            connection = await websockets.connect(
                url,
                subprotocols=[websockets.Subprotocol(TRANSPORT_WS)],
                user_agent_header=USER_AGENT,
                open_timeout=15,
            )
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            raise Unavailable(f"cannot open a subscription at {url}: {exc}") from exc
        try:
            await _init(connection, self.config.token)
            ident = uuid.uuid4().hex
            await connection.send(
                json.dumps(
                    {
                        "id": ident,
                        "type": "subscribe",
                        "payload": {"query": document, "variables": variables or {}},
                    }
                )
            )
            yield _events(connection, ident)
        finally:
            await connection.close()


async def _init(connection: ClientConnection, token: str) -> None:
    await connection.send(
        json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
    )
    try:
        while True:
            message = json.loads(await asyncio.wait_for(connection.recv(), 15))
            if message.get("type") == "connection_ack":
                return
            if message.get("type") == "ping":
                await connection.send(json.dumps({"type": "pong"}))
    except ConnectionClosed as exc:
        if exc.rcvd is not None and exc.rcvd.code == 4401:
            raise AuthError("the server refused the API token") from exc
        raise Unavailable(f"the subscription connection closed: {exc}") from exc
    except TimeoutError as exc:
        raise Unavailable("the server did not acknowledge the subscription connection") from exc


async def _events(connection: ClientConnection, ident: str) -> AsyncIterator[JSON]:
    try:
        async for raw in connection:
            message = json.loads(raw)
            kind = message.get("type")
            if kind == "ping":
                await connection.send(json.dumps({"type": "pong"}))
            elif kind == "next" and message.get("id") == ident:
                payload = message.get("payload") or {}
                if payload.get("errors"):
                    raise _first_error(payload["errors"])
                yield payload.get("data") or {}
            elif kind == "error" and message.get("id") == ident:
                raise _first_error(message.get("payload") or [])
            elif kind == "complete" and message.get("id") == ident:
                return
    except ConnectionClosed as exc:
        raise Unavailable(f"the subscription connection closed: {exc}") from exc
