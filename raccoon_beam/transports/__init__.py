"""Transports: one small interface, one implementation per protocol.

The endpoint URL's scheme picks the implementation (``grpc``/``grpcs``,
``http``/``https``, ``ws``/``wss``): :func:`open_transport` returns it, and
its user never knows which one it holds. Transports import only the wire,
the errors and the protocol facts; what a failure means is decided upstream.

* :mod:`~raccoon_beam.transports.endpoint`: endpoint URLs;
* :mod:`~raccoon_beam.transports.config`: :class:`TransportConfig` and :class:`TlsOptions`;
* :mod:`~raccoon_beam.transports.base`: the :class:`Transport` interface;
* :mod:`~raccoon_beam.transports.acks`: what counts as an ack, Retry-After;
* :mod:`~raccoon_beam.transports.redaction`: credentials out of every message;
* :mod:`~raccoon_beam.transports.grpc`, :mod:`~raccoon_beam.transports.rest`,
  :mod:`~raccoon_beam.transports.websocket`: the protocols.
"""

from __future__ import annotations

from raccoon_beam.transports.acks import check_response, parse_retry_after
from raccoon_beam.transports.base import StartedSend, Transport, closed_failure, tls_files_failure
from raccoon_beam.transports.config import (
    DEFAULT_CONN_ID_HEADER,
    DEFAULT_CONN_ID_PREFIX,
    DEFAULT_GROUP_HEADER,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_SECRET_HEADERS,
    DEFAULT_TIMEOUT,
    TlsOptions,
    TransportConfig,
)
from raccoon_beam.transports.endpoint import (
    DEFAULT_EVENTS_PATH,
    KIND_GRPC,
    KIND_REST,
    KIND_WEBSOCKET,
    Endpoint,
    parse_endpoint,
)
from raccoon_beam.transports.redaction import redact

__all__ = [
    "Transport",
    "StartedSend",
    "TransportConfig",
    "TlsOptions",
    "Endpoint",
    "parse_endpoint",
    "open_transport",
    "check_response",
    "parse_retry_after",
    "redact",
    "closed_failure",
    "tls_files_failure",
    "KIND_GRPC",
    "KIND_REST",
    "KIND_WEBSOCKET",
    "DEFAULT_TIMEOUT",
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_CONN_ID_HEADER",
    "DEFAULT_GROUP_HEADER",
    "DEFAULT_CONN_ID_PREFIX",
    "DEFAULT_EVENTS_PATH",
    "DEFAULT_SECRET_HEADERS",
]


def open_transport(config: TransportConfig) -> Transport:
    """The transport for ``config``'s endpoint scheme.

    The transport opens no connection yet: it does so on the loop of its
    first :meth:`~Transport.send`.
    """
    kind = config.kind
    if kind == KIND_GRPC:
        from raccoon_beam.transports.grpc import GrpcTransport

        return GrpcTransport(config)
    if kind == KIND_REST:
        from raccoon_beam.transports.rest import RestTransport

        return RestTransport(config)
    if kind == KIND_WEBSOCKET:
        from raccoon_beam.transports.websocket import WebSocketTransport

        return WebSocketTransport(config)
    raise ValueError(f"no transport for endpoint kind {kind!r}")  # parse_endpoint prevents this
