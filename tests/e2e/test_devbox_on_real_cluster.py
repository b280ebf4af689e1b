"""The product's promise on a real Kubernetes: every change a user makes anywhere in their
devbox survives stop and start, is carried by a release into a new runtime, and is not lost
when the controller is killed mid-stop or the registry is down during the commit.

Everything is real: the devbox is created through GraphQL, the controller (its own process,
with its RBAC-bound service account) makes a pod on the local cluster, the user SSHes in with
OpenSSH (through the NodePort and through the API server's tunnel), the node-shim commits the
pod's container from the cluster's containerd and pushes it to the cluster's registry, and the
next pod pulls the committed image back from that registry.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from devbox_node_shim.api import nodeshim_pb2 as pb

from app.nodeshim_client import NodeShimClient
from tests.client.helpers import Devboxctl
from tests.fixtures.realcluster import SCRIPT
from tests.fixtures.realstack import REGISTRY, RealStack

pytestmark = [pytest.mark.realcluster, pytest.mark.timeout(900)]

RESOURCES = {"cpu": "200m", "memory": "256Mi", "storage": "2Gi"}

WRITE_CHANGES = r"""
set -e
echo "notes of $(hostname)" > /root/notes.txt
mkdir -p /root/project/src && echo 'print("hi")' > /root/project/src/main.py
echo 'setting = on' > /etc/devbox-e2e.conf
printf '#!/bin/sh\necho hello from usr-local\n' > /usr/local/bin/hello
chmod 0755 /usr/local/bin/hello
ln -s /root/notes.txt /root/notes-link
rm /usr/share/devbox/delete-me
sync
"""

CHECK_CHANGES = r"""
set -e
cat /root/notes.txt
cat /root/project/src/main.py
cat /etc/devbox-e2e.conf
/usr/local/bin/hello
readlink /root/notes-link
stat -c %a /usr/local/bin/hello
if [ -e /usr/share/devbox/delete-me ]; then echo "delete-me came back"; exit 3; fi
echo all-there
"""


def check_output(box: str) -> list[str]:
    return [
        f"notes of {box}",
        'print("hi")',
        "setting = on",
        "hello from usr-local",
        "/root/notes.txt",
        "755",
        "all-there",
    ]


# ----------------------------------------------------------------------------- helpers


def until(what: str, check: Callable[[], Any], within: float, stack: RealStack) -> Any:
    """Poll ``check`` until it returns something truthy; fail with the processes' logs."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(1)
    raise AssertionError(f"{what} within {within:.0f}s; last: {last!r}\n{stack.logs()}")


class Api:
    """GraphQL over HTTP with one token."""

    def __init__(self, stack: RealStack, token: str) -> None:
        self.stack = stack
        self.http = httpx.Client(
            base_url=stack.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def __call__(self, query: str, **variables: Any) -> dict[str, Any]:
        response = self.http.post("/graphql", json={"query": query, "variables": variables})
        assert response.status_code == 200, response.text
        body = response.json()
        assert not body.get("errors"), body["errors"]
        return dict(body["data"])

    def mutate(self, field: str, input_type: str, selection: str, **input: Any) -> dict[str, Any]:
        data = self(
            f"mutation($input: {input_type}!) {{ {field}(input: $input) {{ {selection} "
            "userErrors { field code message } } }",
            input=input,
        )[field]
        assert data["userErrors"] == [], data["userErrors"]
        return dict(data)

    def devbox(self, name: str) -> dict[str, Any]:
        return dict(
            self(
                """query($name: String!) { devbox(name: $name) {
                    name namespace phase image
                    conditions { type status reason message }
                    ssh { host port user privateKey }
                    commits(first: 50) { edges { node {
                        id mode image digest status reason layers sizeBytes } } }
                    releases(first: 10) { edges { node { id version phase image reason } } }
                } }""",
                name=name,
            )["devbox"]
            or {}
        )

    def wait_phase(self, name: str, phase: str, within: float = 180) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            box = self.devbox(name)
            if box.get("phase") == "FAILED" and phase != "FAILED":
                raise AssertionError(f"{name} failed: {box['conditions']}\n{self.stack.logs()}")
            return box if box.get("phase") == phase else None

        return dict(until(f"{name} is {phase}", reached, within, self.stack))

    def delete(self, name: str) -> None:
        """Delete the devbox and wait until it is gone (the controller's finalizer ran)."""
        self.mutate("devboxDelete", "DevboxDeleteInput", "", name=name)
        until(f"{name} is gone", lambda: not self.devbox(name), 120, self.stack)

    def runtime_id(self, name: str) -> str:
        edges = self("{ runtimes(first: 100) { edges { node { id name namespace } } } }")[
            "runtimes"
        ]["edges"]
        for edge in edges:
            if edge["node"]["name"] == name:
                return str(edge["node"]["id"])
        raise AssertionError(f"runtime {name} is not in {[e['node']['name'] for e in edges]}")

    def create(self, name: str, runtime: str) -> None:
        self.mutate(
            "devboxCreate",
            "DevboxCreateInput",
            "devbox { name }",
            name=name,
            runtime=runtime,
            resources=RESOURCES,
        )


def commits(box: dict[str, Any]) -> list[dict[str, Any]]:
    return [edge["node"] for edge in box["commits"]["edges"]]


class Ssh:
    """OpenSSH into a devbox with the private key the API gives its owner."""

    def __init__(self, box: dict[str, Any], folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.key = folder / f"{box['name']}.key"
        self.key.write_text(box["ssh"]["privateKey"])
        self.key.chmod(0o600)
        self.host = str(box["ssh"]["host"])
        self.port = int(box["ssh"]["port"])
        self.user = str(box["ssh"]["user"])
        self.options = [
            "-i", str(self.key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR",
        ]  # fmt: skip

    def run(self, script: str, *, via: list[str] | None = None) -> str:
        """Run ``script`` with ``sh`` in the devbox (straight to the NodePort, or ``via`` extra
        ssh options, e.g. a ProxyCommand); its stdout."""
        target = [*self.options, "-p", str(self.port), f"{self.user}@{self.host}"]
        if via is not None:
            target = [*self.options, *via, f"{self.user}@devbox"]
        result = subprocess.run(
            ["ssh", *target, "sh -s"],
            input=script,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"ssh: exit {result.returncode}: {result.stderr}"
        return result.stdout

    def wait_ready(self, stack: RealStack) -> None:
        def answers() -> bool:
            try:
                return self.run("echo ready").strip() == "ready"
            except AssertionError:
                return False

        until(f"sshd answers on {self.host}:{self.port}", answers, 60, stack)


def registry_digest(image: str) -> str | None:
    """The digest the cluster's registry has for ``image`` (None: it has no such tag)."""
    repository, tag = image.removeprefix(f"{REGISTRY}/").rsplit(":", 1)
    response = httpx.head(
        f"http://{REGISTRY}/v2/{repository}/manifests/{tag}",
        headers={
            "Accept": "application/vnd.oci.image.manifest.v1+json, "
            "application/vnd.docker.distribution.manifest.v2+json"
        },
        timeout=10,
    )
    if response.status_code == 404:
        return None
    assert response.status_code == 200, f"registry: HTTP {response.status_code} for {image}"
    digest = response.headers.get("docker-content-digest")
    return str(digest) if digest else None


def pods_of(stack: RealStack, namespace: str, name: str) -> list[dict[str, Any]]:
    listed = stack.kubectl_json("-n", namespace, "get", "pods", "-l", f"devbox.dev/devbox={name}")
    items: list[dict[str, Any]] = listed["items"]
    return items


def container_activity(stack: RealStack, namespace: str, name: str) -> pb.ContainerActivityResponse:
    """The node-shim's ContainerActivity for the devbox's container, SSH port 22."""
    pod = pods_of(stack, namespace, name)[0]
    container = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    client = NodeShimClient(
        port=int(stack.node_shim.env["DEVBOX_NODE_SHIM_PORT"]),
        token=stack.node_shim.env["DEVBOX_NODE_SHIM_TOKEN"],
    )

    async def ask() -> pb.ContainerActivityResponse:
        try:
            return await client.activity(pod["status"]["hostIP"], container, 22)
        finally:
            await client.close()

    return asyncio.run(ask())


def write_big_file(ssh: Ssh, megabytes: int) -> str:
    """Incompressible data in /root/big.bin (a commit that takes a few seconds); its sha256."""
    out = ssh.run(
        f"head -c {megabytes * 1024 * 1024} /dev/urandom > /root/big.bin && sync && "
        "sha256sum /root/big.bin"
    )
    return out.split()[0]


@pytest.fixture
def api(real_stack: RealStack) -> Iterator[Api]:
    client = Api(real_stack, real_stack.admin_token)
    yield client
    client.http.close()


@pytest.fixture
def name() -> str:
    return f"e2e-{uuid.uuid4().hex[:6]}"


# ----------------------------------------------------------------------------- tests


def test_every_change_survives_stop_start_and_a_release(
    real_stack: RealStack, api: Api, name: str, tmp_path: Path
) -> None:
    stack = real_stack
    api.create(name, api.runtime_id("local-debian"))
    box = api.wait_phase(name, "RUNNING")
    namespace = box["namespace"]
    ssh = Ssh(box, tmp_path)
    ssh.wait_ready(stack)
    ssh.run(WRITE_CHANGES)

    # Through the API server's tunnel too (ProxyCommand devboxctl ssh-proxy), as IDEs connect.
    cli = Devboxctl(tmp_path / "home")
    login = subprocess.run(
        [cli.binary, "login", "--server", stack.api_url, "--token", stack.admin_token],
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert login.returncode == 0, login.stderr
    proxy = f"env HOME={cli.home} DEVBOXCTL_CONFIG={cli.config_file} {cli.binary} ssh-proxy {name}"
    assert ssh.run("cat /root/notes.txt", via=["-o", f"ProxyCommand={proxy}"]).strip() == (
        f"notes of {name}"
    )

    # What idle auto-stop and the storage condition read: the node-shim sees the SSH session
    # held open straight to the NodePort, inside the real pod's network namespace.
    session = subprocess.Popen(
        ["ssh", *ssh.options, "-p", str(ssh.port), f"{ssh.user}@{ssh.host}", "sleep 60"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        activity = until(
            "the node-shim sees the open SSH session",
            lambda: (found := container_activity(stack, namespace, name)).connections and found,
            30,
            stack,
        )
        assert activity.running
        assert activity.writable_bytes > 0
    finally:
        session.kill()
        session.wait()

    first_pod = pods_of(stack, namespace, name)[0]["metadata"]["uid"]
    api.mutate("devboxStop", "DevboxStopInput", "devbox { phase }", name=name)
    box = api.wait_phase(name, "STOPPED")
    assert pods_of(stack, namespace, name) == [], "a stopped devbox keeps no pod"
    done = [c for c in commits(box) if c["status"] == "SUCCEEDED"]
    assert len(done) == 1, commits(box)
    image = done[0]["image"]
    assert image.startswith(f"{REGISTRY}/{namespace}/{name}:"), image
    assert box["image"] == image
    assert str(done[0]["digest"]).startswith("sha256:"), done[0]
    assert registry_digest(image) == done[0]["digest"], "the registry holds the committed image"

    # The node-shim copies the image into the node's containerd after the push (a restart on
    # this node needs no download)...
    deadline = time.monotonic() + 120
    while image not in stack.ctr("images", "ls", "-q").split():
        assert time.monotonic() < deadline, "the node-shim's local copy of the image never came"
        time.sleep(0.5)
    # ...but the next pod must get the image from the registry, not from the node's leftovers.
    stack.ctr("images", "rm", image)
    api.mutate("devboxStart", "DevboxStartInput", "devbox { phase }", name=name)
    box = api.wait_phase(name, "RUNNING")
    pods = pods_of(stack, namespace, name)
    assert len(pods) == 1
    assert pods[0]["metadata"]["uid"] != first_pod
    assert pods[0]["spec"]["containers"][0]["image"] == image
    ssh = Ssh(box, tmp_path / "again")
    ssh.wait_ready(stack)
    assert ssh.run(CHECK_CHANGES).splitlines() == check_output(name)

    # A release re-tags the current image; a runtime made from it starts with the same files.
    release = api.mutate(
        "devboxRelease",
        "DevboxReleaseInput",
        "release { id version phase }",
        name=name,
        version="1.0.0",
        notes="e2e",
    )["release"]

    def release_done() -> dict[str, Any] | None:
        for edge in api.devbox(name)["releases"]["edges"]:
            node = edge["node"]
            if node["version"] == "1.0.0" and node["phase"] != "PENDING":
                return dict(node)
        return None

    released = until("the release succeeds", release_done, 120, stack)
    assert released["phase"] == "SUCCEEDED", released
    assert released["image"] == f"{REGISTRY}/{namespace}/{name}:1.0.0", released
    assert registry_digest(released["image"]) == done[0]["digest"]
    runtime = api.mutate(
        "runtimeCreateFromRelease",
        "RuntimeCreateFromReleaseInput",
        "runtime { id name }",
        release=release["id"],
        name=f"{name}-rt",
    )["runtime"]
    second = f"{name}-2"
    api.create(second, runtime["id"])
    box2 = api.wait_phase(second, "RUNNING")
    ssh2 = Ssh(box2, tmp_path / "second")
    ssh2.wait_ready(stack)
    # Same files (the hostname in notes.txt is the first devbox's: it was written there).
    assert ssh2.run(CHECK_CHANGES).splitlines() == check_output(name)

    for each in (name, second):
        api.delete(each)
    assert pods_of(stack, namespace, name) == []
    assert pods_of(stack, namespace, second) == []


def test_controller_killed_during_stop_loses_nothing(
    real_stack: RealStack, api: Api, name: str, tmp_path: Path
) -> None:
    stack = real_stack
    api.create(name, api.runtime_id("local-debian"))
    box = api.wait_phase(name, "RUNNING")
    namespace = box["namespace"]
    ssh = Ssh(box, tmp_path)
    ssh.wait_ready(stack)
    ssh.run(WRITE_CHANGES)
    digest = write_big_file(ssh, 400)  # a commit of a few seconds: time to kill mid-way

    api.mutate("devboxStop", "DevboxStopInput", "devbox { phase }", name=name)

    def committing() -> str | None:
        """The commit id once the node-shim has started committing it (its log says so)."""
        running = [c for c in commits(api.devbox(name)) if c["status"] == "COMMITTING"]
        if running and f":{running[0]['id']} of container" in stack.node_shim.text():
            return str(running[0]["id"])
        return None

    commit_id = until("the node-shim is committing", committing, 60, stack)
    stack.controller.kill()
    assert f":{commit_id} done" not in stack.node_shim.text(), (
        "the commit ended before the controller was killed: nothing was proven"
    )
    time.sleep(2)
    stack.controller.start()

    box = api.wait_phase(name, "STOPPED", within=300)
    done = [c for c in commits(box) if c["status"] == "SUCCEEDED"]
    assert [c["id"] for c in done] == [commit_id], commits(box)  # re-attached, not redone
    assert [c for c in commits(box) if c["status"] != "SUCCEEDED"] == [], commits(box)
    assert stack.node_shim.text().count(f":{commit_id} of container") == 1
    assert pods_of(stack, namespace, name) == []

    api.mutate("devboxStart", "DevboxStartInput", "devbox { phase }", name=name)
    box = api.wait_phase(name, "RUNNING")
    assert len(pods_of(stack, namespace, name)) == 1, "no duplicate pod"
    ssh = Ssh(box, tmp_path / "again")
    ssh.wait_ready(stack)
    assert ssh.run(CHECK_CHANGES).splitlines() == check_output(name)
    assert ssh.run("sha256sum /root/big.bin").split()[0] == digest
    api.delete(name)


def _registry_pid(stack: RealStack) -> int:
    return int((stack.cluster.state_dir / "run" / "registry.pid").read_text())


def test_registry_down_during_commit_keeps_the_pod_and_retries(
    real_stack: RealStack, api: Api, name: str, tmp_path: Path
) -> None:
    stack = real_stack
    api.create(name, api.runtime_id("local-debian"))
    box = api.wait_phase(name, "RUNNING")
    namespace = box["namespace"]
    ssh = Ssh(box, tmp_path)
    ssh.wait_ready(stack)
    ssh.run(WRITE_CHANGES)

    os.kill(_registry_pid(stack), signal.SIGKILL)
    try:
        api.mutate("devboxStop", "DevboxStopInput", "devbox { phase }", name=name)
        failed = until(
            "the commit fails while the registry is down",
            lambda: [c for c in commits(api.devbox(name)) if c["status"] == "FAILED"],
            120,
            stack,
        )
        assert "push" in (failed[0]["reason"] or "").lower(), failed
        box = api.devbox(name)
        assert box["phase"] == "STOPPING", box["phase"]
        assert len(pods_of(stack, namespace, name)) == 1, "the pod (and its changes) is kept"
        assert not any(c["status"] == "SUCCEEDED" for c in commits(box))
    finally:
        up = subprocess.run(
            [str(SCRIPT), "up", "--no-build", "--state-dir", str(stack.cluster.state_dir)],
            capture_output=True,
            text=True,
            timeout=280,
            check=False,
        )
    assert up.returncode == 0, f"the registry did not come back: {up.stderr}"

    box = api.wait_phase(name, "STOPPED", within=300)
    done = [c for c in commits(box) if c["status"] == "SUCCEEDED"]
    assert len(done) == 1
    assert str(done[0]["digest"]).startswith("sha256:"), done[0]
    assert registry_digest(done[0]["image"]) == done[0]["digest"]
    api.mutate("devboxStart", "DevboxStartInput", "devbox { phase }", name=name)
    box = api.wait_phase(name, "RUNNING")
    ssh = Ssh(box, tmp_path / "again")
    ssh.wait_ready(stack)
    assert ssh.run(CHECK_CHANGES).splitlines() == check_output(name)
    api.delete(name)
