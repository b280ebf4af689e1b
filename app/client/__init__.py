"""``devboxctl``'s client side: the commands a user or a script runs against an API server.

Modules: ``_config`` (server URL and token in ``~/.config/devbox/config.toml``, mode 0600),
``_graphql`` (queries and mutations over httpx, subscriptions over ``graphql-transport-ws``),
``_documents`` (the GraphQL documents), ``_wait`` (waiting for a phase with progress),
``_proxy`` (``ssh-proxy``: stdin/stdout ↔ the tunnel WebSocket), ``_ssh`` (the managed
``~/.ssh/devbox/config``, keys, the ``Include`` line) and ``_commands`` (the typer commands,
merged into ``devboxctl`` by :mod:`app.cli`).

Errors (each ends ``devboxctl`` with its :class:`ExitCode`)::

    ClientError               1  anything the user should read
     ├── UsageError           2  a command line that cannot work
     ├── NotFound             3  no such devbox / runtime (or not visible to the token)
     ├── AuthError            4  not logged in, or the token is refused / not allowed
     ├── Unavailable          5  the server cannot be reached or is not ready
     ├── Timeout              6  --wait / watch --timeout gave up
     └── OperationFailed      1  the server refused the input or the operation failed
"""

from app.client._commands import app
from app.client._errors import (
    AuthError,
    ClientError,
    ExitCode,
    NotFound,
    OperationFailed,
    Timeout,
    Unavailable,
    UsageError,
)

__all__ = [
    "AuthError",
    "ClientError",
    "ExitCode",
    "NotFound",
    "OperationFailed",
    "Timeout",
    "Unavailable",
    "UsageError",
    "app",
]
