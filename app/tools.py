"""Where the project's cached external tools live (outside the repo, keyed by version)."""

from __future__ import annotations

import os
from pathlib import Path

KUBECTL_VERSION = "1.20.5+really1.20.2"


def cache_dir() -> Path:
    """``$DEVBOX_CACHE_DIR`` or ``$XDG_CACHE_HOME/devbox`` or ``~/.cache/devbox``."""
    explicit = os.environ.get("DEVBOX_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "devbox"


def cached_kubectl() -> Path:
    """Debian's kubectl, unpacked by ``scripts/bootstrap`` (it may not exist yet)."""
    return cache_dir() / f"kubernetes-client-{KUBECTL_VERSION}" / "usr" / "bin" / "kubectl"
