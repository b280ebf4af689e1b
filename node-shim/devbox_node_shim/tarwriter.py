"""A fast, minimal PAX tar writer for layer streams (used by the overlay differ).

Python's ``tarfile`` costs ~200 µs of header work per entry (copies of the TarInfo, generic
field encoding); a devbox diff can hold tens of thousands of small files, so the differ writes
its headers here instead: the same POSIX.1-2001 (PAX) format ``tarfile`` writes (a ustar header,
preceded by a ``././@PaxHeader`` extended header when a path or link is long or not ASCII, a
number does not fit, an mtime has nanoseconds, or there are xattrs), readable by GNU tar,
Go's archive/tar (containerd, Docker) and Python's tarfile.

API::

    TarWriter(out)                   out: any object with write(bytes); never closed here
      .add(name, type, mode=…, uid=…, gid=…, mtime_ns=…, linkname=b"", devmajor=0,
           devminor=0, xattrs={}, source=None, size=0, segments=None)
      .close()                       the two zero blocks, padded to a 10 KiB record

``name``/``linkname`` are bytes (any bytes; PAX ``path``/``linkpath`` carry them whole, raw:
no ``hdrcharset`` record, which GNU tar warns about; readers take the bytes as they are).  For a
regular file, ``source`` (a seekable binary file) and ``size`` give the data; ``segments``
(offset, length) lists its data regions when it has holes, which makes a PAX 1.0 sparse entry.
Raises ``OSError`` if the file shrinks while it is read.
"""

from __future__ import annotations

import errno
from typing import BinaryIO, Protocol

__all__ = ["TarWriter"]

BLOCK = 512
RECORD = 20 * BLOCK
CHUNK = 1 << 20

REGULAR = b"0"
HARDLINK = b"1"
SYMLINK = b"2"
CHARDEV = b"3"
BLOCKDEV = b"4"
DIRECTORY = b"5"
FIFO = b"6"
_PAX = b"x"
_MAGIC = b"ustar\x0000"


class _Sink(Protocol):
    def write(self, data: bytes, /) -> object: ...


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def _fits(value: int, width: int) -> bool:
    return 0 <= value < 1 << (3 * (width - 1))


def _record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + 1
    while len(b"%d" % length) + len(body) != length:
        length = len(b"%d" % length) + len(body)
    return b"%d" % length + body


def _header(
    name: bytes,
    kind: bytes,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime: int,
    linkname: bytes,
    devmajor: int,
    devminor: int,
) -> bytes:
    header = b"".join(
        (
            name[:100].ljust(100, b"\0"),
            _octal(mode, 8),
            _octal(uid, 8),
            _octal(gid, 8),
            _octal(size, 12),
            _octal(mtime, 12),
            b" " * 8,
            kind,
            linkname[:100].ljust(100, b"\0"),
            _MAGIC,
            b"\0" * 64,  # uname, gname
            _octal(devmajor, 8),
            _octal(devminor, 8),
            b"\0" * 167,  # prefix, padding
        )
    )
    checksum = sum(header)
    return header[:148] + b"%06o\0 " % checksum + header[156:]


class TarWriter:
    """Writes PAX tar entries to ``out``; see the module docstring."""

    def __init__(self, out: _Sink) -> None:
        self.out = out
        self.offset = 0

    def _write(self, data: bytes) -> None:
        self.out.write(data)
        self.offset += len(data)

    def add(
        self,
        name: bytes,
        kind: bytes,
        *,
        mode: int = 0o644,
        uid: int = 0,
        gid: int = 0,
        mtime_ns: int = 0,
        linkname: bytes = b"",
        devmajor: int = 0,
        devminor: int = 0,
        xattrs: dict[str, bytes] | None = None,
        source: BinaryIO | None = None,
        size: int = 0,
        segments: list[tuple[int, int]] | None = None,
    ) -> None:
        """Write one entry (and, for a regular file, its data); see the module docstring."""
        records: list[tuple[bytes, bytes]] = []
        mtime, nanos = divmod(mtime_ns, 1_000_000_000)
        sparse_map = b""
        stored = size
        if kind == REGULAR and segments is not None:
            stored = sum(length for _, length in segments)
            lines = [b"%d" % len(segments)]
            for offset, length in segments:
                lines += [b"%d" % offset, b"%d" % length]
            sparse_map = b"\n".join(lines) + b"\n"
            sparse_map += b"\0" * (-len(sparse_map) % BLOCK)
            records += [
                (b"GNU.sparse.major", b"1"),
                (b"GNU.sparse.minor", b"0"),
                (b"GNU.sparse.name", name),
                (b"GNU.sparse.realsize", b"%d" % size),
            ]
            head, _, base = name.rpartition(b"/")
            name = (head + b"/" if head else b"") + b"GNUSparseFile.0/" + base
            stored += len(sparse_map)
        if len(name) > 100 or not name.isascii():
            records.append((b"path", name))
        if len(linkname) > 100 or not linkname.isascii():
            records.append((b"linkpath", linkname))
        for field, number, width in ((b"uid", uid, 8), (b"gid", gid, 8), (b"size", stored, 12)):
            if not _fits(number, width):
                records.append((field, b"%d" % number))
        if nanos or not _fits(mtime, 12):
            records.append((b"mtime", b"%d.%09d" % (mtime, nanos) if nanos else b"%d" % mtime))
        for xattr, data in sorted((xattrs or {}).items()):
            records.append((b"SCHILY.xattr." + xattr.encode("utf-8", "surrogateescape"), data))
        if records:
            body = b"".join(_record(key, value) for key, value in records)
            self._write(
                _header(b"././@PaxHeader", _PAX, 0, 0, 0, len(body), 0, b"", 0, 0)
                + body
                + b"\0" * (-len(body) % BLOCK)
            )
        self._write(
            _header(
                name,
                kind,
                mode,
                uid if _fits(uid, 8) else 0,
                gid if _fits(gid, 8) else 0,
                stored if _fits(stored, 12) else 0,
                mtime if _fits(mtime, 12) else 0,
                linkname,
                devmajor,
                devminor,
            )
        )
        if kind != REGULAR or stored == 0:
            return
        if sparse_map:
            self._write(sparse_map)
        assert source is not None
        for offset, length in segments if segments is not None else [(0, size)]:
            source.seek(offset)
            left = length
            while left:
                chunk = source.read(min(CHUNK, left))
                if not chunk:
                    raise OSError(errno.EIO, "the file shrank while it was read")
                self._write(chunk)
                left -= len(chunk)
        self._write(b"\0" * (-stored % BLOCK))

    def close(self) -> None:
        """End the archive (two zero blocks, then zeros to a whole 10 KiB record)."""
        self._write(b"\0" * (2 * BLOCK))
        self._write(b"\0" * (-self.offset % RECORD))
