"""A protocol spoken to the wrong port: recognised at once and named in words.

An endpoint whose scheme does not match what its port speaks can never work,
yet the libraries report it as something transient or unreadable: aiohttp
reads a gRPC server's HTTP/2 frames as a "bad status line" of escaped bytes,
gRPC reads an HTTP/1.1 answer as a failed connection, and a TLS port that
hangs up on plain text looks like a server that went away. Each of those is
turned here into one :attr:`~raccoon_beam.errors.FailureKind.PROTOCOL`
failure (permanent: one attempt) that says what the port answered and which
scheme to use, e.g. ``127.0.0.1:8081 answered with HTTP/2 (gRPC?); use
grpc://127.0.0.1:8081``.

Two cases the first answer cannot tell, because the server closes without
a word (as a restarting server does): plain text to a TLS port, and HTTP/1.1
over TLS to a gRPC server's TLS port. There, TLS handshakes (no certificate
check, nothing sent) ask the port what it speaks, once per transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import List, Optional

from raccoon_beam.errors import FailureKind, SendFailure
from raccoon_beam.transports.config import TransportConfig
from raccoon_beam.transports.endpoint import DEFAULT_EVENTS_PATH, KIND_GRPC, Endpoint

__all__ = [
    "HTTP2_START",
    "http2_answer",
    "http1_answer",
    "no_http2_over_tls",
    "plain_text_answer",
    "tls_port",
    "http2_only_over_tls",
    "speaks_tls",
    "only_http2_over_tls",
    "PortCheck",
    "GRPC_HTTP1_MARKERS",
    "GRPC_NO_H2_MARKER",
    "WRONG_VERSION_MARKER",
]

# An HTTP/2 peer's first bytes are a frame header whose 24-bit length starts
# with two zero bytes (a SETTINGS frame is a few dozen bytes); an HTTP/1.x
# status line starts with "HTTP/". aiohttp shows the bytes escaped.
HTTP2_START = "\\x00\\x00"
# What gRPC says when an HTTP/1.x server answered its HTTP/2 preface.
GRPC_HTTP1_MARKERS = ("http1.x server", "expected settings frame")
# What gRPC says when a TLS server did not agree to HTTP/2 (ALPN h2): a
# plain HTTPS server (REST/WebSocket), not a gRPC one.
GRPC_NO_H2_MARKER = "missing selected alpn property"
# OpenSSL's words for a TLS client reading bytes that are no TLS record.
WRONG_VERSION_MARKER = "wrong_version_number"
_TLS_SCHEMES = {"grpc": "grpcs", "http": "https", "ws": "wss"}
_PLAIN_SCHEMES = {tls: plain for plain, tls in _TLS_SCHEMES.items()}


def _failure(text: str) -> SendFailure:
    return SendFailure(FailureKind.PROTOCOL, text)


def _other_url(endpoint: Endpoint, scheme: str) -> str:
    path = "" if scheme.startswith("grpc") else (endpoint.path if endpoint.kind != KIND_GRPC else DEFAULT_EVENTS_PATH)
    return f"{scheme}://{endpoint.authority}{path}"


def http2_answer(endpoint: Endpoint) -> SendFailure:
    """An ``http(s)://`` or ``ws(s)://`` endpoint answered with HTTP/2 frames."""
    scheme = "grpcs" if endpoint.tls else "grpc"
    return _failure(
        f"{endpoint.authority} answered with HTTP/2 (gRPC?); use {_other_url(endpoint, scheme)}"
    )


def _http_schemes(endpoint: Endpoint) -> str:
    rest, ws = ("https", "wss") if endpoint.tls else ("http", "ws")
    return f"{_other_url(endpoint, rest)} (REST) or {_other_url(endpoint, ws)} (WebSocket)"


def http1_answer(endpoint: Endpoint) -> SendFailure:
    """A ``grpc://`` endpoint answered with HTTP/1.1 (a REST/WebSocket port)."""
    return _failure(
        f"{endpoint.authority} answered with HTTP/1.1, not HTTP/2: not a gRPC port; use {_http_schemes(endpoint)}",
    )


def no_http2_over_tls(endpoint: Endpoint) -> SendFailure:
    """A ``grpcs://`` endpoint's TLS server did not offer HTTP/2 (ALPN h2): an HTTPS port."""
    return _failure(
        f"{endpoint.authority} does not offer HTTP/2 over TLS (ALPN h2): not a gRPC port; "
        f"use {_http_schemes(endpoint)}",
    )


def plain_text_answer(endpoint: Endpoint, detail: str) -> str:
    """The words for a TLS endpoint whose port answered in plain text (kept a TLS failure)."""
    plain = _other_url(endpoint, _PLAIN_SCHEMES.get(endpoint.scheme, endpoint.scheme))
    return f"{endpoint.authority} answered in plain text, not TLS; use {plain} ({detail})"


def http2_only_over_tls(endpoint: Endpoint) -> SendFailure:
    """An ``https://`` or ``wss://`` endpoint whose TLS port speaks only HTTP/2 (a gRPC server)."""
    return _failure(f"{endpoint.authority} offers only HTTP/2 over TLS (gRPC?); use {_other_url(endpoint, 'grpcs')}")


def tls_port(endpoint: Endpoint) -> SendFailure:
    """A plain-text endpoint whose port speaks TLS."""
    secure = _other_url(endpoint, _TLS_SCHEMES.get(endpoint.scheme, endpoint.scheme))
    return _failure(f"{endpoint.authority} speaks TLS, not plain text; use {secure}")


async def _handshake(config: TransportConfig, alpn: Optional[List[str]] = None) -> Optional[str]:
    """Completes a TLS handshake with the endpoint's port: certificates unchecked, nothing sent.

    Args:
      config: the transport's configuration (host, port, timeout).
      alpn: the application protocols to offer, if any.

    Returns:
      The protocol the server selected ("" for none), or None when the
      handshake failed or timed out for any reason.
    """
    endpoint = config.parsed_endpoint
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only asks what the port speaks
    if alpn:
        context.set_alpn_protocols(alpn)
    writer: Optional[asyncio.StreamWriter] = None
    try:
        _, opened = await asyncio.wait_for(
            asyncio.open_connection(endpoint.host, endpoint.port, ssl=context), config.timeout
        )
        writer = opened
        tls = opened.get_extra_info("ssl_object")
        return (tls.selected_alpn_protocol() if tls is not None else None) or ""
    except (OSError, ssl.SSLError, asyncio.TimeoutError, ValueError):
        return None
    finally:
        if writer is not None:
            writer.transport.abort()  # no close_notify exchange: the probe leaves at once
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def speaks_tls(config: TransportConfig) -> bool:
    """Whether the endpoint's port completes a TLS handshake."""
    return await _handshake(config) is not None


async def only_http2_over_tls(config: TransportConfig) -> bool:
    """Whether the port agrees to HTTP/2 over TLS and not to HTTP/1.1: a gRPC server, not an HTTPS one."""
    if await _handshake(config, ["h2"]) != "h2":
        return False
    return await _handshake(config, ["http/1.1"]) != "http/1.1"


class PortCheck:
    """Asks a port that hung up without a word, once, what it speaks; concurrent failures share the answer.

    A plain-text endpoint's port is asked whether it speaks TLS; an
    ``https://`` or ``wss://`` endpoint's port whether it speaks only HTTP/2
    over TLS (a gRPC server). Never through a proxy (the port is the
    proxy's concern), and never for ``grpcs://`` (gRPC reports its own).

    Args:
      config: the transport's configuration.
    """

    def __init__(self, config: TransportConfig) -> None:
        self._config = config
        self._answer: Optional["asyncio.Future[Optional[SendFailure]]"] = None

    def worth_asking(self, disconnected: bool) -> bool:
        """Whether a failure may be a protocol mismatch: hung up on without an answer, no proxy."""
        endpoint = self._config.parsed_endpoint
        return (
            disconnected
            and self._config.proxy is None
            and not (endpoint.tls and endpoint.kind == KIND_GRPC)
        )

    async def _ask(self) -> Optional[SendFailure]:
        endpoint = self._config.parsed_endpoint
        if not endpoint.tls:
            return tls_port(endpoint) if await speaks_tls(self._config) else None
        return http2_only_over_tls(endpoint) if await only_http2_over_tls(self._config) else None

    async def failure(self) -> Optional[SendFailure]:
        """The PROTOCOL failure when the port speaks another protocol, else None."""
        if self._answer is None:
            self._answer = asyncio.ensure_future(self._ask())
        failure = await asyncio.shield(self._answer)
        # Each caller raises its own exception (a traceback per failed request).
        return SendFailure.carrying(failure.failure) if failure is not None else None

    async def close(self) -> None:
        """Ends a check still in progress (the transport is closing)."""
        answer = self._answer
        if answer is not None and not answer.done():
            answer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await answer
