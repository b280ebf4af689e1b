"""Merge an ordered list of OCI layer tars into one equivalent layer tar.

Why: a devbox image is its runtime's layers plus the devbox's own layers, one per commit.
Left alone, the devbox's layers would grow without bound (overlayfs refuses more than ~500
lower layers, Docker ~125) and every commit would keep every earlier version of every changed
file.  When a devbox reaches its layer budget, the node-shim squashes its own layers (never the
runtime's, which stay shared with every other devbox of that runtime and are mounted from the
registry) into one.  The squash keeps only the last state of each path: a log file that grew
on every commit is stored at its last size once, not once per commit, and a file created then
deleted within the squashed layers vanishes together with its whiteout.  Whiteouts (and opaque
markers) are kept only where they still hide something of the base (runtime) layers, which the
caller describes with ``base_has`` (a predicate over paths; without it every whiteout is kept,
which is always correct, only larger).  So after any number of commits the image is the
runtime's layers plus a bounded number of devbox layers whose total size is about the size of
what the devbox really changed.

Semantics (those of applying the layers in order; see :mod:`devbox_node_shim.layer_apply`):
later entries win; ``.wh.<name>`` removes a path and everything below it; ``.wh..wh..opq``
removes the children a directory had from lower layers; a directory entry over a directory
only updates its metadata; a file, symlink, device… replacing a directory (or the reverse)
hides what the base had there (an opaque marker records it when a directory comes back).
Hard links keep their group: when the file a link pointed at is later replaced, the link keeps
the old content, as it would on disk.  Sparse entries stay sparse.

API::

    squash_layers(layers: Sequence[str | os.PathLike[str]], out: BinaryIO, *,
                  base_has: Callable[[str], bool] | None = None) -> SquashStats
    base_from_directory(root) -> Callable[[str], bool]      a path exists below ``root``
    base_from_layers(layers) -> Callable[[str], bool]       a path exists after applying them

``layers`` are uncompressed tar files, oldest first (read with random access, data copied in
chunks; metadata of all entries is held in memory).  Paths given to ``base_has`` are relative,
without a leading ``./`` (non-UTF-8 bytes as surrogate escapes).  The output order is the
overlay differ's (depth first, sorted by bytes, an opaque marker right after its directory).

Errors::

    SquashError   a layer cannot be read or is malformed (a hard link to nothing…)
"""

from __future__ import annotations

import contextlib
import os
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from devbox_node_shim.overlay_diff import (
    OPAQUE_WHITEOUT,
    WHITEOUT_PREFIX,
    add_file_member,
    open_tar_writer,
)

__all__ = ["SquashError", "SquashStats", "base_from_directory", "base_from_layers", "squash_layers"]

Path = tuple[bytes, ...]


class SquashError(Exception):
    """A layer cannot be read, or it is malformed."""


@dataclass(frozen=True)
class SquashStats:
    """What :func:`squash_layers` wrote."""

    entries: int
    whiteouts: int
    dropped_whiteouts: int
    """Whiteouts (and opaque markers) left out because the base never had the path."""


@dataclass(eq=False)
class _Data:
    """One regular file's content (an inode): where its bytes are."""

    layer: int
    member: tarfile.TarInfo


@dataclass(eq=False)
class _Node:
    member: tarfile.TarInfo | None
    """None for a whiteout."""
    layer: int = -1
    data: _Data | None = None
    """For regular files and hard links: the inode they share."""
    hides_base: bool = False
    """For directories: the base's children of this path are gone (opaque)."""
    link_to_base: bytes = b""
    """A hard link to a path that only the base layers have."""


@dataclass
class _State:
    nodes: dict[Path, _Node] = field(default_factory=dict)
    children: dict[Path, set[bytes]] = field(default_factory=dict)

    def get(self, path: Path) -> _Node | None:
        return self.nodes.get(path)

    def put(self, path: Path, node: _Node) -> None:
        self.nodes[path] = node
        for depth in range(len(path)):
            self.children.setdefault(path[:depth], set()).add(path[depth])

    def descendants(self, path: Path) -> list[Path]:
        found: list[Path] = []
        pending = [path]
        while pending:
            current = pending.pop()
            for name in self.children.get(current, ()):
                child = (*current, name)
                found.append(child)
                pending.append(child)
        return found

    def remove_below(self, path: Path, keep: Callable[[_Node], bool] | None = None) -> None:
        for child in self.descendants(path):
            node = self.nodes.get(child)
            if node is not None and (keep is None or not keep(node)):
                del self.nodes[child]

    def remove(self, path: Path) -> None:
        self.remove_below(path)
        self.nodes.pop(path, None)

    def ordered(self) -> list[Path]:
        return sorted(self.nodes)


def _split(name: str) -> Path:
    return tuple(p for p in os.fsencode(name).split(b"/") if p not in (b"", b"."))


def _text(path: Path) -> str:
    return os.fsdecode(b"/".join(path))


def _merge(layers: Sequence[str | os.PathLike[str]], tars: list[tarfile.TarFile]) -> _State:
    state = _State()
    for index, tar in enumerate(tars):
        for member in tar:
            path = _split(member.name)
            if not path:
                continue
            if b".." in path:
                raise SquashError(f"layer {layers[index]}: entry {member.name!r} leaves the layer")
            name = path[-1]
            if name == OPAQUE_WHITEOUT.encode():
                directory = path[:-1]
                state.remove_below(directory, keep=_made_by(index))
                existing = state.get(directory)
                if existing is not None and existing.member is not None:
                    existing.hides_base = True
                else:  # a marker without its directory entry: keep the marker itself
                    state.put(directory, _Node(None, index, hides_base=True))
                continue
            if name.startswith(WHITEOUT_PREFIX.encode()):
                target = (*path[:-1], name[len(WHITEOUT_PREFIX) :])
                state.remove(target)
                state.put(target, _Node(None, index))
                continue
            old = state.get(path)
            node = _Node(member, index)
            if member.isdir():
                if old is not None and old.member is not None and old.member.isdir():
                    node.hides_base = old.hides_base
                else:
                    state.remove_below(path)
                    node.hides_base = old is not None
            else:
                state.remove_below(path)
                if member.isreg():
                    node.data = _Data(index, member)
                elif member.islnk():
                    target_node = state.get(_split(member.linkname))
                    if target_node is not None and target_node.data is not None:
                        node.data = target_node.data
                    elif target_node is None:
                        node.link_to_base = os.fsencode(member.linkname)
                    else:
                        raise SquashError(
                            f"layer {layers[index]}: hard link {member.name!r} points at "
                            f"{member.linkname!r}, which is not a regular file"
                        )
            state.put(path, node)
    return state


def _made_by(layer: int) -> Callable[[_Node], bool]:
    def made_by(node: _Node) -> bool:
        return node.layer == layer

    return made_by


def _hidden_by_ancestor(state: _State, path: Path) -> bool:
    """Whether something above ``path`` already hides whatever the base has at ``path``."""
    for depth in range(len(path) - 1, 0, -1):
        node = state.get(path[:depth])
        if node is not None and (node.hides_base or node.member is None):
            return True
        if node is not None and node.member is not None and not node.member.isdir():
            return True
    return False


def squash_layers(
    layers: Sequence[str | os.PathLike[str]],
    out: BinaryIO,
    *,
    base_has: Callable[[str], bool] | None = None,
) -> SquashStats:
    """Write to ``out`` one layer tar equivalent to ``layers`` applied in order."""
    with contextlib.ExitStack() as stack:
        try:
            tars = [
                stack.enter_context(
                    tarfile.open(layer, "r:", encoding="utf-8", errors="surrogateescape")
                )
                for layer in layers
            ]
            state = _merge(layers, tars)
            writer = stack.enter_context(open_tar_writer(out))
            return _write(state, tars, writer, base_has)
        except (OSError, tarfile.TarError) as exc:
            raise SquashError(f"cannot squash the layers: {exc}") from exc


def _base_may_have(base_has: Callable[[str], bool] | None, path: Path) -> bool:
    return base_has is None or base_has(_text(path))


def _write(
    state: _State,
    tars: list[tarfile.TarFile],
    writer: tarfile.TarFile,
    base_has: Callable[[str], bool] | None,
) -> SquashStats:
    entries = whiteouts = dropped = 0
    written: dict[int, str] = {}
    """id(_Data) → the output path that carries its bytes."""
    for path in state.ordered():
        node = state.nodes[path]
        name = _text(path)
        if node.member is None:
            needed = not _hidden_by_ancestor(state, path) and _base_may_have(base_has, path)
            if node.hides_base:  # an opaque marker without its directory entry
                marker = _text((*path, OPAQUE_WHITEOUT.encode()))
                if needed:
                    writer.addfile(_whiteout(marker))
                    entries, whiteouts = entries + 1, whiteouts + 1
                else:
                    dropped += 1
                continue
            if needed:
                writer.addfile(_whiteout(_text((*path[:-1], WHITEOUT_PREFIX.encode() + path[-1]))))
                entries, whiteouts = entries + 1, whiteouts + 1
            else:
                dropped += 1
            continue
        member = node.member
        if node.data is not None:
            key = id(node.data)
            first = written.get(key)
            if first is not None:
                link = _copy(node.data.member, name)
                link.type = tarfile.LNKTYPE
                link.linkname = first
                link.size = 0
                writer.addfile(link)
            else:
                source = node.data.member
                info = _copy(source, name)
                info.type = tarfile.REGTYPE
                data = tars[node.data.layer].extractfile(source)
                if data is None:
                    raise SquashError(f"no data for {source.name!r}")
                regions = list(source.sparse) if source.sparse is not None else [(0, source.size)]
                if source.sparse is not None and not regions:
                    regions = [(source.size, 0)]
                add_file_member(writer, info, data, regions, source.size)  # type: ignore[arg-type]
                written[key] = name
            entries += 1
            continue
        info = _copy(member, name)
        if node.link_to_base:
            info.linkname = os.fsdecode(node.link_to_base)
        writer.addfile(info)
        entries += 1
        if member.isdir() and node.hides_base:
            if not _hidden_by_ancestor(state, path) and _base_may_have(base_has, path):
                writer.addfile(_whiteout(_text((*path, OPAQUE_WHITEOUT.encode()))))
                entries, whiteouts = entries + 1, whiteouts + 1
            else:
                dropped += 1
    return SquashStats(entries, whiteouts, dropped)


_DROPPED_PAX_KEYS = ("path", "linkpath", "size", "hdrcharset")
"""Recomputed for the output entry (sparse keys too); mtime, owners and xattrs are kept."""


def _copy(member: tarfile.TarInfo, name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = member.type
    info.mode = member.mode
    info.uid, info.gid = member.uid, member.gid
    info.uname, info.gname = member.uname, member.gname
    info.mtime = int(member.mtime)
    info.linkname = member.linkname
    info.devmajor, info.devminor = member.devmajor, member.devminor
    info.pax_headers = {
        key: value
        for key, value in member.pax_headers.items()
        if key not in _DROPPED_PAX_KEYS and not key.startswith("GNU.sparse.")
    }
    return info


def _whiteout(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.REGTYPE
    info.mode = 0o644
    return info


def base_from_directory(root: str | os.PathLike[str]) -> Callable[[str], bool]:
    """``base_has`` for a base given as a directory (e.g. a view of the runtime image)."""
    base = os.fsencode(root)

    def has(path: str) -> bool:
        return os.path.lexists(os.path.join(base, os.fsencode(path)))

    return has


def base_from_layers(layers: Sequence[str | os.PathLike[str]]) -> Callable[[str], bool]:
    """``base_has`` for a base given as its layer tars (oldest first)."""
    with contextlib.ExitStack() as stack:
        try:
            tars = [
                stack.enter_context(
                    tarfile.open(layer, "r:", encoding="utf-8", errors="surrogateescape")
                )
                for layer in layers
            ]
            state = _merge(layers, tars)
        except (OSError, tarfile.TarError) as exc:
            raise SquashError(f"cannot read the base layers: {exc}") from exc
    present = {_text(path) for path, node in state.nodes.items() if node.member is not None}
    return present.__contains__
