"""Who holds a TCP port on 127.0.0.1, and whether it can be bound."""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

import psutil

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class PortHolder:
    """The process listening on a port, as far as the kernel tells us."""

    port: int
    pid: int | None
    name: str
    cmdline: str

    def describe(self) -> str:
        if self.pid is None:
            return f"port {self.port} is in use by a process opslab cannot see"
        return f"port {self.port} is in use by pid {self.pid} ({self.name})"


def _process_info(pid: int | None) -> tuple[str, str]:
    if pid is None:
        return "unknown", ""
    try:
        proc = psutil.Process(pid)
        return proc.name(), " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "unknown", ""


def listener(port: int) -> PortHolder | None:
    """The process listening on TCP ``port`` on any local address, or None if the port is free."""
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            name, cmdline = _process_info(conn.pid)
            return PortHolder(port, conn.pid, name, cmdline)
    if not can_bind(port):
        return PortHolder(port, None, "unknown", "")
    return None


def can_bind(port: int, host: str = LOOPBACK) -> bool:
    """Whether a listening socket could be bound to ``host:port`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def free_port() -> int:
    """A loopback port nothing listens on right now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])
