"""The controller process: informers feed a work queue of devbox keys; workers reconcile.

Events only choose *which* devbox to look at: a Devbox event queues its key; an event on a
child (labelled ``devbox.dev/devbox``) queues its devbox; a Runtime event queues the devboxes
using it; the end of a commit call queues its devbox.  What to do is decided by
:class:`DevboxReconciler` from the caches alone.

Informers are supervised (``_supervisor``): one that ends for any reason is logged and restarted
with backoff, resuming its watch, so the controller never runs on a frozen cache.  The first
sync is bounded (``sync_timeout``): a controller whose caches cannot load fails its run, and its
owner (the process, the Deployment) restarts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from kubernetes_asyncio import client

from app.controller import _children as children
from app.controller import _metrics as metrics
from app.controller import _nodes as nodes
from app.controller._commits import CommitTracker
from app.controller._queue import WorkQueue
from app.controller._reconcile import Caches, DevboxReconciler, ReconcileConfig
from app.controller._release import ReleaseReconciler
from app.controller._supervisor import supervise
from app.kubeclient import (
    DEVBOXES,
    INGRESSES,
    JSON,
    NODES,
    PODS,
    RELEASES,
    RUNTIMES,
    SECRETS,
    SERVICES,
    EventType,
    Informer,
    Kube,
    KubeError,
)
from app.nodeshim_client import NodeShimClient, NodeShimError
from app.registry_client import RegistryClient, RegistryError
from app.settings import Settings

log = logging.getLogger(__name__)

Key = tuple[str, str]


class Controller:
    """Watches, queues and reconciles devboxes until cancelled."""

    def __init__(
        self,
        api: client.ApiClient,
        settings: Settings,
        *,
        workers: int | None = None,
        commit_retry_base: float = 2.0,
        sync_timeout: float = 300.0,
    ) -> None:
        self.settings = settings
        self.sync_timeout = sync_timeout
        self.kube = Kube(api)
        self.node_shim = NodeShimClient(
            port=settings.node_shim_port, token=settings.node_shim_token.get_secret_value()
        )
        self.workers = workers or settings.controller_workers
        self.queue: WorkQueue[Key] = WorkQueue()
        self.release_queue: WorkQueue[Key] = WorkQueue()
        password = settings.registry_password
        self.registry = RegistryClient(
            insecure=settings.registry_insecure,
            username=settings.registry_username,
            password=password.get_secret_value() if password else None,
        )
        owned = children.SELECTOR
        self.caches = Caches(
            devboxes=Informer(self.kube, DEVBOXES),
            runtimes=Informer(self.kube, RUNTIMES),
            pods=Informer(self.kube, PODS, label_selector=owned),
            services=Informer(self.kube, SERVICES, label_selector=owned),
            secrets=Informer(self.kube, SECRETS, label_selector=owned),
            ingresses=Informer(self.kube, INGRESSES, label_selector=owned),
            nodes=Informer(self.kube, NODES),
            releases=Informer(self.kube, RELEASES),
        )
        self.commits = CommitTracker(
            self.node_shim, self.queue.add, deadline=settings.commit_timeout_seconds
        )
        self.reconciler = DevboxReconciler(
            self.kube,
            self.caches,
            self.commits,
            ReconcileConfig(
                registry=settings.registry,
                domain=settings.domain,
                url_scheme=settings.url_scheme,
                ingress_class=settings.ingress_class,
                delete_commit_wait=settings.delete_commit_wait_seconds,
                commit_retry_base=commit_retry_base,
                commit_retry_max=settings.commit_retry_max_seconds,
            ),
            self.registry,
        )
        self.releaser = ReleaseReconciler(
            self.kube, self.caches.releases, self.caches.devboxes, self.registry
        )
        self.reconciles = 0
        self.errors = 0
        self.ready = asyncio.Event()
        metrics.GAUGES.queue_depth = lambda: len(self.queue)
        metrics.GAUGES.phases = lambda: (
            str((obj.get("status") or {}).get("phase") or "Unknown")
            for obj in self.caches.devboxes.objects()
        )
        self.caches.devboxes.add_handler(self._on_devbox)
        self.caches.runtimes.add_handler(self._on_runtime)
        self.caches.releases.add_handler(self._on_release)
        self.caches.nodes.add_handler(self._on_node)
        for informer in (
            self.caches.pods,
            self.caches.services,
            self.caches.secrets,
            self.caches.ingresses,
        ):
            informer.add_handler(self._on_child)

    # ------------------------------------------------------------------ event → key

    def _on_devbox(self, _event: EventType, obj: JSON, old: JSON | None) -> None:
        meta = obj.get("metadata") or {}
        namespace, name = str(meta.get("namespace")), str(meta.get("name"))
        self.queue.add((namespace, name))
        for release in self.caches.releases.objects(namespace):
            pending = (release.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
            if pending and (release.get("spec") or {}).get("devbox") == name:
                self._on_release("MODIFIED", release, None)

    def _on_release(self, _event: EventType, obj: JSON, old: JSON | None) -> None:
        meta = obj.get("metadata") or {}
        self.release_queue.add((str(meta.get("namespace")), str(meta.get("name"))))

    def _on_child(self, _event: EventType, obj: JSON, old: JSON | None) -> None:
        meta = obj.get("metadata") or {}
        owner = (meta.get("labels") or {}).get(children.DEVBOX_LABEL)
        if owner:
            self.queue.add((str(meta.get("namespace")), owner))

    def _on_node(self, event: EventType, obj: JSON, old: JSON | None) -> None:
        # Only a change of readiness matters (not heartbeats): it queues the node's devboxes.
        if event == "MODIFIED" and nodes.node_ready(obj) == nodes.node_ready(old):
            return
        name = (obj.get("metadata") or {}).get("name")
        for pod in self.caches.pods.objects():
            if (pod.get("spec") or {}).get("nodeName") == name:
                self._on_child("MODIFIED", pod, None)

    def _on_runtime(self, _event: EventType, obj: JSON, old: JSON | None) -> None:
        meta = obj.get("metadata") or {}
        ref = {"namespace": meta.get("namespace"), "name": meta.get("name")}
        for devbox in self.caches.devboxes.objects():
            if (devbox.get("spec") or {}).get("runtimeRef") == ref:
                self._on_devbox("MODIFIED", devbox, None)

    # ------------------------------------------------------------------ running

    async def _handle(self, key: Key) -> None:
        self.reconciles += 1
        started = asyncio.get_running_loop().time()
        try:
            delay = await self.reconciler.reconcile(key)
        except (KubeError, NodeShimError) as exc:
            self.errors += 1
            metrics.RECONCILES.labels("error").inc()
            wait = self.queue.add_rate_limited(key)
            level = logging.INFO if exc.temporary else logging.WARNING
            log.log(level, "reconcile %s/%s: %s; retrying in %.2fs", *key, exc, wait)
            return
        finally:
            metrics.RECONCILE_SECONDS.observe(asyncio.get_running_loop().time() - started)
        metrics.RECONCILES.labels("ok").inc()
        self.queue.forget(key)
        if delay is not None:
            self.queue.add_after(key, delay)

    async def _handle_release(self, key: Key) -> None:
        try:
            delay = await self.releaser.reconcile(key)
        except (KubeError, RegistryError) as exc:
            wait = self.release_queue.add_rate_limited(key)
            log.info("release %s/%s: %s; retrying in %.2fs", *key, exc, wait)
            return
        self.release_queue.forget(key)
        if delay is not None:
            self.release_queue.add_after(key, delay)

    async def run(self) -> None:
        """Run until cancelled."""
        informers = [
            self.caches.nodes,
            self.caches.runtimes,
            self.caches.pods,
            self.caches.services,
            self.caches.secrets,
            self.caches.ingresses,
            self.caches.releases,
            self.caches.devboxes,  # last: its first list queues every devbox
        ]
        tasks = [
            asyncio.create_task(supervise(i), name=f"informer {i.kind.plural}") for i in informers
        ]
        try:
            deadline = asyncio.get_running_loop().time() + self.sync_timeout
            for informer in informers:
                left = deadline - asyncio.get_running_loop().time()
                await informer.wait_synced(within=max(left, 0.0))
            log.info(
                "controller: caches synced (%d devboxes); %d workers",
                len(self.caches.devboxes),
                self.workers,
            )
            self.ready.set()
            # The supervised informers never end; if one does (a bug), the run fails loudly.
            await asyncio.gather(
                self.queue.run(self.workers, self._handle),
                self.release_queue.run(2, self._handle_release),
                *tasks,
            )
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.commits.close()
            await self.reconciler.activity.close()
            await self.node_shim.close()
            await self.registry.close()
