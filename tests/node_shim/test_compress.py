"""Layer compression: the blob decompresses to the tar, and its digests and sizes are right."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import zstandard
from devbox_node_shim.compress import (
    GZIP_MEDIA_TYPE,
    ZSTD_MEDIA_TYPE,
    CompressError,
    LayerCompressor,
    compress_stream,
)
from devbox_node_shim.layer_apply import apply_layer
from devbox_node_shim.overlay_diff import write_layer

from tests.fixtures.deps import missing
from tests.node_shim.trees import assert_same_tree, snapshot_tree

MiB = 1 << 20
ENGINES = [("zstd", "binary"), ("zstd", "library"), ("gzip", "binary"), ("gzip", "library")]


def mixed_data() -> bytes:
    text = b"".join(b"line %d of a log file\n" % i for i in range(100_000))
    return text + os.urandom(3 * MiB) + bytes(2 * MiB)


def decompress(path: Path, compression: str) -> bytes:
    data = path.read_bytes()
    if compression == "gzip":
        return gzip.decompress(data)
    return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()


def require(compression: str, engine: str) -> None:
    binary = {"zstd": "zstd", "gzip": "pigz"}[compression]
    if engine == "binary" and shutil.which(binary) is None:
        missing(binary, f"install the Debian package {binary}")


@pytest.mark.parametrize(("compression", "engine"), ENGINES)
def test_blob_decompresses_to_the_tar_and_its_digests_are_right(
    tmp_path: Path, compression: str, engine: str
) -> None:
    require(compression, engine)
    data = mixed_data()
    seen: list[int] = []
    layer = compress_stream(
        io.BytesIO(data),
        tmp_path / "blob",
        compression=compression,  # type: ignore[arg-type]
        engine=engine,  # type: ignore[arg-type]
        progress=seen.append,
    )
    blob = layer.path.read_bytes()
    assert decompress(layer.path, compression) == data
    assert layer.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert layer.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert (layer.size, layer.uncompressed_size) == (len(blob), len(data))
    assert layer.size < len(data) * 0.7
    assert layer.media_type == (ZSTD_MEDIA_TYPE if compression == "zstd" else GZIP_MEDIA_TYPE)
    assert seen == sorted(seen)
    assert seen[-1] == len(data)


@pytest.mark.parametrize(("compression", "engine"), ENGINES)
def test_the_same_tar_gives_the_same_blob(tmp_path: Path, compression: str, engine: str) -> None:
    require(compression, engine)
    data = mixed_data()
    digests = {
        compress_stream(
            io.BytesIO(data),
            tmp_path / f"blob{i}",
            compression=compression,  # type: ignore[arg-type]
            engine=engine,  # type: ignore[arg-type]
        ).digest
        for i in range(2)
    }
    assert len(digests) == 1


def test_a_layer_streamed_from_a_directory_applies_back_to_the_same_tree(tmp_path: Path) -> None:
    source = tmp_path / "source"
    (source / "etc").mkdir(parents=True)
    (source / "etc" / "motd").write_text("hello\n")
    (source / "big").write_bytes(os.urandom(5 * MiB))
    os.symlink("etc/motd", source / "link")
    with LayerCompressor(tmp_path / "blob") as sink:
        write_layer(source, sink)  # type: ignore[arg-type]
    assert sink.result is not None
    target = tmp_path / "target"
    target.mkdir()
    apply_layer(io.BytesIO(decompress(sink.result.path, "zstd")), target)
    assert_same_tree(snapshot_tree(source), snapshot_tree(target))


def test_a_failure_while_writing_leaves_no_partial_blob(tmp_path: Path) -> None:
    blob = tmp_path / "blob"

    def fail_midway() -> None:
        with LayerCompressor(blob) as sink:
            sink.write(b"some data")
            raise RuntimeError("the differ failed")

    with pytest.raises(RuntimeError):
        fail_midway()
    assert not blob.exists()


@pytest.mark.parametrize("engine", ["binary", "library"])
def test_a_full_disk_is_a_clear_error_and_leaves_no_partial_blob(
    tmp_path: Path, engine: str
) -> None:
    require("zstd", engine)
    small = tmp_path / "small"
    small.mkdir()
    if os.geteuid() != 0:
        missing("root", "mounting a small tmpfs needs root")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        with pytest.raises(CompressError, match="No space left on device"):
            compress_stream(
                io.BytesIO(os.urandom(4 * MiB)),
                small / "blob",
                engine=engine,  # type: ignore[arg-type]
            )
        assert list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], check=True)
