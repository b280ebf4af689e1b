"""A uvicorn server that leaves signal handling to its owner.

``devboxctl serve`` runs several servers (API, simulated cluster) in one process and stops
them together on Ctrl-C; uvicorn's own handlers would catch the signal for one server only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import uvicorn


class EmbeddedServer(uvicorn.Server):
    """uvicorn.Server without its own signal handlers; set ``should_exit`` to stop it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
