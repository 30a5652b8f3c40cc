"""Ports for tests that need nothing listening."""

from __future__ import annotations

import socket

__all__ = ["closed_port"]


def closed_port() -> int:
    """A loopback port nothing listens on (bound to an ephemeral port, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
