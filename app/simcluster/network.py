"""The simulated pod network and kube-proxy: real TCP endpoints for simulated pods.

Simulated pods run nothing, so by default nothing answers on a pod IP or a node port.  Two
opt-in extensions make a pod's port a real TCP endpoint, so that SSH (or any TCP client) can
be tested end to end against a process the test starts:

- **Forwarded container ports.**  A pod annotated ``sim.devbox.dev/forward-<containerPort>:
  <host>:<port>`` has that container port "served" by ``<host>:<port>``: the simulated kubelet
  listens on ``<podIP>:<containerPort>`` and relays each connection there.  This needs pod IPs
  the machine can bind, i.e. a loopback pod network (``NodeSettings.pod_cidr``, e.g.
  ``127.244.0.0/16``: Linux routes all of ``127.0.0.0/8`` to the loopback interface).  The
  annotation may be added or changed at any time, as the real kubelet would start or restart
  a container's server.  Without it a connection is refused, like a container with nothing
  listening on the port.
- **NodePorts** (``NodeSettings.proxy_node_ports``).  Like kube-proxy, every node port of a
  ``NodePort`` Service is served on the node address (``NodeSettings.address``, 127.0.0.1):
  each connection goes to a Ready pod the Service selects, at the target port (a number, or a
  container port name), through that pod's forward (or its IP).  No ready endpoint: the
  connection is closed at once, as kube-proxy rejects it.

When a pod stops being ready (deleted, stopped), its listeners close and so do the
connections it was serving, as when a container dies.  A port that cannot be bound (taken by
another process) is logged and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from dataclasses import dataclass

from app.simcluster.kinds import JSON
from app.simcluster.store import Event, Store

log = logging.getLogger(__name__)

FORWARD_PREFIX = "sim.devbox.dev/forward-"
"""Annotation prefix: ``sim.devbox.dev/forward-<containerPort>: host:port``."""
POD_KEY = ("", "pods")
SERVICE_KEY = ("", "services")
RELAY_CHUNK = 64 * 1024


def parse_address(value: str) -> tuple[str, int] | None:
    """``host:port`` (``[v6]:port`` too) as a pair, or None when malformed."""
    host, sep, port = value.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


def forwards(pod: JSON) -> dict[int, tuple[str, int]]:
    """The pod's forwarded container ports: container port → real address."""
    found: dict[int, tuple[str, int]] = {}
    for key, value in ((pod.get("metadata") or {}).get("annotations") or {}).items():
        if not key.startswith(FORWARD_PREFIX) or not isinstance(value, str):
            continue
        port = key[len(FORWARD_PREFIX) :]
        target = parse_address(value)
        if port.isdigit() and target is not None:
            found[int(port)] = target
    return found


def pod_ready(pod: JSON) -> bool:
    status = pod.get("status") or {}
    if pod["metadata"].get("deletionTimestamp") or status.get("phase") != "Running":
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def container_port(pod: JSON, target: object) -> int | None:
    """A Service's ``targetPort`` (number or name) as the pod's container port number."""
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == target and isinstance(port.get("containerPort"), int):
                return int(port["containerPort"])
    return None


def _loopback(ip: str | None) -> bool:
    try:
        return ip is not None and ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


@dataclass
class _Listener:
    server: asyncio.Server
    owner: str
    """Pod uid (container-port listeners) or service uid (node ports)."""


class PodNetwork:
    """Listeners for forwarded container ports and (optionally) node ports."""

    def __init__(
        self, store: Store, loop: asyncio.AbstractEventLoop, node_address: str, node_ports: bool
    ) -> None:
        self.store = store
        self.loop = loop
        self.node_address = node_address
        self.node_ports = node_ports
        self._listeners: dict[tuple[str, int], _Listener] = {}
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._connections: dict[asyncio.Task[None], str] = {}
        """Open connections and the uid of the pod serving each (closed when it goes)."""
        store.listeners.append(self.on_event)

    def start(self) -> None:
        self._dirty.set()
        self._task = self.loop.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for listener in self._listeners.values():
            listener.server.close()
        self._listeners.clear()
        for task in list(self._connections):
            task.cancel()
        self._connections.clear()

    def on_event(self, event: Event) -> None:
        if event.key in (POD_KEY, SERVICE_KEY):
            self._dirty.set()

    # ------------------------------------------------------------------ listeners

    def _wanted(self) -> dict[tuple[str, int], str]:
        wanted: dict[tuple[str, int], str] = {}
        for pod in self.store.objects(POD_KEY):
            ip = (pod.get("status") or {}).get("podIP")
            if not _loopback(ip) or not pod_ready(pod):
                continue
            for port in forwards(pod):
                wanted[(str(ip), port)] = pod["metadata"]["uid"]
        if self.node_ports:
            for service in self.store.objects(SERVICE_KEY):
                spec = service.get("spec") or {}
                if spec.get("type") not in ("NodePort", "LoadBalancer"):
                    continue
                for port in spec.get("ports") or []:
                    if isinstance(port.get("nodePort"), int):
                        wanted[(self.node_address, port["nodePort"])] = service["metadata"]["uid"]
        return wanted

    async def _run(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            wanted = self._wanted()
            ready = {
                pod["metadata"]["uid"] for pod in self.store.objects(POD_KEY) if pod_ready(pod)
            }
            for task, pod_uid in list(self._connections.items()):
                if pod_uid not in ready:  # the container went away: so do its connections
                    task.cancel()
            for key in [k for k, v in self._listeners.items() if wanted.get(k) != v.owner]:
                self._listeners.pop(key).server.close()
            for key, owner in wanted.items():
                if key not in self._listeners:
                    await self._listen(key, owner)

    async def _listen(self, key: tuple[str, int], owner: str) -> None:
        host, port = key

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._serve(key, reader, writer)

        try:
            server = await asyncio.start_server(accept, host, port, reuse_address=True)
        except OSError as exc:
            log.warning("simulated network: cannot listen on %s:%s: %s", host, port, exc)
            return
        self._listeners[key] = _Listener(server, owner)

    # ------------------------------------------------------------------ connections

    def backend(self, key: tuple[str, int]) -> tuple[tuple[str, int], str] | None:
        """Where a connection to ``key`` (pod IP or node address, port) goes now, and the uid
        of the pod behind it."""
        listener = self._listeners.get(key)
        if listener is None:
            return None
        owner = self.store.by_uid(listener.owner)
        if owner is None:
            return None
        if owner.get("kind") == "Pod":
            target = forwards(owner).get(key[1])
            return (target, listener.owner) if target is not None else None
        return self._service_backend(owner, key[1])

    def _service_backend(self, service: JSON, node_port: int) -> tuple[tuple[str, int], str] | None:
        spec = service.get("spec") or {}
        selector = spec.get("selector") or {}
        port = next((p for p in spec.get("ports") or [] if p.get("nodePort") == node_port), None)
        if port is None or not selector:
            return None
        namespace = service["metadata"].get("namespace", "")
        for pod in self.store.objects(POD_KEY, namespace):
            labels = pod["metadata"].get("labels") or {}
            if not pod_ready(pod) or any(labels.get(k) != v for k, v in selector.items()):
                continue
            number = container_port(pod, port.get("targetPort", port.get("port")))
            if number is None:
                continue
            uid = pod["metadata"]["uid"]
            forwarded = forwards(pod).get(number)
            if forwarded is not None:
                return forwarded, uid
            ip = (pod.get("status") or {}).get("podIP")
            if ip:
                return (str(ip), number), uid
        return None

    async def _serve(
        self, key: tuple[str, int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        found = self.backend(key)
        task = asyncio.current_task()
        try:
            if found is None or task is None:
                return
            target, pod_uid = found
            self._connections[task] = pod_uid
            try:
                up_reader, up_writer = await asyncio.open_connection(*target, limit=RELAY_CHUNK)
            except OSError as exc:
                log.debug("simulated network: %s:%s → %s: %s", *key, target, exc)
                return
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                up_writer.close()
                with contextlib.suppress(OSError):
                    await up_writer.wait_closed()
        finally:
            if task is not None:
                self._connections.pop(task, None)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then half-close (so the other direction can finish)."""
    try:
        while chunk := await reader.read(RELAY_CHUNK):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.close()
