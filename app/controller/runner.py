"""Entry point of the controller: runs :class:`app.controller.Controller` until cancelled.

``devboxctl serve`` starts :func:`run` next to the API server (unless ``run_controller`` is
off); ``devboxctl controller`` runs :func:`run_process`, the controller alone against a real
cluster (its own Deployment in ``k8s/devbox``), with ``/metrics`` on its own port.  With
``leader_election`` on, a replica runs it only while it holds the Lease."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket

from kubernetes_asyncio import client

from app.controller._controller import Controller
from app.controller._leader import LeaderElector
from app.kubeclient import Kube
from app.settings import ClusterMode, Settings

log = logging.getLogger(__name__)

LEASE_NAME = "devbox-controller"


async def run(api: client.ApiClient, settings: Settings | None = None) -> None:
    """Reconcile devboxes until cancelled."""
    settings = settings or Settings()
    if settings.cluster is ClusterMode.KUBE and settings.node_shim_token_is_default:
        log.warning(
            "DEVBOX_NODE_SHIM_TOKEN is the development default: anyone who can reach a "
            "node-shim can commit and delete images; set the token of the node-shim's Secret"
        )
    if not settings.leader_election:
        await Controller(api, settings).run()
        return

    async def lead() -> None:
        # A fresh controller (fresh caches, no state) for every term of leadership.
        await Controller(api, settings).run()

    identity = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
    elector = LeaderElector(
        Kube(api), namespace=settings.system_namespace, name=LEASE_NAME, identity=identity
    )
    await elector.run(lead)


class ControllerProcessError(Exception):
    """The controller process cannot start (bad settings, port in use)."""


async def run_process(settings: Settings) -> None:
    """The controller alone, until SIGINT/SIGTERM: a real cluster (``cluster = kube``, from
    ``KUBECONFIG`` or the in-cluster service account), metrics on their own port."""
    from prometheus_client import start_http_server

    from app.kube import connect

    if settings.cluster is not ClusterMode.KUBE:
        raise ControllerProcessError(
            "the controller alone needs a real cluster: set DEVBOX_CLUSTER=kube (the simulated "
            "cluster runs inside `devboxctl serve`, with its controller)"
        )
    if settings.controller_metrics_port:
        try:
            start_http_server(settings.controller_metrics_port, addr=settings.host)
        except OSError as exc:
            raise ControllerProcessError(
                f"cannot serve metrics on {settings.host}:{settings.controller_metrics_port}: "
                f"{exc.strerror or exc}; set DEVBOX_CONTROLLER_METRICS_PORT (0 turns them off)"
            ) from None
    api = await connect(kubeconfig=settings.kubeconfig)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    controller = asyncio.create_task(run(api, settings), name="controller")
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([controller, stopping], return_when=asyncio.FIRST_COMPLETED)
        if controller.done():
            controller.result()  # a controller that ended by itself is an error: raise it
    finally:
        for task in (controller, stopping):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(asyncio.gather(controller, return_exceptions=True), 10)
        await api.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
