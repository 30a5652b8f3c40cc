"""The transport interface, and the failures every transport reports alike.

A :class:`Transport` sends one :class:`~raccoon_beam.wire.EncodedRequest` and
returns the server's successful ``SendEventResponse``, or raises a
:class:`~raccoon_beam.errors.SendFailure` carrying a
:class:`~raccoon_beam.errors.Failure`. It never decides what a failure means:
that is :func:`raccoon_beam.retry.classify`'s job.
"""

from __future__ import annotations

import abc
from typing import Callable, Dict, Optional

from raccoon_beam._proto import raccoon_pb2
from raccoon_beam.errors import FailureKind, SendFailure
from raccoon_beam.transports.config import TransportConfig
from raccoon_beam.transports.credentials import HeaderValues
from raccoon_beam.transports.endpoint import KIND_GRPC, Endpoint
from raccoon_beam.wire import EncodedRequest

__all__ = ["Transport", "StartedSend", "closed_failure", "tls_files_failure"]


class StartedSend(abc.ABC):
    """A send started from the caller's thread by :meth:`Transport.begin`, answered on another."""

    generation: int = 0
    """The generation of the credential values it carries (see ``HeaderValues.refresh``)."""

    @abc.abstractmethod
    def add_done_callback(self, callback: Callable[[], None]) -> None:
        """Calls ``callback()`` once the server answered or the send failed, on whichever thread saw it
        (at once, on this thread, if that has happened already)."""

    @abc.abstractmethod
    def response(self) -> Optional[raccoon_pb2.SendEventResponse]:
        """Once done: the server's successful response, or None when it is anything else.

        Cheap and synchronous (any thread): what went wrong is for :meth:`settle`.
        """

    @abc.abstractmethod
    async def settle(self) -> raccoon_pb2.SendEventResponse:
        """Waits, on the transport's loop, for the answer; returns the successful response.

        Raises:
          SendFailure: the request was not acknowledged with STATUS_SUCCESS.
        """

    @abc.abstractmethod
    def cancel(self) -> None:
        """Gives up on the answer (the request may still have reached the server)."""


class Transport(abc.ABC):
    """Sends encoded requests to one Raccoon endpoint over one protocol.

    A transport lives on one asyncio loop: it is created anywhere, but opens
    its channel, session or connection lazily inside :meth:`send`, on the
    loop that calls it. Requests may be sent concurrently.
    """

    conn_id: str = ""
    """The id of the connection requests go out on now (set by each transport)."""

    def __init__(self, config: TransportConfig) -> None:
        self.config = config
        self.endpoint = config.parsed_endpoint
        self.credentials = HeaderValues(config.headers, grpc=config.kind == KIND_GRPC, where=self.endpoint.redacted)
        """The header values, providers resolved on first use; refreshed by the sender on a 401."""

    async def request_headers(self, conn_id: str) -> Dict[str, str]:
        """Every header of a request on connection ``conn_id``, credentials resolved.

        Raises:
          SendFailure: a credential provider gave no usable value.
        """
        return self.config.request_headers(conn_id, await self.credentials.current())

    @property
    def can_begin(self) -> bool:
        """Whether :meth:`begin` may start a send now (a cheap check, from any thread)."""
        return False

    def begin(self, request: EncodedRequest) -> Optional[StartedSend]:
        """Starts sending ``request`` on the calling thread, or returns None when this transport cannot.

        For a transport whose library runs its own I/O threads (gRPC), a
        send started here costs no hand-over to the transport's loop.
        None (the default) when a send needs the loop: the connection is
        not open yet, a credential provider must be read, and so on. Call it
        only when :attr:`can_begin` says so.
        """
        return None

    @abc.abstractmethod
    async def send(self, request: EncodedRequest) -> raccoon_pb2.SendEventResponse:
        """Sends ``request`` and returns the server's successful response.

        Raises:
          SendFailure: the request was not acknowledged with STATUS_SUCCESS.
        """

    def acknowledged_on(self, request: EncodedRequest) -> str:
        """The id of the connection that acknowledged ``request``; called once, right after its send succeeded.

        :attr:`conn_id` unless the transport knows better: a WebSocket
        connection can be replaced (with a new id) between the ack and the
        moment its sender reads it.
        """
        return self.conn_id

    @abc.abstractmethod
    async def close(self) -> None:
        """Releases every connection; pending requests fail with a SendFailure."""

    async def __aenter__(self) -> "Transport":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.endpoint.redacted})"


def closed_failure(endpoint: Endpoint) -> SendFailure:
    """The failure of a request sent to, or pending on, a closed transport."""
    return SendFailure(FailureKind.NETWORK, f"transport to {endpoint.redacted} is closed")


def tls_files_failure(config: TransportConfig, exc: BaseException) -> SendFailure:
    """The failure of a transport whose certificate or key files cannot be loaded.

    A configuration error, hence ``FailureKind.TLS`` (PERMANENT): retrying cannot help.
    """
    return SendFailure(
        FailureKind.TLS,
        f"cannot load the TLS files {list(config.tls.files())} for {config.parsed_endpoint.redacted}: "
        f"{type(exc).__name__}: {exc}",
    )
