"""The controller: reconciles Devbox resources into pods, services, secrets and ingresses,
and drives stop → commit (through the node-shim) → start.

Layers, bottom up: :mod:`app.kubeclient`, :mod:`app.nodeshim_client` and
:mod:`app.registry_client` (the only modules that talk to Kubernetes, the node-shim and the
registry); ``_children`` (desired child objects, pure), ``_status`` (status helpers, pure),
``_queue`` (work queue), ``_commits`` (commit calls in flight), ``_events`` and ``_metrics``;
``_reconcile`` (one devbox, level-based) and ``_release`` (one DevboxRelease); ``_controller``
(informers → queues → workers); ``_leader`` (Lease-based leader election).
:mod:`app.controller.runner` is the entry point ``devboxctl serve`` starts.

Annotations a user (or the API) may set on a Devbox: ``devbox.dev/restart-requested-at``
(RFC 3339; commit, then a new pod from the commit) and ``devbox.dev/abandon-changes: "true"``
(on deletion: do not wait for a commit in flight).
"""

from app.controller._controller import Controller
from app.controller._queue import WorkQueue
from app.controller._reconcile import (
    ABANDON_ANNOTATION,
    FINALIZER,
    RESTART_ANNOTATION,
    DevboxReconciler,
    ReconcileConfig,
)

__all__ = [
    "ABANDON_ANNOTATION",
    "FINALIZER",
    "RESTART_ANNOTATION",
    "Controller",
    "DevboxReconciler",
    "ReconcileConfig",
    "WorkQueue",
]
