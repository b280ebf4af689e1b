"""The overlay differ: a layer read from an upper directory recreates exactly the overlay's view,
and a layer captured (for the pause) then written is that same layer, whatever changes after.

Each test mounts a real overlay over a prepared lower directory, changes files through the
mount, snapshots the merged view, unmounts, streams the layer from the upper directory and
applies it onto a copy of the lower directory with the OCI applier; both trees must be equal
(content, modes, owners, symlink targets, device numbers, xattrs, mtimes, hard links).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from devbox_node_shim.layer_apply import apply_layer
from devbox_node_shim.overlay_diff import (
    _ALIGN,
    LayerError,
    UnsupportedUpperDir,
    _has_reflinks,
    capture_layer,
    prepare_capture,
    write_captured,
    write_layer,
)

from tests.fixtures.deps import missing
from tests.node_shim.trees import assert_same_tree, snapshot_tree

NON_UTF8 = os.fsdecode(b"caf\xe9-\xff")
MiB = 1 << 20


@dataclass
class Overlay:
    base: Path
    lower: Path
    upper: Path
    work: Path
    merged: Path
    options: str = "redirect_dir=off,metacopy=off,index=off"
    mounted: bool = False

    def mount(self) -> None:
        options = f"lowerdir={self.lower},upperdir={self.upper},workdir={self.work},{self.options}"
        result = subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", options, str(self.merged)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            missing("an overlay mount", f"mount -t overlay failed ({result.stderr.strip()})")
        self.mounted = True

    def umount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", str(self.merged)], check=True)
            self.mounted = False

    def layer(self) -> bytes:
        out = io.BytesIO()
        write_layer(self.upper, out)
        return out.getvalue()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def make_lower(lower: Path) -> None:
    _write(lower / "a.txt", b"alpha\n")
    _write(lower / "gone.txt", b"to be deleted\n")
    _write(lower / "dir" / "b", b"bravo\n")
    _write(lower / "dir" / "sub" / "c", b"charlie\n")
    for i in range(5):
        _write(lower / "deep" / f"level{i}" / "file", b"x" * i)
    _write(lower / "dir2" / "inside", b"dir2 child\n")
    _write(lower / "dir3" / "inside", b"dir3 child\n")
    _write(lower / "file2", b"to become a dir\n")
    _write(lower / "opq" / "x", b"x\n")
    _write(lower / "opq" / "sub" / "y", b"y\n")
    os.symlink("a.txt", lower / "link")
    _write(lower / "h1", b"hard\n")
    os.link(lower / "h1", lower / "h2")
    _write(lower / "space name.txt", b"spaces\n")
    _write(lower / NON_UTF8, b"latin-1 name\n")
    _write(lower / "owned", b"owned\n")
    os.chown(lower / "owned", 1000, 1000)


@pytest.fixture
def overlay(tmp_path: Path) -> Iterator[Overlay]:
    if os.geteuid() != 0:
        missing("root", "mounting an overlay needs root")
    ov = Overlay(tmp_path, tmp_path / "l", tmp_path / "u", tmp_path / "w", tmp_path / "m")
    for d in (ov.lower, ov.upper, ov.work, ov.merged):
        d.mkdir()
    make_lower(ov.lower)
    ov.mount()
    yield ov
    ov.umount()


def assert_layer_recreates_view(ov: Overlay) -> bytes:
    """Snapshot the mount, unmount, apply the layer onto a copy of lower; both must agree."""
    expected = snapshot_tree(ov.merged)
    ov.umount()
    layer = ov.layer()
    applied = ov.base / "applied"
    subprocess.run(["cp", "-a", str(ov.lower), str(applied)], check=True)
    apply_layer(io.BytesIO(layer), applied)
    assert_same_tree(expected, snapshot_tree(applied))
    return layer


def members(layer: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(layer), encoding="utf-8", errors="surrogateescape") as t:
        return t.getmembers()


# --- the matrix of changes ------------------------------------------------------------------


def add_file(m: Path) -> None:
    _write(m / "new" / "file.txt", b"new content\n")
    _write(m / "dir" / "added", b"")


def modify_file(m: Path) -> None:
    with open(m / "dir" / "b", "ab") as f:
        f.write(b"appended\n")


def delete_file(m: Path) -> None:
    (m / "gone.txt").unlink()
    (m / "dir" / "sub" / "c").unlink()


def delete_directory(m: Path) -> None:
    shutil.rmtree(m / "deep")


def replace_directory_by_file(m: Path) -> None:
    shutil.rmtree(m / "dir2")
    _write(m / "dir2", b"now a file\n")


def replace_file_by_directory(m: Path) -> None:
    (m / "file2").unlink()
    _write(m / "file2" / "child", b"now a dir\n")


def directory_replaced_and_back(m: Path) -> None:
    shutil.rmtree(m / "dir3")
    _write(m / "dir3", b"briefly a file\n")
    (m / "dir3").unlink()
    _write(m / "dir3" / "again", b"a directory again\n")


def opaque_directory(m: Path) -> None:
    shutil.rmtree(m / "opq")
    _write(m / "opq" / "fresh", b"only child\n")


def symlinks(m: Path) -> None:
    os.symlink("dir/b", m / "newlink")
    (m / "link").unlink()
    os.symlink("dir", m / "link")
    os.symlink("/nowhere/at/all", m / "dangling")
    os.lchown(m / "dangling", 7, 8)


def hard_links(m: Path) -> None:
    _write(m / "hl" / "one", b"linked\n")
    os.link(m / "hl" / "one", m / "hl" / "two")
    os.link(m / "hl" / "one", m / "three")
    with open(m / "h1", "ab") as f:  # copy-up of a lower hard link
        f.write(b"more\n")


def permissions(m: Path) -> None:
    os.chmod(m / "a.txt", 0o4755)
    os.chmod(m / "dir", 0o700)
    _write(m / "secret", b"s\n")
    os.chmod(m / "secret", 0o600)


def owners(m: Path) -> None:
    os.chown(m / "a.txt", 1234, 5678)
    os.chown(m / "owned", 0, 0)
    _write(m / "theirs", b"t\n")
    os.chown(m / "theirs", 100000, 100000)


def xattrs(m: Path) -> None:
    os.setxattr(m / "a.txt", "user.note", b"hello")
    os.setxattr(m / "dir", "user.binary", bytes(range(256)))
    os.setxattr(m / "dir" / "b", "trusted.devbox", b"\xff\x00\xfe")


def mtimes(m: Path) -> None:
    os.utime(m / "a.txt", ns=(1, 1_600_000_000_123_456_789))
    _write(m / "dir" / "old", b"old\n")
    os.utime(m / "dir" / "old", ns=(0, 946_684_800_000_000_001))
    os.utime(m / "dir", ns=(0, 1_500_000_000_987_654_321))
    os.utime(m / "link", ns=(0, 1_400_000_000_000_000_000), follow_symlinks=False)


def device_nodes(m: Path) -> None:
    import stat

    os.mknod(m / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(m / "loop", stat.S_IFBLK | 0o660, os.makedev(7, 0))
    os.mkfifo(m / "fifo", 0o644)


def sparse_and_large_files(m: Path) -> None:
    with open(m / "sparse", "wb") as f:
        f.truncate(96 * MiB)
        f.seek(5 * MiB)
        f.write(b"middle")
        f.seek(80 * MiB + 17)
        f.write(b"later")
    with open(m / "ends-in-hole", "wb") as f:
        f.write(b"head")
        f.truncate(40 * MiB)
    with open(m / "all-hole", "wb") as f:
        f.truncate(8 * MiB)
    block = os.urandom(MiB)
    with open(m / "large", "wb") as f:
        for i in range(40):
            f.write(bytes([i]) + block[1:])


def odd_names(m: Path) -> None:
    _write(m / "with space" / "and tab\there", b"1\n")
    _write(m / os.fsdecode(b"\xff\xfe bytes"), b"2\n")
    _write(m / ("long" * 40), b"3\n")
    _write(m / "/".join(["segment" * 5] * 12) / "deep-file", b"4\n")
    (m / NON_UTF8).unlink()
    (m / "space name.txt").rename(m / "space name renamed.txt")


MATRIX: list[Callable[[Path], None]] = [
    add_file,
    modify_file,
    delete_file,
    delete_directory,
    replace_directory_by_file,
    replace_file_by_directory,
    directory_replaced_and_back,
    opaque_directory,
    symlinks,
    hard_links,
    permissions,
    owners,
    xattrs,
    mtimes,
    device_nodes,
    sparse_and_large_files,
    odd_names,
]


@pytest.mark.parametrize("change", MATRIX, ids=[c.__name__ for c in MATRIX])
def test_layer_from_upper_dir_recreates_the_overlay_view(overlay: Overlay, change) -> None:  # type: ignore[no-untyped-def]
    change(overlay.merged)
    assert_layer_recreates_view(overlay)


def test_every_change_at_once_recreates_the_overlay_view(overlay: Overlay) -> None:
    for change in MATRIX:
        change(overlay.merged)
    assert_layer_recreates_view(overlay)


def test_a_captured_layer_is_the_layer_at_the_capture_whatever_changes_after(
    overlay: Overlay,
) -> None:
    """capture_layer + write_captured give the bytes write_layer gives at the capture, however
    the files change once the capture is done (the task is resumed then)."""
    for change in MATRIX:
        change(overlay.merged)
    overlay.umount()
    expected = overlay.layer()
    data = overlay.base / "captured.data"

    captured = capture_layer(overlay.upper, data)
    with open(overlay.upper / "large", "r+b") as f:  # modified in place (a hard link would
        f.write(b"changed after the capture")  # see this), then more
    with open(overlay.upper / "dir" / "b", "ab") as f:
        f.write(b"appended after the capture\n")
    (overlay.upper / "new" / "file.txt").unlink()
    (overlay.upper / "sparse").write_bytes(b"replaced")
    out = io.BytesIO()
    stats = write_captured(captured, out)

    assert out.getvalue() == expected
    assert stats.data_bytes == captured.data_bytes
    # (the data files hold the data, and holes where large files are aligned)
    assert sum(p.stat().st_size for p in captured.files) >= captured.data_bytes
    assert len(captured.files) > 1  # (large files went to the copying threads)
    assert captured.data_bytes < 60 * MiB


def test_a_prepared_capture_sizes_its_data_files_right_and_is_the_same_layer(
    overlay: Overlay,
) -> None:
    """prepare_capture (before the pause) makes the data files the capture then fills: as
    large as it needs when nothing changed in between, trimmed when less was needed."""
    for change in MATRIX:
        change(overlay.merged)
    for i in range(3):
        _write(overlay.merged / "big" / f"f{i}.bin", os.urandom(2 * MiB + 1000 * i))
    overlay.umount()
    expected = overlay.layer()
    data = overlay.base / "prepared.data"

    prepare_capture(overlay.upper, data)
    prepared = {p.name: p.stat().st_size for p in overlay.base.glob("prepared.data*")}
    captured = capture_layer(overlay.upper, data)
    out = io.BytesIO()
    write_captured(captured, out)

    assert out.getvalue() == expected
    # the small files' data file and both copiers' (left to reflinks where there are some)
    assert len(prepared) == (1 if _has_reflinks(overlay.base) else 3)
    used = {p.name: p.stat().st_size for p in captured.files}
    assert {name: used[name] for name in prepared} == prepared


def test_a_capture_prepared_before_changes_is_the_layer_after_them(overlay: Overlay) -> None:
    for change in MATRIX:
        change(overlay.merged)
    overlay.umount()
    data = overlay.base / "prepared.data"
    prepare_capture(overlay.upper, data)
    (overlay.upper / "large").unlink()  # less to copy than prepared...
    _write(overlay.upper / "later" / "grown.bin", os.urandom(3 * MiB))  # ...and more
    expected = overlay.layer()

    captured = capture_layer(overlay.upper, data)
    out = io.BytesIO()
    write_captured(captured, out)

    assert out.getvalue() == expected
    slack = _ALIGN * len(captured.entries)  # (alignment gaps of large files)
    assert sum(p.stat().st_size for p in captured.files) < captured.data_bytes + slack


@pytest.fixture
def reflink_fs(tmp_path: Path) -> Iterator[Path]:
    """A small XFS filesystem (reflinks on, mkfs.xfs's default) on a loop device."""
    if os.geteuid() != 0:
        missing("root", "mounting a loop device needs root")
    if shutil.which("mkfs.xfs") is None:
        missing("mkfs.xfs", "install the Debian package xfsprogs")
    image = tmp_path / "xfs.img"
    with image.open("wb") as f:
        f.truncate(600 * MiB)
    subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(image)], check=True)
    mount = tmp_path / "xfs"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-o", "loop", str(image), str(mount)], capture_output=True, text=True
    )
    if result.returncode != 0:
        missing("a loop mount", f"mount -o loop failed ({result.stderr.strip()})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_capture_on_a_filesystem_with_reflinks_shares_the_large_files_blocks(
    reflink_fs: Path,
) -> None:
    """On XFS (or btrfs) the pause costs about the number of files, not their bytes: large
    files are reflinked into the capture — and it still is the layer at the capture."""
    upper = reflink_fs / "upper"
    (upper / "data").mkdir(parents=True)
    for i in range(4):
        _write(upper / "data" / f"big-{i}.bin", os.urandom(40 * MiB + 123 * i))
    for i in range(50):
        _write(upper / "src" / f"small-{i}.txt", b"x" * (1000 + i))
    expected = io.BytesIO()
    write_layer(upper, expected)
    free = _free_bytes(reflink_fs)

    captured = capture_layer(upper, reflink_fs / "captured.data")
    used = free - _free_bytes(reflink_fs)
    with open(upper / "data" / "big-1.bin", "r+b") as f:
        f.write(b"changed in place after the capture")
    (upper / "data" / "big-2.bin").unlink()
    out = io.BytesIO()
    write_captured(captured, out)

    assert captured.data_bytes > 160 * MiB
    assert used < 8 * MiB, f"{used} bytes of new blocks: the large files were copied"
    assert out.getvalue() == expected.getvalue()


def _free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bfree * st.f_frsize


def test_a_capture_that_cannot_be_written_is_a_layer_error_and_leaves_no_file(
    tmp_path: Path,
) -> None:
    upper = tmp_path / "upper"
    _write(upper / "f", b"data")
    with pytest.raises(LayerError, match="cannot create"):
        capture_layer(upper, tmp_path / "missing-dir" / "data")
    with pytest.raises(LayerError, match="cannot read the upper directory"):
        capture_layer(tmp_path / "gone", tmp_path / "data")
    assert not (tmp_path / "data").exists()


# --- the shape of the layer -----------------------------------------------------------------


def test_deletions_become_oci_whiteouts_never_hard_links(overlay: Overlay) -> None:
    delete_file(overlay.merged)
    (overlay.merged / "h1").unlink()
    (overlay.merged / NON_UTF8).unlink()
    opaque_directory(overlay.merged)
    layer = assert_layer_recreates_view(overlay)
    entries = {m.name: m for m in members(layer)}
    for name in (".wh.gone.txt", "dir/sub/.wh.c", ".wh.h1", ".wh." + NON_UTF8, "opq/.wh..wh..opq"):
        assert entries[name].isreg(), name
        assert entries[name].size == 0
    assert not any(m.islnk() for m in entries.values())
    assert not any(m.ischr() for m in entries.values())


def test_opaque_marker_comes_right_after_its_directory(overlay: Overlay) -> None:
    opaque_directory(overlay.merged)
    _write(overlay.merged / "opq" / "!first", b"sorts before the marker\n")
    names = [m.name for m in members(assert_layer_recreates_view(overlay))]
    at = names.index("opq")
    assert names[at + 1] == "opq/.wh..wh..opq"


def test_overlay_private_xattrs_are_not_in_the_layer(overlay: Overlay) -> None:
    opaque_directory(overlay.merged)
    xattrs(overlay.merged)
    layer = assert_layer_recreates_view(overlay)
    keys = {k for m in members(layer) for k in m.pax_headers}
    assert "SCHILY.xattr.user.note" in keys
    assert not any(k.startswith("SCHILY.xattr.trusted.overlay.") for k in keys)


def test_same_upper_dir_gives_the_same_bytes(overlay: Overlay) -> None:
    for change in MATRIX:
        change(overlay.merged)
    overlay.umount()
    assert overlay.layer() == overlay.layer()


def test_an_unchanged_container_gives_an_empty_layer(overlay: Overlay) -> None:
    overlay.umount()
    assert members(overlay.layer()) == []


def test_huge_sparse_file_costs_its_data_not_its_holes(overlay: Overlay) -> None:
    with open(overlay.merged / "lastlog", "wb") as f:
        f.truncate(1 << 40)  # 1 TiB, like /var/log/lastlog with large uids
        f.seek(1 << 39)
        f.write(b"record")
    overlay.umount()
    layer = overlay.layer()
    assert len(layer) < MiB
    applied = overlay.base / "applied"
    applied.mkdir()
    apply_layer(io.BytesIO(layer), applied)
    st = os.stat(applied / "lastlog")
    assert st.st_size == 1 << 40
    assert st.st_blocks * 512 < MiB
    with open(applied / "lastlog", "rb") as f:
        f.seek((1 << 39) - 2)
        assert f.read(10) == b"\0\0record\0\0"


def test_large_file_is_streamed_in_bounded_memory(overlay: Overlay) -> None:
    with open(overlay.merged / "big", "wb") as f:
        for _ in range(64):
            f.write(os.urandom(MiB))
    overlay.umount()

    class Sink(io.RawIOBase):
        written = 0

        def write(self, data) -> int:  # type: ignore[no-untyped-def]
            self.written += len(data)
            return len(data)

    sink = Sink()
    tracemalloc.start()
    try:
        stats = write_layer(overlay.upper, sink)  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stats.data_bytes == 64 * MiB
    assert sink.written > 64 * MiB
    assert peak < 8 * MiB


# --- upper directories that cannot be read on their own -------------------------------------


def test_upper_dir_with_redirected_directories_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        missing("root", "mounting an overlay needs root")
    ov = Overlay(tmp_path, tmp_path / "l", tmp_path / "u", tmp_path / "w", tmp_path / "m")
    ov.options = "redirect_dir=on,index=off"
    for d in (ov.lower, ov.upper, ov.work, ov.merged):
        d.mkdir()
    make_lower(ov.lower)
    ov.mount()
    try:
        os.rename(ov.merged / "dir", ov.merged / "moved")
    finally:
        ov.umount()
    with pytest.raises(UnsupportedUpperDir, match="redirect"):
        ov.layer()


def test_upper_dir_with_metacopy_files_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        missing("root", "mounting an overlay needs root")
    ov = Overlay(tmp_path, tmp_path / "l", tmp_path / "u", tmp_path / "w", tmp_path / "m")
    ov.options = "metacopy=on,redirect_dir=on,index=off"
    for d in (ov.lower, ov.upper, ov.work, ov.merged):
        d.mkdir()
    make_lower(ov.lower)
    ov.mount()
    try:
        os.chmod(ov.merged / "dir" / "b", 0o600)
    finally:
        ov.umount()
    with pytest.raises(UnsupportedUpperDir, match="metacopy"):
        ov.layer()


def test_a_missing_upper_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LayerError, match="cannot read the upper directory"):
        write_layer(tmp_path / "gone", io.BytesIO())


def test_an_xattr_whiteout_is_a_whiteout_too(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        missing("root", "trusted.* xattrs need root")
    upper = tmp_path / "upper"
    upper.mkdir()
    (upper / "gone").write_bytes(b"")
    os.setxattr(upper / "gone", "trusted.overlay.whiteout", b"")
    out = io.BytesIO()
    write_layer(upper, out)
    assert [(m.name, m.isreg(), m.size) for m in members(out.getvalue())] == [(".wh.gone", True, 0)]


def test_gnu_tar_extracts_the_same_tree_from_the_layer(tmp_path: Path) -> None:
    """An independent reader (GNU tar) agrees with the layer's PAX headers and sparse maps."""
    if shutil.which("tar") is None:
        missing("GNU tar", "install the Debian package tar")
    source = tmp_path / "source"
    make_lower(source)
    for change in (add_file, hard_links, xattrs, mtimes, device_nodes, sparse_and_large_files):
        change(source)
    _write(source / os.fsdecode(b"\xff\xfe bytes"), b"2\n")
    _write(source / "/".join(["segment" * 5] * 12) / "deep-file", b"4\n")
    layer = tmp_path / "layer.tar"
    with open(layer, "wb") as out:
        write_layer(source, out)
    target = tmp_path / "target"
    target.mkdir()
    subprocess.run(
        ["tar", "-x", "-p", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-f", str(layer)],
        cwd=target,
        check=True,
    )
    assert_same_tree(snapshot_tree(source), snapshot_tree(target))
