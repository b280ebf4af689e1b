"""The registry client against a real registry (Debian's docker-registry on loopback)."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from devbox_node_shim.registry import (
    OCI_MANIFEST,
    Blob,
    Credentials,
    Reference,
    RegistryAuthError,
    RegistryClient,
    RegistryError,
    RegistryNotFound,
    RegistryUnavailable,
    load_docker_config,
)

from tests.fixtures.deps import missing
from tests.fixtures.registry import (  # noqa: F401 - fixtures
    AUTH_PASSWORD,
    AUTH_USER,
    RegistryServer,
    auth_registry,
    registry,
    token_registry,
)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def bytes_blob(data: bytes) -> Blob:
    async def chunks() -> AsyncIterator[bytes]:
        for at in range(0, len(data), 65536):
            yield data[at : at + 65536]

    return Blob(sha256(data), len(data), open=chunks)


def small_image() -> tuple[bytes, bytes, bytes]:
    """(layer tar.gz, config, manifest) of a one-file image."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = os.urandom(1024)
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    layer = gzip.compress(raw.getvalue(), mtime=0)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [sha256(raw.getvalue())]},
            "history": [{"created_by": "devbox test"}],
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": sha256(layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    return layer, config, manifest


async def push_image(client: RegistryClient, ref: Reference) -> str:
    layer, config, manifest = small_image()
    for blob in (layer, config):
        await client.push_blob(ref, bytes_blob(blob))
    return await client.push_manifest(ref, manifest)


# --- references and credentials ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:5000/devbox/alice:v1", ("127.0.0.1:5000", "devbox/alice", "v1", None)),
        ("registry.example.com/a/b/c", ("registry.example.com", "a/b/c", "latest", None)),
        ("localhost/x:tag-1.2", ("localhost", "x", "tag-1.2", None)),
        ("busybox", ("docker.io", "library/busybox", "latest", None)),
        ("user/app:3", ("docker.io", "user/app", "3", None)),
        (
            "host:5000/r@sha256:" + "a" * 64,
            ("host:5000", "r", None, "sha256:" + "a" * 64),
        ),
    ],
)
def test_image_references_are_parsed_like_docker_does(text: str, expected: tuple[str, ...]) -> None:
    ref = Reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == expected


@pytest.mark.parametrize("text", ["Host:5000/UPPER:v1", "host/repo:bad tag", "host/r@sha256:xyz"])
def test_invalid_references_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        Reference.parse(text)


def test_credentials_come_from_a_docker_config_file(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "auths": {
                    "registry.example.com:5000": {
                        "auth": base64.b64encode(b"alice:pa:ss").decode()
                    },
                    "https://index.docker.io/v1/": {"username": "bob", "password": "pw"},
                }
            }
        )
    )
    creds = load_docker_config(config)
    assert creds["registry.example.com:5000"] == Credentials("alice", "pa:ss")
    assert creds["docker.io"] == Credentials("bob", "pw")


def test_an_unreadable_docker_config_is_an_auth_error(tmp_path: Path) -> None:
    with pytest.raises(RegistryAuthError, match="cannot read registry credentials"):
        load_docker_config(tmp_path / "nope.json")


@pytest.mark.parametrize(
    "text", ['["not", "a", "config"]', '{"auths": ["x"]}', '{"auths": {"r.example": {"auth": 1}}}']
)
def test_a_malformed_docker_config_is_an_auth_error_not_a_crash(tmp_path: Path, text: str) -> None:
    config = tmp_path / "config.json"
    config.write_text(text)
    with pytest.raises(RegistryAuthError, match=str(config)):
        load_docker_config(config)


# --- pushing to a real registry -------------------------------------------------------------


async def test_pushed_image_reads_back_and_passes_skopeo_inspect(
    registry: RegistryServer,  # noqa: F811
) -> None:
    ref = Reference.parse(f"{registry.host}/devbox/push-test:v1")
    layer, config, manifest = small_image()
    async with RegistryClient() as client:
        assert await client.push_blob(ref, bytes_blob(layer)) == "uploaded"
        assert await client.push_blob(ref, bytes_blob(config)) == "uploaded"
        digest = await client.push_manifest(ref, manifest)
        assert digest == sha256(manifest)
        got = await client.get_manifest(ref)
        assert (got.body, got.media_type, got.digest) == (manifest, OCI_MANIFEST, digest)
        assert await client.read_blob(ref, sha256(layer)) == layer
        assert await client.list_tags(ref) == ["v1"]
    if shutil.which("skopeo") is None:
        missing("skopeo", "install the Debian package skopeo")
    process = await asyncio.create_subprocess_exec(
        "skopeo",
        "inspect",
        "--tls-verify=false",
        f"docker://{ref}",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    assert json.loads(stdout)["Digest"] == digest


async def test_a_blob_the_registry_has_is_not_uploaded_again(
    registry: RegistryServer,  # noqa: F811
) -> None:
    ref = Reference.parse(f"{registry.host}/devbox/again:v1")
    data = os.urandom(4096)
    seen: list[int] = []
    async with RegistryClient() as client:
        assert await client.push_blob(ref, bytes_blob(data)) == "uploaded"
        assert await client.blob_exists(ref, sha256(data))
        assert await client.push_blob(ref, bytes_blob(data), progress=seen.append) == "present"
    assert seen == [len(data)]


async def test_a_blob_of_another_repository_is_mounted_not_uploaded(
    registry: RegistryServer,  # noqa: F811
) -> None:
    source = Reference.parse(f"{registry.host}/devbox/runtime:base")
    target = Reference.parse(f"{registry.host}/devbox/user-box:v1")
    data = os.urandom(8192)
    async with RegistryClient() as client:
        await client.push_blob(source, bytes_blob(data))
        assert not await client.blob_exists(target, sha256(data))
        outcome = await client.push_blob(target, bytes_blob(data), mount_from=[source.repository])
        assert outcome == "mounted"
        assert await client.read_blob(target, sha256(data)) == data


async def test_a_mount_from_a_repository_without_the_blob_falls_back_to_upload(
    registry: RegistryServer,  # noqa: F811
) -> None:
    target = Reference.parse(f"{registry.host}/devbox/fallback:v1")
    data = os.urandom(2048)
    async with RegistryClient() as client:
        outcome = await client.push_blob(target, bytes_blob(data), mount_from=["devbox/empty"])
        assert outcome == "uploaded"
        assert await client.read_blob(target, sha256(data)) == data


async def test_a_large_blob_is_uploaded_in_chunks_from_a_file(
    registry: RegistryServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    ref = Reference.parse(f"{registry.host}/devbox/large:v1")
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "blob"
    path.write_bytes(data)
    seen: list[int] = []
    async with RegistryClient(chunk_size=1 << 20, monolithic_limit=1 << 20) as client:
        blob = Blob(sha256(data), len(data), path=path)
        assert await client.push_blob(ref, blob, progress=seen.append) == "uploaded"
        assert await client.read_blob(ref, sha256(data)) == data
    assert seen == [1 << 20, 2 << 20, 3 << 20, len(data)]


async def test_a_blob_still_being_produced_is_streamed_and_checked_against_its_digest(
    registry: RegistryServer,  # noqa: F811
) -> None:
    ref = Reference.parse(f"{registry.host}/devbox/streamed:v1")
    data = os.urandom(5 << 20)
    produced = hashlib.sha256()

    async def producing() -> AsyncIterator[bytes]:
        for at in range(0, len(data), 1 << 20):
            await asyncio.sleep(0)  # (a compressor thread's pace)
            produced.update(data[at : at + (1 << 20)])
            yield data[at : at + (1 << 20)]

    async def digest() -> str:
        return "sha256:" + produced.hexdigest()

    async def wrong_digest() -> str:
        return sha256(b"something else")

    async with RegistryClient() as client:
        assert await client.upload_stream(ref, producing(), digest) == sha256(data)
        assert await client.read_blob(ref, sha256(data)) == data
        with pytest.raises(RegistryError, match="DIGEST_INVALID"):
            await client.upload_stream(ref, producing(), wrong_digest)


async def test_a_blob_whose_bytes_do_not_match_its_digest_is_refused(
    registry: RegistryServer,  # noqa: F811
) -> None:
    ref = Reference.parse(f"{registry.host}/devbox/bad-digest:v1")
    data = os.urandom(1000)
    wrong = Blob(sha256(b"something else"), len(data), open=bytes_blob(data).open)
    async with RegistryClient() as client:
        with pytest.raises(RegistryError, match="DIGEST_INVALID") as caught:
            await client.push_blob(ref, wrong)
        assert not await client.blob_exists(ref, wrong.digest)
    assert not isinstance(caught.value, RegistryUnavailable)


async def test_a_manifest_naming_a_missing_blob_is_refused_with_the_registry_code(
    registry: RegistryServer,  # noqa: F811
) -> None:
    ref = Reference.parse(f"{registry.host}/devbox/incomplete:v1")
    _, _, manifest = small_image()
    async with RegistryClient() as client:
        with pytest.raises(RegistryError, match="MANIFEST_BLOB_UNKNOWN"):
            await client.push_manifest(ref, manifest)


async def test_deleted_images_disappear_from_the_repository(
    registry: RegistryServer,  # noqa: F811
) -> None:
    ref = Reference.parse(f"{registry.host}/devbox/cleanup:v1")
    async with RegistryClient() as client:
        await push_image(client, ref)
        await push_image(client, ref.with_tag("v2"))
        assert await client.list_tags(ref) == ["v1", "v2"]
        await client.delete_manifest(ref)
        with pytest.raises(RegistryNotFound, match="MANIFEST_UNKNOWN"):
            await client.get_manifest(ref)
        assert await client.get_manifest(ref.with_tag("v2"))
        unknown = Reference.parse(f"{registry.host}/devbox/never-pushed:v1")
        assert await client.list_tags(unknown) == []


# --- auth and faults ------------------------------------------------------------------------


async def test_basic_auth_credentials_are_used_when_the_registry_asks(
    auth_registry: RegistryServer,  # noqa: F811
) -> None:
    ref = Reference.parse(f"{auth_registry.host}/devbox/private:v1")
    creds = {auth_registry.host: Credentials(AUTH_USER, AUTH_PASSWORD)}
    async with RegistryClient(credentials=creds) as client:
        digest = await push_image(client, ref)
        assert (await client.get_manifest(ref)).digest == digest


async def test_refused_credentials_are_an_auth_error(
    auth_registry: RegistryServer,  # noqa: F811
) -> None:
    ref = Reference.parse(f"{auth_registry.host}/devbox/private:v1")
    wrong = {auth_registry.host: Credentials(AUTH_USER, "wrong")}
    async with RegistryClient(credentials=wrong) as client:
        with pytest.raises(RegistryAuthError, match="401"):
            await client.blob_exists(ref, sha256(b"x"))
    async with RegistryClient() as client:
        with pytest.raises(RegistryAuthError, match="none are configured"):
            await client.blob_exists(ref, sha256(b"x"))


async def test_a_registry_that_is_down_is_a_temporary_error_and_a_retry_succeeds(
    registry: RegistryServer,  # noqa: F811
) -> None:
    ref = Reference.parse(f"{registry.host}/devbox/down:v1")
    async with RegistryClient(timeout=5) as client:
        registry.stop()
        try:
            with pytest.raises(RegistryUnavailable, match="cannot reach registry"):
                await push_image(client, ref)
        finally:
            registry.start()
        digest = await push_image(client, ref)
        assert (await client.get_manifest(ref)).digest == digest


async def test_bearer_tokens_are_fetched_from_the_token_service_the_registry_names(
    token_registry: RegistryServer,  # noqa: F811
) -> None:
    assert token_registry.token is not None
    source = Reference.parse(f"{token_registry.host}/devbox/runtime:base")
    target = Reference.parse(f"{token_registry.host}/devbox/tokened:v1")
    creds = {token_registry.host: Credentials(AUTH_USER, AUTH_PASSWORD)}
    data = os.urandom(4096)
    async with RegistryClient(credentials=creds) as client:
        digest = await push_image(client, target)
        assert (await client.get_manifest(target)).digest == digest
        await client.push_blob(source, bytes_blob(data))
        outcome = await client.push_blob(target, bytes_blob(data), mount_from=[source.repository])
        assert outcome == "mounted"
        assert await client.list_tags(target) == ["v1"]
        asked = token_registry.token.requests
        await client.blob_exists(target, sha256(data))
        assert token_registry.token.requests == asked  # the token is reused for its scope
    wrong = {token_registry.host: Credentials(AUTH_USER, "wrong")}
    async with RegistryClient(credentials=wrong) as client:
        with pytest.raises(RegistryAuthError, match=r"token service .* refused"):
            await client.blob_exists(target, sha256(data))


@pytest.mark.parametrize("answer", [b'["a", "list"]', b'"a string"', b"{}", b'{"token": 5}'])
async def test_a_token_service_answering_no_token_object_is_an_auth_error(
    token_registry: RegistryServer,  # noqa: F811
    answer: bytes,
) -> None:
    assert token_registry.token is not None
    ref = Reference.parse(f"{token_registry.host}/devbox/tokened:v1")
    creds = {token_registry.host: Credentials(AUTH_USER, AUTH_PASSWORD)}
    token_registry.token.answer = answer
    try:
        async with RegistryClient(credentials=creds) as client:
            with pytest.raises(RegistryAuthError, match=r"token service .* sent no token"):
                await client.blob_exists(ref, sha256(b"x"))
    finally:
        token_registry.token.answer = None


async def test_an_upload_cut_by_a_registry_outage_is_not_taken_as_done_and_a_retry_completes(
    registry: RegistryServer,  # noqa: F811
) -> None:
    ref = Reference.parse(f"{registry.host}/devbox/cut:v1")
    data = os.urandom(3 << 20)
    blob = bytes_blob(data)

    def stop_after_first_chunk(done: int) -> None:
        if done >= 1 << 20:
            registry.stop()

    async with RegistryClient(chunk_size=1 << 20, monolithic_limit=0, timeout=5) as client:
        try:
            with pytest.raises(RegistryUnavailable):
                await client.push_blob(ref, blob, progress=stop_after_first_chunk)
        finally:
            registry.start()
        assert not await client.blob_exists(ref, blob.digest)
        assert await client.push_blob(ref, blob) == "uploaded"
        assert await client.read_blob(ref, blob.digest) == data
