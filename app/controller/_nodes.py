"""Whether a devbox's pod was lost with its node (pure: reads a pod and its node).

A pod on a node that stopped reporting (node ``Ready`` not ``True``, or the node gone), or one
the node lifecycle controller marked (``Ready: Unknown``, reason ``NodeLost``), will never
answer SSH; the devbox shows ``Failed`` with the reason and what to do instead of waiting.
It is level-based: when the node comes back, the next look finds the pod healthy again.
"""

from __future__ import annotations

from app.kubeclient import JSON

NODE_LOST = "NodeLost"


def node_ready(node: JSON | None) -> str | None:
    """The status of the node's ``Ready`` condition (``"True"``, ``"False"``, ``"Unknown"``),
    or None without one."""
    for cond in ((node or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return str(cond.get("status"))
    return None


def pod_lost(pod: JSON, node: JSON | None) -> tuple[str, str] | None:
    """Why ``pod`` is lost with its node (reason, message with a suggested action), or None.

    ``node`` is the cached Node named by the pod's ``spec.nodeName`` (None if there is none).
    """
    node_name = (pod.get("spec") or {}).get("nodeName")
    if not node_name:
        return None  # not scheduled yet: nothing to lose
    pod_status = pod.get("status") or {}
    ready: JSON = next(
        (c for c in pod_status.get("conditions") or [] if c.get("type") == "Ready"), {}
    )
    if node is None:
        detail = "it no longer exists"
    elif (ready_status := node_ready(node)) != "True":
        detail = f"it is not ready (Ready={ready_status or 'missing'})"
    elif pod_status.get("reason") == NODE_LOST or ready.get("status") == "Unknown":
        detail = "the pod's status is unknown"
    else:
        return None
    return (
        NODE_LOST,
        f"the devbox's node {node_name} stopped responding: {detail}. Changes since the last "
        "commit may be lost. Wait for the node to recover; if it does not, stop and start the "
        "devbox to run it on another node from its last commit",
    )
