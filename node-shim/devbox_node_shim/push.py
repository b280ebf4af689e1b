"""The commit's push step and the server's tag deletion, on :mod:`registry`'s client.

:class:`RegistryPusher` pushes an image from containerd's content store: for each blob the
registry client asks ``HEAD`` first, then tries a cross-repository mount from the repositories
the blob came from (the container's image), then uploads; the manifest goes last, so a registry
never holds a tag whose blobs are missing.  Blobs this pusher put in (or found in) a repository
in the last :data:`PRESENT_SECONDS` are not asked for again — the next commit of a devbox shares
all but one layer with the previous one, and each ``HEAD`` is a round trip; should the registry
have lost one meanwhile (garbage collection), the manifest is refused with
``MANIFEST_BLOB_UNKNOWN`` and the push starts over checking every blob.  Credentials come
from a docker ``config.json`` (a mounted Secret), re-read when the file changes; the client
built with the old credentials is closed once the calls using it are done.  :meth:`health`
pings the registries it knows (configured or pushed to) for the server's ``Health``.

Registry errors become commit errors of step ``push`` (:mod:`commit`'s tree):
``RegistryUnavailable`` → :class:`commit.RegistryUnavailable` (temporary),
``RegistryAuthError`` / other refusals → :class:`commit.RegistryRefused`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path

from devbox_node_shim import commit, registry
from devbox_node_shim.containerd import Descriptor
from devbox_node_shim.registry import Blob, Reference, RegistryClient
from devbox_node_shim.settings import Settings

PRESENT_SECONDS = 600.0
"""How long a blob this pusher saw in a repository is taken as still there."""
PING_TIMEOUT = 5.0
"""Seconds :meth:`RegistryPusher.health` waits for one registry."""


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
        self._users: dict[int, int] = {}
        """id(client) → calls using it now."""
        self._retired: dict[int, RegistryClient] = {}
        """Replaced clients still in use (closed when their last call ends)."""
        self._closing: set[asyncio.Future[None]] = set()

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
            old = self._client
            self._client = RegistryClient(credentials=credentials, insecure=self.insecure)
            self._auth_stamp = stamp
            if old is not None:
                self._retire(old)
        return self._client

    def _retire(self, client: RegistryClient) -> None:
        """Close a replaced client now, or once the last call using it ends."""
        if self._users.get(id(client), 0) > 0:
            self._retired[id(client)] = client
        else:
            closing = asyncio.ensure_future(client.aclose())
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    @contextlib.asynccontextmanager
    async def _client_in_use(self) -> AsyncIterator[RegistryClient]:
        client = self._current_client()
        key = id(client)
        self._users[key] = self._users.get(key, 0) + 1
        try:
            yield client
        finally:
            self._users[key] -= 1
            if self._users[key] == 0:
                del self._users[key]
                retired = self._retired.pop(key, None)
                if retired is not None:
                    await retired.aclose()

    async def aclose(self) -> None:
        for client in [*self._retired.values(), *([self._client] if self._client else [])]:
            await client.aclose()
        self._retired.clear()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def known_registries(self) -> list[str]:
        """Registries this pusher is configured for (insecure, credentials) or pushed to."""
        hosts = set(self.insecure) | {host for host, _ in self._present}
        if self.auth_file is not None:
            with contextlib.suppress(registry.RegistryError):
                hosts |= set(self._current_client().credentials)
        return sorted(hosts)

    async def health(self) -> list[str]:
        """What is wrong with the registries this pusher knows, one line each ([]: all well)."""
        try:
            async with self._client_in_use() as client:  # not closed under a ping on rotation

                async def check(host: str) -> str | None:
                    try:
                        await asyncio.wait_for(client.ping(host), PING_TIMEOUT)
                    except TimeoutError:
                        return f"registry {host} did not answer within {PING_TIMEOUT:.0f} s"
                    except registry.RegistryError as exc:
                        return f"registry {host}: {exc}"
                    return None

                found = await asyncio.gather(*(check(h) for h in self.known_registries()))
        except registry.RegistryError as exc:
            return [str(exc)]
        return [problem for problem in found if problem is not None]

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
            async with self._client_in_use() as client:
                await self._push_image(
                    client, reference, manifest, manifest_bytes, blobs, open_blob, progress, sources
                )
        except registry.RegistryError as exc:
            raise _translate(exc) from exc
        except ValueError as exc:
            raise commit.RegistryRefused("push", str(exc)) from exc

    async def _push_image(
        self,
        client: RegistryClient,
        reference: str,
        manifest: Descriptor,
        manifest_bytes: bytes,
        blobs: list[Descriptor],
        open_blob: Callable[[Descriptor], AsyncIterator[bytes]],
        progress: Callable[[int, int], None],
        sources: Iterable[str],
    ) -> None:
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

    async def upload_stream(
        self,
        reference: str,
        chunks: AsyncIterator[bytes],
        digest: Callable[[], Awaitable[str]],
    ) -> None:
        """Upload a blob of image ``reference`` while it is produced (a layer being
        compressed); the next :meth:`push_image` of the repository takes it as present."""
        try:
            async with self._client_in_use() as client:
                ref = Reference.parse(reference)
                blob_digest = await client.upload_stream(ref, chunks, digest)
        except registry.RegistryError as exc:
            raise _translate(exc) from exc
        except ValueError as exc:
            raise commit.RegistryRefused("push", str(exc)) from exc
        known = self._present.setdefault((ref.registry, ref.repository), {})
        known[blob_digest] = time.monotonic()

    async def delete_tag(self, reference: str) -> bool:
        """Delete ``reference``'s manifest from its registry; whether it existed."""
        try:
            async with self._client_in_use() as client:
                await client.delete_manifest(Reference.parse(reference))
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
