"""Ports for tests that need nothing listening."""

from __future__ import annotations

import socket

__all__ = ["closed_port", "HeldPort"]


def closed_port() -> int:
    """A loopback port nothing listens on (bound to an ephemeral port, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class HeldPort:
    """A loopback port bound but not listening, until :meth:`release`: for a server that comes up later.

    Connections to it are refused meanwhile, as to a closed port; but unlike
    a port released at once, no other socket can take it, not even the
    client's own connection attempts as their source port (a connection to
    itself would then hold the port the server is to listen on).
    """

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]

    def release(self) -> None:
        """Frees the port for the server (call it right before starting the server)."""
        self._sock.close()
