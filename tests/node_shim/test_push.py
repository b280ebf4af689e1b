"""The push step against a real registry: blobs known to be there are not asked for again,
and a registry that lost one meanwhile still ends with a complete image; rotated credentials
replace (and close) the old client; health names a registry that fails."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from devbox_node_shim import commit
from devbox_node_shim.containerd import Descriptor
from devbox_node_shim.push import RegistryPusher
from devbox_node_shim.registry import OCI_MANIFEST

from tests.fixtures.registry import AUTH_PASSWORD, AUTH_USER, RegistryServer

LAYER = "application/vnd.oci.image.layer.v1.tar"
CONFIG = "application/vnd.oci.image.config.v1+json"


def blob(media_type: str, body: bytes) -> tuple[Descriptor, bytes]:
    return Descriptor(media_type, "sha256:" + hashlib.sha256(body).hexdigest(), len(body)), body


def image(layers: list[tuple[Descriptor, bytes]]) -> tuple[Descriptor, bytes, list[Descriptor]]:
    config = blob(CONFIG, json.dumps({"layers": [d.digest for d, _ in layers]}).encode())
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config[0].to_oci(),
            "layers": [d.to_oci() for d, _ in layers],
        }
    ).encode()
    descriptor = Descriptor(OCI_MANIFEST, "sha256:" + hashlib.sha256(manifest).hexdigest(), 0)
    return descriptor, manifest, [config[0], *(d for d, _ in layers)]


async def push(
    pusher: RegistryPusher, reference: str, contents: dict[str, bytes], layers: list[Descriptor]
) -> tuple[Descriptor, bytes]:
    manifest, body, blobs = image([(d, contents[d.digest]) for d in layers])

    async def opener(descriptor: Descriptor) -> AsyncIterator[bytes]:
        yield contents[descriptor.digest]

    config = blobs[0]
    contents[config.digest] = json.dumps({"layers": [d.digest for d in layers]}).encode()
    await pusher.push_image(reference, manifest, body, blobs, opener, lambda done, total: None)
    return manifest, body


async def test_blobs_seen_in_the_repository_are_not_checked_again_and_losses_are_repaired(
    registry: RegistryServer,
) -> None:
    requests: list[tuple[str, str]] = []

    async def record(request: httpx.Request) -> None:
        requests.append((request.method, request.url.path))

    pusher = RegistryPusher(insecure=[registry.host])
    client = pusher._current_client()
    client._http.event_hooks["request"].append(record)
    base, body_base = blob(LAYER, b"base layer " * 1000)
    first, body_first = blob(LAYER, b"first change")
    second, body_second = blob(LAYER, b"second change")
    contents = {base.digest: body_base, first.digest: body_first, second.digest: body_second}
    repo = f"{registry.host}/ns/box"
    try:
        await push(pusher, f"{repo}:c1", contents, [base, first])
        requests.clear()
        await push(pusher, f"{repo}:c2", contents, [base, first, second])
        checked = {path.rsplit("/", 1)[-1] for method, path in requests if method == "HEAD"}
        assert base.digest not in checked  # known from the first push
        assert first.digest not in checked
        assert second.digest in checked  # the new layer is checked, then uploaded

        # The registry loses a layer (as garbage collection would): the next push notices
        # the refused manifest and puts everything the image needs back.
        async with httpx.AsyncClient() as http:
            gone = await http.delete(
                f"http://{repo.replace('/ns/', '/v2/ns/')}/blobs/{base.digest}"
            )
            assert gone.status_code == 202
        await push(pusher, f"{repo}:c3", contents, [base, first, second])
        async with httpx.AsyncClient() as http:
            got = await http.get(f"http://{repo.replace('/ns/', '/v2/ns/')}/blobs/{base.digest}")
            assert got.status_code == 200
            assert got.content == body_base
    finally:
        await pusher.aclose()


def _auth_file(path: Path, host: str, password: str) -> None:
    auth = base64.b64encode(f"{AUTH_USER}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": auth}}}))


async def test_rotated_credentials_are_used_and_the_old_client_is_closed(
    auth_registry: RegistryServer, tmp_path: Path
) -> None:
    auth_file = tmp_path / "config.json"
    _auth_file(auth_file, auth_registry.host, "wrong-before-rotation")
    pusher = RegistryPusher(auth_file=auth_file)
    layer, body = blob(LAYER, os.urandom(1000))
    contents = {layer.digest: body}
    repo = f"{auth_registry.host}/ns/rotated"
    try:
        with pytest.raises(commit.RegistryRefused):
            await push(pusher, f"{repo}:c1", contents, [layer])
        before = pusher._current_client()
        assert await pusher.health() != []

        _auth_file(auth_file, auth_registry.host, AUTH_PASSWORD)  # the Secret is rotated
        os.utime(auth_file, (1, 1))  # (a change within the mtime granularity counts too)
        await push(pusher, f"{repo}:c2", contents, [layer])

        assert pusher._current_client() is not before
        assert before.closed
        assert await pusher.health() == []
    finally:
        await pusher.aclose()


async def test_health_names_a_registry_that_is_down(registry: RegistryServer) -> None:
    pusher = RegistryPusher(insecure=[registry.host])
    try:
        assert await pusher.health() == []
        registry.stop()
        problems = await pusher.health()
    finally:
        registry.start()
        await pusher.aclose()

    assert len(problems) == 1
    assert registry.host in problems[0]
    assert "cannot reach" in problems[0]
