"""Faults during a commit: each ends with a clear error naming the step, the container never
left paused, nothing half-pushed marked as done, and a retry that succeeds once the fault is
gone.  The faults are real (the registry or containerd stopped, a process killed, a full disk);
the node-shim's step hook only chooses the moment."""

from __future__ import annotations

import asyncio
import datetime
import subprocess
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from devbox_node_shim.commit import LocalCopy
from devbox_node_shim.push import RegistryPusher
from devbox_node_shim.records import CommitStore, RunningCommit
from devbox_node_shim.server import Server

from app.nodeshim_client import NodeShimClient, NodeShimError
from tests.fixtures.containerd import BUSYBOX_REF, Containerd, build_busybox_oci_tar
from tests.fixtures.registry import RegistryServer
from tests.node_shim.conftest import TOKEN, Shim, shim_settings
from tests.node_shim.test_commit import (
    CHANGES,
    INSPECT,
    _inspect_pulled,
    _list,
    _manifest_status,
    _pull_and_start,
    _request,
    _start,
    containers,
)

__all__ = ["containers"]


async def test_registry_down_at_push_fails_naming_push_and_a_retry_succeeds(
    containerd: Containerd,
    busybox_image: str,
    containers: list[tuple[str, str]],
    shim: Shim,
) -> None:
    source = _start(containerd, busybox_image, containers)
    containerd.exec(source, CHANGES)
    before = containerd.exec(source, INSPECT)
    request = _request(source, shim.target())

    async def cut_registry(step: str) -> None:
        if step == "push":
            await asyncio.to_thread(shim.registry.stop)

    shim.server.committer.step_hook = cut_registry
    try:
        with pytest.raises(NodeShimError) as failed:
            await shim.client.commit(shim.host, request)
    finally:
        shim.server.committer.step_hook = None
        shim.registry.start()

    assert failed.value.code == "UNAVAILABLE"
    assert not failed.value.temporary  # it ran and failed: retried, never re-attached to
    assert "at step push" in failed.value.message
    assert containerd.task_status(source) == "RUNNING"
    assert _manifest_status(shim.registry, request.target_image) == 404
    assert (await _list(shim, request.target_image.rsplit(":", 1)[0])).commits == []

    outcome = await shim.client.commit(shim.host, request)

    assert outcome.image == request.target_image
    copy = _pull_and_start(containerd, request.target_image, containers)
    assert _inspect_pulled(containerd, copy, containers) == before


async def test_registry_refusing_the_credentials_is_permission_denied(
    containerd: Containerd,
    busybox_image: str,
    containers: list[tuple[str, str]],
    auth_registry: RegistryServer,
    tmp_path: Path,
) -> None:
    settings = shim_settings(containerd, tmp_path / "state")
    pusher = RegistryPusher.from_settings(settings)
    server = Server(settings, pusher=pusher, registry=pusher)
    port = await server.start()
    client = NodeShimClient(port=port, token=TOKEN)
    source = _start(containerd, busybox_image, containers)
    try:
        with pytest.raises(NodeShimError) as refused:
            await client.commit(
                "127.0.0.1", _request(source, f"{auth_registry.host}/devbox/dev:noauth")
            )
    finally:
        await client.close()
        await server.stop(grace=0)
        await pusher.aclose()

    assert refused.value.code == "PERMISSION_DENIED"
    assert "at step push" in refused.value.message
    assert "credentials" in refused.value.message
    assert containerd.task_status(source) == "RUNNING"


async def test_a_container_left_paused_by_a_killed_node_shim_is_resumed_at_start(
    containerd: Containerd,
    busybox_image: str,
    containers: list[tuple[str, str]],
    shim: Shim,
) -> None:
    source = _start(containerd, busybox_image, containers)
    containerd.exec(source, "echo survived > /root/after-kill")
    request = _request(source, shim.target())
    # What a node-shim killed while the task was paused leaves behind: the task paused and
    # the commit recorded as running.
    containerd.ctr("task", "pause", source)
    CommitStore(shim.settings.state_dir).start(
        RunningCommit(
            request_id=request.request_id,
            container_id=source,
            image=request.target_image,
            mode="COMMIT_MODE_SNAPSHOT",
            started_at=datetime.datetime.now(datetime.UTC).isoformat(),
        )
    )

    await shim.restart()

    assert containerd.task_status(source) == "RUNNING"
    assert CommitStore(shim.settings.state_dir).left_running() == []
    outcome = await shim.client.commit(shim.host, request)
    copy = _pull_and_start(containerd, outcome.image, containers)
    assert "survived" in containerd.exec(copy, "cat /root/after-kill", namespace=_ns(containers))


def _ns(containers: list[tuple[str, str]]) -> str:
    return containers[-1][0]


async def test_containerd_restarting_while_paused_fails_at_diff_and_resumes_the_container(
    containerd: Containerd,
    busybox_image: str,
    containers: list[tuple[str, str]],
    shim: Shim,
) -> None:
    source = _start(containerd, busybox_image, containers)
    containerd.exec(source, "echo kept > /root/kept")
    request = _request(source, shim.target())
    restarted = threading.Event()

    def bring_back() -> None:
        containerd.start()
        restarted.set()

    async def restart_containerd(step: str) -> None:
        if step == "diff":
            await asyncio.to_thread(containerd.stop)
            threading.Timer(1.0, bring_back).start()

    shim.server.committer.step_hook = restart_containerd
    try:
        with pytest.raises(NodeShimError) as failed:
            await shim.client.commit(shim.host, request)
    finally:
        shim.server.committer.step_hook = None
        await asyncio.to_thread(restarted.wait, 60)

    assert failed.value.code == "UNAVAILABLE"
    assert "at step diff" in failed.value.message
    assert containerd.task_status(source) == "RUNNING"

    outcome = await shim.client.commit(shim.host, request)
    copy = _pull_and_start(containerd, outcome.image, containers)
    assert "kept" in containerd.exec(copy, "cat /root/kept", namespace=_ns(containers))


async def test_a_container_that_exits_during_the_commit_is_committed_and_not_left_paused(
    containerd: Containerd,
    busybox_image: str,
    containers: list[tuple[str, str]],
    shim: Shim,
) -> None:
    source = _start(containerd, busybox_image, containers)
    containerd.exec(source, "echo last-words > /root/last")

    async def kill_task(step: str) -> None:
        if step == "diff":  # the task is paused now
            await asyncio.to_thread(containerd.ctr, "task", "kill", "-s", "SIGKILL", source)

    shim.server.committer.step_hook = kill_task
    try:
        outcome = await shim.client.commit(shim.host, _request(source, shim.target()))
    finally:
        shim.server.committer.step_hook = None

    for _ in range(100):
        if containerd.task_status(source) == "STOPPED":
            break
        await asyncio.sleep(0.05)
    assert containerd.task_status(source) == "STOPPED"
    copy = _pull_and_start(containerd, outcome.image, containers)
    assert "last-words" in containerd.exec(copy, "cat /root/last", namespace=_ns(containers))


@pytest.fixture
def small_containerd(containerd: Containerd) -> Iterator[Containerd]:
    """A second private containerd whose root (content store, snapshots) is a 24 MiB tmpfs."""
    base = Path(tempfile.mkdtemp(prefix="ctrd-small-", dir="/tmp"))
    daemon = Containerd(base, namespace="small")
    daemon.root.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(daemon.root)], check=True
    )
    try:
        daemon.start()
        daemon.ctr("images", "import", str(build_busybox_oci_tar(base / "busybox.tar")))
        yield daemon
    finally:
        daemon.cleanup()
        daemon.stop()
        subprocess.run(["umount", "-R", "-l", str(daemon.root)], check=False)
        subprocess.run(["rm", "-rf", str(base)], check=False)


@pytest.fixture
async def small_shim(
    small_containerd: Containerd, registry: RegistryServer, tmp_path: Path
) -> AsyncIterator[Shim]:
    registry.start()
    settings = shim_settings(small_containerd, tmp_path / "state")
    pusher = RegistryPusher.from_settings(settings)
    server = Server(settings, pusher=pusher, registry=pusher)
    port = await server.start()
    client = NodeShimClient(port=port, token=TOKEN)
    try:
        yield Shim(server, client, settings, registry)
    finally:
        await client.close()
        await server.stop(grace=0)
        await pusher.aclose()


async def test_a_full_content_store_fails_a_commit_that_copies_locally_within_it(
    small_containerd: Containerd, small_shim: Shim
) -> None:
    """LocalCopy.IN_COMMIT: the image must be in containerd when the commit ends."""
    small_shim.server.committer.local_copy = LocalCopy.IN_COMMIT
    name = f"t-{uuid.uuid4().hex[:10]}"
    small_containerd.run(BUSYBOX_REF, name, "/bin/sleep", "100000")
    try:
        # 12 MB that do not compress: fits in the container, not twice on the disk.
        small_containerd.exec(name, "head -c 12000000 /dev/urandom > /root/big; md5sum /root/big")
        request = _request(name, small_shim.target())
        with pytest.raises(NodeShimError) as full:
            await small_shim.client.commit(small_shim.host, request)

        assert full.value.code == "RESOURCE_EXHAUSTED"
        assert "no space left on device" in full.value.message.lower()
        assert small_containerd.task_status(name) == "RUNNING"

        await asyncio.to_thread(
            subprocess.run,
            ["mount", "-o", "remount,size=128m", str(small_containerd.root)],
            check=True,
        )
        outcome = await small_shim.client.commit(small_shim.host, request)
        assert outcome.layers == 2
        assert outcome.image in small_containerd.ctr("images", "ls", "-q").stdout.split()
    finally:
        small_containerd.remove_container(name)


async def test_a_full_content_store_loses_nothing_when_the_local_copy_follows_the_push(
    containerd: Containerd,
    small_containerd: Containerd,
    small_shim: Shim,
    containers: list[tuple[str, str]],
) -> None:
    """LocalCopy.AFTER_PUSH (the default): the commit ends once the registry has the image, so
    a full content store fails only the local copy — said by Health until a copy succeeds."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    small_containerd.run(BUSYBOX_REF, name, "/bin/sleep", "100000")
    try:
        md5 = small_containerd.exec(
            name, "head -c 12000000 /dev/urandom > /root/big; md5sum /root/big"
        )
        outcome = await small_shim.client.commit(
            small_shim.host, _request(name, small_shim.target())
        )
        await small_shim.server.committer.settle()

        problem = small_shim.server.committer.copy_problem
        assert problem is not None
        assert "no space left on device" in problem.lower()
        assert outcome.image in problem
        health = await small_shim.client.health(small_shim.host)
        assert health.serving
        assert health.degraded
        assert "no space left on device" in health.message.lower()
        # No image in containerd (a kubelet pulls it), no work files left behind...
        assert outcome.image not in small_containerd.ctr("images", "ls", "-q").stdout.split()
        assert not list((small_shim.settings.state_dir / "work").iterdir())
        # ...and the registry has every byte.
        copy = _pull_and_start(containerd, outcome.image, containers)
        namespace = next(ns for ns, c in containers if c == copy)
        assert containerd.exec(copy, "md5sum /root/big", namespace=namespace) == md5

        await asyncio.to_thread(
            subprocess.run,
            ["mount", "-o", "remount,size=128m", str(small_containerd.root)],
            check=True,
        )
        again = await small_shim.client.commit(small_shim.host, _request(name, small_shim.target()))
        await small_shim.server.committer.settle()
        assert small_shim.server.committer.copy_problem is None
        assert again.image in small_containerd.ctr("images", "ls", "-q").stdout.split()
        assert not (await small_shim.client.health(small_shim.host)).degraded
    finally:
        small_containerd.remove_container(name)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(containerd: Containerd, state: Path, port: int) -> subprocess.Popen[bytes]:
    """``devbox-node-shim serve`` as its own process (log next to its state directory)."""
    import os
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVBOX_NODE_SHIM_")}
    env.update(
        DEVBOX_NODE_SHIM_TOKEN=TOKEN,
        DEVBOX_NODE_SHIM_LISTEN_ADDRESS="127.0.0.1",
        DEVBOX_NODE_SHIM_PORT=str(port),
        DEVBOX_NODE_SHIM_CONTAINERD_SOCKET=containerd.socket,
        DEVBOX_NODE_SHIM_CONTAINERD_NAMESPACE=containerd.namespace,
        DEVBOX_NODE_SHIM_STATE_DIR=str(state),
    )
    script = str(Path(sys.executable).parent / "devbox-node-shim")
    with (state.parent / "node-shim.log").open("ab") as log:
        return subprocess.Popen([script, "serve"], env=env, stdout=log, stderr=log)


async def _serve(containerd: Containerd, state: Path, port: int) -> subprocess.Popen[bytes]:
    """Start the node-shim process; returns once it answers."""
    process = _spawn(containerd, state, port)
    client = NodeShimClient(port=port, token=TOKEN, call_timeout=2)
    try:
        for _ in range(200):
            if process.poll() is not None:
                log = (state.parent / "node-shim.log").read_text()
                raise RuntimeError(f"node-shim exited: {log[-2000:]}")
            try:
                if (await client.health("127.0.0.1")).serving:
                    return process
            except NodeShimError:
                await asyncio.sleep(0.05)
    finally:
        await client.close()
    process.kill()
    raise RuntimeError("node-shim did not answer")


async def test_node_shim_killed_mid_commit_resumes_the_container_on_restart_and_a_retry_succeeds(
    containerd: Containerd,
    busybox_image: str,
    containers: list[tuple[str, str]],
    registry: RegistryServer,
    tmp_path: Path,
) -> None:
    registry.start()
    source = _start(containerd, busybox_image, containers)
    # Enough data that the diff (taken while the task is paused) lasts a while.
    containerd.exec(source, "head -c 64000000 /dev/zero > /root/zeros; echo here > /root/mark")
    port = _free_port()
    state = tmp_path / "state"
    request = _request(source, f"{registry.host}/devbox/dev:{uuid.uuid4().hex[:12]}")
    process = await _serve(containerd, state, port)
    client = NodeShimClient(port=port, token=TOKEN)
    status_at_kill: list[str] = []

    def kill_at_diff(progress: object) -> None:
        if getattr(progress, "step", "") == "diff" and process.poll() is None:
            process.kill()
            process.wait()
            status_at_kill.append(containerd.task_status(source))

    try:
        with pytest.raises(NodeShimError) as cut:
            await client.commit("127.0.0.1", request, on_progress=kill_at_diff)
        assert cut.value.code == "UNAVAILABLE"
        assert [r.request_id for r in CommitStore(state).left_running()] == [request.request_id]

        leases_left = containerd.ctr("leases", "ls", "-q").stdout.split()
        process = await _serve(containerd, state, port)
        assert containerd.task_status(source) == "RUNNING"
        assert CommitStore(state).left_running() == []
        assert leases_left, "the killed node-shim should have left its lease behind"
        assert containerd.ctr("leases", "ls", "-q").stdout.split() == []

        outcome = await client.commit("127.0.0.1", request)
    finally:
        await client.close()
        process.terminate()
        process.wait(timeout=30)

    print(f"task status when the node-shim was killed: {status_at_kill}")
    copy = _pull_and_start(containerd, outcome.image, containers)
    assert "here" in containerd.exec(copy, "cat /root/mark", namespace=_ns(containers))


async def test_registry_answering_500_mid_push_fails_naming_push_and_a_retry_succeeds(
    containerd: Containerd,
    busybox_image: str,
    containers: list[tuple[str, str]],
    shim: Shim,
) -> None:
    import shutil

    from tests.fixtures.deps import missing

    if shutil.which("chattr") is None:
        missing("chattr", "install the Debian package e2fsprogs")
    source = _start(containerd, busybox_image, containers)
    await shim.client.commit(shim.host, _request(source, shim.target()))  # the base is there
    containerd.exec(source, "head -c 300000 /dev/urandom > /root/new-blob")
    request = _request(source, shim.target())
    blobs = shim.registry.directory / "storage" / "docker" / "registry" / "v2" / "blobs"

    async def freeze_storage(step: str) -> None:
        # The registry can no longer store new blobs: it answers 500 to their upload.
        if step == "push":
            await asyncio.to_thread(subprocess.run, ["chattr", "-R", "+i", str(blobs)], check=True)

    shim.server.committer.step_hook = freeze_storage
    try:
        with pytest.raises(NodeShimError) as failed:
            await shim.client.commit(shim.host, request)
    finally:
        shim.server.committer.step_hook = None
        await asyncio.to_thread(subprocess.run, ["chattr", "-R", "-i", str(blobs)], check=True)

    assert failed.value.code == "UNAVAILABLE"
    assert "at step push" in failed.value.message
    assert "500" in failed.value.message
    assert containerd.task_status(source) == "RUNNING"
    assert _manifest_status(shim.registry, request.target_image) == 404

    outcome = await shim.client.commit(shim.host, request)
    copy = _pull_and_start(containerd, outcome.image, containers)
    assert "new-blob" in containerd.exec(copy, "ls /root", namespace=_ns(containers))
