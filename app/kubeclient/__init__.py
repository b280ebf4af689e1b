"""The one layer that talks to the Kubernetes API (on top of kubernetes_asyncio).

- :class:`Kube` — JSON requests for any kind (get, list, create, patch, delete, watch), errors
  translated into the tree below, request and write counters.
- :class:`Informer` — a watch-fed cache of one kind with handlers; relists on 410, resumes
  after disconnects, ``wait_for_resource_version``.  Used by the controller, and meant for the
  API server's read cache too.
- :class:`Devboxes` — typed helpers for the Devbox custom resources (merge-patch writes,
  status subresource).
- :func:`merge_patch` — the RFC 7386 patch between two versions of an object.
- :class:`Kind` and the kinds used by the project (``PODS``, ``DEVBOXES``…).

Errors (see :mod:`app.kubeclient._errors`)::

    KubeError
     ├── NotFound
     ├── Conflict
     │    └── AlreadyExists
     ├── Invalid
     ├── Gone
     ├── Forbidden
     └── Unavailable
"""

from app.kubeclient._client import JSON, JSON_PATCH, MERGE_PATCH, Kube
from app.kubeclient._devboxes import Devboxes
from app.kubeclient._errors import (
    AlreadyExists,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    KubeError,
    NotFound,
    Unavailable,
)
from app.kubeclient._informer import EventType, Handler, Informer, Key, object_key, rv_int
from app.kubeclient._kinds import (
    DEVBOXES,
    EVENTS,
    INGRESSES,
    LEASES,
    NAMESPACES,
    NODES,
    PODS,
    RELEASES,
    RUNTIMES,
    SECRETS,
    SERVICES,
    Kind,
)
from app.kubeclient._patch import merge_patch

__all__ = [
    "DEVBOXES",
    "EVENTS",
    "INGRESSES",
    "JSON",
    "JSON_PATCH",
    "LEASES",
    "MERGE_PATCH",
    "NAMESPACES",
    "NODES",
    "PODS",
    "RELEASES",
    "RUNTIMES",
    "SECRETS",
    "SERVICES",
    "AlreadyExists",
    "Conflict",
    "Devboxes",
    "EventType",
    "Forbidden",
    "Gone",
    "Handler",
    "Informer",
    "Invalid",
    "Key",
    "Kind",
    "Kube",
    "KubeError",
    "NotFound",
    "Unavailable",
    "merge_patch",
    "object_key",
    "rv_int",
]
