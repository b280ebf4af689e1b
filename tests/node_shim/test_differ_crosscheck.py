"""The overlay upper-directory fast path and containerd's own Diff service give the same layer
content: both layers, applied onto the unpacked base rootfs, produce the same tree.

A real container of the private containerd gets the matrix of changes of issue 3 (made with
``task exec`` inside it, plus xattrs and a nanosecond mtime set through its mounted rootfs, as
busybox has no ``setfattr``); the same container is then committed twice through
:class:`Committer` with the path forced (``fast_path=True``: the upper directory;
``fast_path=False``: containerd's walking differ against a view of the parent).  Each new layer
is read back from the content store, decompressed, and applied with ``layer_apply.apply_layer``
onto its own copy of the base rootfs (the parent image's layers applied the same way), and the
two trees are compared entry by entry (type, mode, owner, content, symlink target, device
number, xattrs, mtimes, hard-link groups) with tests/node_shim/trees.py.

Tolerated, and only this — three limits of containerd 1.6's walking differ, measured here:

1. its tar writer stores mtimes in whole seconds: both trees are compared with mtimes floored
   to the second (:func:`_normalised`; the fast path keeps nanoseconds, asserted below);
2. its tar writer keeps only the ``security.capability`` xattr (as Docker does): both trees are
   compared on that xattr alone, and the fast path's other xattrs (added, changed, removed, on
   files and directories) are asserted separately below;
3. it compares directories by mode, owner and content, not mtime, so a directory whose only
   change is its mtime (``touch`` on it; here ``data/mtime-dir``) is absent from its layer and
   keeps the base's mtime once applied: such a difference is tolerated only when it is a
   directory, the mtime is all that differs, and containerd's layer has no entry for that
   directory (:func:`_tolerated`; the test asserts it is exactly ``data/mtime-dir``).

Encoding differences that vanish once applied and need no tolerance: containerd writes one
whiteout per removed child where the fast path writes an opaque marker, gives whiteouts the
current time, and stores a sparse file's holes as zeros (the fast path keeps them as holes,
asserted below).
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
import tarfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from devbox_node_shim import image
from devbox_node_shim.commit import CommitResult, CommitSpec, Committer
from devbox_node_shim.containerd import ContainerdClient, Descriptor
from devbox_node_shim.layer_apply import apply_layer

from tests.fixtures.containerd import Containerd
from tests.node_shim.trees import Tree, snapshot_tree, tree_differences

BASE = r"""
set -e
mkdir -p /data/gone/sub /data/tofile /data/opaque/keep /data/links /data/perms /data/mtime-dir
echo k > /data/mtime-dir/kept
echo a > /data/modify.txt
echo b > /data/delete.txt
echo c > /data/gone/sub/f
echo d > /data/gone/g
echo e > /data/tofile/x
echo f > /data/todir
echo o1 > /data/opaque/old1
echo o2 > /data/opaque/keep/old2
echo m > /data/meta.txt
echo t > /data/mtime-only.txt
echo x > /data/xattr-only.txt
echo l > /data/links/lower
ln -s meta.txt /data/sym-retarget
ln -s modify.txt /data/sym-gone
"""

CHANGES = r"""
set -e
echo new > /data/added.txt
echo changed >> /data/modify.txt
rm /data/delete.txt
rm -rf /data/gone
rm -rf /data/tofile
echo nowfile > /data/tofile
rm /data/todir
mkdir /data/todir
echo inside > /data/todir/f
rm -rf /data/opaque
mkdir /data/opaque
echo fresh > /data/opaque/fresh
ln -s ../added.txt /data/links/sym
rm /data/sym-retarget /data/sym-gone
ln -s added.txt /data/sym-retarget
echo h > /data/links/h1
ln /data/links/h1 /data/links/h2
ln /data/links/h1 /data/h3
ln /data/links/lower /data/links/lower-link
chown 1000:1001 /data/meta.txt
chmod 4750 /data/meta.txt
touch -d '2001-02-03 04:05:06' /data/mtime-only.txt
touch -d '2002-03-04 05:06:07' /data/mtime-dir
chmod 700 /data/perms
chown 1000:1000 /data/perms
mknod /data/dev-c c 1 3
mknod /data/dev-b b 7 0
mkfifo /data/fifo
truncate -s 100000000 /data/sparse
echo middle | dd of=/data/sparse bs=1 seek=50000000 conv=notrunc 2>/dev/null
head -c 20000000 /dev/urandom > /data/large
echo sp > '/data/name with spaces'
echo latin > "/data/caf$(printf '\351')"
mkdir "/data/dir $(printf '\377')"
echo z > "/data/dir $(printf '\377')/in"
"""

CAP_NET_BIND_SERVICE = struct.pack("<5I", 0x02000001, 1 << 10, 0, 0, 0)
"""A ``security.capability`` value (VFS_CAP_REVISION_2, effective, cap_net_bind_service)."""


@pytest.fixture
async def client(containerd: Containerd) -> AsyncIterator[ContainerdClient]:
    cd = ContainerdClient(containerd.socket, containerd.namespace)
    try:
        yield cd
    finally:
        await cd.close()


@pytest.fixture
def started(containerd: Containerd) -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        containerd.remove_container(name)


def _run(containerd: Containerd, image_ref: str, started: list[str]) -> str:
    name = f"x-{uuid.uuid4().hex[:10]}"
    started.append(name)
    containerd.run(image_ref, name, "/bin/sleep", "100000")
    return name


def _rootfs(containerd: Containerd, container: str) -> Path:
    """The container's mounted rootfs as the host sees it (the shim mounts it there)."""
    return (
        containerd.base
        / "state"
        / "io.containerd.runtime.v2.task"
        / containerd.namespace
        / container
        / "rootfs"
    )


async def _commit(cd: ContainerdClient, work: Path, container: str, fast: bool) -> CommitResult:
    committer = Committer(cd, workdir=work, fast_path=fast)
    target = f"crosscheck/{container}:{'fast' if fast else 'containerd'}-{uuid.uuid4().hex[:6]}"
    return await committer.commit(CommitSpec(container_id=container, target_image=target))


async def _layer_tar(cd: ContainerdClient, descriptor: Descriptor, path: Path) -> Path:
    raw = path.with_suffix(".blob")
    with raw.open("wb") as out:
        async for chunk in cd.read_content(descriptor.digest):
            out.write(chunk)
    image.decompress_blob(raw, descriptor.media_type, path)
    raw.unlink()
    return path


async def _image_layers(cd: ContainerdClient, name: str) -> list[Descriptor]:
    target = (await cd.image(name)).target
    if target.media_type in image.INDEX_TYPES:
        target = image.pick_platform(json.loads(await cd.read_all(target.digest)))
    manifest = json.loads(await cd.read_all(target.digest))
    return [Descriptor.from_oci(layer) for layer in manifest["layers"]]


async def _unpack(cd: ContainerdClient, name: str, root: Path, work: Path) -> None:
    os.mkdir(root)
    for i, layer in enumerate(await _image_layers(cd, name)):
        tar = await _layer_tar(cd, layer, work / f"base-{root.name}-{i}.tar")
        apply_layer(tar, root)


def _directory_entries(tar_path: Path) -> set[bytes]:
    with tarfile.open(tar_path, encoding="utf-8", errors="surrogateescape") as tar:
        return {
            os.fsencode(member.name.strip("/").removeprefix("./"))
            for member in tar
            if member.isdir()
        }


def _tolerated(fast: Tree, other: Tree, containerd_dirs: set[bytes]) -> set[bytes]:
    """Paths whose only difference is the mtime of a directory containerd's layer omits."""
    tolerated = set()
    for path in fast.entries.keys() & other.entries.keys():
        a, b = fast.entries[path], other.entries[path]
        if (
            a != b
            and a.kind == b.kind == "dir"
            and path not in containerd_dirs
            and {k for k in a.__dataclass_fields__ if getattr(a, k) != getattr(b, k)}
            == {"mtime_ns"}
        ):
            tolerated.add(path)
    return tolerated


def _normalised(tree: Tree) -> Tree:
    """``tree`` as containerd's tar writer can carry it: second mtimes, security.capability."""
    entries = {
        path: dataclasses.replace(
            entry,
            mtime_ns=None if entry.mtime_ns is None else entry.mtime_ns // 10**9 * 10**9,
            xattrs=tuple(x for x in entry.xattrs if x[0] == "security.capability"),
        )
        for path, entry in tree.entries.items()
    }
    return Tree(entries, tree.hardlinks)


def _without(tree: Tree, paths: set[bytes]) -> Tree:
    return Tree({p: e for p, e in tree.entries.items() if p not in paths}, tree.hardlinks)


async def test_overlay_fast_path_and_containerd_differ_give_the_same_applied_tree(
    containerd: Containerd,
    busybox_image: str,
    client: ContainerdClient,
    started: list[str],
    tmp_path: Path,
) -> None:
    # The base image: busybox plus a layer of files the matrix then changes.
    seed = _run(containerd, busybox_image, started)
    containerd.exec(seed, BASE)
    seed_root = _rootfs(containerd, seed)
    os.setxattr(seed_root / "data/xattr-only.txt", "user.origin", b"base")
    os.setxattr(seed_root / "data/meta.txt", "user.origin", b"base")
    base = await _commit(client, tmp_path / "work", seed, fast=True)

    # The changes, in a container of that image.
    box = _run(containerd, base.image, started)
    containerd.exec(box, CHANGES)
    root = _rootfs(containerd, box)
    os.setxattr(root / "data/added.txt", "user.note", b"\x00binary\xff")
    os.setxattr(root / "data/xattr-only.txt", "user.origin", b"changed")
    os.setxattr(root / "data/todir", "user.dir", b"d")
    os.removexattr(root / "data/meta.txt", "user.origin")
    os.setxattr(root / "data/large", "security.capability", CAP_NET_BIND_SERVICE)
    os.utime(root / "data/modify.txt", ns=(1_234_567_891_123_456_789, 1_234_567_891_123_456_789))
    os.utime(root / "data/links/sym", ns=(1_000_000_007, 1_000_000_007), follow_symlinks=False)

    fast = await _commit(client, tmp_path / "work", box, fast=True)
    walked = await _commit(client, tmp_path / "work", box, fast=False)
    assert "diff" in fast.step_seconds
    assert "diff" in walked.step_seconds

    trees: dict[str, Tree] = {}
    tars: dict[str, Path] = {}
    for label, result in (("fast", fast), ("containerd", walked)):
        applied = tmp_path / label
        await _unpack(client, base.image, applied, tmp_path)
        tars[label] = await _layer_tar(client, result.layers[-1], tmp_path / f"{label}.tar")
        apply_layer(tars[label], applied)
        trees[label] = snapshot_tree(applied)

    fast_tree, walked_tree = _normalised(trees["fast"]), _normalised(trees["containerd"])
    tolerated = _tolerated(fast_tree, walked_tree, _directory_entries(tars["containerd"]))
    problems = tree_differences(_without(fast_tree, tolerated), _without(walked_tree, tolerated))
    assert not problems, "fast path (want) and containerd differ (got) disagree:\n" + "\n".join(
        problems
    )
    # The matrix really happened (a comparison of two empty layers would pass, too).
    entries = trees["fast"].entries
    assert b"data/gone" not in entries
    assert b"data/delete.txt" not in entries
    assert entries[b"data/tofile"].kind == "file"
    assert entries[b"data/todir"].kind == "dir"
    assert set(p for p in entries if p.startswith(b"data/opaque/")) == {b"data/opaque/fresh"}
    assert entries[b"data/meta.txt"].mode == 0o4750
    assert entries[b"data/meta.txt"].uid == 1000
    assert entries[b"data/meta.txt"].xattrs == ()
    assert entries[b"data/added.txt"].xattrs == (("user.note", b"\x00binary\xff"),)
    assert entries[b"data/xattr-only.txt"].xattrs == (("user.origin", b"changed"),)
    assert entries[b"data/large"].xattrs == (("security.capability", CAP_NET_BIND_SERVICE),)
    assert trees["containerd"].entries[b"data/large"].xattrs == entries[b"data/large"].xattrs
    assert entries[b"data/todir"].xattrs == (("user.dir", b"d"),)
    assert entries[b"data/modify.txt"].mtime_ns == 1_234_567_891_123_456_789
    assert entries[b"data/mtime-only.txt"].mtime_ns == 981_173_106 * 10**9
    assert entries[b"data/links/sym"].target == b"../added.txt"
    assert entries[b"data/sym-retarget"].target == b"added.txt"
    assert b"data/sym-gone" not in entries
    assert entries[b"data/dev-c"].rdev == (1, 3)
    assert entries[b"data/dev-b"].kind == "blk"
    assert entries[b"data/fifo"].kind == "fifo"
    assert entries[b"data/sparse"].size == 100_000_000
    assert entries[b"data/large"].size == 20_000_000
    assert b"data/name with spaces" in entries
    assert b"data/caf\xe9" in entries
    assert b"data/dir \xff/in" in entries
    assert (b"data/h3", b"data/links/h1", b"data/links/h2") in trees["fast"].hardlinks
    assert (b"data/links/lower", b"data/links/lower-link") in trees["fast"].hardlinks
    # The one directory whose only change is its mtime is the one difference tolerated.
    assert entries[b"data/mtime-dir"].mtime_ns == 1_015_218_367 * 10**9
    assert tolerated == {b"data/mtime-dir"}
    # The fast path keeps the sparse file's holes (containerd's tar stores them as zeros: same
    # content once applied, only bigger).
    assert os.stat(tmp_path / "fast" / "data/sparse").st_blocks * 512 < 1_000_000
