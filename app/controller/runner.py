"""Entry point of the controller process: runs :class:`app.controller.Controller` until
cancelled (``devboxctl serve`` starts it next to the API server).  With
``leader_election`` on, a replica runs it only while it holds the Lease."""

from __future__ import annotations

import logging
import os
import secrets
import socket

from kubernetes_asyncio import client

from app.controller._controller import Controller
from app.controller._leader import LeaderElector
from app.kubeclient import Kube
from app.settings import Settings

log = logging.getLogger(__name__)

LEASE_NAME = "devbox-controller"


async def run(api: client.ApiClient, settings: Settings | None = None) -> None:
    """Reconcile devboxes until cancelled."""
    settings = settings or Settings()
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
