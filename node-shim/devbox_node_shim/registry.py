"""The node-shim's only registry client: push blobs and manifests over the OCI distribution API.

Async, over httpx.  HTTPS by default; plain HTTP for loopback hosts (``localhost``,
``127.0.0.0/8``, ``::1``) and for hosts listed as insecure.  Auth follows the registry's
``WWW-Authenticate`` challenge: ``Basic`` (credentials sent as they are) or ``Bearer`` (a token
fetched from the challenge's realm with the basic credentials, cached per scope).  Credentials
come from a docker ``config.json`` (:func:`load_docker_config`) or are given directly.

API (all methods are coroutines of :class:`RegistryClient`; ``ref`` is a :class:`Reference`)::

    Reference.parse("host[:port]/repo[:tag][@sha256:...]") -> Reference
    RegistryClient(credentials={host: Credentials}, insecure={host}, ...)  # async with
    ping(registry)                                      GET /v2/ (reachable, credentials taken)
    blob_exists(ref, digest) -> bool                    HEAD /v2/<repo>/blobs/<digest>
    push_blob(ref, blob, mount_from=(), progress=None) -> "present" | "mounted" | "uploaded"
        HEAD first; then a cross-repository mount from each of ``mount_from`` (201 = done);
        else an upload: one PUT for blobs up to ``monolithic_limit``, PATCH chunks of
        ``chunk_size`` with Content-Range above; progress(bytes_done) after each piece.
    upload_stream(ref, chunks, digest) -> digest        a blob still being produced: one
        streamed PATCH, then the PUT with the digest ``await digest()`` gives at its end
    push_manifest(ref, body, media_type=OCI_MANIFEST) -> digest   PUT to ref's tag or digest
    get_manifest(ref) -> Manifest(body, media_type, digest)       RegistryNotFound if absent
    read_blob(ref, digest) -> bytes                     (small blobs: configs, tests)
    list_tags(ref) -> list[str]                         all pages; [] for an unknown repo
    delete_manifest(ref) -> None                        a tag is resolved to its digest first

:class:`Blob` describes what to upload: ``digest``, ``size`` and either ``path`` (a file) or
``open`` (a zero-argument callable returning a fresh async iterator of bytes, called again if an
upload must restart).

Errors (the registry's error codes, e.g. ``BLOB_UPLOAD_INVALID``, are in the message)::

    RegistryError               the registry refused the request (terminal)
     ├── RegistryUnavailable    cannot connect, timeout, 5xx or 429: temporary, retry later
     ├── RegistryAuthError      credentials missing or refused (401/403)
     └── RegistryNotFound       the repository, manifest or blob does not exist (404)
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urljoin

import anyio
import httpx

__all__ = [
    "OCI_INDEX",
    "OCI_MANIFEST",
    "Blob",
    "Credentials",
    "Manifest",
    "Reference",
    "RegistryAuthError",
    "RegistryClient",
    "RegistryError",
    "RegistryNotFound",
    "RegistryUnavailable",
    "load_docker_config",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST))
DOCKER_HUB = "docker.io"
_DOCKER_HUB_API = "registry-1.docker.io"

PushOutcome = Literal["present", "mounted", "uploaded"]
Progress = Callable[[int], None]


class RegistryError(Exception):
    """The registry refused a request; the message names it and the registry's error code."""

    def __init__(self, message: str, *, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class RegistryUnavailable(RegistryError):
    """The registry cannot be reached or answered 5xx/429: temporary, worth a retry."""


class RegistryAuthError(RegistryError):
    """The registry refused the credentials (or none were configured for it)."""


class RegistryNotFound(RegistryError):
    """The repository, manifest or blob does not exist."""


_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")


@dataclass(frozen=True)
class Reference:
    """An image reference: ``registry`` (host[:port]), ``repository``, ``tag`` and/or ``digest``."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        """Parse ``[host[:port]/]repo[:tag][@digest]``; Docker Hub when no host is given."""
        rest, digest = text, None
        if "@" in rest:
            rest, digest = rest.split("@", 1)
            if not _DIGEST.match(digest):
                raise ValueError(f"invalid digest in image reference {text!r}")
        first, slash, remainder = rest.partition("/")
        if slash and ("." in first or ":" in first or first == "localhost"):
            registry, path = first, remainder
        else:
            registry, path = DOCKER_HUB, rest
        tag = None
        name, colon, maybe_tag = path.rpartition(":")
        if colon and "/" not in maybe_tag:
            path, tag = name, maybe_tag
            if not _TAG.match(tag):
                raise ValueError(f"invalid tag in image reference {text!r}")
        if registry == DOCKER_HUB and "/" not in path:
            path = f"library/{path}"
        if not _REPOSITORY.match(path):
            raise ValueError(f"invalid repository name in image reference {text!r}")
        if tag is None and digest is None:
            tag = "latest"
        return cls(registry, path, tag, digest)

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.registry, self.repository, tag, None)

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, None, digest)

    @property
    def target(self) -> str:
        """What a manifest URL ends with: the digest if known, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


def _host_key(key: str) -> str:
    """``https://index.docker.io/v1/`` → ``docker.io``; ``host:port`` unchanged."""
    host = re.sub(r"^[a-z]+://", "", key).split("/", 1)[0]
    return DOCKER_HUB if host in ("index.docker.io", _DOCKER_HUB_API) else host


def load_docker_config(path: str | os.PathLike[str]) -> dict[str, Credentials]:
    """Credentials per registry host from a docker ``config.json`` (``auths`` entries)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise RegistryAuthError(f"cannot read registry credentials from {path}: {exc}") from exc
    auths = (data.get("auths") or {}) if isinstance(data, dict) else None
    if not isinstance(auths, dict):
        raise RegistryAuthError(f"{path} is not a docker config: want {{'auths': {{...}}}}")
    result: dict[str, Credentials] = {}
    for key, entry in auths.items():
        if not isinstance(entry, dict):
            continue
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (TypeError, ValueError, UnicodeDecodeError) as exc:
                raise RegistryAuthError(f"bad auth entry for {key} in {path}") from exc
        else:
            user, password = entry.get("username", ""), entry.get("password", "")
        if user:
            result[_host_key(key)] = Credentials(user, password)
    return result


@dataclass(frozen=True)
class Blob:
    """A blob to push: from a file (``path``) or a re-openable async byte stream (``open``)."""

    digest: str
    size: int
    path: str | os.PathLike[str] | None = None
    open: Callable[[], AsyncIterator[bytes]] | None = None

    def chunks(self, chunk_size: int) -> AsyncIterator[bytes]:
        if self.open is not None:
            return self.open()
        if self.path is None:
            raise ValueError("a Blob needs a path or an open callable")
        return _file_chunks(self.path, chunk_size)


async def _file_chunks(path: str | os.PathLike[str], chunk_size: int) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as f:
        while chunk := await f.read(chunk_size):
            yield chunk


@dataclass(frozen=True)
class Manifest:
    body: bytes
    media_type: str
    digest: str


def _is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _error_text(response: httpx.Response) -> tuple[str, str]:
    """(codes, message) from a distribution error body, best effort."""
    try:
        errors = response.json().get("errors") or []
    except (ValueError, AttributeError):
        return "", response.text[:200].strip()
    codes = ",".join(str(e.get("code", "")) for e in errors if isinstance(e, dict))
    messages = "; ".join(str(e.get("message", "")) for e in errors if isinstance(e, dict))
    return codes, messages


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params


class RegistryClient:
    """Push to and read from OCI registries; see the module docstring.  Use ``async with``."""

    def __init__(
        self,
        *,
        credentials: Mapping[str, Credentials] | None = None,
        insecure: Iterable[str] = (),
        timeout: float = 60.0,
        chunk_size: int = 16 << 20,
        monolithic_limit: int = 16 << 20,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.credentials = dict(credentials or {})
        self.insecure = set(insecure)
        self.chunk_size = chunk_size
        self.monolithic_limit = monolithic_limit
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
            follow_redirects=False,
        )
        self._auth: dict[tuple[str, str], str] = {}
        """(host, scope) → Authorization header value."""
        self._schemes: dict[str, tuple[str, dict[str, str]]] = {}
        """host → the last challenge (scheme, params)."""

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def closed(self) -> bool:
        return self._http.is_closed

    # --- plumbing ----------------------------------------------------------------------------

    def _base(self, ref: Reference) -> str:
        host = _DOCKER_HUB_API if ref.registry == DOCKER_HUB else ref.registry
        scheme = "http" if ref.registry in self.insecure or _is_loopback(host) else "https"
        return f"{scheme}://{host}"

    def _url(self, ref: Reference, path: str) -> str:
        return f"{self._base(ref)}/v2/{ref.repository}/{path}"

    def _scope(self, ref: Reference, actions: str, extra: str = "") -> str:
        scope = f"repository:{ref.repository}:{actions}"
        return f"{scope} {extra}" if extra else scope

    async def _authorize(self, ref: Reference, scope: str, response: httpx.Response) -> None:
        header = response.headers.get("www-authenticate", "")
        scheme, params = _challenge(header)
        creds = self.credentials.get(ref.registry)
        if scheme == "basic":
            if creds is None:
                raise RegistryAuthError(
                    f"registry {ref.registry} asks for credentials and none are configured",
                    status=401,
                )
            token = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
            self._auth[(ref.registry, scope)] = f"Basic {token}"
            return
        if scheme != "bearer" or "realm" not in params:
            raise RegistryAuthError(
                f"registry {ref.registry} answered 401 with an unsupported challenge {header!r}",
                status=401,
            )
        wanted = params.get("scope") or scope
        query: list[tuple[str, str | int | float | bool | None]] = [
            ("service", params.get("service", ""))
        ]
        query += [("scope", s) for s in wanted.split(" ") if s]
        auth = None if creds is None else httpx.BasicAuth(creds.username, creds.password)
        try:
            token_response = await self._http.get(params["realm"], params=query, auth=auth)
        except httpx.TransportError as exc:
            raise RegistryUnavailable(
                f"cannot reach the token service of {ref.registry} ({exc})"
            ) from exc
        if token_response.status_code in (401, 403):
            raise RegistryAuthError(
                f"the token service of {ref.registry} refused the credentials "
                f"(HTTP {token_response.status_code})",
                status=token_response.status_code,
            )
        if token_response.status_code >= 400:
            raise self._error(token_response, "token request")
        try:
            body = token_response.json()
        except ValueError as exc:
            raise RegistryAuthError(
                f"the token service of {ref.registry} answered no JSON, so no token", status=401
            ) from exc
        bearer: object = None
        if isinstance(body, dict):
            bearer = body.get("token") or body.get("access_token")
        if not isinstance(bearer, str) or not bearer:
            raise RegistryAuthError(
                f"the token service of {ref.registry} sent no token (want a JSON object with "
                f"'token' or 'access_token', got {type(body).__name__})",
                status=401,
            )
        self._auth[(ref.registry, scope)] = f"Bearer {bearer}"

    async def _request(
        self,
        method: str,
        url: str,
        ref: Reference,
        scope: str,
        *,
        what: str,
        headers: Mapping[str, str] | None = None,
        content: bytes | AsyncIterator[bytes] | None = None,
        ok: Iterable[int] = (200,),
        missing_ok: bool = False,
    ) -> httpx.Response:
        """Send one request; on a 401, authenticate as the challenge asks and send it again."""
        allowed = set(ok)
        for attempt in range(2):
            all_headers = dict(headers or {})
            auth = self._auth.get((ref.registry, scope))
            if auth:
                all_headers["Authorization"] = auth
            try:
                response = await self._http.request(
                    method, url, headers=all_headers, content=content
                )
            except httpx.TransportError as exc:
                raise RegistryUnavailable(
                    f"{what}: cannot reach registry {ref.registry} ({type(exc).__name__}: {exc})"
                ) from exc
            if (
                response.status_code == 401
                and attempt == 0
                and not isinstance(content, AsyncIterator)
            ):
                await self._authorize(ref, scope, response)
                continue
            if response.status_code in allowed:
                return response
            if response.status_code == 404 and missing_ok:
                return response
            raise self._error(response, what)
        raise AssertionError("unreachable")  # pragma: no cover

    def _error(self, response: httpx.Response, what: str) -> RegistryError:
        codes, message = _error_text(response)
        status = response.status_code
        text = f"{what}: registry answered HTTP {status}"
        if codes:
            text += f" {codes}"
        if message:
            text += f": {message}"
        if status in (401, 403):
            return RegistryAuthError(text, status=status, code=codes)
        if status == 404:
            return RegistryNotFound(text, status=status, code=codes)
        if status >= 500 or status == 429:
            return RegistryUnavailable(text, status=status, code=codes)
        return RegistryError(text, status=status, code=codes)

    async def ping(self, registry: str) -> None:
        """Check that ``registry`` answers the API version check (``GET /v2/``) and takes the
        credentials configured for it; raises the registry errors otherwise."""
        ref = Reference(registry, "")
        await self._request("GET", f"{self._base(ref)}/v2/", ref, "", what=f"ping {registry}")

    # --- blobs -------------------------------------------------------------------------------

    async def blob_exists(self, ref: Reference, digest: str) -> bool:
        """Whether repository ``ref`` already has blob ``digest``."""
        response = await self._request(
            "HEAD",
            self._url(ref, f"blobs/{digest}"),
            ref,
            self._scope(ref, "pull,push"),
            what=f"check blob {digest[:19]}",
            missing_ok=True,
        )
        return response.status_code == 200

    async def read_blob(self, ref: Reference, digest: str) -> bytes:
        """A (small) blob's bytes; redirects to storage are followed."""
        url = self._url(ref, f"blobs/{digest}")
        scope = self._scope(ref, "pull,push")
        response = await self._request(
            "GET", url, ref, scope, what=f"read blob {digest[:19]}", ok=(200, 307)
        )
        if response.status_code == 307:
            response = await self._http.get(_location(response, f"read blob {digest[:19]}"))
            if response.status_code != 200:
                raise self._error(response, f"read blob {digest[:19]}")
        return response.content

    async def push_blob(
        self,
        ref: Reference,
        blob: Blob,
        *,
        mount_from: Iterable[str] = (),
        progress: Progress | None = None,
    ) -> PushOutcome:
        """Make sure repository ``ref`` has ``blob``; how it got there."""
        if await self.blob_exists(ref, blob.digest):
            if progress:
                progress(blob.size)
            return "present"
        location: str | None = None
        for source in mount_from:
            if source == ref.repository:
                continue
            scope = self._scope(ref, "pull,push", f"repository:{source}:pull")
            response = await self._request(
                "POST",
                _with_query(
                    self._url(ref, "blobs/uploads/"), mount=blob.digest, **{"from": source}
                ),
                ref,
                scope,
                what=f"mount blob {blob.digest[:19]} from {source}",
                headers={"Content-Length": "0"},
                content=b"",
                ok=(201, 202),
            )
            if response.status_code == 201:
                if progress:
                    progress(blob.size)
                return "mounted"
            location = _location(response, f"mount blob {blob.digest[:19]}")
            break
        await self._upload(ref, blob, location, progress)
        return "uploaded"

    async def _start_upload(self, ref: Reference) -> str:
        response = await self._request(
            "POST",
            self._url(ref, "blobs/uploads/"),
            ref,
            self._scope(ref, "pull,push"),
            what="start blob upload",
            headers={"Content-Length": "0"},
            content=b"",
            ok=(202,),
        )
        return _location(response, "start blob upload")

    async def _upload(
        self,
        ref: Reference,
        blob: Blob,
        location: str | None,
        progress: Progress | None,
    ) -> None:
        scope = self._scope(ref, "pull,push")
        what = f"upload blob {blob.digest[:19]}"
        if location is None:
            location = await self._start_upload(ref)
        chunks = blob.chunks(min(self.chunk_size, 1 << 20))
        if blob.size <= self.monolithic_limit:
            parts = [chunk async for chunk in chunks]
            body = b"".join(parts)
            if len(body) != blob.size:
                raise RegistryError(f"{what}: the source gave {len(body)} bytes, not {blob.size}")
            await self._request(
                "PUT",
                _with_query(location, digest=blob.digest),
                ref,
                scope,
                what=what,
                headers={"Content-Type": "application/octet-stream"},
                content=body,
                ok=(201,),
            )
            if progress:
                progress(blob.size)
            return
        done = 0
        pending = b""
        exhausted = False
        while not exhausted or pending:
            # Gather one chunk (≤ chunk_size bytes) of the source; memory stays bounded.
            parts = [pending] if pending else []
            have = len(pending)
            pending = b""
            while have < self.chunk_size and not exhausted:
                try:
                    piece = await anext(chunks)
                except StopAsyncIteration:
                    exhausted = True
                    break
                parts.append(piece)
                have += len(piece)
            data = b"".join(parts)
            if len(data) > self.chunk_size:
                data, pending = data[: self.chunk_size], data[self.chunk_size :]
            if not data:
                break
            response = await self._request(
                "PATCH",
                location,
                ref,
                scope,
                what=what,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{done}-{done + len(data) - 1}",
                },
                content=data,
                ok=(202,),
            )
            location = _location(response, what)
            done += len(data)
            if progress:
                progress(done)
        if done != blob.size:
            raise RegistryError(f"{what}: the source gave {done} bytes, not {blob.size}")
        await self._request(
            "PUT",
            _with_query(location, digest=blob.digest),
            ref,
            scope,
            what=what,
            headers={"Content-Length": "0"},
            content=b"",
            ok=(201,),
        )

    async def upload_stream(
        self,
        ref: Reference,
        chunks: AsyncIterator[bytes],
        digest: Callable[[], Awaitable[str]],
    ) -> str:
        """Upload a blob whose bytes are still being produced: one streamed ``PATCH`` (chunked
        transfer encoding) while ``chunks`` yields, then the ``PUT`` with the digest, which
        ``digest()`` gives once the stream has ended; the digest.  The registry checks the
        bytes against it.  (A failed stream cannot be resent: upload the blob again.)"""
        scope = self._scope(ref, "pull,push")
        location = await self._start_upload(ref)
        what = "stream blob upload"
        response = await self._request(
            "PATCH",
            location,
            ref,
            scope,
            what=what,
            headers={"Content-Type": "application/octet-stream"},
            content=chunks,
            ok=(202,),
        )
        location = _location(response, what)
        blob_digest = await digest()
        await self._request(
            "PUT",
            _with_query(location, digest=blob_digest),
            ref,
            scope,
            what=f"upload blob {blob_digest[:19]}",
            headers={"Content-Length": "0"},
            content=b"",
            ok=(201,),
        )
        return blob_digest

    # --- manifests and tags ------------------------------------------------------------------

    async def push_manifest(
        self, ref: Reference, body: bytes, media_type: str = OCI_MANIFEST
    ) -> str:
        """Store manifest ``body`` under ``ref``'s tag (or digest); the manifest's digest."""
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        response = await self._request(
            "PUT",
            self._url(ref, f"manifests/{ref.target}"),
            ref,
            self._scope(ref, "pull,push"),
            what=f"push manifest {ref}",
            headers={"Content-Type": media_type},
            content=body,
            ok=(201,),
        )
        answered = response.headers.get("docker-content-digest")
        if answered and answered != digest:
            raise RegistryError(f"push manifest {ref}: registry stored {answered}, not {digest}")
        return digest

    async def get_manifest(self, ref: Reference) -> Manifest:
        """The manifest ``ref`` points at (RegistryNotFound if there is none)."""
        response = await self._request(
            "GET",
            self._url(ref, f"manifests/{ref.target}"),
            ref,
            self._scope(ref, "pull"),
            what=f"get manifest {ref}",
            headers={"Accept": MANIFEST_ACCEPT},
        )
        body = response.content
        digest = response.headers.get("docker-content-digest") or (
            "sha256:" + hashlib.sha256(body).hexdigest()
        )
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        return Manifest(body, media_type, digest)

    async def list_tags(self, ref: Reference) -> list[str]:
        """Every tag of ``ref``'s repository (all pages); [] if the repository is unknown."""
        tags: list[str] = []
        url: str | None = self._url(ref, "tags/list")
        while url:
            response = await self._request(
                "GET",
                url,
                ref,
                self._scope(ref, "pull"),
                what=f"list tags of {ref.registry}/{ref.repository}",
                missing_ok=True,
            )
            if response.status_code == 404:
                return []
            tags.extend(response.json().get("tags") or [])
            link = response.links.get("next", {}).get("url")
            url = urljoin(str(response.url), link) if link else None
        return sorted(tags)

    async def delete_manifest(self, ref: Reference) -> None:
        """Delete the manifest ``ref`` points at (a tag is resolved to its digest first)."""
        digest = ref.digest
        if digest is None:
            head = await self._request(
                "HEAD",
                self._url(ref, f"manifests/{ref.target}"),
                ref,
                self._scope(ref, "pull"),
                what=f"resolve {ref}",
                headers={"Accept": MANIFEST_ACCEPT},
            )
            digest = head.headers.get("docker-content-digest")
            if not digest:
                raise RegistryError(f"resolve {ref}: the registry sent no Docker-Content-Digest")
        await self._request(
            "DELETE",
            self._url(ref, f"manifests/{digest}"),
            ref,
            self._scope(ref, "delete"),
            what=f"delete manifest {ref}",
            ok=(200, 202),
        )


def _location(response: httpx.Response, what: str) -> str:
    """The absolute URL of a response's ``Location`` (upload sessions, redirects)."""
    location: str | None = response.headers.get("location")
    if not location:
        raise RegistryError(f"{what}: the registry sent no Location header", status=202)
    return urljoin(str(response.url), location)


def _with_query(url: str, **params: str) -> str:
    return str(httpx.URL(url).copy_merge_params(params))
