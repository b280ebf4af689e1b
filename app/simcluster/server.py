"""Running the simulated cluster: bootstrap, HTTP server on a loopback port, persistence.

:class:`SimCluster` wires the store, the control loops and the simulated nodes together,
serves the API with uvicorn on ``host:port`` (port 0 picks a free one), writes a kubeconfig,
and, given a state file, saves its objects there (debounced, atomically) and loads them again
on the next start so the embedded default survives a restart.

It runs either inside the caller's event loop (``await start()`` / ``await stop()``) or in a
thread of its own (``start_in_thread()`` / ``stop_thread()``), which is how tests use it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
import yaml

from app.httpserver import EmbeddedServer
from app.simcluster.controllers import (
    CRDController,
    GarbageCollector,
    NamespaceController,
    ServiceAccountController,
)
from app.simcluster.errors import NotFound
from app.simcluster.http import KubeApi, Options
from app.simcluster.kinds import JSON
from app.simcluster.network import PodNetwork
from app.simcluster.nodes import NodeSettings, NodeSimulator
from app.simcluster.store import Store

log = logging.getLogger(__name__)

T = TypeVar("T")

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
COMPACTION_AGE = 300.0
"""Seconds of history kept for watches and continue tokens (etcd compacts every 5 min)."""


class SimCluster:
    """A simulated Kubernetes API server with simulated nodes."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        nodes: int = 1,
        state_file: Path | None = None,
        node_settings: NodeSettings | None = None,
        options: Options | None = None,
        history_limit: int = 50_000,
        service_accounts: bool = False,
    ) -> None:
        """``service_accounts``: make each namespace's ``default`` ServiceAccount and every
        account's token Secret, and mount the token into new pods, as a real cluster does
        (off by default while tests that expect a namespace without Secrets are updated)."""
        self.host = host
        self.service_accounts = service_accounts
        self.port = port
        self.state_file = state_file
        self.node_settings = node_settings or NodeSettings(count=nodes)
        self.options = options or Options()
        self.store = Store(history_limit=history_limit)
        self.nodes: NodeSimulator | None = None
        self.network: PodNetwork | None = None
        self._server: EmbeddedServer | None = None
        self._serve_task: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._dirty = False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Load state, bootstrap, and start serving in the running event loop."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        restored = self._load_state()
        GarbageCollector(self.store, loop)
        NamespaceController(self.store, loop)
        CRDController(self.store, loop)
        if self.service_accounts:
            ServiceAccountController(self.store, loop)
            self.store.service_account_admission = True
        self.nodes = NodeSimulator(self.store, loop, self.node_settings)
        self.network = PodNetwork(
            self.store,
            loop,
            self.node_settings.address,
            node_ports=self.node_settings.proxy_node_ports,
        )
        self._bootstrap()
        if not restored:
            # A real server's bootstrap history is long compacted: watches from before now
            # get 410, as they would.
            self.store.compacted_rv = self.store.rv
            self.store.history.clear()
        self.store.listeners.append(lambda _event: self._mark_dirty())
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only when the
        # listening socket says TCP; without it every keep-alive response waits ~40 ms (Nagle).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            KubeApi(self.store, self.nodes, self.options).app(),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=60,
            timeout_graceful_shutdown=1,
        )
        self._server = EmbeddedServer(config)
        self._serve_task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._serve_task.done():
                self._serve_task.result()
            await asyncio.sleep(0.01)
        self._tasks.append(asyncio.create_task(self._housekeeping()))
        self.network.start()
        log.info("simulated Kubernetes API server on %s", self.url)

    async def stop(self) -> None:
        """Stop serving, close watches, and save the state."""
        for task in self._tasks:
            task.cancel()
        if self.network is not None:
            await self.network.stop()
        for watcher in list(self.store.watchers):
            self.store.unwatch(watcher)
        if self._server is not None:
            self._server.should_exit = True
        if self._serve_task is not None:
            try:
                await asyncio.wait_for(self._serve_task, 5)
            except (TimeoutError, asyncio.CancelledError):
                self._serve_task.cancel()
        self.save_state()

    def start_in_thread(self) -> None:
        """Run the cluster in its own thread and event loop; returns once it serves."""
        ready: Future[None] = Future()

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:
                ready.set_exception(exc)
                return
            ready.set_result(None)
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        self._thread = threading.Thread(target=main, name="simcluster", daemon=True)
        self._thread.start()
        ready.result(timeout=30)

    def stop_thread(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=15)

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the cluster's loop thread (for a cluster started in a thread)."""
        assert self._loop is not None
        if self._thread is None or threading.current_thread() is self._thread:
            return fn()

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=30)

    def run_coroutine(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    # ------------------------------------------------------------------ bootstrap

    def _bootstrap(self) -> None:
        ns_type = self.store.types.lookup("", "v1", "namespaces")
        svc_type = self.store.types.lookup("", "v1", "services")
        assert ns_type is not None
        assert svc_type is not None
        for name in SYSTEM_NAMESPACES:
            if self.store.find(("", "namespaces"), "", name) is None:
                self.store.create(ns_type, "", {"metadata": {"name": name}})
        assert self.nodes is not None
        self.nodes.register_nodes()
        if self.store.find(("", "services"), "default", "kubernetes") is None:
            self.store.create(
                svc_type,
                "default",
                {
                    "metadata": {
                        "name": "kubernetes",
                        "labels": {"component": "apiserver", "provider": "kubernetes"},
                    },
                    "spec": {
                        "clusterIP": "10.96.0.1",
                        "type": "ClusterIP",
                        "ports": [{"name": "https", "port": 443, "targetPort": 6443}],
                    },
                },
            )

    def apply(self, objects: Iterable[JSON]) -> list[JSON]:
        """Create or update objects directly in the store (for the embedded default)."""
        return self.call(lambda: [self._apply_one(obj) for obj in objects])

    def _apply_one(self, obj: JSON) -> JSON:
        rt = self.store.types.by_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
        if rt is None:
            raise NotFound(obj.get("kind", "").lower(), "", obj.get("kind", ""))
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace", "default") if rt.namespaced else ""
        existing = self.store.find(rt.storage_key, namespace, meta.get("name", ""))
        if existing is None:
            return self.store.create(rt, namespace, obj)
        body = json.loads(json.dumps(obj))
        body.setdefault("metadata", {})["resourceVersion"] = existing["metadata"]["resourceVersion"]
        if "status" in existing and rt.status_subresource:
            body["status"] = existing["status"]
        return self.store.update(rt, namespace, meta["name"], body)

    async def wait_for_crds_established(self, within: float = 10.0) -> None:
        """Wait until every CRD in the store serves its resources."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            pending = [
                crd
                for crd in self.store.objects(("apiextensions.k8s.io", "customresourcedefinitions"))
                if not any(
                    c.get("type") == "Established" and c.get("status") == "True"
                    for c in (crd.get("status") or {}).get("conditions") or []
                )
            ]
            if not pending:
                return
            await asyncio.sleep(0.01)
        raise TimeoutError("CRDs were not established in time")

    # ------------------------------------------------------------------ persistence

    def _mark_dirty(self) -> None:
        self._dirty = True

    def _load_state(self) -> bool:
        if self.state_file is None or not self.state_file.exists():
            return False
        try:
            state = json.loads(self.state_file.read_text())
            self.store.load(state)
        except Exception as exc:  # any unreadable state is set aside, never fatal
            broken = self.state_file.with_suffix(".broken")
            self.state_file.replace(broken)
            log.error(
                "could not load cluster state from %s (%s); moved it to %s and started empty",
                self.state_file,
                exc,
                broken,
            )
            self.store = Store(history_limit=self.store.history.maxlen or 50_000)
            return False
        log.info(
            "restored %s objects at resourceVersion %s from %s",
            sum(len(b) for b in self.store.buckets.values()),
            self.store.rv,
            self.state_file,
        )
        return True

    def save_state(self) -> None:
        """Write the state atomically: a crash leaves the old file or the new one, never half."""
        if self.state_file is None:
            return
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.state_file.with_suffix(".tmp")
        with temporary.open("w") as out:
            json.dump(self.store.dump(), out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.state_file)
        folder = os.open(self.state_file.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
        self._dirty = False

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self._dirty:
                try:
                    self.save_state()
                except OSError as exc:
                    log.error("could not save cluster state to %s: %s", self.state_file, exc)
            self.store.compact(older_than=COMPACTION_AGE)

    # ------------------------------------------------------------------ kubeconfig

    def kubeconfig(self, context: str = "devbox-sim") -> JSON:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": context, "user": {"token": "devbox-sim"}}],
            "contexts": [
                {
                    "name": context,
                    "context": {"cluster": context, "user": context, "namespace": "default"},
                }
            ],
            "current-context": context,
            "preferences": {},
        }

    def write_kubeconfig(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.kubeconfig(), sort_keys=False))
        path.chmod(0o600)
        return path
