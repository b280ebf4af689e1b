"""SSH over WebSocket: ``/tunnel/{namespace}/{devbox}`` relays bytes to the devbox's SSH port.

For networks where node ports are not reachable (or only HTTPS passes), a client opens a
WebSocket here and gets a byte stream to the SSH server of one of *its own* running devboxes
— ``devboxctl ssh-proxy`` does this for OpenSSH's ``ProxyCommand``.

Protocol
--------
- Authentication, one of:

  - ``Authorization: Bearer <token>`` on the upgrade request (CLI clients);
  - for browsers, which cannot set headers on a WebSocket: offer the subprotocols
    ``devbox.tunnel.v1`` and ``bearer.<token as unpadded base64url>`` (the scheme Kubernetes
    uses for its own WebSockets).  The server answers with ``devbox.tunnel.v1``, never echoing
    the token.  A token is never accepted in the URL (it would end up in access logs).

- Data: binary frames both ways, each carrying a piece of the SSH byte stream (clients send at
  most 64 KiB per frame; the server refuses frames over ``max_request_bytes``).  A text frame
  is a protocol error (close 1003).
- Keep-alive: WebSocket ping/pong frames — the server (uvicorn's ``ws_ping_interval``) and
  ``devboxctl`` both ping every 20 s, so proxies see traffic and dead peers are noticed.

The only place a tunnel can reach is the SSH port (the container port named ``ssh``) of the
devbox's own pod, at the pod's IP, looked up from Kubernetes when the tunnel opens: no host or
port comes from the client.  Refusals close the socket (after accepting it, so that browsers
see the code) with:

==== =================================================================================
4401 no token, or an unknown, expired or revoked one
4404 no such devbox in the token's namespace (another namespace's devbox looks the same)
4403 the devbox belongs to another user
4409 the devbox is not Running (or its pod is not ready yet)
4429 the token already holds ``tunnel_max_per_token`` tunnels
4502 the devbox's SSH port did not accept the connection
4408 closed after ``tunnel_idle_timeout_seconds`` without a byte either way
4401 (on an open tunnel) its token was revoked or expired (checked every
     :data:`REVALIDATE_SECONDS`)
1013 the server cannot check right now (its cache is not ready): retry
1000 the SSH server closed the connection (or the client did)
==== =================================================================================

Relaying applies back-pressure both ways: a frame is read from the WebSocket only after the
previous one was written to the TCP socket and drained, and the TCP socket is read (64 KiB at a
time) only after the previous frame was sent, so memory per tunnel is bounded whatever the
speed of either side.

While a devbox has an open tunnel its ``status.lastActivityTime`` is written (through the
status subresource, a merge patch conditional on the resourceVersion) at most once per
``tunnel_activity_interval_seconds``, so the controller's idle auto-stop does not fire.

Metrics: ``devbox_tunnels_opened_total``, ``devbox_tunnels_closed_total{reason}``,
``devbox_tunnels_refused_total{reason}``, ``devbox_tunnels_active`` and
``devbox_tunnel_bytes_total{direction}`` (``to_devbox``, ``from_devbox``).

Errors::

    TunnelRefused        why a tunnel cannot open (carries the close code and reason)
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_client import Counter, Gauge
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from app.apicache import ReadCacheError
from app.kubeclient import DEVBOXES, JSON, PODS, Conflict, KubeError, NotFound
from app.resources import Devbox, DevboxPhase
from app.schema.auth import authenticator_of, bearer_token
from app.schema.context import Services, Viewer

log = logging.getLogger(__name__)

SUBPROTOCOL = "devbox.tunnel.v1"
BEARER_SUBPROTOCOL_PREFIX = "bearer."
CHUNK = 64 * 1024
"""Largest piece read from the SSH socket (and sent as one frame)."""
DEVBOX_LABEL = "devbox.dev/devbox"
SSH_PORT_NAME = "ssh"
DEVBOX_CONTAINER = "devbox"
CLOSE_CODES = {
    "devbox": (1000, "SSH connection closed"),
    "idle": (4408, "Idle timeout"),
    "protocol": (1003, "Binary frames only"),
    "revoked": (4401, "Unauthorized"),
}
REVALIDATE_SECONDS = 30.0
"""How often an open tunnel checks that its token is still valid (not revoked or expired)."""

OPENED = Counter("devbox_tunnels_opened_total", "SSH tunnels opened.")
CLOSED = Counter("devbox_tunnels_closed_total", "SSH tunnels closed, by reason.", ["reason"])
REFUSED = Counter("devbox_tunnels_refused_total", "SSH tunnels refused, by reason.", ["reason"])
ACTIVE = Gauge("devbox_tunnels_active", "SSH tunnels open now.")
BYTES = Counter("devbox_tunnel_bytes_total", "Bytes relayed through SSH tunnels.", ["direction"])


class TunnelRefused(Exception):
    """The tunnel cannot open; ``code`` and ``reason`` are sent in the close frame."""

    def __init__(self, code: int, reason: str, metric: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.metric = metric


def _unauthenticated() -> TunnelRefused:
    return TunnelRefused(4401, "Unauthorized", "unauthenticated")


def _not_found() -> TunnelRefused:
    return TunnelRefused(4404, "No such devbox", "not_found")


def _not_running() -> TunnelRefused:
    return TunnelRefused(4409, "The devbox is not running", "not_running")


def encode_subprotocol_token(token: str) -> str:
    """The ``bearer.<token>`` subprotocol a browser offers (unpadded base64url)."""
    return BEARER_SUBPROTOCOL_PREFIX + base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")


def _subprotocol_token(offered: list[str]) -> str | None:
    for item in offered:
        if item.startswith(BEARER_SUBPROTOCOL_PREFIX):
            raw = item[len(BEARER_SUBPROTOCOL_PREFIX) :]
            try:
                return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None
    return None


def request_token(websocket: WebSocket) -> str | None:
    """The token of the upgrade request: the Authorization header, else the subprotocol."""
    header = bearer_token(websocket.headers.get("authorization"))
    if header:
        return header
    return _subprotocol_token(list(websocket.scope.get("subprotocols") or []))


@dataclass(frozen=True)
class Target:
    """Where a devbox's SSH server listens."""

    host: str
    port: int


def ssh_target(devbox: Devbox, pod: JSON) -> Target:
    """The SSH endpoint of ``devbox``'s pod; :class:`TunnelRefused` unless it is its own,
    running pod with an IP and an ``ssh`` container port."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    spec = pod.get("spec") or {}
    owned = any(
        ref.get("kind") == "Devbox" and ref.get("uid") == devbox.metadata.uid
        for ref in meta.get("ownerReferences") or []
    )
    if (
        not owned
        or (meta.get("labels") or {}).get(DEVBOX_LABEL) != devbox.name
        or meta.get("deletionTimestamp")
        or status.get("phase") != "Running"
        or not status.get("podIP")
    ):
        raise _not_running()
    for container in spec.get("containers") or []:
        if container.get("name") != DEVBOX_CONTAINER:
            continue
        for port in container.get("ports") or []:
            number = port.get("containerPort")
            if port.get("name") == SSH_PORT_NAME and isinstance(number, int):
                return Target(str(status["podIP"]), number)
    raise _not_running()


# ---------------------------------------------------------------------- activity


@dataclass
class _DevboxActivity:
    tunnels: int = 0
    task: asyncio.Task[None] | None = None


@dataclass
class ActivityReporter:
    """Writes ``status.lastActivityTime`` of devboxes with open tunnels, at most once per
    ``interval`` seconds per devbox (however often tunnels open and close)."""

    services: Services
    interval: float
    clock: Callable[[], float] = time.monotonic
    _devboxes: dict[tuple[str, str], _DevboxActivity] = field(default_factory=dict)
    _written: dict[tuple[str, str], float] = field(default_factory=dict)
    """When each devbox's activity was last written (kept one interval after its last use)."""

    def opened(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        entry = self._devboxes.setdefault(key, _DevboxActivity())
        entry.tunnels += 1
        if entry.task is None:
            entry.task = asyncio.create_task(self._report(key))

    async def closed(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        entry = self._devboxes.get(key)
        if entry is None:
            return
        entry.tunnels -= 1
        if entry.tunnels > 0:
            return
        del self._devboxes[key]
        task, entry.task = entry.task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if key not in self._devboxes and self._due(key) <= 0:
            await self._write(key)  # the idle timer starts from the last tunnel's close
        self._forget_old()

    def _due(self, key: tuple[str, str]) -> float:
        """Seconds until ``key``'s activity may be written again (<= 0: now)."""
        return self._written.get(key, float("-inf")) + self.interval - self.clock()

    def _forget_old(self) -> None:
        now = self.clock()
        for key in [k for k, at in self._written.items() if now - at > self.interval]:
            if key not in self._devboxes:
                del self._written[key]

    async def _report(self, key: tuple[str, str]) -> None:
        while True:
            wait = self._due(key)
            if wait > 0:
                await asyncio.sleep(wait)
            await self._write(key)

    async def _write(self, key: tuple[str, str]) -> None:
        """Write the time now (unless a newer one is stored); counted as written only once
        done, so a write cut short (its tunnel closed meanwhile) is made again."""
        started = self.clock()
        namespace, name = key
        stamp = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        kube = self.services.kube
        for _attempt in range(3):
            try:
                current = await kube.get(DEVBOXES, namespace, name)
                known = (current.get("status") or {}).get("lastActivityTime")
                if not (isinstance(known, str) and known >= stamp):
                    await kube.patch(
                        DEVBOXES,
                        namespace,
                        name,
                        {
                            "metadata": {"resourceVersion": current["metadata"]["resourceVersion"]},
                            "status": {"lastActivityTime": stamp},
                        },
                        subresource="status",
                    )
                break
            except Conflict:
                continue
            except NotFound:
                break
            except KubeError as exc:
                log.warning("tunnel: cannot record activity of %s/%s: %s", namespace, name, exc)
                break
        self._written[key] = started


# ---------------------------------------------------------------------- endpoint


class Tunnels:
    """The ``/tunnel`` endpoint of one API server process, with its per-token counts."""

    def __init__(self, services: Services) -> None:
        self.services = services
        settings = services.settings
        self.max_per_token = settings.tunnel_max_per_token
        self.idle_timeout = settings.tunnel_idle_timeout_seconds
        self.connect_timeout = settings.tunnel_connect_timeout_seconds
        self.activity = ActivityReporter(services, settings.tunnel_activity_interval_seconds)
        self.revalidate_seconds = REVALIDATE_SECONDS
        self.per_token: dict[str, int] = {}

    async def __call__(self, websocket: WebSocket) -> None:
        namespace = str(websocket.path_params.get("namespace", ""))
        name = str(websocket.path_params.get("devbox", ""))
        offered = list(websocket.scope.get("subprotocols") or [])
        subprotocol = SUBPROTOCOL if SUBPROTOCOL in offered else None
        viewer: Viewer | None = None
        token = request_token(websocket)
        try:
            viewer, devbox = await self._authorize(token, namespace, name)
            # No await between the check and the count: concurrent opens cannot overshoot.
            if self.per_token.get(viewer.token_id, 0) >= self.max_per_token:
                viewer = None
                raise TunnelRefused(4429, "Too many tunnels for this token", "too_many")
            self.per_token[viewer.token_id] = self.per_token.get(viewer.token_id, 0) + 1
            target = await self._target(devbox)
        except TunnelRefused as refusal:
            REFUSED.labels(refusal.metric).inc()
            await websocket.accept(subprotocol)
            await websocket.close(refusal.code, refusal.reason)
            self._release(viewer)
            return
        except Exception:  # a bug or an unexpected answer: the slot is given back, no 500 page
            log.exception("tunnel to %s/%s could not be opened", namespace, name)
            REFUSED.labels("error").inc()
            self._release(viewer)
            await websocket.accept(subprotocol)
            await websocket.close(1011, "Internal error; see the server log")
            return
        try:
            await self._open(websocket, subprotocol, viewer, token, namespace, name, target)
        finally:
            self._release(viewer)

    def _release(self, viewer: Viewer | None) -> None:
        """Give back the viewer's tunnel slot (None: it had not taken one)."""
        if viewer is None or viewer.token_id not in self.per_token:
            return
        left = self.per_token[viewer.token_id] - 1
        if left:
            self.per_token[viewer.token_id] = left
        else:
            del self.per_token[viewer.token_id]

    async def _authorize(
        self, token: str | None, namespace: str, name: str
    ) -> tuple[Viewer, Devbox]:
        """The viewer and its devbox; refused unless the viewer owns it."""
        try:
            viewer = await authenticator_of(self.services).viewer(token)
        except Exception as exc:  # the database is down: a clean "retry", not a 500
            log.warning("tunnel: cannot check the API token", exc_info=True)
            raise TunnelRefused(1013, "Try again later", "unavailable") from exc
        if viewer is None:
            raise _unauthenticated()
        if viewer.namespace != namespace:
            raise _not_found()
        cache = self.services.cache
        try:
            devbox = cache.devbox(namespace, name) if cache is not None else None
        except ReadCacheError as exc:
            raise TunnelRefused(1013, "Try again later", "unavailable") from exc
        if not isinstance(devbox, Devbox):
            raise _not_found()
        if devbox.spec.owner != viewer.user_name:
            raise TunnelRefused(4403, "Only the devbox's owner may connect", "forbidden")
        return viewer, devbox

    async def _target(self, devbox: Devbox) -> Target:
        """The running devbox's SSH endpoint, from its pod."""
        if devbox.status.phase != DevboxPhase.RUNNING or not devbox.status.pod_name:
            raise _not_running()
        try:
            pod = await self.services.kube.get(PODS, devbox.namespace, devbox.status.pod_name)
        except NotFound:
            raise _not_running() from None
        except KubeError as exc:
            raise TunnelRefused(1013, "Try again later", "unavailable") from exc
        return ssh_target(devbox, pod)

    async def _open(
        self,
        websocket: WebSocket,
        subprotocol: str | None,
        viewer: Viewer,
        token: str | None,
        namespace: str,
        name: str,
        target: Target,
    ) -> None:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(target.host, target.port, limit=CHUNK),
                self.connect_timeout,
            )
        except (OSError, TimeoutError) as exc:
            log.info("tunnel to %s/%s: SSH port unreachable: %s", namespace, name, exc)
            REFUSED.labels("unreachable").inc()
            await websocket.accept(subprotocol)
            await websocket.close(4502, "The devbox's SSH port is not reachable")
            return
        await websocket.accept(subprotocol)
        OPENED.inc()
        ACTIVE.inc()
        self.activity.opened(namespace, name)
        started = time.monotonic()

        async def still_valid() -> bool:
            return await authenticator_of(self.services).viewer(token) is not None

        relay = _Relay(
            websocket, reader, writer, self.idle_timeout, still_valid, self.revalidate_seconds
        )
        reason = "error"
        try:
            reason = await relay.run()
        finally:
            ACTIVE.dec()
            CLOSED.labels(reason).inc()
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            await self.activity.closed(namespace, name)
            log.info(
                "tunnel %s/%s by %s closed (%s) after %.1fs: %d bytes in, %d out",
                namespace,
                name,
                viewer.user_name,
                reason,
                time.monotonic() - started,
                relay.to_devbox,
                relay.from_devbox,
            )


class _Relay:
    """Copies bytes both ways until either side closes or the tunnel idles out."""

    def __init__(
        self,
        websocket: WebSocket,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        idle_timeout: float,
        still_valid: Callable[[], Awaitable[bool]],
        revalidate_seconds: float,
    ) -> None:
        self.websocket = websocket
        self.reader = reader
        self.writer = writer
        self.idle_timeout = idle_timeout
        self.still_valid = still_valid
        self.revalidate_seconds = revalidate_seconds
        self.last_io = time.monotonic()
        self.to_devbox = 0
        self.from_devbox = 0

    async def run(self) -> str:
        """Relay; why it ended: ``client``, ``devbox``, ``idle``, ``protocol``, ``revoked``
        or ``error``."""
        jobs: dict[asyncio.Task[str], str] = {
            asyncio.create_task(self._upstream()): "up",
            asyncio.create_task(self._downstream()): "down",
            asyncio.create_task(self._idle()): "idle",
            asyncio.create_task(self._token_check()): "token",
        }
        try:
            done, _ = await asyncio.wait(jobs, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for job in jobs:
                job.cancel()
            for job in jobs:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await job
        reason = "error"
        for job in done:
            if not job.cancelled() and job.exception() is None:
                reason = job.result()
        code, text = CLOSE_CODES.get(reason, (1011, "Tunnel error"))
        if reason != "client":
            await self._close(code, text)
        return reason

    async def _close(self, code: int, reason: str) -> None:
        if self.websocket.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
                await self.websocket.close(code, reason)

    async def _upstream(self) -> str:
        """WebSocket → SSH port."""
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return "client"
            data = message.get("bytes")
            if data is None:
                return "protocol"
            self.last_io = time.monotonic()
            self.writer.write(data)
            try:
                await self.writer.drain()
            except OSError:
                return "devbox"
            self.to_devbox += len(data)
            BYTES.labels("to_devbox").inc(len(data))

    async def _downstream(self) -> str:
        """SSH port → WebSocket."""
        while True:
            try:
                chunk = await self.reader.read(CHUNK)
            except OSError:
                return "devbox"
            if not chunk:
                return "devbox"
            self.last_io = time.monotonic()
            try:
                await self.websocket.send_bytes(chunk)
            except (WebSocketDisconnect, RuntimeError, OSError):
                return "client"
            self.from_devbox += len(chunk)
            BYTES.labels("from_devbox").inc(len(chunk))

    async def _token_check(self) -> str:
        """Ends the tunnel once its token is revoked or expired."""
        while True:
            await asyncio.sleep(self.revalidate_seconds)
            try:
                valid = await self.still_valid()
            except Exception:  # the database is down: keep the tunnel, check again later
                log.warning("tunnel: cannot check its token; checking again later", exc_info=True)
                continue
            if not valid:
                return "revoked"

    async def _idle(self) -> str:
        while True:
            left = self.last_io + self.idle_timeout - time.monotonic()
            if left <= 0:
                return "idle"
            await asyncio.sleep(left)


def tunnels_of(services: Services) -> Tunnels:
    """The process's :class:`Tunnels` (kept in ``services.extras``; made on first use)."""
    found = services.extras.get("tunnels")
    if isinstance(found, Tunnels):
        return found
    created = Tunnels(services)
    services.extras["tunnels"] = created
    return created


def tunnel_route(services: Services) -> WebSocketRoute:
    """The ``/tunnel/{namespace}/{devbox}`` route for ``create_app``."""
    tunnels = tunnels_of(services)

    async def tunnel(websocket: WebSocket) -> None:
        await tunnels(websocket)

    return WebSocketRoute("/tunnel/{namespace}/{devbox}", tunnel)
