"""The Devbox custom resources (API group ``devbox.dev``, version ``v1alpha1``) as pydantic models.

The models are the single source of truth: :mod:`app.resources.crdgen` generates the CRD
manifests in ``k8s/crds`` from them, and a test fails if the two drift apart.  Parse objects
read from Kubernetes with ``Devbox.model_validate(obj)``; write them back with
``obj.to_k8s()`` (``model_dump(by_alias=True, exclude_none=True)``).

Kinds: :class:`Runtime`, :class:`Devbox`, :class:`DevboxRelease` — all namespaced.
"""

from app.resources._common import (
    API_VERSION,
    GROUP,
    VERSION,
    Condition,
    ConditionStatus,
    EnvVar,
    KindInfo,
    ObjectMeta,
    OwnerReference,
    Port,
    PrinterColumn,
    Protocol,
    Resource,
    dns1123_label_errors,
)
from app.resources._devbox import (
    MAX_COMMITS,
    AutoStop,
    Commit,
    CommitMode,
    CommitProgress,
    CommitStatus,
    Devbox,
    DevboxPhase,
    DevboxSpec,
    DevboxState,
    DevboxStatus,
    NetworkMode,
    PortStatus,
    Resources,
    RuntimeRef,
    SSHEndpoint,
)
from app.resources._release import (
    DevboxRelease,
    DevboxReleaseSpec,
    DevboxReleaseStatus,
    ReleasePhase,
)
from app.resources._runtime import (
    SYSTEM_NAMESPACE,
    Runtime,
    RuntimeClass,
    RuntimeSource,
    RuntimeSpec,
    RuntimeStatus,
    Visibility,
)

KINDS: tuple[type[Resource], ...] = (Devbox, DevboxRelease, Runtime)
"""Every custom resource kind, in a fixed order."""

__all__ = [
    "API_VERSION",
    "GROUP",
    "KINDS",
    "MAX_COMMITS",
    "SYSTEM_NAMESPACE",
    "VERSION",
    "AutoStop",
    "Commit",
    "CommitMode",
    "CommitProgress",
    "CommitStatus",
    "Condition",
    "ConditionStatus",
    "Devbox",
    "DevboxPhase",
    "DevboxRelease",
    "DevboxReleaseSpec",
    "DevboxReleaseStatus",
    "DevboxSpec",
    "DevboxState",
    "DevboxStatus",
    "EnvVar",
    "KindInfo",
    "NetworkMode",
    "ObjectMeta",
    "OwnerReference",
    "Port",
    "PortStatus",
    "PrinterColumn",
    "Protocol",
    "ReleasePhase",
    "Resource",
    "Resources",
    "Runtime",
    "RuntimeClass",
    "RuntimeRef",
    "RuntimeSource",
    "RuntimeSpec",
    "RuntimeStatus",
    "SSHEndpoint",
    "Visibility",
    "dns1123_label_errors",
]
