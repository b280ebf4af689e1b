"""A file written by one thread and read, as it grows, by another.

The commit uses it so that work need not wait for the step before it to finish: the layer
compressor writes the compressed blob into a spool (``LayerCompressor(follow=True)``) while the
registry upload and the content-store write follow it, reading what is already written.  So a
commit costs about ``max(compress, upload)`` instead of their sum.

API::

    spool = Spool(path)
    spool.write(data) / spool.close() / spool.fail(exc)   writer side (``write`` is file-like)
    for chunk in spool.chunks(): ...                      reader side; ends after close(),
                                                          raises SpoolAborted after fail()

Errors::

    SpoolAborted   the writer failed; the reader stops
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

CHUNK = 1 << 20
PUBLISH_EVERY = 1 << 20
"""The writer makes its bytes visible to the reader every this many bytes (and at close)."""


class SpoolAborted(Exception):
    """The writer failed; what was spooled is incomplete."""


class Spool:
    """See the module docstring."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = path.open("wb")
        self._cond = threading.Condition()
        self._visible = 0
        self._pending = 0
        self._closed = False
        self._failure: BaseException | None = None

    @property
    def size(self) -> int:
        """Bytes written and visible to the reader."""
        with self._cond:
            return self._visible

    def write(self, data: bytes) -> int:
        self._file.write(data)
        self._pending += len(data)
        if self._pending >= PUBLISH_EVERY:
            self._publish()
        return len(data)

    def flush(self) -> None:
        """File-like; publishing happens by size and at close."""

    def _publish(self) -> None:
        self._file.flush()
        with self._cond:
            self._visible += self._pending
            self._pending = 0
            self._cond.notify_all()

    def close(self) -> None:
        """The writer is done: the reader gets the rest, then the end."""
        if self._closed:
            return
        self._publish()
        self._file.close()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def fail(self, exc: BaseException) -> None:
        """The writer failed: the reader raises :class:`SpoolAborted`."""
        if not self._file.closed:
            with contextlib.suppress(OSError):  # (a full disk fails the flush again)
                self._file.close()
        with self._cond:
            self._failure = exc
            self._cond.notify_all()

    def chunks(self) -> Iterator[bytes]:
        """Everything written, in order, as it becomes visible; ends after ``close()``."""
        position = 0
        with self.path.open("rb") as reader:
            while True:
                with self._cond:
                    while self._visible == position and not self._closed and self._failure is None:
                        self._cond.wait()
                    if self._failure is not None:
                        raise SpoolAborted(str(self._failure)) from self._failure
                    available = self._visible - position
                    if available == 0:
                        return
                while available > 0:
                    chunk = reader.read(min(CHUNK, available))
                    if not chunk:
                        raise SpoolAborted("the spool file is shorter than what was written")
                    position += len(chunk)
                    available -= len(chunk)
                    yield chunk
