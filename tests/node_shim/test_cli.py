"""The node-shim distribution installs its console script."""

import shutil
import subprocess
import sys
from pathlib import Path

from devbox_node_shim import __version__


def _script() -> str:
    found = shutil.which("devbox-node-shim", path=str(Path(sys.executable).parent))
    assert found, "devbox-node-shim is not installed next to this Python"
    return found


def test_console_script_prints_its_version() -> None:
    result = subprocess.run([_script(), "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == f"devbox-node-shim {__version__}"


def test_unknown_command_is_refused_with_usage() -> None:
    result = subprocess.run([_script(), "frobnicate"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
