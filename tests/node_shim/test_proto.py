"""The committed gRPC stubs are exactly what ``node-shim/scripts/gen-proto`` generates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from app.settings import REPO_ROOT

API = REPO_ROOT / "node-shim" / "devbox_node_shim" / "api"
GENERATED = ("nodeshim_pb2.py", "nodeshim_pb2.pyi", "nodeshim_pb2_grpc.py")


def test_regenerating_the_stubs_gives_identical_files(tmp_path: Path) -> None:
    subprocess.run(
        [str(REPO_ROOT / "node-shim" / "scripts" / "gen-proto"), str(tmp_path)],
        check=True,
        capture_output=True,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    for name in GENERATED:
        assert (tmp_path / name).read_bytes() == (API / name).read_bytes(), (
            f"{name} is stale: run node-shim/scripts/gen-proto"
        )


def test_the_stubs_import_from_their_package() -> None:
    from devbox_node_shim.api import nodeshim_pb2, nodeshim_pb2_grpc

    assert nodeshim_pb2.DESCRIPTOR.package == "devbox.nodeshim.v1"
    assert hasattr(nodeshim_pb2_grpc, "NodeShimServicer")
