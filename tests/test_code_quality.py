"""The code stays ruff-clean and type-checks (mypy strict), as the style guide asks."""

import subprocess
import sys
from pathlib import Path

from app.settings import REPO_ROOT

BIN = Path(sys.executable).parent


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_reports_nothing() -> None:
    result = _run(str(BIN / "ruff"), "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_passes_on_the_application() -> None:
    result = _run(str(BIN / "mypy"), "app", "node-shim/devbox_node_shim")
    assert result.returncode == 0, result.stdout + result.stderr
