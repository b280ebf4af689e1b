"""Where ``devboxctl`` keeps the server URL and API token: ``~/.config/devbox/config.toml``.

The file (``$XDG_CONFIG_HOME/devbox/config.toml``, or ``$DEVBOXCTL_CONFIG``) is written with
mode 0600 in a folder with mode 0700, atomically (a temporary file renamed over it).
``DEVBOX_SERVER`` and ``DEVBOX_TOKEN`` override what it says (for scripts and CI).
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from app.client._errors import AuthError, UsageError


def config_path() -> Path:
    explicit = os.environ.get("DEVBOXCTL_CONFIG")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "devbox" / "config.toml"


@dataclass(frozen=True)
class ClientConfig:
    """A server and the token to use there."""

    server: str
    token: str

    @property
    def ws_base(self) -> str:
        """The server URL with a WebSocket scheme."""
        if self.server.startswith("https://"):
            return "wss://" + self.server.removeprefix("https://")
        return "ws://" + self.server.removeprefix("http://")


def normalize_server(url: str) -> str:
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"the server URL must start with http:// or https:// (got {url!r})")
    return url


def load() -> ClientConfig:
    """The configuration in effect; :class:`AuthError` if there is none."""
    stored: dict[str, object] = {}
    path = config_path()
    if path.exists():
        try:
            stored = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise UsageError(f"cannot read {path}: {exc}; run devboxctl login again") from exc
    server = os.environ.get("DEVBOX_SERVER") or stored.get("server")
    token = os.environ.get("DEVBOX_TOKEN") or stored.get("token")
    if not isinstance(server, str) or not isinstance(token, str) or not server or not token:
        raise AuthError("not logged in: run devboxctl login --server URL")
    return ClientConfig(server=normalize_server(server), token=token)


def write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Write ``text`` to ``path`` atomically (a temporary file renamed over it) with ``mode``,
    making missing folders with mode 0700."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save(config: ClientConfig) -> Path:
    """Write ``config`` with mode 0600; its path."""
    path = config_path()
    write_private(path, tomli_w.dumps({"server": config.server, "token": config.token}))
    return path
