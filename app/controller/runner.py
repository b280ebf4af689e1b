"""Entry point of the controller process (a placeholder until the controller issue lands).

It only checks that the Devbox API is served by the cluster it was given, and then waits to
be cancelled; it reconciles nothing yet.
"""

from __future__ import annotations

import asyncio
import logging

from kubernetes_asyncio import client

from app.resources.crdgen import GROUP, VERSION

log = logging.getLogger(__name__)


async def run(api: client.ApiClient) -> None:
    """Run until cancelled."""
    resources = await client.CustomObjectsApi(api).get_api_resources(GROUP, VERSION)
    served = sorted(r.name for r in resources.resources if "/" not in r.name)
    log.info(
        "controller: %s/%s serves %s; reconciling is not implemented yet",
        GROUP,
        VERSION,
        ", ".join(served),
    )
    await asyncio.Event().wait()
