"""Keeps the controller's informers alive: an informer that ends is restarted with backoff.

Why restart rather than stop the controller: an informer's state (its store and the last
resourceVersion) survives a restart, and :meth:`Informer.run` resumes the watch from that
version (listing again, with the differences reported to the handlers, only when it is gone),
so no event is lost and the other informers, the queue and commits in flight go on undisturbed.
The informer already retries API errors itself; what reaches here is anything else (a bug, a
malformed answer): each restart is logged with its traceback and counted in
``devbox_controller_informer_restarts_total``, and the delay doubles (with jitter) up to
``max_backoff``, back to ``base`` once the informer has run for ``healthy_after`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import random

from app.controller import _metrics as metrics
from app.kubeclient import Informer

log = logging.getLogger(__name__)


async def supervise(
    informer: Informer,
    *,
    base: float = 0.1,
    max_backoff: float = 30.0,
    healthy_after: float = 60.0,
) -> None:
    """Run ``informer`` until cancelled, restarting it whenever it ends."""
    loop = asyncio.get_running_loop()
    backoff = base
    resource = informer.kind.plural
    while True:
        started = loop.time()
        try:
            await informer.run()
            log.error("informer %s ended; restarting in %.2fs", resource, backoff)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("informer %s failed; restarting in %.2fs", resource, backoff)
        metrics.INFORMER_RESTARTS.labels(resource).inc()
        if loop.time() - started >= healthy_after:
            backoff = base
        await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
        backoff = min(backoff * 2, max_backoff)
