"""The client's exceptions, each with the exit code ``devboxctl`` ends with."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes a script can rely on."""

    OK = 0
    ERROR = 1
    """Anything else: the server refused the input (user errors), a failed operation…"""
    USAGE = 2
    """Bad command line (also typer's own code for it)."""
    NOT_FOUND = 3
    """No such devbox, runtime or release."""
    AUTH = 4
    """Not logged in, or the token is unknown, expired, revoked or not allowed."""
    UNAVAILABLE = 5
    """The server cannot be reached or is not ready."""
    TIMEOUT = 6
    """``--wait`` gave up before the operation finished."""


class ClientError(Exception):
    """A problem ``devboxctl`` reports in one line and ends with ``exit_code``."""

    exit_code: ExitCode = ExitCode.ERROR


class UsageError(ClientError):
    """The command line asks for something impossible."""

    exit_code = ExitCode.USAGE


class NotFound(ClientError):
    """The named object does not exist (or is not visible to this token)."""

    exit_code = ExitCode.NOT_FOUND


class AuthError(ClientError):
    """Not logged in, or the server refused the token."""

    exit_code = ExitCode.AUTH


class Unavailable(ClientError):
    """The server cannot be reached, or answered with a server error."""

    exit_code = ExitCode.UNAVAILABLE


class Timeout(ClientError):
    """Waiting for an operation to finish took too long."""

    exit_code = ExitCode.TIMEOUT


class OperationFailed(ClientError):
    """The server reported that the operation (or the input) failed."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code
