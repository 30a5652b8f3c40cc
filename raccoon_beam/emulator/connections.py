"""A cap on the HTTP port's open connections, so that slow clients cannot exhaust the file descriptors.

Slow clients (partial headers, a declared body that never comes: slowloris)
each hold a socket. Timeouts end them (``EmulatorConfig.read_timeout``), but
until then enough of them would use up the process's file descriptors, and
the emulator would stop accepting anyone (EMFILE). :class:`ConnectionGate`
wraps aiohttp's protocol factory and counts the connections it makes.

At the cap, a new connection closes the open one that made no progress for
longest: progress is an answer sent (a request read in full) or, on a
WebSocket, a frame received. A connection that never made progress may give
way at any age, oldest first, so a newcomer always gets in while slow
clients hold the port; a connection that made progress (a real client) gives
way only once it has been quiet for :data:`MIN_QUIET_SECONDS`. When every
connection made progress within that time, the newcomer is answered 503 with
``Retry-After`` and closed. Either way the port keeps accepting, and a real
client keeps being served.

No minimum age protects a connection that never made progress: slow clients
that reconnect as fast as connections come of age would then keep every
place young, and a real client would find the port full at each attempt.
"""

from __future__ import annotations

import asyncio
import resource
from typing import Any, Callable, Dict, Optional

__all__ = [
    "ConnectionGate",
    "default_connection_cap",
    "MIN_QUIET_SECONDS",
    "FD_RESERVE",
    "AT_CAPACITY_RESPONSE",
]

# A client that made progress and then went quiet for a second is idle
# between requests: it may give its place to a newcomer.
MIN_QUIET_SECONDS = 1.0
# File descriptors left to everything else when the cap is derived from the
# process's limit: the gRPC port and its connections, the capture file, the
# loop's own, the Python runtime's.
FD_RESERVE = 64
# Connections the listener takes from the kernel's queue at once: asyncio
# accepts up to its backlog in one go, before the cap can close any of them,
# so the derived cap leaves room for one such burst.
ACCEPT_BACKLOG = 32
_AT_CAPACITY_TEXT = b"the emulator is at its connection cap (max_http_connections); retry shortly\n"
AT_CAPACITY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\n"
    b"Content-Type: text/plain\r\nContent-Length: " + str(len(_AT_CAPACITY_TEXT)).encode() + b"\r\n\r\n"
    + _AT_CAPACITY_TEXT
)


def default_connection_cap() -> int:
    """Three quarters of the file descriptors the process may open beyond :data:`FD_RESERVE` and one burst of
    :data:`ACCEPT_BACKLOG` accepts (at least 16)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(16, (soft - FD_RESERVE - ACCEPT_BACKLOG) * 3 // 4)


class _Counted(asyncio.Protocol):
    """aiohttp's protocol for one connection, with the time it last made progress (or was opened)."""

    __slots__ = ("inner", "gate", "transport", "progress", "progressed", "upgraded", "evicted")

    def __init__(self, inner: asyncio.Protocol, gate: "ConnectionGate") -> None:
        self.inner = inner
        self.gate = gate
        self.transport: Optional[asyncio.Transport] = None
        self.progress = gate.loop.time()
        self.progressed = False  # ever answered: a real client, not (yet) a slow one
        self.upgraded = False  # a WebSocket: each frame received is progress
        self.evicted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.inner.connection_made(transport)
        if self.evicted:  # gave way in the same burst of accepts that made it
            transport.abort()

    def evict(self) -> None:
        """Closes the socket now, not after a closing handshake (or as soon as it is made)."""
        self.evicted = True
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.upgraded:
            self.progress = self.gate.loop.time()
        self.inner.data_received(data)

    def eof_received(self) -> Optional[bool]:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.gate.forget(self)
        self.inner.connection_lost(exc)


class _AtCapacity(asyncio.Protocol):
    """Answers 503 and closes: the cap is reached and no connection could give way."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(AT_CAPACITY_RESPONSE)
        transport.close()


class ConnectionGate:
    """The protocol factory of the HTTP port: aiohttp's, with a cap on open connections.

    Args:
      factory: aiohttp's protocol factory (``AppRunner.server``).
      cap: the most connections open at once.
    """

    def __init__(self, factory: Callable[[], Any], cap: int) -> None:
        if cap < 1:
            raise ValueError(f"the connection cap must be >= 1, not {cap}")
        self.factory = factory
        self.cap = cap
        self.loop = asyncio.get_running_loop()
        # aiohttp's protocol of each open connection -> its counted wrapper.
        self.open: Dict[Any, _Counted] = {}
        self.evicted = 0
        self.refused = 0

    def __call__(self) -> asyncio.Protocol:
        if len(self.open) >= self.cap and not self._make_room():
            self.refused += 1
            return _AtCapacity()
        inner = self.factory()
        counted = self.open[inner] = _Counted(inner, self)
        return counted

    def answered(self, protocol: Any, status: int) -> None:
        """Records progress on the connection of aiohttp's ``protocol``: an answer of ``status`` is going out."""
        counted = self.open.get(protocol)
        if counted is not None:
            counted.progress = self.loop.time()
            counted.progressed = True
            counted.upgraded = status == 101

    def forget(self, counted: _Counted) -> None:
        """Drops a closed connection from the count."""
        if self.open.get(counted.inner) is counted:
            del self.open[counted.inner]

    def _make_room(self) -> bool:
        """Closes the connection without progress for longest among those that may give way; whether it did."""
        now = self.loop.time()
        may_give_way = [c for c in self.open.values() if not c.progressed or now - c.progress >= MIN_QUIET_SECONDS]
        if not may_give_way:
            return False
        stalest = min(may_give_way, key=lambda c: c.progress)
        self.forget(stalest)
        stalest.evict()
        self.evicted += 1
        return True
