"""Typed access to the Devbox custom resources (``devbox.dev/v1alpha1``).

Custom resources accept JSON merge patch (and JSON patch), never strategic merge: every write
here is a merge patch (``application/merge-patch+json``).  Status goes through the ``/status``
subresource; writes carry ``metadata.resourceVersion`` so a stale writer gets :class:`Conflict`
instead of overwriting a newer status (a commit record must never be lost).
"""

from __future__ import annotations

from typing import Any

from app.kubeclient._client import JSON, Kube
from app.kubeclient._kinds import DEVBOXES, RELEASES, RUNTIMES
from app.resources import Devbox, DevboxRelease, Runtime


class Devboxes:
    """Devbox, Runtime and DevboxRelease reads and writes, as pydantic models."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    async def get(self, namespace: str, name: str) -> Devbox:
        """A devbox; :class:`NotFound` if missing."""
        return Devbox.model_validate(await self.kube.get(DEVBOXES, namespace, name))

    async def create(self, devbox: Devbox) -> Devbox:
        """Create a devbox (its status is ignored by the server)."""
        return Devbox.model_validate(
            await self.kube.create(DEVBOXES, devbox.namespace, devbox.to_k8s())
        )

    async def patch_spec(
        self,
        namespace: str,
        name: str,
        spec: dict[str, Any],
        *,
        resource_version: str | None = None,
    ) -> Devbox:
        """Merge ``spec`` (camelCase JSON) into the devbox's spec."""
        body: JSON = {"spec": spec}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        return Devbox.model_validate(await self.kube.patch(DEVBOXES, namespace, name, body))

    async def patch_status(
        self, namespace: str, name: str, status: JSON, *, resource_version: str | None
    ) -> JSON:
        """Merge ``status`` through the status subresource; conditional on
        ``resource_version`` when given.  Returns the object as stored."""
        body: JSON = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        return await self.kube.patch(DEVBOXES, namespace, name, body, subresource="status")

    async def set_finalizers(
        self, namespace: str, name: str, finalizers: list[str], *, resource_version: str
    ) -> JSON:
        """Replace ``metadata.finalizers`` (conditional on ``resource_version``)."""
        body: JSON = {"metadata": {"finalizers": finalizers, "resourceVersion": resource_version}}
        return await self.kube.patch(DEVBOXES, namespace, name, body)

    async def delete(self, namespace: str, name: str) -> None:
        """Ask for deletion (the controller's finalizer runs first)."""
        await self.kube.delete(DEVBOXES, namespace, name)

    async def get_runtime(self, namespace: str, name: str) -> Runtime:
        """A runtime; :class:`NotFound` if missing."""
        return Runtime.model_validate(await self.kube.get(RUNTIMES, namespace, name))

    async def get_release(self, namespace: str, name: str) -> DevboxRelease:
        """A release; :class:`NotFound` if missing."""
        return DevboxRelease.model_validate(await self.kube.get(RELEASES, namespace, name))

    async def patch_release_status(
        self, namespace: str, name: str, status: JSON, *, resource_version: str | None
    ) -> JSON:
        """Merge ``status`` into a release through its status subresource."""
        body: JSON = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        return await self.kube.patch(RELEASES, namespace, name, body, subresource="status")
