"""Exception types and the dead-letter record of raccoon-beam.

One small hierarchy: everything the package raises on purpose is a
:class:`RaccoonError`. Failures to deliver a request are :class:`SendFailure`
values that carry the facts a transport observed (Raccoon code, HTTP status,
gRPC status, network error, timeout, malformed response); deciding what to do
about them is :func:`raccoon_beam.retry.classify`'s job alone.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

__all__ = [
    "RaccoonError",
    "SerializationError",
    "WireFormatError",
    "SendFailure",
    "DeliveryError",
    "RaccoonDeadLetter",
    "STAGE_SERIALIZE",
    "STAGE_VALIDATE",
    "STAGE_SEND",
]

STAGE_SERIALIZE = "serialize"
STAGE_VALIDATE = "validate"
STAGE_SEND = "send"


class RaccoonError(Exception):
    """Base class of every error raised by raccoon-beam."""


class SerializationError(RaccoonError, ValueError):
    """An element could not be turned into event bytes (or an event type)."""


class WireFormatError(RaccoonError, ValueError):
    """A body is not a valid SendEventRequest/SendEventResponse in its wire type."""


class SendFailure(RaccoonError):
    """A request was not acknowledged; carries what the transport observed.

    Attributes:
      message: a readable description, free of credentials.
      raccoon_code: the ``Code`` of a decoded SendEventResponse, if any.
      http_status: the HTTP status of a REST response, if any.
      grpc_status: the name of the gRPC status code (e.g. ``"UNAVAILABLE"``).
      network: the connection failed, was refused, reset or dropped.
      timeout: no answer arrived within the request timeout.
      malformed: an answer arrived but is not a Raccoon response.
      retry_after: seconds the server asked the client to wait, if it did.
      reconnect: the connection must be replaced before the next attempt
        (e.g. WebSocket duplicate connection id).
      tls_error: the server's certificate failed verification (untrusted
        certificate, host name mismatch) or the TLS files cannot be loaded: a
        configuration problem, not a transient one. Other TLS failures (a
        handshake dropped by a load balancer) are ``network`` failures.
      too_large: the server or a proxy refused the request for its size
        (e.g. WebSocket close 1009).
      reason: the ``reason`` of a decoded Raccoon error response, if any.
      unexpected: not a failure the transport recognised, but an exception
        of another kind that escaped it (a bug, or a library error nobody
        anticipated); the message names its type.
    """

    def __init__(
        self,
        message: str,
        *,
        raccoon_code: Optional[int] = None,
        http_status: Optional[int] = None,
        grpc_status: Optional[str] = None,
        network: bool = False,
        timeout: bool = False,
        malformed: bool = False,
        retry_after: Optional[float] = None,
        reconnect: bool = False,
        tls_error: bool = False,
        too_large: bool = False,
        reason: Optional[str] = None,
        unexpected: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.raccoon_code = raccoon_code
        self.http_status = http_status
        self.grpc_status = grpc_status
        self.network = network
        self.timeout = timeout
        self.malformed = malformed
        self.retry_after = retry_after
        self.reconnect = reconnect
        self.tls_error = tls_error
        self.too_large = too_large
        self.reason = reason
        self.unexpected = unexpected

    @property
    def code(self) -> Optional[Any]:
        """The most specific status the server gave: Raccoon code, HTTP or gRPC status."""
        if self.raccoon_code is not None:
            return self.raccoon_code
        if self.http_status is not None:
            return self.http_status
        return self.grpc_status

    def __repr__(self) -> str:
        facts = {
            name: value
            for name, value in vars(self).items()
            if name != "message" and value not in (None, False)
        }
        return f"SendFailure({self.message!r}, {facts})"


class DeliveryError(RaccoonError):
    """Raised in a bundle when the user asked failures to fail the bundle."""


class RaccoonDeadLetter(NamedTuple):
    """An element that was not delivered, and why.

    Attributes:
      element: the input element, unchanged.
      event_type: the event type, when it could be computed.
      stage: ``"serialize"``, ``"validate"`` or ``"send"``.
      error: a readable reason, free of credentials.
      code: the Raccoon code, HTTP status or gRPC status name, when there was one.
      attempts: how many requests carried the element (0 before sending).
      req_guid: the guid of the last request that carried it, if any.
    """

    element: Any
    event_type: Optional[str]
    stage: str
    error: str
    code: Optional[Any] = None
    attempts: int = 0
    req_guid: Optional[str] = None
