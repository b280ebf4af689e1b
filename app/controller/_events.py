"""Kubernetes Events on a Devbox for its transitions (``kubectl describe devbox`` shows them).

Best effort: an Event that cannot be written is logged, never retried, and never fails a
reconcile.
"""

from __future__ import annotations

import logging
import time

from app.controller._status import now
from app.kubeclient import EVENTS, Kube, KubeError
from app.resources import API_VERSION, Devbox

log = logging.getLogger(__name__)

COMPONENT = "devbox-controller"


class EventRecorder:
    """Writes core/v1 Events about devboxes."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    async def record(self, devbox: Devbox, kind: str, reason: str, message: str) -> None:
        """Write one Event (``kind`` is ``Normal`` or ``Warning``)."""
        stamp = now().strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            # Named like client-go's recorder: <object>.<unix nanoseconds in hex>.
            "metadata": {
                "name": f"{devbox.name}.{time.time_ns():x}",
                "namespace": devbox.namespace,
            },
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": "Devbox",
                "name": devbox.name,
                "namespace": devbox.namespace,
                "uid": devbox.metadata.uid,
            },
            "reason": reason,
            "message": message[:1024],
            "type": kind,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            await self.kube.create(EVENTS, devbox.namespace, body)
        except KubeError as exc:
            log.info("could not record event %s on %s/%s: %s", reason, *_key(devbox), exc)


def _key(devbox: Devbox) -> tuple[str, str]:
    return devbox.namespace, devbox.name
