"""Stream an OCI layer tar straight from an overlayfs upper directory.

The upper directory of an overlay mount holds exactly what the container changed, so reading it
costs what changed, not the size of the image (containerd's walking differ compares both whole
trees).  The only work is translating overlayfs' own markers into OCI ones:

* a whiteout (a character device 0/0; overlayfs makes several share one inode; or a file with
  the ``overlay.whiteout`` xattr) becomes an empty regular file ``<dir>/.wh.<name>`` — never a
  hard link;
* an opaque directory (xattr ``trusted.overlay.opaque`` or ``user.overlay.opaque`` = ``y``)
  becomes the directory entry followed at once by ``<dir>/.wh..wh..opq``;
* overlayfs' own xattrs (``trusted.overlay.*``, ``user.overlay.*``) are dropped;
* an upper directory written with ``redirect_dir`` or ``metacopy`` (xattrs ``*.overlay.redirect``
  / ``*.overlay.metacopy``) cannot be read on its own and is refused with
  :class:`UnsupportedUpperDir`.

Everything else is kept: regular files (streamed in chunks; files with holes are written as PAX
1.0 sparse entries, so a huge sparse file costs its data, never its holes), directories,
symlinks, hard links between files of the layer, device nodes, fifos, permissions, uid/gid,
nanosecond mtimes (PAX ``mtime``), xattrs (``SCHILY.xattr.*``), names with any bytes (PAX
``path``, raw).  Headers are written by :mod:`devbox_node_shim.tarwriter`.  Entries come in a
deterministic order: depth first, names sorted by their bytes, a directory before its children,
so the same upper directory gives the same bytes.

API::

    write_layer(upper: str | os.PathLike[str], out: BinaryIO) -> LayerStats
    prepare_capture(upper, data: str | os.PathLike[str]) -> None
    capture_layer(upper, data: str | os.PathLike[str]) -> CapturedLayer   (.discard())
    write_captured(captured: CapturedLayer, out: BinaryIO) -> LayerStats

``write_layer`` writes the uncompressed tar (PAX format) to any object with ``write(bytes)`` (a
file, a pipe, a compressor from :mod:`devbox_node_shim.compress`) and returns what it wrote.  It
does not close ``out``.  The upper directory must not change meanwhile (the task is paused or
stopped).

The same layer in two halves, so a paused task waits only for the first: ``capture_layer``
reads what the tar needs and nothing more — the entries' metadata into memory and the regular
files' data regions into new files ``data``, ``data.1``…, copied by the kernel
(``copy_file_range``: no tar headers, no user-space copy; large files by two threads while the
walk goes on, each at a block-aligned place, so that on a filesystem with reflinks — XFS,
btrfs — their blocks are shared, not copied, and the capture costs about the number of files;
elsewhere about what ``tar -c | cat`` costs) — after which the upper directory may
change; ``write_captured`` then writes exactly the bytes ``write_layer`` would
have written at the moment of the capture (it reads ``data``, never the upper directory).
Hard links need no copy of their own; holes of sparse files are not copied.

``prepare_capture`` (before the pause, optional) creates the data files already as large as the
capture will need, written with zeros: the pages they take are then allocated before the task
is frozen, and the copies during the pause only overwrite them — half the time of copying into
new files on the machines measured (allocating page-cache pages is most of a copy's cost, and on
a VM the first touch of a page costs the hypervisor a fault too).  It sizes them by walking the
upper directory as the capture will (sizes only, no data read); files that change meanwhile
only make the guess less exact.  Where the filesystem has reflinks the large files' data files
are left empty (their blocks will be shared, not copied).  It writes at most an eighth of the
memory available (more would be written back to disk before its use); the capture trims what it
did not use.

Also here, for the squash: ``open_tar_writer(out)`` (a ``tarfile`` PAX writer onto any
``write(bytes)`` object) and ``add_file_member(tar, info, source, segments, size)`` (a regular
file entry, PAX 1.0 sparse when ``segments`` leave holes).  The constants ``WHITEOUT_PREFIX``
(``.wh.``) and ``OPAQUE_WHITEOUT`` (``.wh..wh..opq``) name the OCI markers.

Errors (all :class:`LayerError`)::

    LayerError                  reading the upper directory failed (OSError inside, path named)
     └── UnsupportedUpperDir    the upper dir uses redirect_dir or metacopy
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import queue
import stat
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from devbox_node_shim import tarwriter

__all__ = [
    "CapturedLayer",
    "LayerError",
    "LayerStats",
    "UnsupportedUpperDir",
    "add_file_member",
    "capture_layer",
    "open_tar_writer",
    "prepare_capture",
    "write_captured",
    "write_layer",
]

WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"
CHUNK = 1 << 20
_BACKGROUND_COPY = 256 << 10
"""Files with at least this much data are copied by the capture's copying threads."""
_COPIERS = 2
_ALIGN = 64 << 10
"""Where large files' data starts in the data files: a multiple of any filesystem block size."""
_OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
_REFUSED = ("redirect", "metacopy")


class LayerError(Exception):
    """Reading the upper directory into a layer failed."""

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(f"{message}: {path}" if path else message)
        self.path = path


class UnsupportedUpperDir(LayerError):
    """The upper directory uses overlay features (redirect_dir, metacopy) that need the lower."""


@dataclass(frozen=True)
class LayerStats:
    """What :func:`write_layer` wrote."""

    entries: int
    """Tar entries written (whiteouts included)."""
    whiteouts: int
    """Whiteout entries (``.wh.<name>`` and ``.wh..wh..opq``)."""
    data_bytes: int
    """File content bytes stored (holes of sparse files not counted)."""


def write_layer(upper: str | os.PathLike[str], out: BinaryIO) -> LayerStats:
    """Write the OCI layer tar of overlay upper directory ``upper`` to ``out``; see module doc."""
    writer = _Writer(os.fsencode(upper), out)
    try:
        writer.run()
    except OSError as exc:
        message = f"cannot read the upper directory ({exc.strerror})"
        raise LayerError(message, path=writer.current) from exc
    return LayerStats(writer.entries, writer.whiteouts, writer.data_bytes)


@dataclass
class CapturedLayer:
    """A layer captured by :func:`capture_layer`: entries in memory, file data in ``files``."""

    files: list[Path]
    """The regular files' data regions: ``data`` (small files), ``data.1``… (large ones)."""
    entries: list[tuple[bytes, bytes, dict[str, Any]]]
    """(name, tar type, :meth:`tarwriter.TarWriter.add` keywords), in tar order; a regular
    file's ``source`` is a :class:`_Captured` (its place in ``files``)."""
    stats: LayerStats
    data_bytes: int
    """File data bytes in ``files`` (which may also hold alignment gaps)."""

    def discard(self) -> None:
        """Delete the data files (the capture cannot be written after this)."""
        for path in self.files:
            path.unlink(missing_ok=True)


def capture_layer(upper: str | os.PathLike[str], data: str | os.PathLike[str]) -> CapturedLayer:
    """Capture the layer of ``upper`` (file data into the files ``data``, ``data.1``…: new,
    or made by :func:`prepare_capture`); see the module docstring."""
    recorder = _Recorder(Path(data))
    writer = _Writer(os.fsencode(upper), recorder)
    try:
        try:
            writer.run()  # ends with recorder.close(): the copies are done
        finally:
            recorder.stop()
    except OSError as exc:
        recorder.discard()
        if recorder.failed_write is not None:
            message = f"cannot write the captured layer data ({exc.strerror})"
            raise LayerError(message, path=recorder.failed_write) from exc
        message = f"cannot read the upper directory ({exc.strerror})"
        raise LayerError(message, path=writer.current) from exc
    except BaseException:
        recorder.discard()
        raise
    stats = LayerStats(writer.entries, writer.whiteouts, writer.data_bytes)
    return CapturedLayer(recorder.paths, recorder.entries, stats, recorder.data_bytes)


def prepare_capture(upper: str | os.PathLike[str], data: str | os.PathLike[str]) -> None:
    """Create the data files :func:`capture_layer` of ``upper`` into ``data`` will write,
    written with zeros to the sizes it will need (see the module docstring).  Best effort: a
    change in ``upper`` meanwhile or a failure here only costs the capture time."""
    first = Path(data)
    sizes = [0] * (_COPIERS + 1)
    try:
        for size in _captured_sizes(os.fsencode(upper), b"", set()):
            if size < _BACKGROUND_COPY:
                sizes[0] += size
            else:
                i = min(range(1, _COPIERS + 1), key=lambda j: sizes[j])
                sizes[i] = -(-sizes[i] // _ALIGN) * _ALIGN + size
    except OSError:
        return  # (the capture itself reports what is wrong with the upper directory)
    budget = _prepare_budget()
    if sum(sizes) > budget:  # (zeros past it would be written back to disk before their use)
        sizes = [size * budget // sum(sizes) for size in sizes]
    paths = [first] + [first.with_name(f"{first.name}.{i}") for i in range(1, _COPIERS + 1)]
    # (blocks are shared only within one filesystem)
    reflinks = os.stat(upper).st_dev == os.stat(first.parent).st_dev and _has_reflinks(first.parent)
    zeros = bytes(CHUNK)
    for i, (path, size) in enumerate(zip(paths, sizes, strict=True)):
        if i > 0 and (reflinks or size == 0):
            continue
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError:
            return
        try:
            done = 0
            while done < size:
                done += os.write(fd, zeros[: min(CHUNK, size - done)])
        except OSError:
            os.ftruncate(fd, 0)  # (a full disk: the capture says so, and needs no zeros)
        finally:
            os.close(fd)


def _captured_sizes(upper: bytes, relative: bytes, seen: set[tuple[int, int]]) -> Iterator[int]:
    """The data bytes the capture will copy per regular file, in the capture's order."""
    directory = os.path.join(upper, relative) if relative else upper
    try:
        with os.scandir(directory) as it:
            names = sorted(entry.name for entry in it)
    except FileNotFoundError:
        return
    for name in names:
        child = os.path.join(relative, name) if relative else name
        try:
            st = os.lstat(os.path.join(upper, child))
        except FileNotFoundError:
            continue  # (the task still runs: a file gone meanwhile is not captured)
        if stat.S_ISREG(st.st_mode):
            if st.st_nlink > 1:
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
            yield min(st.st_size, st.st_blocks * 512)
        elif stat.S_ISDIR(st.st_mode):
            yield from _captured_sizes(upper, child, seen)


def _prepare_budget() -> int:
    """Bytes :func:`prepare_capture` may write: an eighth of the memory available (dirty pages
    past the kernel's writeback threshold would go to disk, costing more than they save)."""
    try:
        with open("/proc/meminfo", "rb") as meminfo:
            for line in meminfo:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024 // 8
    except (OSError, ValueError, IndexError):
        pass
    return 512 << 20


_REFLINKS: dict[int, bool] = {}
_FICLONE = 0x40049409


def _has_reflinks(directory: Path) -> bool:
    """Whether ``directory``'s filesystem shares blocks between files (FICLONE works)."""
    device = os.stat(directory).st_dev
    if device not in _REFLINKS:
        source = directory / f".reflink-probe-{os.getpid()}-{threading.get_ident()}"
        clone = source.with_suffix(".clone")
        try:
            source.write_bytes(bytes(4096))
            with source.open("rb") as src, clone.open("wb") as dst:
                fcntl.ioctl(dst.fileno(), _FICLONE, src.fileno())
            _REFLINKS[device] = True
        except OSError:
            _REFLINKS[device] = False
        finally:
            source.unlink(missing_ok=True)
            clone.unlink(missing_ok=True)
    return _REFLINKS[device]


def write_captured(captured: CapturedLayer, out: BinaryIO) -> LayerStats:
    """Write the tar of a captured layer to ``out`` (not closed); what it wrote."""
    tar = tarwriter.TarWriter(out)
    with contextlib.ExitStack() as stack:
        try:
            files = [stack.enter_context(open(p, "rb", buffering=0)) for p in captured.files]
            for name, kind, fields in captured.entries:
                source = fields.get("source")
                if isinstance(source, _Captured):
                    fields = {**fields, "source": _CapturedReader(files[source.file], source)}
                tar.add(name, kind, **fields)
        except OSError as exc:
            raise LayerError(
                f"cannot read the captured layer data ({exc.strerror})",
                path=str(captured.files[0]),
            ) from exc
    tar.close()
    return captured.stats


class _Captured:
    """Where a file's data regions went: which data file, and where in it."""

    __slots__ = ("file", "starts")

    def __init__(self, file: int, starts: dict[int, int]) -> None:
        self.file = file
        self.starts = starts
        """Offset in the file → offset in the data file, per data region."""


class _CapturedReader:
    """What TarWriter reads a file's regions from: a seek to a region's start in the file
    goes to where that region was copied."""

    def __init__(self, data: BinaryIO, captured: _Captured) -> None:
        self.data = data
        self.starts = captured.starts

    def seek(self, offset: int) -> None:
        self.data.seek(self.starts[offset])

    def read(self, size: int) -> bytes:
        return self.data.read(size)


class _Recorder:
    """Stands in for the TarWriter while capturing: keeps the entries, copies file data.

    Small files are copied on the spot into the data file ``data``; the data regions of large
    ones are copied by :data:`_COPIERS` threads while the walk goes on (the kernel does the
    copy and drops the GIL), each thread into a data file of its own (``data.1``…: threads
    writing one file would wait on its lock), at offsets the walk hands out.
    """

    def __init__(self, data: Path) -> None:
        self.paths = [data]
        self.fds: list[int] = []
        self.offsets = [0]
        self.entries: list[tuple[bytes, bytes, dict[str, Any]]] = []
        self.failed_write: str | None = None
        self.data_bytes = 0
        """File data captured (the data files' sizes, less the alignment holes)."""
        self._kernel_copy = True
        self._queues: list[queue.Queue[tuple[int, list[tuple[int, int, int]]] | None]] = []
        self._threads: list[threading.Thread] = []
        self._error: OSError | None = None
        self._create(data)

    def _create(self, path: Path) -> int:
        """A new data file, or the one :func:`prepare_capture` made (kept as it is)."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise LayerError(f"cannot create {path} ({exc.strerror})") from exc
        self.fds.append(fd)
        return fd

    def add(self, name: bytes, kind: bytes, **fields: Any) -> None:
        source = fields.get("source")
        if source is not None:
            segments = fields.get("segments") or [(0, fields.get("size", 0))]
            size = sum(length for _, length in segments)
            file = 0 if size < _BACKGROUND_COPY else self._least_busy()
            starts = {}
            regions = []
            for offset, length in segments:
                if file != 0:
                    # Block-aligned in the data file (a hole fills the gap): a filesystem with
                    # reflinks (XFS, btrfs) then shares the blocks instead of copying them.
                    self.offsets[file] = -(-self.offsets[file] // _ALIGN) * _ALIGN
                starts[offset] = self.offsets[file]
                regions.append((offset, length, self.offsets[file]))
                self.offsets[file] += length
                self.data_bytes += length
            fields["source"] = _Captured(file, starts)
            if file == 0:
                for offset, length, target in regions:
                    self._copy(source.fileno(), self.fds[0], offset, length, target)
            else:
                if self._error is not None:
                    raise self._error
                self._queues[file - 1].put((os.dup(source.fileno()), regions))
        self.entries.append((name, kind, fields))

    def _least_busy(self) -> int:
        """The copier (its data file's index) with the fewest bytes handed out so far."""
        if not self._threads:
            for i in range(1, _COPIERS + 1):
                path = self.paths[0].with_name(f"{self.paths[0].name}.{i}")
                self._create(path)
                self.paths.append(path)
                self.offsets.append(0)
                jobs: queue.Queue[tuple[int, list[tuple[int, int, int]]] | None]
                jobs = queue.Queue(maxsize=16)
                self._queues.append(jobs)
                thread = threading.Thread(
                    target=self._copy_jobs, args=(jobs, i), name=f"layer-capture-copy-{i}"
                )
                thread.start()
                self._threads.append(thread)
        return min(range(1, len(self.offsets)), key=lambda i: self.offsets[i])

    def close(self) -> None:
        """Wait for the copies (the tar's end is written by :func:`write_captured`)."""
        self.stop()
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        """End the copying threads (after their queued copies) and close the data files."""
        for jobs in self._queues:
            jobs.put(None)
        for thread in self._threads:
            thread.join()
        self._queues.clear()
        self._threads.clear()
        for fd, used in zip(self.fds, self.offsets, strict=False):
            with contextlib.suppress(OSError):  # (prepared zeros past the end: not needed)
                if os.fstat(fd).st_size > used:
                    os.ftruncate(fd, used)
            os.close(fd)
        self.fds.clear()

    def discard(self) -> None:
        for path in self.paths:
            path.unlink(missing_ok=True)

    def _copy_jobs(
        self, jobs: queue.Queue[tuple[int, list[tuple[int, int, int]]] | None], file: int
    ) -> None:
        while (job := jobs.get()) is not None:
            fd, regions = job
            try:
                if self._error is None:
                    for offset, length, target in regions:
                        self._copy(fd, self.fds[file], offset, length, target)
            except OSError as exc:
                self._error = exc
            except Exception as exc:  # never leave the walk waiting on a dead thread
                self._error = OSError(errno.EIO, f"copying failed: {exc!r}")
            finally:
                os.close(fd)

    def _copy(self, src: int, dst: int, offset: int, length: int, target: int) -> None:
        left = length
        while left:
            if self._kernel_copy:
                try:
                    copied = os.copy_file_range(src, dst, left, offset, target)
                except OSError as exc:
                    if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                        self._note_write_failure(exc, dst)
                        raise
                    self._kernel_copy = False  # not across these filesystems: copy by hand
                    continue
            else:
                chunk = os.pread(src, min(CHUNK, left), offset)
                copied = 0
                while copied < len(chunk):
                    try:
                        copied += os.pwrite(dst, chunk[copied:], target + copied)
                    except OSError as exc:
                        self._note_write_failure(exc, dst)
                        raise
            if copied == 0:
                raise OSError(errno.EIO, "the file shrank while it was read")
            offset += copied
            target += copied
            left -= copied

    def _note_write_failure(self, exc: OSError, dst: int) -> None:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            self.failed_write = str(self.paths[self.fds.index(dst)])


def _xattrs(path: bytes) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return {}
        raise
    return {name: os.getxattr(path, name, follow_symlinks=False) for name in sorted(names)}


class _Writer:
    def __init__(self, upper: bytes, out: BinaryIO | _Recorder) -> None:
        self.upper = upper
        self.tar: tarwriter.TarWriter | _Recorder = (
            out if isinstance(out, _Recorder) else tarwriter.TarWriter(out)
        )
        self.links: dict[tuple[int, int], bytes] = {}
        self.entries = 0
        self.whiteouts = 0
        self.data_bytes = 0
        self.current = os.fsdecode(upper)

    def run(self) -> None:
        root = os.lstat(self.upper)
        if not stat.S_ISDIR(root.st_mode):
            raise LayerError("the upper directory is not a directory", path=self.current)
        self._check_refused(self.upper, _xattrs(self.upper))
        self._walk(b"")
        self.tar.close()  # writes the end-of-archive blocks; never closes ``out``

    def _walk(self, relative: bytes) -> None:
        directory = os.path.join(self.upper, relative) if relative else self.upper
        with os.scandir(directory) as it:
            names = sorted(entry.name for entry in it)
        for name in names:
            child = os.path.join(relative, name) if relative else name
            path = os.path.join(self.upper, child)
            self.current = os.fsdecode(path)
            st = os.lstat(path)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                self._whiteout(_whiteout_name(relative, name), st)
                continue
            xattrs = _xattrs(path)
            if xattrs:  # (most files have none: skip the checks)
                self._check_refused(path, xattrs)
                if stat.S_ISREG(st.st_mode) and any(
                    p + "whiteout" in xattrs for p in _OVERLAY_XATTR_PREFIXES
                ):  # an "xattr whiteout" (kernel 6.7+, nested overlays): a whiteout all the same
                    self._whiteout(_whiteout_name(relative, name), st)
                    continue
            self._entry(child, path, st, xattrs)
            if stat.S_ISDIR(st.st_mode):
                if any(xattrs.get(p + "opaque") == b"y" for p in _OVERLAY_XATTR_PREFIXES):
                    self._whiteout(os.path.join(child, OPAQUE_WHITEOUT.encode()), st)
                self._walk(child)

    def _check_refused(self, path: bytes, xattrs: dict[str, bytes]) -> None:
        for prefix in _OVERLAY_XATTR_PREFIXES:
            for feature in _REFUSED:
                if prefix + feature in xattrs:
                    raise UnsupportedUpperDir(
                        f"the upper directory uses overlay {feature} ({prefix}{feature}), which "
                        "cannot be read without its lower layers; mount with redirect_dir=off "
                        "and metacopy=off",
                        path=os.fsdecode(path),
                    )

    def _whiteout(self, relative: bytes, st: os.stat_result) -> None:
        mtime = st.st_mtime_ns // 1_000_000_000 * 1_000_000_000
        self.tar.add(relative, tarwriter.REGULAR, mode=0o644, mtime_ns=mtime)
        self.entries += 1
        self.whiteouts += 1

    def _entry(
        self, relative: bytes, path: bytes, st: os.stat_result, xattrs: dict[str, bytes]
    ) -> None:
        mode = st.st_mode
        kept = (
            {k: v for k, v in xattrs.items() if not k.startswith(_OVERLAY_XATTR_PREFIXES)}
            if xattrs
            else xattrs
        )

        def add(kind: bytes, **extra: Any) -> None:
            self.tar.add(
                relative,
                kind,
                mode=stat.S_IMODE(mode),
                uid=st.st_uid,
                gid=st.st_gid,
                mtime_ns=st.st_mtime_ns,
                xattrs=kept,
                **extra,
            )

        if stat.S_ISREG(mode):
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                first = self.links.get(key)
                if first is not None:
                    add(tarwriter.HARDLINK, linkname=first)
                    self.entries += 1
                    return
                self.links[key] = relative
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if st.st_blocks * 512 >= st.st_size:
                    sparse = None  # as many blocks as bytes: no holes worth keeping
                    stored = st.st_size
                else:
                    segments = _data_segments(fd, st.st_size)
                    stored = sum(length for _, length in segments)
                    sparse = None if stored == st.st_size else segments
                add(tarwriter.REGULAR, source=_File(fd), size=st.st_size, segments=sparse)
            finally:
                os.close(fd)
            self.data_bytes += stored
        elif stat.S_ISDIR(mode):
            add(tarwriter.DIRECTORY)
        elif stat.S_ISLNK(mode):
            add(tarwriter.SYMLINK, linkname=os.readlink(path))
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            kind = tarwriter.CHARDEV if stat.S_ISCHR(mode) else tarwriter.BLOCKDEV
            add(kind, devmajor=os.major(st.st_rdev), devminor=os.minor(st.st_rdev))
        elif stat.S_ISFIFO(mode):
            add(tarwriter.FIFO)
        else:  # sockets are not part of a filesystem image
            return
        self.entries += 1


class _File:
    """A file descriptor as the seekable binary source TarWriter reads (no buffering)."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd

    def seek(self, offset: int) -> None:
        os.lseek(self.fd, offset, os.SEEK_SET)

    def read(self, size: int) -> bytes:
        return os.read(self.fd, size)


def _whiteout_name(parent: bytes, name: bytes) -> bytes:
    return os.path.join(parent, b".wh." + name) if parent else b".wh." + name


class _Counter:
    """Passes writes through and counts them: the ``tell()`` tarfile's plain write mode needs.

    (tarfile's stream mode, ``w|``, re-slices its whole buffer for every 10 KiB record it
    writes: quadratic in the chunk size, 25x slower than ``tar`` here.)
    """

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.offset = 0

    def write(self, data: bytes) -> int:
        self.out.write(data)
        self.offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self.offset


def open_tar_writer(out: BinaryIO) -> tarfile.TarFile:
    """A PAX tar writer onto any object with ``write(bytes)`` (``close()`` leaves it open)."""
    tar = tarfile.TarFile(
        mode="w",
        fileobj=cast("IO[bytes]", _Counter(out)),
        format=tarfile.PAX_FORMAT,
        encoding="utf-8",
        errors="surrogateescape",
    )
    tar.copybufsize = CHUNK  # type: ignore[attr-defined]  # tarfile's read size for file data
    return tar


def add_file_member(
    tar: tarfile.TarFile,
    info: tarfile.TarInfo,
    source: BinaryIO,
    segments: list[tuple[int, int]],
    size: int,
) -> None:
    """Add regular file ``info`` whose data regions of ``source`` are ``segments``.

    ``source`` must be seekable (it is read region by region).  Without holes the entry is a
    plain one; with holes it is a PAX 1.0 sparse entry (the map, padded to a block, precedes
    the data regions; ``info.pax_headers`` are kept).  Also used by the squash.
    """
    stored = sum(length for _, length in segments)
    if stored == size:
        info.size = size
        source.seek(0)
        tar.addfile(info, source)
        return
    lines = [str(len(segments))]
    for offset, length in segments:
        lines += [str(offset), str(length)]
    head = ("\n".join(lines) + "\n").encode()
    head += b"\0" * (-len(head) % tarfile.BLOCKSIZE)
    pax = dict(info.pax_headers)
    pax["GNU.sparse.major"] = "1"
    pax["GNU.sparse.minor"] = "0"
    pax["GNU.sparse.name"] = info.name
    pax["GNU.sparse.realsize"] = str(size)
    directory, base = os.path.split(info.name)
    info.name = os.path.join(directory, "GNUSparseFile.0", base)
    info.size = len(head) + stored
    info.pax_headers = pax
    tar.addfile(info, _SparseReader(source, head, segments))  # type: ignore[arg-type]


def _data_segments(fd: int, size: int) -> list[tuple[int, int]]:
    """(offset, length) of the data regions of a file; one region if it has no holes."""
    if size == 0:
        return []
    try:
        first_hole = os.lseek(fd, 0, os.SEEK_HOLE)
    except OSError:
        return [(0, size)]
    if first_hole >= size:
        os.lseek(fd, 0, os.SEEK_SET)
        return [(0, size)]
    segments: list[tuple[int, int]] = []
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole remains
                break
            raise
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        segments.append((start, end - start))
        offset = end
    os.lseek(fd, 0, os.SEEK_SET)
    # A file ending in a hole still needs its size: a last zero-length region records it.
    if not segments or segments[-1][0] + segments[-1][1] < size:
        segments.append((size, 0))
    return segments


class _SparseReader:
    """Reads the sparse map, then each data region of the file, as one stream."""

    def __init__(self, source: BinaryIO, head: bytes, segments: list[tuple[int, int]]) -> None:
        self.source = source
        self.head = head
        self.segments = list(reversed(segments))
        self.left = 0

    def read(self, size: int) -> bytes:
        """Exactly ``size`` bytes (tarfile treats a short read as the end of the data)."""
        parts: list[bytes] = []
        while size > 0:
            if self.head:
                chunk, self.head = self.head[:size], self.head[size:]
            else:
                while self.left == 0:
                    if not self.segments:
                        return b"".join(parts)
                    offset, self.left = self.segments.pop()
                    self.source.seek(offset)
                chunk = self.source.read(min(size, self.left))
                if not chunk:
                    raise OSError(errno.EIO, "the file shrank while it was read")
                self.left -= len(chunk)
            parts.append(chunk)
            size -= len(chunk)
        return b"".join(parts)
