"""Apply an OCI layer tar (uncompressed) onto a directory, as a container runtime unpacks it.

API::

    apply_layer(layer: str | os.PathLike[str] | BinaryIO, root: str | os.PathLike[str]) -> None

reads the tar from a path or from any object with ``read(n)`` (read forward only, never seeks)
and changes ``root`` in place, following the OCI image spec's layer rules:

* ``<dir>/.wh.<name>`` removes ``<dir>/<name>`` (a whole tree if it is a directory);
* ``<dir>/.wh..wh..opq`` removes every child of ``<dir>`` this layer did not itself create;
* any other entry replaces what is at its path, except that a directory entry over an existing
  directory only updates its metadata (its children stay);
* owners, modes (set after the owner, so setuid bits survive), xattrs (``SCHILY.xattr.*``),
  nanosecond mtimes (PAX ``mtime``; directories' mtimes are set last), hard links (to a path
  of the tree), symlinks, device nodes, fifos and sparse entries (PAX 0.x/1.0 sparse maps are
  written with holes, never materialised) are honoured.

Paths are resolved inside ``root``: an absolute path, ``..`` or a symlink in a parent directory
can never reach outside it.  Must run as root to set owners and make device nodes.

Errors::

    LayerApplyError   a malformed tar, or an entry that cannot be applied (path named)
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
from typing import IO, BinaryIO, cast

__all__ = ["LayerApplyError", "apply_layer"]

CHUNK = 1 << 20
_MAX_SYMLINKS = 255


class LayerApplyError(Exception):
    """The layer is malformed, or one of its entries cannot be applied."""

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(f"{message}: {path}" if path else message)
        self.path = path


def apply_layer(layer: str | os.PathLike[str] | BinaryIO, root: str | os.PathLike[str]) -> None:
    """Apply the layer tar ``layer`` onto directory ``root``; see the module docstring."""
    applier = _Applier(os.fsencode(root))
    try:
        if isinstance(layer, (str, os.PathLike)):
            with open(layer, "rb") as stream:
                applier.run(stream)
        else:
            applier.run(layer)
    except tarfile.TarError as exc:
        raise LayerApplyError(f"malformed layer tar ({exc})", path=applier.current) from exc
    except OSError as exc:
        raise LayerApplyError(f"cannot apply entry ({exc})", path=applier.current) from exc


def _parts(name: str) -> list[bytes]:
    raw = os.fsencode(name)
    return [part for part in raw.split(b"/") if part not in (b"", b".")]


def _remove(path: bytes) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def _mtime_ns(member: tarfile.TarInfo) -> int:
    text = member.pax_headers.get("mtime")
    if text is None:
        return int(member.mtime) * 1_000_000_000
    seconds, _, fraction = text.partition(".")
    nanos = int((fraction + "000000000")[:9]) if fraction else 0
    sign = -1 if seconds.startswith("-") else 1
    return int(seconds) * 1_000_000_000 + sign * nanos


class _Applier:
    def __init__(self, root: bytes) -> None:
        self.root = os.path.realpath(root)
        self.created: set[bytes] = set()
        self.dir_times: list[tuple[bytes, int]] = []
        self.current = ""

    def run(self, stream: BinaryIO) -> None:
        with tarfile.open(
            fileobj=stream, mode="r|", encoding="utf-8", errors="surrogateescape", bufsize=CHUNK
        ) as tar:
            for member in tar:
                self.current = member.name
                self._member(tar, member)
        for path, mtime in reversed(self.dir_times):
            os.utime(path, ns=(mtime, mtime), follow_symlinks=False)

    def resolve(self, parts: list[bytes], *, follow_last: bool = False) -> bytes:
        """The real path of ``parts`` under root, following symlinks but never leaving root."""
        resolved: list[bytes] = []
        pending = list(reversed(parts))
        hops = 0
        while pending:
            part = pending.pop()
            if part in (b"", b"."):
                continue
            if part == b"..":
                if resolved:
                    resolved.pop()
                continue
            candidate = os.path.join(self.root, *resolved, part)
            if (pending or follow_last) and os.path.islink(candidate):
                hops += 1
                if hops > _MAX_SYMLINKS:
                    raise LayerApplyError("too many levels of symlinks", path=self.current)
                target = os.readlink(candidate)
                if target.startswith(b"/"):
                    resolved = []
                pending.extend(reversed(target.split(b"/")))
                continue
            resolved.append(part)
        return os.path.join(self.root, *resolved) if resolved else self.root

    def _member(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        parts = _parts(member.name)
        if not parts or b".." in parts:
            if not parts:
                return  # the root directory itself
            raise LayerApplyError("entry path leaves the layer", path=member.name)
        base = parts[-1]
        parent = self.resolve(parts[:-1])
        if base == b".wh..wh..opq":
            if os.path.isdir(parent):
                for child in os.listdir(parent):
                    path = os.path.join(parent, child)
                    if path not in self.created:
                        _remove(path)
            return
        if base.startswith(b".wh."):
            _remove(os.path.join(parent, base[4:]))
            return
        os.makedirs(parent, exist_ok=True)
        target = os.path.join(parent, base)
        exists = os.path.lexists(target)
        if exists and not (member.isdir() and os.path.isdir(target) and not os.path.islink(target)):
            _remove(target)
            exists = False
        self.created.add(target)
        if member.isdir():
            if not exists:
                os.mkdir(target, 0o700)
        elif member.islnk():
            source = self.resolve(_parts(member.linkname))
            os.link(source, target, follow_symlinks=False)
            return  # the linked inode already carries its metadata
        elif member.issym():
            os.symlink(os.fsencode(member.linkname), target)
        elif member.isreg():
            self._file(tar, member, target)
        elif member.ischr() or member.isblk():
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            os.mknod(target, kind | 0o600, os.makedev(member.devmajor, member.devminor))
        elif member.isfifo():
            os.mkfifo(target, 0o600)
        else:
            raise LayerApplyError(f"unsupported tar entry type {member.type!r}", path=member.name)
        os.lchown(target, member.uid, member.gid)
        if not member.issym():
            os.chmod(target, member.mode)
        for key, value in member.pax_headers.items():
            if key.startswith("SCHILY.xattr."):
                name = key.removeprefix("SCHILY.xattr.")
                data = value.encode("utf-8", "surrogateescape")
                os.setxattr(target, name, data, follow_symlinks=False)
        mtime = _mtime_ns(member)
        if member.isdir():
            self.dir_times.append((target, mtime))
        else:
            os.utime(target, ns=(mtime, mtime), follow_symlinks=False)

    def _file(self, tar: tarfile.TarFile, member: tarfile.TarInfo, target: bytes) -> None:
        source: IO[bytes] | None
        regions: list[tuple[int, int]]
        if member.sparse is None:
            source = tar.extractfile(member)
            regions = [(0, member.size)]
        else:
            # The stored data is the data regions back to back; read them in order and seek
            # the output over the holes (tarfile's own reader would have to seek backwards).
            source = cast("IO[bytes]", tar.fileobj)
            source.seek(member.offset_data)
            regions = cast("list[tuple[int, int]]", member.sparse)
        if source is None:  # pragma: no cover - regular files always have data
            raise LayerApplyError("no data for a regular file", path=member.name)
        with open(target, "wb") as out:
            for offset, length in regions:
                out.seek(offset)
                left = length
                while left:
                    chunk = source.read(min(CHUNK, left))
                    if not chunk:
                        raise LayerApplyError("the layer ends inside a file", path=member.name)
                    out.write(chunk)
                    left -= len(chunk)
            out.truncate(member.size)
