"""Real OpenSSH into a devbox: ``ssh`` and ``scp`` through the API server's tunnel
(``ProxyCommand devboxctl ssh-proxy``) and straight to its node port, against a real ``sshd``
that plays the devbox's SSH server."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.api.stack import Stack
from tests.client.helpers import Box, Devboxctl, Sshd, authorized_key, product, running_devbox

SCP_BYTES = 50 * 1024 * 1024


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    folder = tmp_path / "sshd"
    folder.mkdir()
    server = Sshd(folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def stack(api_database: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with product(api_database, tmp_path) as running:
        yield running


@pytest.fixture
async def box(stack: Stack, sshd: Sshd) -> Box:
    found = await running_devbox(stack, address=f"127.0.0.1:{sshd.port}")
    sshd.authorized_keys.write_text(await authorized_key(stack, found.namespace, found.name))
    return found


@pytest.fixture
async def cli(stack: Stack, box: Box, tmp_path: Path) -> Devboxctl:
    tool = Devboxctl(tmp_path / "home")
    result = await tool.run("login", "--server", stack.server.url, "--token", box.token)
    assert result.code == 0, result.stderr
    return tool


def big_file(path: Path) -> str:
    """Write ``SCP_BYTES`` of incompressible data; its SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as handle:
        left = SCP_BYTES
        while left:
            chunk = os.urandom(min(left, 1 << 20))
            handle.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


async def private_key(cli: Devboxctl, stack: Stack, box: Box) -> Path:
    data = await stack.gql(box.token, '{ devbox(name: "box") { ssh { privateKey } } }')
    key = cli.home / "id_box"
    key.write_text(data["devbox"]["ssh"]["privateKey"])
    key.chmod(0o600)
    return key


BATCH = [
    "-o",
    "BatchMode=yes",
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
]


async def test_ssh_runs_a_command_through_the_tunnel(
    cli: Devboxctl, stack: Stack, box: Box
) -> None:
    key = await private_key(cli, stack, box)
    result = await cli.exec(
        "ssh",
        *BATCH,
        "-i",
        str(key),
        "-o",
        f"ProxyCommand={cli.binary} ssh-proxy {box.name}",
        "root@devbox",
        "echo hello from $(hostname -s) && id -un",
    )
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("hello from ")
    assert lines[1] == "root"


async def test_scp_of_50_mb_through_the_tunnel_arrives_intact(
    cli: Devboxctl, stack: Stack, box: Box, tmp_path: Path
) -> None:
    source = tmp_path / "upload.bin"
    checksum = big_file(source)
    target = tmp_path / "received.bin"
    config = await cli.run("ssh-config", "--tunnel", box.name)
    assert config.code == 0, config.stderr
    alias = f"devbox-{box.namespace}-{box.name}"
    managed = cli.home / ".ssh" / "devbox" / "config"
    result = await cli.exec(
        "scp", "-F", str(managed), *BATCH, str(source), f"{alias}:{target}", within=300
    )
    assert result.code == 0, result.stderr
    assert sha256(target) == checksum


async def test_ssh_and_scp_straight_to_the_node_port(
    cli: Devboxctl, stack: Stack, box: Box, tmp_path: Path
) -> None:
    config = await cli.run("ssh-config", box.name)
    assert config.code == 0, config.stderr
    assert f"127.0.0.1:{box.node_port}" in config.stderr  # direct, not the tunnel
    alias = f"devbox-{box.namespace}-{box.name}"
    managed = cli.home / ".ssh" / "devbox" / "config"
    assert "ProxyCommand" not in managed.read_text()
    result = await cli.exec("ssh", "-F", str(managed), *BATCH, alias, "echo direct")
    assert result.code == 0, result.stderr
    assert result.stdout == "direct\n"
    source = tmp_path / "upload.bin"
    checksum = big_file(source)
    target = tmp_path / "received.bin"
    copied = await cli.exec(
        "scp", "-F", str(managed), *BATCH, str(source), f"{alias}:{target}", within=300
    )
    assert copied.code == 0, copied.stderr
    assert sha256(target) == checksum


async def test_devboxctl_ssh_runs_openssh_with_the_devbox_key(cli: Devboxctl, box: Box) -> None:
    result = await cli.run("ssh", box.name, "--tunnel", "echo", "via-devboxctl")
    assert result.code == 0, result.stderr
    assert result.stdout.strip() == "via-devboxctl"


async def test_ssh_proxy_refuses_a_devbox_of_another_namespace(
    cli: Devboxctl, stack: Stack, box: Box
) -> None:
    _, bob = await stack.server.make_user("bob")
    intruder = Devboxctl(cli.home.parent / "bob")
    assert (await intruder.run("login", "--server", stack.server.url, "--token", bob)).code == 0
    result = await intruder.exec(
        intruder.binary, "ssh-proxy", "--namespace", box.namespace, box.name, stdin=b""
    )
    assert result.code == 3, result  # not found, exactly like a missing devbox
    assert box.namespace not in result.stderr


def test_ssh_config_include_keeps_a_symlinked_config_a_symlink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.client import _ssh

    home = tmp_path / "home"
    dotfiles = tmp_path / "dotfiles"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    dotfiles.mkdir()
    real = dotfiles / "ssh_config"
    real.write_text("Host work\n  HostName work.example\n")
    real.chmod(0o644)
    (home / ".ssh" / "config").symlink_to(real)
    monkeypatch.setenv("HOME", str(home))

    assert _ssh.ensure_include() is True
    assert (home / ".ssh" / "config").is_symlink()  # the user's dotfiles link survives
    assert real.read_text() == _ssh.INCLUDE_LINE + "\n\nHost work\n  HostName work.example\n"
    assert real.stat().st_mode & 0o777 == 0o644
    assert _ssh.ensure_include() is False


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("alias", "../../.bashrc"),
        ("alias", "box\n  ProxyCommand touch /tmp/pwned"),
        ("host", "10.0.0.1\n  ProxyCommand touch /tmp/pwned"),
        ("user", "root\nMatch all"),
        ("name", "box\n  LocalCommand id"),
    ],
)
def test_ssh_config_refuses_server_values_that_would_escape_the_managed_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, field: str, value: str
) -> None:
    from app.client import _ssh
    from app.client._errors import ClientError

    monkeypatch.setenv("HOME", str(tmp_path))
    fields = {
        "alias": "devbox-ns-box",
        "name": "box",
        "namespace": "ns",
        "user": "root",
        "host": "10.0.0.1",
        "port": 30022,
    }
    fields[field] = value

    def write() -> None:
        _ssh.write_key(str(fields["alias"]), "KEY")
        _ssh.write_entries([_ssh.Entry(**fields)])  # type: ignore[arg-type]

    with pytest.raises(ClientError):
        write()
    assert not (tmp_path / ".bashrc").exists()
    managed = tmp_path / ".ssh" / "devbox" / "config"
    assert not managed.exists() or "\n  ProxyCommand touch" not in managed.read_text()
