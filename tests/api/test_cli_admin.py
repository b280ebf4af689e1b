"""``devboxctl admin …`` and the admin made by the first ``devboxctl serve``."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from app.db.engine import create_engine, session_factory
from app.db.users import authenticate
from app.kube import connect
from app.kubeclient import NAMESPACES, Kube, KubeError
from tests.fixtures.kube import KubeTarget

DEVBOXCTL = str(Path(sys.executable).parent / "devboxctl")
TOKEN = re.compile(r"^dbx_[A-Za-z0-9_-]{43}$")


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DEVBOXCTL, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVBOX_")}
    env.pop("DATABASE_URL", None)
    env.pop("KUBECONFIG", None)
    env.update(extra)
    return env


def who(database_url: str, token: str) -> tuple[str, str, str] | None:
    async def look() -> tuple[str, str, str] | None:
        engine = create_engine(database_url)
        try:
            async with session_factory(engine)() as session:
                owner = await authenticate(session, token)
        finally:
            await engine.dispose()
        return (owner.user_name, owner.namespace, owner.role.value) if owner else None

    return asyncio.run(look())


def namespace_exists(target: KubeTarget, name: str) -> bool:
    async def look() -> bool:
        client = await (
            connect(url=target.url) if target.simulated else connect(kubeconfig=target.kubeconfig)
        )
        try:
            await Kube(client).get(NAMESPACES, None, name)
        except KubeError:
            return False
        finally:
            await client.close()
        return True

    return asyncio.run(look())


def test_user_create_prints_a_working_token_and_creates_the_namespace(
    pg_url: str, kube: KubeTarget, tmp_path: Path
) -> None:
    env = clean_env(
        DATABASE_URL=pg_url,
        DEVBOX_CLUSTER="kube",
        KUBECONFIG=str(kube.kubeconfig),
        DEVBOX_DATA_DIR=str(tmp_path),
    )
    result = run_cli("admin", "user", "create", "bob", "--namespace", "bob-cli", env=env)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert TOKEN.match(token), result.stdout
    assert who(pg_url, token) == ("bob", "bob-cli", "user")
    assert namespace_exists(kube, "bob-cli")


def test_token_create_prints_another_token_for_the_user(pg_url: str, tmp_path: Path) -> None:
    env = clean_env(DATABASE_URL=pg_url, DEVBOX_DATA_DIR=str(tmp_path))
    created = run_cli(
        "admin", "user", "create", "ops", "--namespace", "ops", "--role", "admin", env=env
    )
    assert created.returncode == 0, created.stderr
    assert "next `devboxctl serve` start" in created.stderr  # no cluster answers here
    result = run_cli(
        "admin", "token", "create", "ops", "--name", "ci", "--expires-in-days", "3", env=env
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert token != created.stdout.strip()
    assert who(pg_url, token) == ("ops", "ops", "admin")


def test_admin_commands_refuse_bad_requests_clearly(pg_url: str, tmp_path: Path) -> None:
    env = clean_env(DATABASE_URL=pg_url, DEVBOX_DATA_DIR=str(tmp_path))
    unknown = run_cli("admin", "token", "create", "nobody", env=env)
    assert unknown.returncode == 1
    assert "no user named 'nobody'" in unknown.stderr
    bad = run_cli("admin", "user", "create", "Bad_Name", "--namespace", "ns", env=env)
    assert bad.returncode == 1
    assert "user name 'Bad_Name'" in bad.stderr
    run_cli("admin", "user", "create", "dup", "--namespace", "ns", env=env)
    again = run_cli("admin", "user", "create", "dup", "--namespace", "ns", env=env)
    assert again.returncode == 1
    assert "already exists" in again.stderr
    for result in (unknown, bad, again):
        assert "Traceback" not in result.stderr
        assert result.stdout == ""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve_once(data_dir: Path, out: Path) -> str:
    """Run ``devboxctl serve`` until it answers, ask who the printed token is, stop it."""
    port = _free_port()
    env = clean_env(COLUMNS="200")
    with out.open("w") as stdout:
        process = subprocess.Popen(
            [DEVBOXCTL, "serve", "--port", str(port), "--data-dir", str(data_dir)],
            stdout=stdout,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        try:
            deadline = time.monotonic() + 90
            while True:
                assert process.poll() is None, "serve exited early"
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).is_success:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "serve did not answer within 90 s"
                time.sleep(0.2)
            printed = out.read_text()
            tokens = [line for line in printed.splitlines() if TOKEN.match(line.strip())]
            if not tokens:
                return ""
            answer = httpx.post(
                f"http://127.0.0.1:{port}/graphql",
                json={"query": "{ viewer { user { name } namespace role } }"},
                headers={"Authorization": f"Bearer {tokens[0].strip()}"},
                timeout=10,
            )
            return str(answer.json()["data"]["viewer"])
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_first_serve_creates_the_admin_and_prints_its_token_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = _serve_once(data, tmp_path / "first.out")
    assert first == str({"user": {"name": "admin"}, "namespace": "devbox-admin", "role": "ADMIN"})
    assert _serve_once(data, tmp_path / "second.out") == ""
