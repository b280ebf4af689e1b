"""The commit's push step and the server's tag deletion, on :mod:`registry`'s client.

:class:`RegistryPusher` pushes an image from containerd's content store: for each blob the
registry client asks ``HEAD`` first, then tries a cross-repository mount from the repositories
the blob came from (the container's image), then uploads; the manifest goes last, so a registry
never holds a tag whose blobs are missing.  Blobs this pusher put in (or found in) a repository
in the last :data:`PRESENT_SECONDS` are not asked for again — the next commit of a devbox shares
all but one layer with the previous one, and each ``HEAD`` is a round trip; should the registry
have lost one meanwhile (garbage collection), the manifest is refused with
``MANIFEST_BLOB_UNKNOWN`` and the push starts over checking every blob.  Credentials come
from a docker ``config.json`` (a mounted Secret), re-read when the file changes.

Registry errors become commit errors of step ``push`` (:mod:`commit`'s tree):
``RegistryUnavailable`` → :class:`commit.RegistryUnavailable` (temporary),
``RegistryAuthError`` / other refusals → :class:`commit.RegistryRefused`.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path

from devbox_node_shim import commit, registry
from devbox_node_shim.containerd import Descriptor
from devbox_node_shim.registry import Blob, Reference, RegistryClient
from devbox_node_shim.settings import Settings

PRESENT_SECONDS = 600.0
"""How long a blob this pusher saw in a repository is taken as still there."""


def _translate(exc: registry.RegistryError, step: str = "push") -> commit.CommitError:
    if isinstance(exc, registry.RegistryUnavailable):
        return commit.RegistryUnavailable(
            step, f"the registry is unavailable ({exc}); retry later", temporary=True
        )
    if isinstance(exc, registry.RegistryAuthError):
        return commit.RegistryRefused(
            step, f"the registry refused the credentials ({exc}); check the registry secret"
        )
    return commit.RegistryRefused(step, f"the registry refused the push ({exc})")


class RegistryPusher:
    """Pushes committed images and deletes tags (``commit.Pusher``, ``server.RegistryOps``)."""

    def __init__(
        self,
        *,
        auth_file: Path | None = None,
        insecure: Iterable[str] = (),
        client: RegistryClient | None = None,
    ) -> None:
        self.auth_file = auth_file
        self.insecure = tuple(insecure)
        self._client = client
        self._auth_stamp: tuple[float, int] | None = None
        self._present: dict[tuple[str, str], dict[str, float]] = {}
        """(registry, repository) → blob digest → when it was last known to be there."""

    @classmethod
    def from_settings(cls, settings: Settings) -> RegistryPusher:
        return cls(auth_file=settings.registry_auth_file, insecure=settings.insecure_registries)

    def _current_client(self) -> RegistryClient:
        """The client, rebuilt when the credentials file changed (a rotated Secret)."""
        stamp: tuple[float, int] | None = None
        if self.auth_file is not None:
            try:
                st = os.stat(self.auth_file)
                stamp = (st.st_mtime, st.st_size)
            except OSError:
                stamp = None
        if self._client is None or stamp != self._auth_stamp:
            credentials = {}
            if self.auth_file is not None and stamp is not None:
                credentials = registry.load_docker_config(self.auth_file)
            self._client = RegistryClient(credentials=credentials, insecure=self.insecure)
            self._auth_stamp = stamp
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def push_image(
        self,
        reference: str,
        manifest: Descriptor,
        manifest_bytes: bytes,
        blobs: list[Descriptor],
        open_blob: Callable[[Descriptor], AsyncIterator[bytes]],
        progress: Callable[[int, int], None],
        sources: Iterable[str] = (),
    ) -> None:
        try:
            client = self._current_client()
            ref = Reference.parse(reference)
            mount_from = []
            for source in sources:
                try:
                    parsed = Reference.parse(source)
                except (ValueError, registry.RegistryError):
                    continue
                if parsed.registry == ref.registry and parsed.repository != ref.repository:
                    mount_from.append(parsed.repository)
            total = sum(blob.size for blob in blobs) + len(manifest_bytes)
            done: dict[str, int] = {}

            async def push_one(descriptor: Descriptor) -> None:
                def report(blob_done: int) -> None:
                    done[descriptor.digest] = blob_done
                    progress(sum(done.values()), total)

                def opener() -> AsyncIterator[bytes]:
                    return open_blob(descriptor)

                await client.push_blob(
                    ref,
                    Blob(descriptor.digest, descriptor.size, open=opener),
                    mount_from=mount_from,
                    progress=report,
                )

            known = self._present.setdefault((ref.registry, ref.repository), {})
            now = time.monotonic()
            for digest, seen in list(known.items()):
                if now - seen > PRESENT_SECONDS:
                    del known[digest]
            unique = _unique(blobs)
            # Blobs go up side by side (most are a HEAD away from done); the manifest last,
            # so the registry never holds a tag whose blobs are missing.
            await asyncio.gather(*(push_one(d) for d in unique if d.digest not in known))
            try:
                await client.push_manifest(ref, manifest_bytes, manifest.media_type)
            except registry.RegistryError as exc:
                if "MANIFEST_BLOB_UNKNOWN" not in exc.code or not known:
                    raise
                known.clear()  # the registry lost a blob we took as present: check them all
                await asyncio.gather(*(push_one(d) for d in unique))
                await client.push_manifest(ref, manifest_bytes, manifest.media_type)
            seen_at = time.monotonic()
            known.update((d.digest, seen_at) for d in unique)
            progress(total, total)
        except registry.RegistryError as exc:
            raise _translate(exc) from exc
        except ValueError as exc:
            raise commit.RegistryRefused("push", str(exc)) from exc

    async def delete_tag(self, reference: str) -> bool:
        """Delete ``reference``'s manifest from its registry; whether it existed."""
        try:
            await self._current_client().delete_manifest(Reference.parse(reference))
        except ValueError as exc:
            raise commit.RegistryRefused("delete", str(exc)) from exc
        except registry.RegistryNotFound:
            return False
        except registry.RegistryError as exc:
            raise _translate(exc, "delete") from exc
        return True


def _unique(blobs: list[Descriptor]) -> list[Descriptor]:
    seen: set[str] = set()
    out = []
    for blob in blobs:
        if blob.digest not in seen:
            seen.add(blob.digest)
            out.append(blob)
    return out
