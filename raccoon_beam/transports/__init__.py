"""Transports: one small interface, one implementation per protocol.

The endpoint URL's scheme picks the implementation (``grpc``/``grpcs``,
``http``/``https``, ``ws``/``wss``); :class:`RaccoonClient` drives whichever
:func:`open_transport` returns without knowing which it holds.
"""

from __future__ import annotations

from raccoon_beam.transports.base import (
    DEFAULT_CONN_ID_HEADER,
    DEFAULT_CONN_ID_PREFIX,
    DEFAULT_EVENTS_PATH,
    DEFAULT_GROUP_HEADER,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_TIMEOUT,
    KIND_GRPC,
    KIND_REST,
    KIND_WEBSOCKET,
    Endpoint,
    TlsOptions,
    Transport,
    TransportConfig,
    parse_endpoint,
)
from raccoon_beam.transports.client import RaccoonClient, open_transport

__all__ = [
    "Transport",
    "TransportConfig",
    "TlsOptions",
    "Endpoint",
    "parse_endpoint",
    "open_transport",
    "RaccoonClient",
    "KIND_GRPC",
    "KIND_REST",
    "KIND_WEBSOCKET",
    "DEFAULT_TIMEOUT",
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_CONN_ID_HEADER",
    "DEFAULT_GROUP_HEADER",
    "DEFAULT_CONN_ID_PREFIX",
    "DEFAULT_EVENTS_PATH",
]
