"""The node-shim distribution installs its console script, which refuses bad settings clearly."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from devbox_node_shim import __version__


def _script() -> str:
    found = shutil.which("devbox-node-shim", path=str(Path(sys.executable).parent))
    assert found, "devbox-node-shim is not installed next to this Python"
    return found


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVBOX_NODE_SHIM_")}
    return {**env, **extra}


def test_console_script_prints_its_version() -> None:
    result = subprocess.run([_script(), "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == f"devbox-node-shim {__version__}"


def test_unknown_command_is_refused_with_usage() -> None:
    result = subprocess.run([_script(), "frobnicate"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "No such command" in result.stderr


def test_serve_without_a_token_says_which_setting_is_missing() -> None:
    result = subprocess.run(
        [_script(), "serve"], capture_output=True, text=True, env=_env(), timeout=60
    )
    assert result.returncode == 2
    assert "DEVBOX_NODE_SHIM_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_with_an_unreadable_token_file_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-token"
    result = subprocess.run(
        [_script(), "serve"],
        capture_output=True,
        text=True,
        env=_env(DEVBOX_NODE_SHIM_TOKEN_FILE=str(missing)),
        timeout=60,
    )
    assert result.returncode == 2
    assert str(missing) in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_with_an_unknown_log_level_names_the_option() -> None:
    result = subprocess.run(
        [_script(), "serve", "--log-level", "chatty"],
        capture_output=True,
        text=True,
        env=_env(DEVBOX_NODE_SHIM_TOKEN="t"),
        timeout=60,
    )
    assert result.returncode == 2
    assert "unknown --log-level 'chatty'" in result.stderr
    assert "Traceback" not in result.stderr
