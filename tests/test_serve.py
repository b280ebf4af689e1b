"""``devboxctl serve`` on a fresh data folder: everything comes up, kubectl sees the official
runtimes, state survives a restart, and Ctrl-C stops it cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from app.settings import REPO_ROOT

DEVBOXCTL = str(Path(sys.executable).parent / "devboxctl")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Served:
    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.port = port
        self.process: subprocess.Popen[str] | None = None
        self.output = ""

    @staticmethod
    def env() -> dict[str, str]:
        """The environment without the caller's Devbox settings (embedded defaults)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEVBOX_")}
        env.pop("DATABASE_URL", None)
        env.pop("KUBECONFIG", None)
        env["COLUMNS"] = "200"
        return env

    def start(self) -> None:
        env = self.env()
        self.process = subprocess.Popen(
            [DEVBOXCTL, "serve", "--port", str(self.port), "--data-dir", str(self.data_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited early:\n{self.process.stdout.read()}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("serve did not answer /healthz within 60 s")

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        try:
            out, _ = self.process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, _ = self.process.communicate()
            raise AssertionError(f"serve did not stop within 20 s of Ctrl-C:\n{out}") from None
        self.output = out
        return self.process.returncode


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    server = Served(tmp_path / "data", _free_port())
    server.start()
    try:
        yield server
    finally:
        if server.process and server.process.poll() is None:
            server.process.kill()
            server.process.wait()


def _kubectl(kubectl: Path, kubeconfig: Path, *args: str) -> str:
    result = subprocess.run(
        [str(kubectl), "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _official_runtime_names() -> set[str]:
    names = set()
    for path in (REPO_ROOT / "k8s" / "runtimes").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Runtime":
                names.add(doc["metadata"]["name"])
    return names


def test_serve_brings_up_api_cluster_and_official_runtimes(served: Served, kubectl: Path) -> None:
    kubeconfig = served.data_dir / "kubeconfig"
    assert kubeconfig.stat().st_mode & 0o777 == 0o600
    table = _kubectl(kubectl, kubeconfig, "get", "runtimes", "-A")
    official = _official_runtime_names()
    assert official, "k8s/runtimes holds no Runtime manifests"
    for name in official:
        assert name in table
    assert "CLASS" in table.splitlines()[0]  # printer columns from the CRD

    url = f"http://127.0.0.1:{served.port}/graphql"
    refused = httpx.post(url, json={"query": "{ version }"}, timeout=10)
    assert refused.status_code == 401  # no token, no API
    made = subprocess.run(
        [DEVBOXCTL, "admin", "token", "create", "admin", "--data-dir", str(served.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env=served.env(),
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    reply = httpx.post(
        url,
        json={"query": "{ version }"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert reply.status_code == 200
    assert reply.json() == {"data": {"version": "0.1.0"}}
    assert (served.data_dir / "devbox.db").exists()

    assert served.stop() == 0
    assert "Stopped." in served.output
    assert "dbx_" in served.output  # the bootstrap admin token, printed once at first start


def test_serve_keeps_cluster_state_across_restart(served: Served, kubectl: Path) -> None:
    kubeconfig = served.data_dir / "kubeconfig"
    _kubectl(kubectl, kubeconfig, "create", "configmap", "kept", "--from-literal=a=b")
    assert served.stop() == 0
    served.start()
    out = json.loads(_kubectl(kubectl, kubeconfig, "get", "configmap", "kept", "-o", "json"))
    assert out["data"] == {"a": "b"}
    assert served.stop() == 0


def test_serve_refuses_a_port_in_use_with_a_clear_message(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [DEVBOXCTL, "serve", "--port", str(port), "--data-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert "already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_uses_a_real_cluster_and_postgresql_when_told(tmp_path: Path, pg_url: str) -> None:
    """``--cluster kube`` with KUBECONFIG and ``DATABASE_URL=postgresql+asyncpg://…``: no
    simulation is started by serve and the migrations land in PostgreSQL."""
    import asyncio

    from sqlalchemy import text

    from app.db.engine import create_engine
    from app.resources.crdgen import all_crds
    from app.simcluster.server import SimCluster

    cluster = SimCluster()  # stands in for the "real" cluster, reached only via kubeconfig
    cluster.start_in_thread()
    try:
        cluster.apply(all_crds())
        kubeconfig = cluster.write_kubeconfig(tmp_path / "external-kubeconfig")
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEVBOX_")}
        env.update({"KUBECONFIG": str(kubeconfig), "DATABASE_URL": pg_url, "COLUMNS": "200"})
        process = subprocess.Popen(
            [
                DEVBOXCTL,
                "serve",
                "--cluster",
                "kube",
                "--port",
                str(port),
                "--data-dir",
                str(tmp_path / "data"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).is_success:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            else:
                raise AssertionError("serve --cluster kube did not come up")
        finally:
            process.send_signal(signal.SIGINT)
            output, _ = process.communicate(timeout=20)
        assert process.returncode == 0, output
        assert f"real, {cluster.url}" in output
        assert not (tmp_path / "data" / "kubeconfig").exists()
        assert not (tmp_path / "data" / "cluster.json").exists()

        async def tables() -> set[str]:
            engine = create_engine(pg_url)
            async with engine.connect() as connection:
                rows = await connection.execute(
                    text("select tablename from pg_tables where schemaname = 'public'")
                )
                names = {row[0] for row in rows}
            await engine.dispose()
            return names

        assert {"users", "api_tokens", "audit_events", "alembic_version"} <= asyncio.run(tables())
    finally:
        cluster.stop_thread()


def test_serve_reports_a_bad_setting_without_a_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVBOX_")}
    env["DEVBOX_PORT"] = "not-a-port"
    result = subprocess.run(
        [DEVBOXCTL, "serve", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 2
    assert "setting port" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
