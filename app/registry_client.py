"""Client of the image registry's HTTP API (OCI distribution spec v2), for what the controller
does in the registry itself: re-tag an image (a release: manifest copy, no blob upload) and
delete a devbox's tags.  Pushing commits is the node-shim's job.

::

    RegistryError           any failed call; ``status`` (HTTP status, 0 for transport errors)
     └── RegistryUnavailable  transport errors, 429 and 5xx: temporary
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import httpx

MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    )
)


class RegistryError(Exception):
    """A registry call failed."""

    temporary = False

    def __init__(self, message: str, *, status: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class RegistryUnavailable(RegistryError):
    """The registry could not be reached or failed temporarily."""

    temporary = True


@dataclass(frozen=True)
class ImageRef:
    """``host[:port]/repository:tag`` split into its parts."""

    host: str
    repository: str
    tag: str

    @classmethod
    def parse(cls, ref: str) -> ImageRef:
        """Parse a reference with a registry host and a tag (no digest)."""
        host, _, rest = ref.partition("/")
        repository, _, tag = rest.rpartition(":")
        if not host or not repository or not tag or "/" in tag:
            raise ValueError(f"not a host/repository:tag image reference: {ref!r}")
        return cls(host, repository, tag)

    def with_tag(self, tag: str) -> ImageRef:
        return ImageRef(self.host, self.repository, tag)

    def __str__(self) -> str:
        return f"{self.host}/{self.repository}:{self.tag}"


@dataclass(frozen=True)
class ManifestSummary:
    """What an image manifest says about its size: layer count and bytes (config + layers)."""

    layers: int
    size_bytes: int


@dataclass(frozen=True)
class Manifest:
    """A manifest as stored: its bytes, media type and digest."""

    body: bytes
    media_type: str
    digest: str

    def summary(self) -> ManifestSummary:
        """Layer count and total size of an image manifest (zeros for an index or junk)."""
        try:
            doc = json.loads(self.body)
        except ValueError:
            return ManifestSummary(0, 0)
        if not isinstance(doc, dict):
            return ManifestSummary(0, 0)
        layers = [x for x in doc.get("layers") or [] if isinstance(x, dict)]
        config = doc.get("config")
        sizes = [x.get("size") for x in [config if isinstance(config, dict) else {}, *layers]]
        return ManifestSummary(len(layers), sum(n for n in sizes if isinstance(n, int)))


class RegistryClient:
    """Manifest reads, copies and deletes on OCI registries."""

    def __init__(
        self,
        *,
        insecure: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.scheme = "http" if insecure else "https"
        auth = httpx.BasicAuth(username, password or "") if username else None
        self._http = httpx.AsyncClient(auth=auth, timeout=timeout)

    def _url(self, ref: ImageRef, reference: str) -> str:
        return f"{self.scheme}://{ref.host}/v2/{ref.repository}/manifests/{reference}"

    async def _request(self, method: str, url: str, **kwargs: object) -> httpx.Response:
        try:
            response = await self._http.request(method, url, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            raise RegistryUnavailable(f"{method} {url}: {exc}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise RegistryUnavailable(
                f"{method} {url}: HTTP {response.status_code}", status=response.status_code
            )
        return response

    async def get_manifest(self, ref: ImageRef) -> Manifest | None:
        """The manifest ``ref`` names, or None if the tag does not exist."""
        response = await self._request(
            "GET", self._url(ref, ref.tag), headers={"Accept": MANIFEST_TYPES}
        )
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise RegistryError(
                f"reading {ref}: HTTP {response.status_code} {response.text[:200]}",
                status=response.status_code,
            )
        body = response.content
        digest = response.headers.get("Docker-Content-Digest") or _digest(body)
        media_type = response.headers.get("Content-Type", "").split(";")[0]
        return Manifest(body, media_type, digest)

    async def put_manifest(self, ref: ImageRef, manifest: Manifest) -> str:
        """Store ``manifest`` under ``ref``'s tag; the digest the registry reports."""
        response = await self._request(
            "PUT",
            self._url(ref, ref.tag),
            content=manifest.body,
            headers={"Content-Type": manifest.media_type},
        )
        if response.status_code not in (200, 201):
            raise RegistryError(
                f"tagging {ref}: HTTP {response.status_code} {response.text[:200]}",
                status=response.status_code,
            )
        return response.headers.get("Docker-Content-Digest") or manifest.digest

    async def delete_manifest(self, ref: ImageRef, digest: str) -> bool:
        """Delete the manifest ``digest`` from ``ref``'s repository; whether it existed."""
        response = await self._request("DELETE", self._url(ref, digest))
        if response.status_code == 404:
            return False
        if response.status_code not in (200, 202):
            raise RegistryError(
                f"deleting {ref.repository}@{digest}: HTTP {response.status_code}",
                status=response.status_code,
            )
        return True

    async def close(self) -> None:
        await self._http.aclose()


def _digest(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()
