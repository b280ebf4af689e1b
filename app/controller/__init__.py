"""The controller: reconciles Devbox resources into pods, services, secrets and ingresses,
and drives stop → commit (through the node-shim) → start.

Layers, bottom up: :mod:`app.kubeclient`, :mod:`app.nodeshim_client` and
:mod:`app.registry_client` (the only modules that talk to Kubernetes, the node-shim and the
registry); ``_children`` (desired child objects, pure), ``_status`` (status helpers, pure),
``_queue`` (work queue), ``_commits`` (commit calls in flight), ``_snapshots`` (when a running
devbox's next snapshot commit is due and its record, pure), ``_sshkeys`` (noticing regenerated
SSH keys, pure), ``_nodes`` (a pod lost with its node, pure), ``_events`` and ``_metrics``;
``_pods`` (reading a pod, pure), ``_records`` (rules over commit records, pure), ``_activity``
(asks the node-shim about a running devbox's SSH connections and writable layer: idle
auto-stop, the ``StorageWithinLimit`` condition); the devbox
reconciler, one job per module stacked in this order: ``_base`` (caches, owned children,
conditional status writes) → ``_running`` → ``_stopping`` (stop commits, auto-stop) →
``_restoring`` → ``_deleting`` (finalizer) → ``_reconcile`` (entry point and lifecycle); and
``_release`` (one DevboxRelease); ``_controller``
(informers → queues → workers, with ``_supervisor`` restarting an informer that ends);
``_leader`` (Lease-based leader election).
:mod:`app.controller.runner` is the entry point ``devboxctl serve`` starts.

Annotations a user (or the API) may set on a Devbox: ``devbox.dev/restart-requested-at``
(RFC 3339; commit, then a new pod from the commit) and ``devbox.dev/abandon-changes: "true"``,
which gives up changes that cannot be saved:

- on deletion: do not wait for a commit in flight;
- on start (``spec.state: Running``) while the pod's container has stopped and no commit saved
  it (a stop commit failed after the node-shim stopped the task): without the annotation the
  start is refused (phase ``Failed``, the pod and its changes are kept, the message says how to
  save or abandon them); with it the pod is deleted, the devbox starts from the last successful
  commit (an applied restore counts as one), the failed attempt stays in ``status.commits`` as
  ``Failed`` with a reason starting ``abandoned:``, and the controller removes the annotation.

``spec.restoreCommit: <commit id>`` is a one-time choice (a rollback), applied only while the
devbox is Stopped (no pod, no commit in flight, phase ``Stopped``/``Stopping``); otherwise the
``Restored`` condition says why it was not applied.  Applying it appends a ``Restore`` record
(``restoredFrom``: the commit id; its image) to ``status.commits``, whose image becomes current;
later commits are kept, and from then on the newest successful record wins again.  How the
controller knows it was applied, from status alone: a restore is pending while the newest
``Restore`` record does not name ``spec.restoreCommit`` (trimming the history always keeps that
record), so a restarted controller neither applies it twice nor forgets it.  To restore the same
commit again after later commits, set ``spec.restoreCommit`` to the id of its ``Restore`` record.

``spec.snapshotIntervalSeconds > 0``: a Running devbox gets a ``Snapshot`` commit (pause → diff
→ resume; the container keeps running) every interval; see ``_snapshots``.
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
