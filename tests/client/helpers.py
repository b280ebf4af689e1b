"""Parts for the tunnel and ``devboxctl`` tests: a simulated cluster whose pods are reachable,
the whole product on it, a real OpenSSH server, and ``devboxctl`` run as a real process.

- :func:`reachable_sim` — a simulated cluster with a loopback pod network (a random
  ``127.X.0.0/16``, so pod IPs are bindable) and node ports served on 127.0.0.1
  (``app.simcluster.network``).
- :func:`product` — that cluster, PostgreSQL, the real controller (fake node-shim and
  registry) and the API server under uvicorn (:func:`tests.api.stack.running_stack`).
- :class:`Sshd` — Debian's ``sshd`` on a free loopback port with its own host key and
  config (``UsePAM no``, ``AuthorizedKeysFile`` = a file the test writes).
- :func:`running_devbox` — a private runtime (``root``, SSH on 2222) and a devbox of it made
  Running through the API, its pod's SSH port forwarded to a real address.
- :class:`Devboxctl` — runs ``devboxctl`` with its own ``HOME`` and config file.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.kubeclient import PODS, RUNTIMES, SECRETS
from app.simcluster.network import FORWARD_PREFIX
from app.simcluster.nodes import NodeSettings
from tests.api.stack import Stack, running_stack
from tests.fixtures.deps import missing
from tests.fixtures.simcluster import Sim, start_sim
from tests.fixtures.waiting import until_async

SSH_PORT = 2222
RUNTIME = "sshd"
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def reachable_sim() -> AsyncIterator[Sim]:
    sim = await start_sim(
        node_settings=NodeSettings(
            count=1,
            start_delay=0.02,
            stop_delay=0.02,
            pod_cidr=f"127.{random.randint(100, 250)}.0.0/16",
            proxy_node_ports=True,
        ),
    )
    try:
        yield sim
    finally:
        await sim.api.close()
        await sim.cluster.stop()


@contextlib.asynccontextmanager
async def product(
    database_url: str, tmp_path: Path, settings: dict[str, Any] | None = None
) -> AsyncIterator[Stack]:
    async with (
        reachable_sim() as sim,
        running_stack(sim, database_url, tmp_path, controller=True, settings=settings) as stack,
    ):
        yield stack


def sshd_binary() -> str:
    found = shutil.which("sshd") or ("/usr/sbin/sshd" if Path("/usr/sbin/sshd").exists() else None)
    if found is None or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        missing("OpenSSH (sshd, ssh, ssh-keygen)", "apt-get install openssh-server openssh-client")
    assert found is not None
    return found


class Sshd:
    """A real OpenSSH server on 127.0.0.1:<port>, accepting the keys in ``authorized_keys``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.authorized_keys = folder / "authorized_keys"
        self.log = folder / "sshd.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = sshd_binary()
        if os.geteuid() != 0:
            missing("root (sshd logs users in)", "run the tests as root, as CI does")
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
        host_key = self.folder / "host_ed25519"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True
        )
        self.authorized_keys.touch(mode=0o600)
        config = self.folder / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {host_key}",
                    f"PidFile {self.folder / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.authorized_keys}",
                    "UsePAM no",
                    "StrictModes no",
                    "PermitRootLogin prohibit-password",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "Subsystem sftp internal-sftp",
                    "LogLevel VERBOSE",
                    "",
                ]
            )
        )
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [binary, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        with socket.socket() as probe:
            for _ in range(200):
                if self.process.poll() is not None:
                    raise RuntimeError(f"sshd exited: {self.log.read_text()}")
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
                time.sleep(0.02)
        raise RuntimeError("sshd did not listen")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@dataclass
class Box:
    """A Running devbox whose SSH port is served by a real address."""

    namespace: str
    name: str
    token: str
    pod_ip: str
    node_port: int | None


async def create_runtime(stack: Stack, namespace: str) -> None:
    await stack.sim.kube.create(
        RUNTIMES,
        namespace,
        {
            "apiVersion": "devbox.dev/v1alpha1",
            "kind": "Runtime",
            "metadata": {"name": RUNTIME},
            "spec": {
                "class": "OS",
                "title": "Debian with sshd",
                "version": "12",
                "image": "docker.io/library/debian:12",
                "user": "root",
                "workingDir": "/root",
                "sshPort": SSH_PORT,
                "visibility": "Private",
            },
        },
    )


async def runtime_id(stack: Stack, token: str) -> str:
    data = await stack.gql(
        token,
        "query($f: RuntimeFilter) { runtimes(first: 100, filter: $f) {"
        " edges { node { id name namespace } } } }",
        f={"search": RUNTIME},
    )
    for edge in data["runtimes"]["edges"]:
        if edge["node"]["name"] == RUNTIME:
            return str(edge["node"]["id"])
    raise AssertionError(f"runtime {RUNTIME} not visible: {data}")


async def forward_ssh(stack: Stack, namespace: str, name: str, address: str) -> str:
    """Point the devbox pod's SSH port at ``address``; the pod IP."""
    pod = await stack.sim.kube.patch(
        PODS,
        namespace,
        name,
        {"metadata": {"annotations": {f"{FORWARD_PREFIX}{SSH_PORT}": address}}},
    )
    return str(pod["status"]["podIP"])


async def authorized_key(stack: Stack, namespace: str, name: str) -> str:
    """The devbox's public key (what its pod would authorize)."""
    secret = await stack.sim.kube.get(SECRETS, namespace, f"{name}-ssh")
    return base64.b64decode(secret["data"]["authorized_keys"]).decode()


async def running_devbox(
    stack: Stack, *, user: str = "alice", name: str = "box", address: str, **extra: Any
) -> Box:
    """A user, a devbox of the sshd runtime made Running, its SSH port → ``address``."""
    _, token = await stack.server.make_user(user)
    namespace = (await stack.gql(token, "{ viewer { namespace } }"))["viewer"]["namespace"]
    await create_runtime(stack, namespace)
    payload = await stack.create(token, name, runtime=await runtime_id(stack, token), **extra)
    assert payload["userErrors"] == [], payload
    devbox = await stack.wait_phase(namespace, name, "Running")
    pod_ip = await forward_ssh(stack, namespace, name, address)
    node_port = (devbox["status"].get("ssh") or {}).get("port")
    return Box(namespace, name, token, pod_ip, node_port)


async def wait_listening(host: str, port: int) -> None:
    async def check() -> bool:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            return False
        writer.close()
        return True

    await until_async(check, 5, f"{host}:{port} listening")


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


class Devboxctl:
    """``devboxctl`` as a user runs it: its own HOME, config file and PATH."""

    def __init__(self, home: Path) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "HOME": str(home),
            "DEVBOXCTL_CONFIG": str(home / ".config" / "devbox" / "config.toml"),
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "COLUMNS": "200",
            "NO_COLOR": "1",
        }
        self.env.pop("DEVBOX_SERVER", None)
        self.env.pop("DEVBOX_TOKEN", None)

    @property
    def config_file(self) -> Path:
        return Path(self.env["DEVBOXCTL_CONFIG"])

    @property
    def binary(self) -> str:
        return str(VENV_BIN / "devboxctl")

    async def run(self, *args: str, within: float = 120) -> Result:
        return await self.exec(self.binary, *args, within=within)

    async def exec(self, *argv: str, within: float = 120, stdin: bytes | None = None) -> Result:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
        )
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(stdin), within)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        assert process.returncode is not None
        return Result(process.returncode, stdout.decode(), stderr.decode())
