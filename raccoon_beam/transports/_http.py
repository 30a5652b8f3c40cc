"""What the REST and WebSocket transports share: aiohttp sessions and errors."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any, Dict, Optional

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError

from raccoon_beam.errors import FailureKind, SendFailure
from raccoon_beam.transports import TransportConfig, redact, tls_files_failure
from raccoon_beam.transports.mismatch import HTTP2_START, WRONG_VERSION_MARKER, http2_answer, plain_text_answer

__all__ = [
    "new_session",
    "request_options",
    "client_error_failure",
    "is_certificate_failure",
    "RedirectRefused",
]


class RedirectRefused(aiohttp.ClientResponseError):
    """A request (a WebSocket upgrade) was answered with a redirect: never followed."""


async def _refuse_redirect(
    _session: aiohttp.ClientSession, _context: Any, params: aiohttp.TraceRequestRedirectParams
) -> None:
    """Stops aiohttp before it follows a redirect (its ``on_request_redirect`` signal).

    ``ws_connect`` has no ``allow_redirects``: it would resend the upgrade,
    with every header of ours, to wherever the answer points (another
    origin, or plain text after ``wss://``). REST passes
    ``allow_redirects=False`` and never gets here.
    """
    response = params.response
    response.close()
    raise RedirectRefused(
        response.request_info, (), status=response.status, message="redirect not followed", headers=response.headers
    )


def new_session(config: TransportConfig, *, limit: int, total_timeout: bool) -> aiohttp.ClientSession:
    """An aiohttp session for ``config``'s endpoint; call on the loop that will use it.

    Raises:
      SendFailure: the TLS files cannot be loaded (``tls_error``).

    Args:
      config: the transport configuration (TLS, timeout).
      limit: the most connections the session keeps open at once.
      total_timeout: bound each request by ``config.timeout`` as a whole
        (REST); False bounds only connecting (a WebSocket lives on).
    """
    endpoint = config.parsed_endpoint
    ssl_option: Any = False
    failure: Optional[SendFailure] = None
    if endpoint.tls:
        try:
            ssl_option = config.tls.ssl_context()
        except (OSError, ssl.SSLError, ValueError) as exc:
            failure = tls_files_failure(config, exc)
    if failure is not None:
        raise failure
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0, ssl=ssl_option)
    if total_timeout:
        timeout = aiohttp.ClientTimeout(total=config.timeout)
    else:
        timeout = aiohttp.ClientTimeout(total=None, connect=config.timeout, sock_connect=config.timeout)
    no_redirects = aiohttp.TraceConfig()
    no_redirects.on_request_redirect.append(_refuse_redirect)
    # trust_env=False: no proxy or netrc from the environment sneaks in
    # (an explicit proxy goes with each request: request_options).
    return aiohttp.ClientSession(
        connector=connector, timeout=timeout, trust_env=False, auto_decompress=True, trace_configs=[no_redirects]
    )


# Texts of OpenSSL/Python errors that mean the peer's certificate was refused.
_CERTIFICATE_MARKERS = ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed", "hostname mismatch")


def is_certificate_failure(exc: BaseException) -> bool:
    """Whether ``exc`` says the server's certificate failed verification.

    Untrusted certificate, host name mismatch or a pinned fingerprint that
    does not match: a configuration problem (``tls_error``). Other TLS errors
    are not.
    """
    if isinstance(exc, (aiohttp.ClientConnectorCertificateError, aiohttp.ServerFingerprintMismatch)):
        return True
    seen = set()
    current: Optional[BaseException] = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        if isinstance(current, (ssl.SSLError, aiohttp.ClientSSLError)):
            text = str(current).lower()
            if any(marker.lower() in text for marker in _CERTIFICATE_MARKERS):
                return True
        current = getattr(current, "os_error", None) or current.__cause__ or current.__context__
    return False


def _handshake_cut_off(exc: BaseException) -> bool:
    """Whether a TLS error is the connection ending mid-handshake (transient), not TLS refusing."""
    current: Optional[BaseException] = exc
    seen = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionError)):
            return True
        current = getattr(current, "os_error", None) or current.__cause__ or current.__context__
    return False


def answered_with_http2(exc: BaseException) -> bool:
    """Whether aiohttp failed to parse an answer because it was HTTP/2 frames (a gRPC port)."""
    current: Optional[BaseException] = exc
    seen = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, HttpProcessingError):
            return HTTP2_START in str(current.message)
        current = current.__cause__ or current.__context__
    return False


def request_options(config: TransportConfig) -> Dict[str, Any]:
    """Per-request aiohttp options: the TLS name to verify (when not the host's) and the proxy, if any."""
    options: Dict[str, Any] = {}
    if config.parsed_endpoint.tls and config.tls.server_hostname:
        options["server_hostname"] = config.tls.server_hostname
    if config.proxy is not None:
        options["proxy"] = config.proxy
    return options


def client_error_failure(
    exc: BaseException,
    config: TransportConfig,
    *,
    http_status: Optional[int] = None,
    retry_after: Optional[float] = None,
) -> SendFailure:
    """Turns an aiohttp/asyncio/OS error into a SendFailure with the right facts.

    Args:
      exc: the error raised while sending or reading.
      config: the configuration (for redaction and the endpoint's name).
      http_status: the status of the response, if one had arrived.
      retry_after: its Retry-After, in seconds, if any.
    """
    endpoint = config.parsed_endpoint.redacted
    detail = redact(str(exc) or type(exc).__name__, config)
    status: Dict[str, Any] = {"http_status": http_status, "retry_after": retry_after}
    if is_certificate_failure(exc):
        return SendFailure(FailureKind.TLS, f"TLS certificate of {endpoint} not accepted: {detail}", **status)
    if isinstance(exc, (aiohttp.ClientSSLError, ssl.SSLError)) and not _handshake_cut_off(exc):
        # A handshake TLS refused (https:// to a plain-text port, no common
        # protocol version): no retry can make it pass.
        if WRONG_VERSION_MARKER in detail.lower():  # the port answered with no TLS record at all
            detail = plain_text_answer(config.parsed_endpoint, detail)
        return SendFailure(FailureKind.TLS, f"TLS handshake with {endpoint} failed: {detail}", **status)
    if answered_with_http2(exc):
        return http2_answer(config.parsed_endpoint)
    if isinstance(exc, aiohttp.ClientResponseError) and isinstance(exc.__cause__, HttpProcessingError):
        # aiohttp could not parse the answer (not HTTP at all) and made up a
        # status 400 for it: that is no bad request of ours.
        return SendFailure(FailureKind.MALFORMED, f"the answer of {endpoint} is not HTTP: {detail}")
    if isinstance(exc, aiohttp.ClientResponseError):
        # e.g. a WebSocket upgrade answered 403 (Origin check) or 404.
        status["http_status"] = exc.status or http_status
        if exc.status is not None and 300 <= exc.status < 400:
            # Never followed: the request would carry our headers to another
            # origin (or in plain text after wss://). A 3xx is permanent.
            detail = (
                "redirects are never followed (they would carry the headers elsewhere); "
                "give the endpoint the server itself answers on"
            )
        elif isinstance(exc, aiohttp.WSServerHandshakeError) and exc.status is not None and exc.status < 300:
            # Answered, but not with the upgrade: no WebSocket endpoint there;
            # no retry changes that (retry.classify: PERMANENT).
            detail = f"not a WebSocket upgrade ({detail}): is this a WebSocket endpoint?"
        return SendFailure(FailureKind.REFUSED, f"HTTP {exc.status} from {endpoint}: {detail}", **status)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return SendFailure(FailureKind.MALFORMED, f"truncated response from {endpoint}: {detail}", **status)
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return SendFailure(FailureKind.TIMEOUT, f"no answer from {endpoint} within {config.timeout:g} s", **status)
    if isinstance(exc, aiohttp.ClientConnectorError) and not isinstance(exc, aiohttp.ClientSSLError):
        # Refused, no such host, no route: nothing was written (TLS errors,
        # some of them connector errors too, were sorted out above).
        return SendFailure(
            FailureKind.UNREACHABLE, f"cannot connect to {endpoint}: {type(exc).__name__}: {detail}", **status
        )
    return SendFailure(
        FailureKind.NETWORK, f"connection to {endpoint} failed: {type(exc).__name__}: {detail}", **status
    )
