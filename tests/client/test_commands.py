"""``devboxctl`` against the running API server (real processes, the real controller): a
devbox's life from the command line, JSON output for scripts, exit codes, and the SSH files it
writes without touching the user's own."""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.kubeclient import NAMESPACES
from tests.api.stack import Stack
from tests.client.helpers import (
    RUNTIME,
    Devboxctl,
    create_runtime,
    forward_ssh,
    product,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
async def stack(api_database: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with product(api_database, tmp_path) as running:
        yield running


@pytest.fixture
async def alice(stack: Stack) -> tuple[str, str]:
    """Alice's token and namespace (with the private sshd runtime)."""
    _, token = await stack.server.make_user("alice")
    namespace = (await stack.gql(token, "{ viewer { namespace } }"))["viewer"]["namespace"]
    await create_runtime(stack, namespace)
    return token, namespace


@pytest.fixture
async def cli(stack: Stack, alice: tuple[str, str], tmp_path: Path) -> Devboxctl:
    tool = Devboxctl(tmp_path / "home")
    result = await tool.run("login", "--server", stack.server.url, "--token", alice[0])
    assert result.code == 0, result.stderr
    return tool


async def test_login_stores_the_token_readable_only_by_the_user(cli: Devboxctl) -> None:
    assert mode(cli.config_file) == 0o600
    assert "token" in cli.config_file.read_text()


async def test_login_with_a_bad_token_fails_with_the_auth_exit_code(
    stack: Stack, tmp_path: Path
) -> None:
    tool = Devboxctl(tmp_path / "other")
    result = await tool.run("login", "--server", stack.server.url, "--token", "nope")
    assert result.code == 4
    assert "token" in result.stderr
    assert not tool.config_file.exists()
    assert (await tool.run("ls")).code == 4  # not logged in


async def test_login_to_a_server_url_without_a_scheme_is_a_usage_error(tmp_path: Path) -> None:
    result = await Devboxctl(tmp_path / "home").run(
        "login", "--server", "devbox.example.com", "--token", "x"
    )
    assert result.code == 2
    assert "http://" in result.stderr
    assert "Traceback" not in result.stderr


async def test_devbox_life_from_the_command_line(
    cli: Devboxctl, stack: Stack, alice: tuple[str, str]
) -> None:
    _, namespace = alice
    runtimes = await cli.run("runtimes", "-o", "json")
    assert runtimes.code == 0, runtimes.stderr
    assert RUNTIME in [r["name"] for r in json.loads(runtimes.stdout)]

    created = await cli.run(
        "create", "box", "--runtime", RUNTIME, "--port", "8000:web:public", "-o", "json"
    )
    assert created.code == 0, created.stderr
    assert json.loads(created.stdout)["name"] == "box"

    running = await cli.run("watch", "box", "--until", "running", "--timeout", "60", "-o", "json")
    assert running.code == 0, running.stderr
    assert json.loads(running.stdout.splitlines()[-1])["devbox"]["phase"] == "RUNNING"

    listed = json.loads((await cli.run("ls", "-o", "json")).stdout)
    assert [(d["name"], d["phase"]) for d in listed] == [("box", "RUNNING")]
    ports = json.loads((await cli.run("ports", "box", "-o", "json")).stdout)
    assert [(p["name"], p["port"], p["public"]) for p in ports] == [("web", 8000, True)]

    await forward_ssh(stack, namespace, "box", "127.0.0.1:9")
    config = await cli.run("ssh-config", "box")
    assert config.code == 0, config.stderr
    alias = f"devbox-{namespace}-box"
    key = cli.home / ".ssh" / "devbox" / alias
    assert mode(key) == 0o600
    assert key.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert f"Host {alias}" in (cli.home / ".ssh" / "devbox" / "config").read_text()

    watcher = asyncio.create_task(
        cli.run("watch", "box", "--until", "stopped", "--timeout", "60", "-o", "json")
    )
    stopped = await cli.run("stop", "box", "--wait", "--timeout", "60")
    assert stopped.code == 0, stopped.stderr
    assert "Stopped" in stopped.stderr  # progress went to stderr
    watched = await watcher
    assert watched.code == 0, watched.stderr
    phases = [json.loads(line)["devbox"]["phase"] for line in watched.stdout.splitlines()]
    assert phases[-1] == "STOPPED"

    events = await cli.run("events", "box", "-o", "json")
    assert events.code == 0, events.stderr
    assert isinstance(json.loads(events.stdout), list)

    started = await cli.run("start", "box", "--wait", "--timeout", "60", "-o", "json")
    assert started.code == 0, started.stderr
    assert json.loads(started.stdout)["phase"] == "RUNNING"

    removed = await cli.run("rm", "box", "--wait", "--timeout", "60")
    assert removed.code == 0, removed.stderr
    assert not key.exists()
    assert json.loads((await cli.run("ls", "-o", "json")).stdout) == []


async def test_missing_devbox_exits_3_and_bad_usage_exits_2(cli: Devboxctl) -> None:
    for command in (("ports", "ghost"), ("stop", "ghost"), ("events", "ghost")):
        result = await cli.run(*command)
        assert result.code == 3, (command, result)
        assert "Traceback" not in result.stderr
    assert (await cli.run("create", "box")).code == 2  # --runtime is required
    assert (await cli.run("create", "box", "--runtime", RUNTIME, "--port", "x:y")).code == 2


async def test_invalid_input_is_reported_with_the_field(cli: Devboxctl) -> None:
    result = await cli.run("create", "Not_A_Name", "--runtime", RUNTIME)
    assert result.code == 1
    assert "name" in result.stderr
    assert "Traceback" not in result.stderr


async def test_ssh_config_keeps_the_users_own_entries(
    cli: Devboxctl, stack: Stack, alice: tuple[str, str]
) -> None:
    own = "Host work\n  HostName work.example.com\n  User me\n"
    ssh_dir = cli.home / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    (ssh_dir / "config").write_text(own)
    (ssh_dir / "config").chmod(0o644)
    created = await cli.run("create", "box", "--runtime", RUNTIME, "--wait", "--timeout", "60")
    assert created.code == 0, created.stderr
    await forward_ssh(stack, alice[1], "box", "127.0.0.1:9")
    for _ in range(2):
        result = await cli.run("ssh-config")
        assert result.code == 0, result.stderr
    text = (ssh_dir / "config").read_text()
    assert text == "Include ~/.ssh/devbox/config\n\n" + own  # one line added, once
    assert mode(ssh_dir / "config") == 0o644
    managed = (ssh_dir / "devbox" / "config").read_text()
    assert managed.count("# BEGIN devbox") == 1


async def test_open_prints_the_ide_links(cli: Devboxctl, alice: tuple[str, str]) -> None:
    created = await cli.run("create", "box", "--runtime", RUNTIME, "--wait", "--timeout", "60")
    assert created.code == 0, created.stderr
    alias = f"devbox-{alice[1]}-box"
    vscode = await cli.run("open", "box", "--print")
    assert vscode.stdout.strip() == f"vscode://vscode-remote/ssh-remote+{alias}/root"
    jetbrains = await cli.run("open", "box", "--ide", "jetbrains", "--print")
    assert jetbrains.stdout.startswith("jetbrains-gateway://connect#type=ssh")


async def test_another_users_devboxes_are_invisible(
    cli: Devboxctl, stack: Stack, alice: tuple[str, str], tmp_path: Path
) -> None:
    created = await cli.run("create", "box", "--runtime", RUNTIME)
    assert created.code == 0, created.stderr
    _, bob_token = await stack.server.make_user("bob")
    bob = Devboxctl(tmp_path / "bob")
    assert (await bob.run("login", "--server", stack.server.url, "--token", bob_token)).code == 0
    assert json.loads((await bob.run("ls", "-o", "json")).stdout) == []
    assert (await bob.run("stop", "box")).code == 3
    assert (await bob.run("ssh-config", "box")).code == 3
    await stack.sim.kube.get(NAMESPACES, None, alice[1])  # alice's namespace is still there
