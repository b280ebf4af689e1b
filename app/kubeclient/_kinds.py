"""Descriptors of the Kubernetes resource kinds the project reads and writes."""

from __future__ import annotations

from dataclasses import dataclass

from app.resources import GROUP, VERSION


@dataclass(frozen=True)
class Kind:
    """Where a resource kind lives in the REST API."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        """``apiVersion`` of objects of this kind."""
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        """The REST path of the collection, or of one object (and subresource)."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
            if subresource:
                base += f"/{subresource}"
        return base


PODS = Kind("", "v1", "pods", "Pod")
SERVICES = Kind("", "v1", "services", "Service")
SECRETS = Kind("", "v1", "secrets", "Secret")
NODES = Kind("", "v1", "nodes", "Node", namespaced=False)
NAMESPACES = Kind("", "v1", "namespaces", "Namespace", namespaced=False)
EVENTS = Kind("", "v1", "events", "Event")
INGRESSES = Kind("networking.k8s.io", "v1", "ingresses", "Ingress")
LEASES = Kind("coordination.k8s.io", "v1", "leases", "Lease")
DEVBOXES = Kind(GROUP, VERSION, "devboxes", "Devbox")
RUNTIMES = Kind(GROUP, VERSION, "runtimes", "Runtime")
RELEASES = Kind(GROUP, VERSION, "devboxreleases", "DevboxRelease")
