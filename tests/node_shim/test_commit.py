"""Committing a real container through the real node-shim server (private containerd + runc)
to a real registry (docker-registry), and running what was pushed.

The changes a user makes inside a container are listed by the same inspection script in the
container and in a container of the pushed image, pulled into a fresh containerd namespace: the
listings must be equal (and mention what changed: content, modes, owners, symlinks, hard links,
deletions).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from devbox_node_shim import commit as commit_module
from devbox_node_shim.api import nodeshim_pb2 as pb
from devbox_node_shim.api import nodeshim_pb2_grpc as pb_grpc
from devbox_node_shim.commit import LOCAL_COPIES, LocalCopy

from app.nodeshim_client import NodeShimClient, NodeShimError
from tests.fixtures.containerd import Containerd
from tests.fixtures.deps import missing
from tests.fixtures.registry import RegistryServer
from tests.fixtures.waiting import until
from tests.node_shim.conftest import Shim, shim_settings

CHANGES = r"""
set -e
echo hello > /root/new.txt
chmod 640 /root/new.txt
chown 1000:1000 /root/new.txt
mkdir -p /opt/app/sub
echo deep > /opt/app/sub/f
chmod 4755 /opt/app/sub/f
ln /opt/app/sub/f /opt/app/hard
ln -s ../../root/new.txt /opt/app/link
echo 'extra:x:1001:1001::/:/bin/sh' >> /etc/passwd
rm /etc/group
rm /bin/vi
rm -rf /usr/share/doc
touch '/root/name with spaces'
mkfifo /opt/app/fifo
"""

INSPECT = r"""
cd /
find root opt etc bin usr tmp -exec stat -c '%n|%F|%a|%u|%g|%h|%N' {} + | sort
find root opt etc usr -type f -exec md5sum {} + | sort
"""

SLEEPER = ("/bin/sleep", "100000")
STUBBORN = ("/bin/sh", "-c", "trap '' TERM; while true; do sleep 1; done")
"""A container that ignores SIGTERM: a STOP commit must kill it after the timeout."""


def _request(container: str, image: str, **kw: object) -> pb.CommitRequest:
    return pb.CommitRequest(
        request_id=kw.pop("request_id", None) or uuid.uuid4().hex,  # type: ignore[arg-type]
        container_id=container,
        target_image=image,
        mode=kw.pop("mode", pb.COMMIT_MODE_SNAPSHOT),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def containers(containerd: Containerd) -> Iterator[list[tuple[str, str]]]:
    """(namespace, name) of the containers a test starts; removed afterwards."""
    started: list[tuple[str, str]] = []
    yield started
    for namespace, name in started:
        containerd.remove_container(name, namespace=namespace)


def _start(
    containerd: Containerd,
    image: str,
    started: list[tuple[str, str]],
    *command: str,
    namespace: str | None = None,
) -> str:
    name = f"t-{uuid.uuid4().hex[:10]}"
    started.append((namespace or containerd.namespace, name))
    containerd.run(image, name, *(command or SLEEPER), namespace=namespace)
    return name


def _pull_and_start(containerd: Containerd, image: str, started: list[tuple[str, str]]) -> str:
    """Pull ``image`` from the registry into a fresh namespace and run it; (container)."""
    namespace = f"pulled-{uuid.uuid4().hex[:8]}"
    containerd.ctr("images", "pull", "--plain-http", image, namespace=namespace)
    return _start(containerd, image, started, namespace=namespace)


def _inspect_pulled(containerd: Containerd, container: str, started: list[tuple[str, str]]) -> str:
    namespace = next(ns for ns, name in started if name == container)
    return containerd.exec(container, INSPECT, namespace=namespace)


def _assert_changes_listed(listing: str) -> None:
    lines = listing.splitlines()
    assert "root/new.txt|regular file|640|1000|1000|1|root/new.txt" in lines
    assert "opt/app/sub/f|regular file|4755|0|0|2|opt/app/sub/f" in lines
    assert "opt/app/hard|regular file|4755|0|0|2|opt/app/hard" in lines
    assert "opt/app/link|symbolic link|777|0|0|1|'opt/app/link' -> '../../root/new.txt'" in lines
    assert "opt/app/fifo|fifo|644|0|0|1|opt/app/fifo" in lines
    assert "root/name with spaces|regular empty file|644|0|0|1|root/name with spaces" in lines
    assert "b1946ac92492d2347c6235b4d2611184  root/new.txt" in lines
    assert not any(line.startswith(("etc/group|", "bin/vi|", "usr/share/doc")) for line in lines)
    assert any(line.startswith("bin/wc|") for line in lines)


@pytest.mark.parametrize(
    ("fast_path", "streamed", "local_copy"),
    [
        (True, False, LocalCopy.AFTER_PUSH),
        (True, True, LocalCopy.AFTER_PUSH),
        (True, True, LocalCopy.IN_COMMIT),
        (False, False, LocalCopy.AFTER_PUSH),
    ],
    ids=[
        "overlay-upper",
        "overlay-upper-uploaded-while-compressed",
        "overlay-upper-uploaded-and-stored-while-compressed",
        "containerd-differ",
    ],
)
async def test_snapshot_commit_keeps_every_change_and_the_container_running(
    containerd: Containerd,
    busybox_image: str,
    containers: list[tuple[str, str]],
    shim: Shim,
    fast_path: bool,
    streamed: bool,
    local_copy: LocalCopy,
) -> None:
    shim.server.committer.fast_path = fast_path
    shim.server.committer.local_copy = local_copy
    if streamed:
        shim.server.committer.stream_min = 0
    source = _start(containerd, busybox_image, containers)
    containerd.exec(source, CHANGES)
    before = containerd.exec(source, INSPECT)
    _assert_changes_listed(before)
    target = shim.target()

    steps: list[str] = []
    outcome = await shim.client.commit(
        shim.host, _request(source, target), on_progress=lambda p: steps.append(p.step)
    )

    assert outcome.image == target
    assert outcome.digest.startswith("sha256:")
    assert outcome.layers == 2  # the runtime image's layer + the devbox's
    assert containerd.task_status(source) == "RUNNING"
    for step in ("inspect", "lease", "pause", "diff", "resume", "compress", "write", "push"):
        assert step in steps
        assert step in outcome.steps
    # The image in containerd: made within the commit, or after it (once pushed).
    assert ("image" in outcome.steps) == (local_copy is LocalCopy.IN_COMMIT)
    await shim.server.committer.settle()
    assert target in containerd.ctr("images", "ls", "-q").stdout.split()
    assert shim.server.committer.copy_problem is None
    assert not list((shim.settings.state_dir / "work").iterdir())  # work files gone
    copy = _pull_and_start(containerd, target, containers)
    assert _inspect_pulled(containerd, copy, containers) == before


async def test_stop_commit_leaves_the_task_stopped_and_the_image_has_the_changes(
    containerd: Containerd, busybox_image: str, containers: list[tuple[str, str]], shim: Shim
) -> None:
    source = _start(containerd, busybox_image, containers, *STUBBORN)
    containerd.exec(source, CHANGES)
    before = containerd.exec(source, INSPECT)
    target = shim.target()

    outcome = await shim.client.commit(
        shim.host,
        _request(source, target, mode=pb.COMMIT_MODE_STOP, stop_timeout_seconds=1),
    )

    assert containerd.task_status(source) == "STOPPED"
    assert "stop" in outcome.steps
    assert "pause" not in outcome.steps
    copy = _pull_and_start(containerd, target, containers)
    assert _inspect_pulled(containerd, copy, containers) == before


async def test_same_request_id_attaches_and_a_second_request_for_the_container_is_refused(
    containerd: Containerd, busybox_image: str, containers: list[tuple[str, str]], shim: Shim
) -> None:
    source = _start(containerd, busybox_image, containers, *STUBBORN)
    containerd.exec(source, "echo once > /root/once")
    request = _request(source, shim.target(), mode=pb.COMMIT_MODE_STOP, stop_timeout_seconds=3)
    first = asyncio.create_task(shim.client.commit(shim.host, request))
    await until(lambda: shim.server.service._running, within=10, what="the commit to start")

    with pytest.raises(NodeShimError) as refused:
        await shim.client.commit(shim.host, _request(source, shim.target()))
    attached = await shim.client.commit(shim.host, request)
    result = await first
    again = await shim.client.commit(shim.host, request)

    assert refused.value.code == "FAILED_PRECONDITION"
    assert request.request_id in refused.value.message
    assert attached.digest == result.digest == again.digest
    listed = await _list(shim, request.target_image.rsplit(":", 1)[0])
    assert [c.request_id for c in listed.commits] == [request.request_id]


async def test_a_finished_commit_is_remembered_by_a_restarted_node_shim(
    containerd: Containerd, busybox_image: str, containers: list[tuple[str, str]], shim: Shim
) -> None:
    source = _start(containerd, busybox_image, containers)
    request = _request(source, shim.target())
    first = await shim.client.commit(shim.host, request)

    await shim.restart()
    again = await shim.client.commit(shim.host, request)
    reused = _request(source, shim.target(), request_id=request.request_id)
    with pytest.raises(NodeShimError) as refused:
        await shim.client.commit(shim.host, reused)

    assert again.digest == first.digest
    assert again.steps == first.steps
    assert refused.value.code == "INVALID_ARGUMENT"
    assert request.target_image in refused.value.message


async def _list(shim: Shim, repository: str) -> pb.ListCommitsResponse:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{shim.server.port}") as channel:
        stub = pb_grpc.NodeShimStub(channel)  # type: ignore[no-untyped-call]
        response: pb.ListCommitsResponse = await stub.ListCommits(
            pb.ListCommitsRequest(repository=repository),
            metadata=(("authorization", f"Bearer {shim.settings.bearer_token()}"),),
        )
        return response


async def test_calls_without_the_right_token_are_refused(shim: Shim) -> None:
    wrong = NodeShimClient(port=shim.server.port, token="not-the-token")
    try:
        with pytest.raises(NodeShimError) as bad_health:
            await wrong.health(shim.host)
        with pytest.raises(NodeShimError) as bad_commit:
            await wrong.commit(shim.host, _request("any", shim.target()))
    finally:
        await wrong.close()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{shim.server.port}") as channel:
        stub = pb_grpc.NodeShimStub(channel)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.aio.AioRpcError) as no_token:
            await stub.Version(pb.VersionRequest())

    assert bad_health.value.code == "UNAUTHENTICATED"
    assert bad_commit.value.code == "UNAUTHENTICATED"
    assert no_token.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "missing bearer token" in (no_token.value.details() or "")
    assert shim.server.service._running == {}


async def test_health_and_version_report_containerd(shim: Shim) -> None:
    health = await shim.client.health(shim.host)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{shim.server.port}") as channel:
        stub = pb_grpc.NodeShimStub(channel)  # type: ignore[no-untyped-call]
        version = await stub.Version(
            pb.VersionRequest(),
            metadata=(("authorization", f"Bearer {shim.settings.bearer_token()}"),),
        )

    assert health.serving
    assert version.containerd_version.startswith("1.")
    assert version.api_version == "devbox.nodeshim.v1"


async def test_commit_of_an_unknown_container_is_not_found(shim: Shim) -> None:
    with pytest.raises(NodeShimError) as error:
        await shim.client.commit(shim.host, _request("no-such-container", shim.target()))

    assert error.value.code == "NOT_FOUND"
    assert "inspect" in error.value.message
    assert "no-such-container" in error.value.message


async def test_health_says_when_containerd_is_unreachable(
    containerd: Containerd, tmp_path: object
) -> None:
    from pathlib import Path

    from devbox_node_shim.server import Server

    settings = shim_settings(
        containerd, Path(str(tmp_path)) / "state", containerd_socket="/nonexistent/c.sock"
    )
    server = Server(settings)
    port = await server.start()
    client = NodeShimClient(port=port, token=settings.bearer_token())
    try:
        health = await client.health("127.0.0.1")
    finally:
        await client.close()
        await server.stop(grace=0)

    assert not health.serving
    assert "/nonexistent/c.sock" in health.message


async def test_pushed_image_passes_skopeo_inspect_and_copy(
    containerd: Containerd,
    busybox_image: str,
    containers: list[tuple[str, str]],
    shim: Shim,
    tmp_path: Path,
) -> None:
    if shutil.which("skopeo") is None:
        missing("skopeo", "install the Debian package skopeo (scripts/bootstrap test)")
    source = _start(containerd, busybox_image, containers)
    containerd.exec(source, "echo skopeo > /root/s")
    target = shim.target()
    outcome = await shim.client.commit(shim.host, _request(source, target))

    inspect = await asyncio.to_thread(
        subprocess.run,
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{target}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    copy = await asyncio.to_thread(
        subprocess.run,
        [
            "skopeo",
            "copy",
            "--src-tls-verify=false",
            f"docker://{target}",
            f"oci:{tmp_path / 'layout'}:copy",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert inspect.returncode == 0, inspect.stderr
    assert json.loads(inspect.stdout)["Digest"] == outcome.digest
    assert len(json.loads(inspect.stdout)["Layers"]) == outcome.layers
    assert copy.returncode == 0, copy.stderr
    index = json.loads((tmp_path / "layout" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == outcome.digest


async def test_delete_image_removes_the_local_image_and_the_registry_tag(
    containerd: Containerd, busybox_image: str, containers: list[tuple[str, str]], shim: Shim
) -> None:
    source = _start(containerd, busybox_image, containers)
    target = shim.target()
    await shim.client.commit(shim.host, _request(source, target))

    deleted = await shim.client.delete_image(shim.host, target, registry=True)
    again = await shim.client.delete_image(shim.host, target, registry=True)

    assert deleted
    assert not again
    assert target not in containerd.ctr("images", "ls", "-q").stdout.split()
    pull = containerd.ctr("images", "pull", "--plain-http", target, namespace="gone", check=False)
    assert pull.returncode != 0
    listed = await _list(shim, target.rsplit(":", 1)[0])
    assert listed.commits == []


@contextlib.asynccontextmanager
async def _local_copies_held(shim: Shim) -> AsyncIterator[None]:
    """Every local-copy slot taken (as by other copies running): a new copy waits."""
    slots = shim.server.committer._copy_slots
    for _ in range(LOCAL_COPIES):
        await slots.acquire()
    try:
        yield
    finally:
        for _ in range(LOCAL_COPIES):
            slots.release()


async def test_delete_image_drops_its_pending_local_copy_so_the_image_does_not_come_back(
    containerd: Containerd, busybox_image: str, containers: list[tuple[str, str]], shim: Shim
) -> None:
    source = _start(containerd, busybox_image, containers)
    containerd.exec(source, CHANGES)
    target = shim.target()
    async with _local_copies_held(shim):
        await shim.client.commit(shim.host, _request(source, target))
        # (the copy waits for a slot: DeleteImage does not wait behind it)
        assert await asyncio.wait_for(shim.client.delete_image(shim.host, target), 10)

    await shim.server.committer.settle()
    assert target not in containerd.ctr("images", "ls", "-q").stdout.split()
    assert _manifest_status(shim.registry, target) == 404
    assert not list((shim.settings.state_dir / "work").iterdir())
    assert containerd.ctr("leases", "ls", "-q").stdout.split() == []


async def test_a_node_shim_stopping_drops_queued_local_copies_and_their_files_and_leases(
    containerd: Containerd, busybox_image: str, containers: list[tuple[str, str]], shim: Shim
) -> None:
    target = shim.target()
    sources = [_start(containerd, busybox_image, containers) for _ in range(2)]
    async with _local_copies_held(shim):
        for source in sources:  # two copies of one image: the second waits for the first
            containerd.exec(source, CHANGES)
            await shim.client.commit(shim.host, _request(source, target))
        assert list((shim.settings.state_dir / "work").iterdir())  # the blobs wait for copies
        await shim.server.committer.aclose()

    assert not list((shim.settings.state_dir / "work").iterdir())
    assert containerd.ctr("leases", "ls", "-q").stdout.split() == []
    assert target not in containerd.ctr("images", "ls", "-q").stdout.split()
    copy = _pull_and_start(containerd, target, containers)  # the registry has it all
    assert "hello" in containerd.exec(
        copy, "cat /root/new.txt", namespace=_namespace(containers, copy)
    )


async def test_a_commit_waits_while_too_many_local_copies_are_pending(
    containerd: Containerd,
    busybox_image: str,
    containers: list[tuple[str, str]],
    shim: Shim,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each pending copy holds its layer blobs on the node's disk: their number is bounded."""
    monkeypatch.setattr(commit_module, "MAX_PENDING_COPIES", 1)
    first, second = (_start(containerd, busybox_image, containers) for _ in range(2))
    async with _local_copies_held(shim):
        await shim.client.commit(shim.host, _request(first, shim.target()))
        waiting = asyncio.ensure_future(
            shim.client.commit(shim.host, _request(second, shim.target()))
        )
        await asyncio.sleep(1.0)
        assert not waiting.done(), "the second commit must wait for the first copy"
    outcome = await asyncio.wait_for(waiting, 30)

    await shim.server.committer.settle()
    assert outcome.image in containerd.ctr("images", "ls", "-q").stdout.split()


def _manifest_status(registry: RegistryServer, image: str) -> int:
    repository, tag = image.split("/", 1)[1].rsplit(":", 1)
    response = httpx.head(
        f"{registry.url}/v2/{repository}/manifests/{tag}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    return response.status_code


def _namespace(started: list[tuple[str, str]], container: str) -> str:
    return next(ns for ns, name in started if name == container)


async def test_deleting_a_malformed_image_name_is_an_invalid_argument(shim: Shim) -> None:
    with pytest.raises(NodeShimError) as refused:
        await shim.client.delete_image(shim.host, "Bad Name:tag", registry=True)

    assert refused.value.code == "INVALID_ARGUMENT"
    assert "invalid repository name" in refused.value.message


async def test_a_devbox_committed_again_and_again_stays_within_its_layer_bound(
    containerd: Containerd,
    busybox_image: str,
    containers: list[tuple[str, str]],
    shim: Shim,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each round runs the previous commit's image (as a restarted devbox does), adds a file,
    grows a log, and commits with max_layers=3 (the runtime image has 1 layer)."""
    caplog.set_level("INFO", logger="devbox_node_shim.commit")
    image = busybox_image
    layer_counts: list[int] = []
    log_size = 0
    outcome = None
    for round_ in range(5):
        source = _start(containerd, image, containers)
        containerd.exec(
            source,
            f"echo {round_} > /root/file-{round_}; head -c 100000 /dev/urandom >> /root/log;"
            f" rm -f /root/file-{round_ - 2}",
        )
        log_size += 100_000
        before = containerd.exec(source, INSPECT)
        outcome = await shim.client.commit(
            shim.host,
            _request(source, shim.target(f"round-{round_}-{uuid.uuid4().hex[:6]}"), max_layers=3),
        )
        layer_counts.append(outcome.layers)
        image = outcome.image
        await shim.server.committer.settle(image)  # in containerd now: runs without a pull

    assert outcome is not None
    assert layer_counts == [2, 3, 2, 3, 2]
    assert caplog.text.count("squashed into one") == 2
    # The log is stored at most twice (squashed layer + newest), never once per commit.
    assert outcome.size_bytes < 1_100_000 + 3 * log_size
    copy = _pull_and_start(containerd, image, containers)
    assert _inspect_pulled(containerd, copy, containers) == before


async def test_gzip_compression_for_old_runtimes_gives_a_runnable_gzip_layer(
    containerd: Containerd, busybox_image: str, containers: list[tuple[str, str]], shim: Shim
) -> None:
    shim.server.service.settings = shim.settings.model_copy(update={"compression": "gzip"})
    source = _start(containerd, busybox_image, containers)
    containerd.exec(source, CHANGES)
    before = containerd.exec(source, INSPECT)
    target = shim.target()

    await shim.client.commit(shim.host, _request(source, target))

    copy = _pull_and_start(containerd, target, containers)
    namespace = containers[-1][0]
    listing = containerd.ctr("images", "ls", namespace=namespace).stdout
    assert _inspect_pulled(containerd, copy, containers) == before
    manifest = json.loads(
        containerd.ctr(
            "content", "get", _manifest_digest(listing, target), namespace=namespace
        ).stdout
    )
    assert manifest["layers"][-1]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"


def _manifest_digest(listing: str, image: str) -> str:
    for line in listing.splitlines():
        parts = line.split()
        if parts and parts[0] == image:
            return parts[2]
    raise AssertionError(f"{image} not in {listing}")


async def test_layers_stay_bounded_when_the_devbox_layer_blobs_were_discarded(
    containerd: Containerd,
    busybox_image: str,
    containers: list[tuple[str, str]],
    shim: Shim,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without the own layers' blobs (containerd may discard unpacked layers) the bounded
    layer is re-based from snapshots instead of squashed from blobs."""
    caplog.set_level("INFO", logger="devbox_node_shim.commit")
    image = busybox_image
    for round_ in range(2):
        source = _start(containerd, image, containers)
        containerd.exec(source, f"echo {round_} > /root/r{round_}; rm -f /etc/group")
        outcome = await shim.client.commit(shim.host, _request(source, shim.target(), max_layers=3))
        image = outcome.image
        await shim.server.committer.settle(image)  # in containerd now: runs without a pull
    source = _start(containerd, image, containers)
    containerd.exec(source, "echo 2 > /root/r2; rm /root/r0")
    before = containerd.exec(source, INSPECT)
    listing = containerd.ctr("images", "ls").stdout
    manifest = json.loads(containerd.ctr("content", "get", _manifest_digest(listing, image)).stdout)
    for layer in manifest["layers"][1:]:
        containerd.ctr("content", "rm", layer["digest"])

    outcome = await shim.client.commit(shim.host, _request(source, shim.target(), max_layers=3))

    assert outcome.layers == 2
    assert "re-based from snapshots into one" in caplog.text
    copy = _pull_and_start(containerd, outcome.image, containers)
    assert _inspect_pulled(containerd, copy, containers) == before
