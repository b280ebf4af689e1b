"""Compare two directory trees as a container would see them (test helper, reusable).

``snapshot_tree(root)`` records every entry below ``root`` (type, mode, owner, content digest,
symlink target, device number, xattrs, mtime) plus the groups of hard-linked paths;
``assert_same_tree(a, b)`` fails with a readable list of differences.  Used by the overlay
differ's matrix test and meant for the cross-check against containerd's own Diff service.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field

_IGNORED_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.", "security.selinux")


@dataclass(frozen=True)
class Entry:
    kind: str
    mode: int
    uid: int
    gid: int
    size: int = 0
    digest: str = ""
    target: bytes = b""
    rdev: tuple[int, int] = (0, 0)
    xattrs: tuple[tuple[str, bytes], ...] = ()
    mtime_ns: int | None = None


@dataclass
class Tree:
    entries: dict[bytes, Entry] = field(default_factory=dict)
    hardlinks: set[tuple[bytes, ...]] = field(default_factory=set)


def _digest(path: bytes) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _xattrs(path: bytes) -> tuple[tuple[str, bytes], ...]:
    names = sorted(os.listxattr(path, follow_symlinks=False))
    return tuple(
        (name, os.getxattr(path, name, follow_symlinks=False))
        for name in names
        if not name.startswith(_IGNORED_XATTR_PREFIXES)
    )


def snapshot_tree(root: str | os.PathLike[str], *, dir_mtimes: bool = True) -> Tree:
    """Everything below ``root`` (not ``root`` itself); directory mtimes only if asked."""
    base = os.fsencode(root)
    tree = Tree()
    inodes: dict[tuple[int, int], list[bytes]] = {}
    for directory, dirs, files in os.walk(base):
        for name in sorted(dirs + files):
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, base)
            st = os.lstat(path)
            mode = st.st_mode
            kind, size, digest, target, rdev = "other", 0, "", b"", (0, 0)
            if stat.S_ISDIR(mode):
                kind = "dir"
            elif stat.S_ISREG(mode):
                kind, size, digest = "file", st.st_size, _digest(path)
                if st.st_nlink > 1:
                    inodes.setdefault((st.st_dev, st.st_ino), []).append(relative)
            elif stat.S_ISLNK(mode):
                kind, target = "symlink", os.readlink(path)
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                kind = "chr" if stat.S_ISCHR(mode) else "blk"
                rdev = (os.major(st.st_rdev), os.minor(st.st_rdev))
            elif stat.S_ISFIFO(mode):
                kind = "fifo"
            keep_mtime = kind not in ("dir", "other") or (kind == "dir" and dir_mtimes)
            entry = Entry(
                kind,
                stat.S_IMODE(mode),
                st.st_uid,
                st.st_gid,
                size=size,
                digest=digest,
                target=target,
                rdev=rdev,
                xattrs=_xattrs(path),
                mtime_ns=st.st_mtime_ns if keep_mtime else None,
            )
            tree.entries[relative] = entry
    tree.hardlinks = {tuple(sorted(paths)) for paths in inodes.values() if len(paths) > 1}
    return tree


def tree_differences(expected: Tree, actual: Tree) -> list[str]:
    """Readable differences between two snapshots (empty when they are the same)."""
    problems: list[str] = []
    for path in sorted(expected.entries.keys() | actual.entries.keys()):
        want, got = expected.entries.get(path), actual.entries.get(path)
        name = os.fsdecode(path)
        if want is None:
            problems.append(f"unexpected {name}: {got}")
        elif got is None:
            problems.append(f"missing {name}: {want}")
        elif want != got:
            fields = [
                f"{key}: want {getattr(want, key)!r} got {getattr(got, key)!r}"
                for key in want.__dataclass_fields__
                if getattr(want, key) != getattr(got, key)
            ]
            problems.append(f"{name}: " + "; ".join(fields))
    if expected.hardlinks != actual.hardlinks:
        problems.append(f"hard links: want {expected.hardlinks} got {actual.hardlinks}")
    return problems


def assert_same_tree(expected: Tree, actual: Tree) -> None:
    problems = tree_differences(expected, actual)
    assert not problems, "trees differ:\n" + "\n".join(problems)
