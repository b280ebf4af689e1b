"""Open TCP connections of a process's network namespace, read from ``/proc/<pid>/net``.

``/proc/<pid>/net/tcp`` and ``tcp6`` list the sockets of the network namespace the process
``pid`` lives in (the node-shim needs the host's PID namespace to see a container's process).
No calls to services here.

::

    ProcessGone    ``/proc/<pid>`` does not exist (the process exited, or is not visible)
"""

from __future__ import annotations

from pathlib import Path

PROC = Path("/proc")
ESTABLISHED = "01"
"""The ``st`` column of an ESTABLISHED socket (include/net/tcp_states.h: TCP_ESTABLISHED)."""


class ProcessGone(Exception):
    """The process's ``/proc`` entry does not exist."""

    def __init__(self, message: str, *, pid: int) -> None:
        super().__init__(message)
        self.pid = pid


def count_established(table: str, port: int) -> int:
    """ESTABLISHED sockets with local port ``port`` in one ``/proc/net/tcp``-style table."""
    count = 0
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != ESTABLISHED:
            continue
        _address, _, local_port = fields[1].rpartition(":")
        if local_port and int(local_port, 16) == port:
            count += 1
    return count


def established(pid: int, port: int, *, proc: Path = PROC) -> int:
    """ESTABLISHED TCP (v4 and v6) connections whose local port is ``port``, in the network
    namespace of process ``pid``."""
    net = proc / str(pid) / "net"
    total = 0
    for name in ("tcp", "tcp6"):
        try:
            table = (net / name).read_text()
        except FileNotFoundError as exc:
            if not (proc / str(pid)).exists():
                raise ProcessGone(f"no process {pid} in {proc}", pid=pid) from exc
            continue  # no IPv6 in this kernel or namespace
        total += count_established(table, port)
    return total
