"""Exception types and the dead-letter record of raccoon-beam.

One small hierarchy: everything the package raises on purpose is a
:class:`RaccoonError`. A request that was not acknowledged is described by a
:class:`Failure` value (a :class:`FailureKind` and the server's status),
which transports raise inside a :class:`SendFailure`; deciding what to do
about it is :func:`raccoon_beam.retry.classify`'s job alone.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, NamedTuple, Optional

__all__ = [
    "RaccoonError",
    "SerializationError",
    "WireFormatError",
    "FailureKind",
    "Failure",
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


class FailureKind(enum.Enum):
    """What went wrong with a request, as the transport saw it.

    The kind says what happened; :func:`raccoon_beam.retry.classify` alone
    decides what that means (retry, split or give up).
    """

    REFUSED = "refused"
    """The server answered with an error status (Raccoon code, HTTP or gRPC status)."""
    UNREACHABLE = "unreachable"
    """No connection could be opened (refused, DNS failure, no route): the
    request was certainly not written."""
    NETWORK = "network"
    """The connection failed, was reset or dropped, after the request may have been written."""
    TIMEOUT = "timeout"
    """No answer arrived within the request timeout."""
    MALFORMED = "malformed"
    """An answer arrived but it is not a Raccoon response."""
    TOO_LARGE = "too_large"
    """The server or a proxy refused the request for its size (e.g. WebSocket close 1009)."""
    TLS = "tls"
    """TLS cannot work as configured: an untrusted certificate, a host name
    mismatch, a failed handshake (e.g. ``https://`` to a plain-text port) or
    unreadable certificate files."""
    PROTOCOL = "protocol"
    """The port speaks another protocol than the endpoint's scheme says (HTTP/2,
    that is gRPC, on an ``http://`` or ``ws://`` port; HTTP/1.1 on a ``grpc://``
    one; TLS where plain text was expected): a configuration error, and
    nothing was published."""
    CREDENTIALS = "credentials"
    """A header's credential provider gave no value (an unset variable, an
    unreadable file, the function raised): retried, as a secret may be
    mounted late or its source be briefly down."""
    UNEXPECTED = "unexpected"
    """An exception nobody anticipated escaped the transport (a bug, or a library error)."""


@dataclasses.dataclass(frozen=True)
class Failure:
    """Why a request was not acknowledged: a value, free of credentials.

    Attributes:
      kind: what happened.
      message: a readable description.
      raccoon_code: the ``Code`` of a decoded Raccoon error response, if any.
      http_status: the HTTP status of the answer, if any.
      grpc_status: the name of the gRPC status code (e.g. ``"UNAVAILABLE"``), if any.
      reason: the ``reason`` of a decoded Raccoon error response, if any.
      retry_after: seconds the server asked the client to wait, if it did.
    """

    kind: FailureKind
    message: str
    raccoon_code: Optional[int] = None
    http_status: Optional[int] = None
    grpc_status: Optional[str] = None
    reason: Optional[str] = None
    retry_after: Optional[float] = None

    @property
    def code(self) -> Optional[str]:
        """The most specific status the server gave, in one format, or None.

        ``"raccoon:2"`` (a Raccoon ``Code``), ``"http:503"`` (an HTTP status)
        or ``"grpc:UNAVAILABLE"`` (a gRPC status name): one string type,
        whatever the transport, so that dead letters have one schema.
        """
        if self.raccoon_code is not None:
            return f"raccoon:{self.raccoon_code}"
        if self.http_status is not None:
            return f"http:{self.http_status}"
        if self.grpc_status is not None:
            return f"grpc:{self.grpc_status}"
        return None

    @property
    def outcome_unknown(self) -> bool:
        """Whether the server may have published the request although no acknowledgement came.

        True for a timeout, and for a connection lost after the request may
        have been written (dropped or reset mid-request): the retry of such
        a request may be a duplicate, and its dead letter may describe
        events that did arrive. False when the server answered (a refusal,
        a malformed answer, a WebSocket connection refused with a Raccoon
        code) or the request never left (``UNREACHABLE``, TLS failures).
        """
        if self.kind is FailureKind.TIMEOUT:
            return True
        return self.kind is FailureKind.NETWORK and self.raccoon_code is None


class SendFailure(RaccoonError):
    """Raised by a transport when a request is not acknowledged; carries the :class:`Failure`.

    Args:
      kind: what happened.
      message: a readable description, free of credentials.
      **status: the other fields of :class:`Failure` (the server's status and ``retry_after``).
    """

    def __init__(self, kind: FailureKind, message: str, **status: Any) -> None:
        super().__init__(message)
        self.failure = Failure(kind, message, **status)

    @classmethod
    def carrying(cls, failure: Failure) -> "SendFailure":
        """The exception of a :class:`Failure` already made (the retry loop raises values it was given)."""
        error = cls.__new__(cls)
        RaccoonError.__init__(error, failure.message)
        error.failure = failure
        return error

    def __repr__(self) -> str:
        return f"SendFailure({self.failure!r})"


class DeliveryError(RaccoonError):
    """Raised in a bundle when the user asked failures to fail the bundle."""


class RaccoonDeadLetter(NamedTuple):
    """An element that was not acknowledged, and why.

    Attributes:
      element: the input element, unchanged; or, when the element itself
        cannot be encoded by the runner (a lock, a generator, a cycle, an
        object nested too deeply), a stand-in with its type name and a
        bounded repr.
      event_type: the event type, when it could be computed.
      stage: ``"serialize"``, ``"validate"`` or ``"send"``.
      error: a readable reason, free of credentials.
      code: the server's status in one format, ``"raccoon:2"``,
        ``"http:503"`` or ``"grpc:UNAVAILABLE"``; None when there was none.
      attempts: how many requests carried the element (0 before sending).
      req_guid: the guid of the last request that carried it, if any.
      delivered: False when the event was certainly not published; None
        when the outcome is unknown (an attempt timed out, or its
        connection dropped after the request was written, even if a later
        attempt was refused: the server may have published it, so
        replaying the letter may publish it twice).
      payload: the serialized event bytes, when the element got that far.
    """

    element: Any
    event_type: Optional[str]
    stage: str
    error: str
    code: Optional[str] = None
    attempts: int = 0
    req_guid: Optional[str] = None
    delivered: Optional[bool] = False
    payload: Optional[bytes] = None
