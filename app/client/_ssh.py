"""The client's SSH files: the managed ``~/.ssh/devbox/config``, private keys, ``known_hosts``.

``devboxctl ssh-config`` keeps every devbox entry in one file of its own,
``~/.ssh/devbox/config`` (mode 0600, folder 0700), one ``# BEGIN devbox <alias>`` …
``# END devbox <alias>`` block per devbox, so updating one devbox leaves the others (and
anything else in the file) alone.  Private keys go to ``~/.ssh/devbox/<alias>`` with mode
0600.  The user's ``~/.ssh/config`` gets exactly one line, ``Include ~/.ssh/devbox/config``,
added at its top (an ``Include`` below a ``Host`` line would only apply to that host) and only
when no line includes the file yet; nothing else in it is touched.

Host keys: the API gives the devbox's host key *fingerprint*, not the key, so entries use
``StrictHostKeyChecking accept-new`` with a ``known_hosts`` of their own and ``HostKeyAlias
<alias>`` (the entry survives the node address or port changing; a changed host key is still
refused).
"""

from __future__ import annotations

import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from app.client._config import write_private
from app.client._errors import OperationFailed

INCLUDE_LINE = "Include ~/.ssh/devbox/config"


def ssh_dir() -> Path:
    return Path.home() / ".ssh"


def managed_dir() -> Path:
    return ssh_dir() / "devbox"


def managed_config() -> Path:
    return managed_dir() / "config"


def known_hosts() -> Path:
    return managed_dir() / "known_hosts"


_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")
"""An alias, user, devbox or namespace name as it may appear in a file name or ssh_config."""
_HOST = re.compile(r"[A-Za-z0-9._:%\[\]-]{1,253}")


def checked(what: str, value: str, pattern: re.Pattern[str] = _WORD) -> str:
    """``value`` when it is safe in a file name / ssh_config line (the server sends it)."""
    if not pattern.fullmatch(value):
        raise OperationFailed(f"the server sent an unusable SSH {what}: {value[:80]!r}")
    return value


def key_path(alias: str) -> Path:
    return managed_dir() / checked("host alias", alias)


def self_command() -> list[str]:
    """How to run this ``devboxctl`` again (for ``ProxyCommand``)."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "devboxctl" and argv0.exists():
        return [str(argv0.resolve())]
    found = shutil.which("devboxctl")
    if found:
        return [found]
    return [sys.executable, "-m", "app.client"]


@dataclass(frozen=True)
class Entry:
    """One devbox's ``Host`` block."""

    alias: str
    name: str
    namespace: str
    user: str
    host: str | None
    """Direct mode: the node address; None: through the tunnel."""
    port: int | None

    @property
    def tunnel(self) -> bool:
        return self.host is None or self.port is None

    def proxy_command(self) -> str:
        command = [*self_command(), "ssh-proxy", "--namespace", self.namespace, self.name]
        return shlex.join(command).replace("%", "%%")

    def render(self) -> str:
        checked("host alias", self.alias)
        checked("devbox name", self.name)
        checked("namespace", self.namespace)
        checked("user", self.user)
        if self.host is not None:
            checked("host", self.host, _HOST)
        if self.port is not None and not (isinstance(self.port, int) and 0 < self.port < 65536):
            raise OperationFailed(f"the server sent an unusable SSH port: {self.port!r}")
        lines = [f"# BEGIN devbox {self.alias}", f"Host {self.alias}"]
        if self.tunnel:
            lines += [f"  HostName {self.alias}", f"  ProxyCommand {self.proxy_command()}"]
        else:
            lines += [f"  HostName {self.host}", f"  Port {self.port}"]
        lines += [
            f"  User {self.user}",
            f"  IdentityFile {key_path(self.alias)}",
            "  IdentitiesOnly yes",
            f"  HostKeyAlias {self.alias}",
            f"  UserKnownHostsFile {known_hosts()}",
            "  StrictHostKeyChecking accept-new",
            "  ServerAliveInterval 30",
            f"# END devbox {self.alias}",
        ]
        return "\n".join(lines) + "\n"


def write_key(alias: str, private_key: str) -> Path:
    path = key_path(alias)
    write_private(path, private_key if private_key.endswith("\n") else private_key + "\n")
    return path


def _block(alias: str) -> re.Pattern[str]:
    return re.compile(
        rf"^# BEGIN devbox {re.escape(alias)}\n.*?^# END devbox {re.escape(alias)}\n",
        re.MULTILINE | re.DOTALL,
    )


def write_entries(entries: list[Entry]) -> Path:
    """Add or replace the entries' blocks in the managed file; others stay."""
    path = managed_config()
    text = path.read_text() if path.exists() else "# Managed by devboxctl ssh-config.\n"
    for entry in entries:
        pattern = _block(entry.alias)
        if pattern.search(text):
            text = pattern.sub(lambda _m, e=entry: e.render(), text, count=1)  # type: ignore[misc]
        else:
            text = text + ("" if text.endswith("\n") else "\n") + entry.render()
    write_private(path, text)
    return path


def remove_entry(alias: str) -> None:
    """Forget a devbox's block and key (after it was deleted)."""
    path = managed_config()
    if path.exists():
        write_private(path, _block(alias).sub("", path.read_text()))
    key_path(alias).unlink(missing_ok=True)


def ensure_include() -> bool:
    """Add the ``Include`` line to ``~/.ssh/config`` if missing; whether it was added."""
    config = ssh_dir() / "config"
    ssh_dir().mkdir(mode=0o700, exist_ok=True)
    current = config.read_text() if config.exists() else ""
    targets = {"~/.ssh/devbox/config", str(managed_config())}
    for line in current.splitlines():
        words = line.strip().split()
        if len(words) >= 2 and words[0].lower() == "include" and targets & set(words[1:]):
            return False
    if config.exists():
        target = config.resolve()  # a symlinked config (dotfiles) stays a symlink
        write_private(target, INCLUDE_LINE + "\n\n" + current, target.stat().st_mode & 0o777)
    else:
        write_private(config, INCLUDE_LINE + "\n")
    return True
