"""Compress a layer tar stream into a blob file, computing its digests on the way.

One pass, bounded memory: while the uncompressed tar is fed in, its sha256 (the layer's
``diff_id``) is computed by a thread of its own, the compressor runs on all cores, and the
compressed bytes are hashed (the blob ``digest``) as they are written to the file.

API::

    LayerCompressor(dest, *, compression="zstd" | "gzip", level=None, engine="auto",
                    progress=None, follow=False) a writable binary sink (``write(bytes)``)
        .finish() -> CompressedLayer             flushes, closes; the result
        .abort()                                 stops and deletes the partial file
        .follow() -> Iterator[bytes]             (``follow=True``) the compressed bytes as they
                                                 are written, from another thread; ends after
                                                 finish(), raises SpoolAborted after abort()
    compress_stream(source, dest, ...) -> CompressedLayer   reads ``source.read(n)`` to EOF

Use it as a context manager: leaving the block normally calls ``finish()`` (the result is then
``.result``), leaving it by an exception calls ``abort()``.  ``progress(bytes_done)`` is called
with the uncompressed bytes taken so far.  Typical use with the overlay differ::

    with LayerCompressor(path) as sink:
        overlay_diff.write_layer(upper, sink)
    layer = sink.result

Engines (``engine="auto"``): zstd with the ``zstandard`` library, one worker thread per core
(``engine="binary"`` pipes through ``zstd -T0`` instead); gzip with ``pigz`` when installed,
else Python's zlib.  Measured by bench/layer_compress.py on this 2-core machine kind, 196 MiB of
mixed files, hashing included: the library 0.81-1.06 s vs the binary 1.07-1.78 s (floor
``zstd -3 -T0`` into /dev/null, no hashing: 0.65-1.24 s), ratio 2.29; only on a machine loaded
~5x over its cores did the binary win.  Default levels: zstd 3, gzip 6.  Output is
deterministic for one engine and level (gzip headers carry no name or time).  The blob file is
a work file (its reader stores it elsewhere), so it is not fsynced: waiting for the disk would
cost a commit seconds per GB for nothing.

Errors::

    CompressError   the compressor failed or the file could not be written (disk full…)
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import queue
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, BinaryIO, Literal, Protocol

import zstandard

from devbox_node_shim.spool import Spool

__all__ = [
    "GZIP_MEDIA_TYPE",
    "ZSTD_MEDIA_TYPE",
    "CompressError",
    "CompressedLayer",
    "LayerCompressor",
    "compress_stream",
]

ZSTD_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+zstd"
GZIP_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
CHUNK = 1 << 20
_SMALL = 64 << 10
Compression = Literal["zstd", "gzip"]
Engine = Literal["auto", "binary", "library"]


class CompressError(Exception):
    """Compressing the layer failed (the compressor died, or the file could not be written)."""


@dataclass(frozen=True)
class CompressedLayer:
    """A compressed layer blob on disk and what a manifest and config need to know of it."""

    path: Path
    media_type: str
    digest: str
    """sha256 of the compressed blob (``sha256:<hex>``)."""
    diff_id: str
    """sha256 of the uncompressed tar (``sha256:<hex>``)."""
    size: int
    """Compressed size in bytes."""
    uncompressed_size: int


class _Sink(Protocol):
    def write(self, data: bytes) -> object: ...


class _HashingFile:
    """Writes to a file, hashing and counting what passes."""

    def __init__(self, file: IO[bytes] | Spool) -> None:
        self.file = file
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.file.write(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        self.file.flush()


class LayerCompressor:
    """A binary sink that compresses into ``dest``; see the module docstring."""

    def __init__(
        self,
        dest: str | os.PathLike[str],
        *,
        compression: Compression = "zstd",
        level: int | None = None,
        engine: Engine = "auto",
        progress: Callable[[int], None] | None = None,
        follow: bool = False,
    ) -> None:
        self.path = Path(dest)
        self.compression = compression
        self.progress = progress
        self.result: CompressedLayer | None = None
        self._diff = hashlib.sha256()
        # The diff_id is hashed by a thread of its own (hashlib drops the GIL on large
        # buffers): the thread feeding the compressor only reads files and hands bytes over.
        self._hashing: queue.Queue[bytes | None] = queue.Queue(maxsize=16)
        self._hasher = threading.Thread(target=self._hash, name="layer-diff-id", daemon=True)
        self._taken = 0
        self._pending = bytearray()
        self._process: subprocess.Popen[bytes] | None = None
        self._pump: threading.Thread | None = None
        self._pump_error: BaseException | None = None
        self._writer: _Sink | None = None
        self._closer: Callable[[], None] | None = None
        self._binary = ""
        binary = {"zstd": "zstd", "gzip": "pigz"}[compression]
        # zstd: the library (measured faster than piping through ``zstd -T0``, see the module
        # docstring); gzip: pigz when installed (Python's zlib is single-threaded).
        use_binary = engine == "binary" or (
            engine == "auto" and compression == "gzip" and shutil.which(binary) is not None
        )
        self._spool: Spool | None = None
        self._file: IO[bytes] | Spool
        try:
            if follow:
                self._file = self._spool = Spool(self.path)
            else:
                self._file = open(self.path, "wb")  # noqa: SIM115 - closed by finish()/abort()
        except OSError as exc:
            raise CompressError(f"cannot create {self.path}: {exc.strerror}") from exc
        self._out = _HashingFile(self._file)
        try:
            if use_binary:
                self._start_binary(binary, level)
            else:
                self._start_library(level)
        except BaseException:
            self._file.close()
            self.path.unlink(missing_ok=True)
            raise
        self._hasher.start()

    # --- engines -----------------------------------------------------------------------------

    def _start_library(self, level: int | None) -> None:
        if self.compression == "zstd":
            compressor = zstandard.ZstdCompressor(level=level or 3, threads=-1)
            writer = compressor.stream_writer(
                self._out,  # type: ignore[arg-type]  # any object with write() will do
                write_size=CHUNK,
                closefd=False,
            )
            self._writer = writer

            def close_zstd() -> None:
                writer.flush(zstandard.FLUSH_FRAME)
                writer.close()  # type: ignore[no-untyped-call]

            self._closer = close_zstd
        else:
            gz = gzip.GzipFile(
                filename="",
                mode="wb",
                fileobj=self._out,
                compresslevel=level or 6,
                mtime=0,
            )
            self._writer = gz
            self._closer = gz.close

    def _start_binary(self, binary: str, level: int | None) -> None:
        if binary == "zstd":
            command = ["zstd", f"-{level or 3}", "-T0", "-q", "-c", "--no-progress"]
        else:
            command = ["pigz", f"-{level or 6}", "-n", "-c"]
        try:
            self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        except OSError as exc:
            raise CompressError(f"cannot start {binary}: {exc.strerror}") from exc
        self._binary = binary
        process = self._process
        stdout = process.stdout
        assert stdout is not None

        def pump() -> None:
            try:
                while chunk := stdout.read(CHUNK):
                    self._out.write(chunk)
            except BaseException as exc:
                # Nobody reads the compressor's output any more: stop it, or it blocks forever.
                self._pump_error = exc
                process.kill()

        self._pump = threading.Thread(target=pump, name=f"{binary}-output", daemon=True)
        self._pump.start()
        stdin = self._process.stdin
        assert stdin is not None
        self._writer = stdin
        self._closer = stdin.close

    # --- the sink ----------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Take uncompressed bytes; all of them are consumed.

        Small writes (tar headers, small files) are gathered up to 1 MiB first, so hashing,
        the pipe and ``progress`` see few large pieces.
        """
        if self._writer is None:
            raise CompressError("the compressor is closed")
        size = len(data)
        if size < _SMALL:
            self._pending += data
            if len(self._pending) >= CHUNK:
                self._push(bytes(self._pending))
                self._pending.clear()
            return size
        if self._pending:
            self._push(bytes(self._pending))
            self._pending.clear()
        self._push(data if isinstance(data, bytes) else bytes(data))
        return size

    def _push(self, data: bytes) -> None:
        if self._writer is None or not self._hasher.is_alive():
            raise CompressError("the compressor is closed")  # (aborted by another thread)
        self._hashing.put(data)
        try:
            self._writer.write(data)
        except (OSError, zstandard.ZstdError) as exc:
            raise self._failure(exc) from exc
        self._taken += len(data)
        if self.progress is not None:
            self.progress(self._taken)

    def _hash(self) -> None:
        while (data := self._hashing.get()) is not None:
            self._diff.update(data)

    def _hashed(self) -> None:
        """Wait for the diff_id thread to hash everything handed to it, and end it."""
        if self._hasher.is_alive():
            self._hashing.put(None)
            self._hasher.join()

    def flush(self) -> None:
        """Nothing to do (``finish()`` flushes); present for file-like callers."""

    def _failure(self, exc: BaseException) -> CompressError:
        if self._pump_error is not None:
            exc = self._pump_error
        if isinstance(exc, OSError) and exc.strerror:
            return CompressError(f"cannot write the compressed layer {self.path}: {exc.strerror}")
        return CompressError(f"compressing the layer failed: {exc}")

    def finish(self) -> CompressedLayer:
        """Flush the compressor, close the file; the layer's description."""
        if self.result is not None:
            return self.result
        try:
            if self._pending and self._writer is not None:
                self._push(bytes(self._pending))
                self._pending.clear()
            if self._closer is not None:
                self._closer()
            self._writer = None
            if self._process is not None:
                status = self._process.wait()
                if self._pump is not None:
                    self._pump.join()
                if self._pump_error is not None:
                    raise self._failure(self._pump_error)
                if status != 0:
                    raise CompressError(f"{self._binary} exited with status {status}")
            self._file.close()  # (not fsynced: see the module docstring)
        except (OSError, zstandard.ZstdError) as exc:
            self.abort()
            raise self._failure(exc) from exc
        except BaseException:
            self.abort()
            raise
        self._hashed()
        media_type = ZSTD_MEDIA_TYPE if self.compression == "zstd" else GZIP_MEDIA_TYPE
        self.result = CompressedLayer(
            path=self.path,
            media_type=media_type,
            digest="sha256:" + self._out.hash.hexdigest(),
            diff_id="sha256:" + self._diff.hexdigest(),
            size=self._out.size,
            uncompressed_size=self._taken,
        )
        return self.result

    def abort(self) -> None:
        """Stop compressing and delete the partial file (safe to call more than once)."""
        self._writer = None
        self._hashed()
        if self._process is not None:
            if self._process.stdin is not None and not self._process.stdin.closed:
                with contextlib.suppress(OSError):
                    self._process.stdin.close()
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait()
        if self._pump is not None:
            self._pump.join()
        if self._spool is not None:
            self._spool.fail(CompressError("compressing the layer was aborted"))
        else:
            self._file.close()
        self.path.unlink(missing_ok=True)

    def follow(self) -> Iterator[bytes]:
        """The compressed bytes as they are written (``follow=True``); see the module doc."""
        if self._spool is None:
            raise CompressError("this compressor was not made with follow=True")
        return self._spool.chunks()

    def __enter__(self) -> LayerCompressor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.finish()
        else:
            self.abort()


def compress_stream(
    source: BinaryIO,
    dest: str | os.PathLike[str],
    *,
    compression: Compression = "zstd",
    level: int | None = None,
    engine: Engine = "auto",
    progress: Callable[[int], None] | None = None,
) -> CompressedLayer:
    """Compress everything ``source.read()`` gives into ``dest``; the layer's description."""
    with LayerCompressor(
        dest, compression=compression, level=level, engine=engine, progress=progress
    ) as sink:
        while chunk := source.read(CHUNK):
            sink.write(chunk)
    assert sink.result is not None
    return sink.result
