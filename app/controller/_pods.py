"""Reading a devbox pod: readiness, its container, why it cannot run, unsaved changes."""

from __future__ import annotations

from app.controller import _children as children
from app.kubeclient import JSON

PULL_ERRORS = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
)
START_ERRORS = frozenset({"CrashLoopBackOff", "CreateContainerError", "CreateContainerConfigError"})


def unsaved(pod: JSON) -> bool:
    """Whether the pod's container ran and stopped (its changes, unless a commit saved them,
    exist only in the stopped container)."""
    if terminating(pod) or container_id(pod) is None:
        return False
    state = (container_status(pod) or {}).get("state") or {}
    return bool(state.get("terminated")) or (pod.get("status") or {}).get("phase") in (
        "Failed",
        "Succeeded",
    )


def terminating(obj: JSON) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def pod_ready(pod: JSON) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def container_status(pod: JSON) -> JSON | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == children.CONTAINER:
            return dict(status)
    return None


def container_id(pod: JSON) -> str | None:
    status = container_status(pod)
    raw = str((status or {}).get("containerID") or "")
    return raw.split("://", 1)[-1] or None


def pod_failure(pod: JSON) -> tuple[str, str] | None:
    """Why the pod cannot run (reason, message with a suggested action), or None."""
    pod_status = pod.get("status") or {}
    container = container_status(pod) or {}
    state = container.get("state") or {}
    waiting = state.get("waiting") or {}
    image = container.get("image") or pod_image(pod)
    if waiting.get("reason") in PULL_ERRORS:
        detail = waiting.get("message") or waiting["reason"]
        return (
            str(waiting["reason"]),
            f"cannot pull image {image}: {detail}. Check that the image exists and its registry "
            "is reachable, or restore an earlier commit",
        )
    if waiting.get("reason") in START_ERRORS:
        return (
            str(waiting["reason"]),
            f"the container cannot start: {waiting.get('message') or waiting['reason']}. "
            "Check the runtime's command, then stop and start the devbox",
        )
    phase = pod_status.get("phase")
    if phase in ("Failed", "Succeeded"):
        reason = str(pod_status.get("reason") or "ContainerExited")
        terminated = state.get("terminated") or {}
        detail = pod_status.get("message") or (
            f"exit code {terminated.get('exitCode')}" if terminated else "the container exited"
        )
        return (
            reason if reason.isalnum() else "ContainerExited",
            f"the devbox's container stopped ({detail}); stop the devbox to save its changes, "
            "then start it again",
        )
    return None


def pod_image(pod: JSON) -> str:
    for container in (pod.get("spec") or {}).get("containers") or []:
        if container.get("name") == children.CONTAINER:
            return str(container.get("image"))
    return ""
