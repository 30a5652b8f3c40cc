"""Endpoint URLs: the scheme picks the transport; credentials never show."""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import re
import urllib.parse
from typing import Dict, Optional, Tuple

from raccoon_beam import protocol

__all__ = [
    "Endpoint",
    "parse_endpoint",
    "check_proxy",
    "redact_url",
    "basic_token",
    "REDACTED",
    "KIND_GRPC",
    "KIND_REST",
    "KIND_WEBSOCKET",
    "DEFAULT_EVENTS_PATH",
]

KIND_GRPC = "grpc"
KIND_REST = "rest"
KIND_WEBSOCKET = "websocket"

DEFAULT_EVENTS_PATH = protocol.EVENTS_PATH

REDACTED = "***"

# scheme -> (kind, tls, default port)
_SCHEMES: Dict[str, Tuple[str, bool, int]] = {
    "grpc": (KIND_GRPC, False, protocol.GRPC_PORT),
    "grpcs": (KIND_GRPC, True, 443),
    "http": (KIND_REST, False, protocol.HTTP_PORT),
    "https": (KIND_REST, True, 443),
    "ws": (KIND_WEBSOCKET, False, protocol.HTTP_PORT),
    "wss": (KIND_WEBSOCKET, True, 443),
}
_HOST_LABEL = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """A parsed endpoint URL.

    Credentials given in the URL (``user:password@``) are kept in fields that
    never appear in ``repr`` or in :attr:`redacted`; transports send them as
    HTTP basic authentication.

    Attributes:
      scheme: ``grpc``, ``grpcs``, ``http``, ``https``, ``ws`` or ``wss``.
      host: host name or IP address (IPv6 without brackets).
      port: the port, defaulted by scheme when the URL has none.
      path: the request path (REST and WebSocket); ``""`` for gRPC.
      tls: whether the connection uses TLS.
      kind: ``"grpc"``, ``"rest"`` or ``"websocket"``.
    """

    scheme: str
    host: str
    port: int
    path: str
    tls: bool
    kind: str
    username: Optional[str] = dataclasses.field(default=None, repr=False, compare=False)
    password: Optional[str] = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def authority(self) -> str:
        """``host:port``, with brackets around an IPv6 address."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The URL to connect to, without credentials."""
        return f"{self.scheme}://{self.authority}{self.path}"

    @property
    def redacted(self) -> str:
        """The URL for logs and messages: credentials replaced by ``***``."""
        userinfo = f"{REDACTED}@" if self.username is not None else ""
        return f"{self.scheme}://{userinfo}{self.authority}{self.path}"

    def __str__(self) -> str:
        return self.redacted


def parse_endpoint(url: str) -> Endpoint:
    """Parses an endpoint URL; the scheme picks the transport.

    Accepted forms: ``grpc://host[:port]``, ``grpcs://host[:port]``,
    ``http(s)://host[:port][/path]``, ``ws(s)://host[:port][/path]``. REST and
    WebSocket default to the path ``/api/v1/events``.

    Args:
      url: the endpoint URL.

    Returns:
      The parsed :class:`Endpoint`.

    Raises:
      ValueError: the URL is malformed or its scheme is unknown. The message
        never contains the URL's password.
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"Raccoon endpoint must be a non-empty URL string, got {type(url).__name__}")
    text = url.strip()
    if "://" not in text:
        raise ValueError(
            f"Raccoon endpoint {redact_url(text)!r} has no scheme; "
            f"expected one of {', '.join(sorted(_SCHEMES))} (e.g. grpc://host:8081)"
        )
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError:
        # Not urllib's message: it quotes the part it could not read, which may be a password.
        raise ValueError(
            f"Raccoon endpoint {redact_url(text)!r} is malformed: its port cannot be read "
            "(percent-encode '/', '?', '#' and '@' in a user name or password)"
        ) from None
    shown = redact_url(text)
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise ValueError(
            f"Raccoon endpoint {shown!r} has unknown scheme {parts.scheme!r}; "
            f"expected one of {', '.join(sorted(_SCHEMES))}"
        )
    kind, tls, default_port = _SCHEMES[scheme]
    host = parts.hostname
    if not host:
        raise ValueError(f"Raccoon endpoint {shown!r} has no host")
    if not _valid_host(host):
        raise ValueError(f"Raccoon endpoint {shown!r} has an invalid host {host!r}")
    if port == 0:
        raise ValueError(f"Raccoon endpoint {shown!r} has port 0")
    if parts.query or parts.fragment:
        raise ValueError(f"Raccoon endpoint {shown!r} must not have a query or fragment")
    path = parts.path
    if kind == KIND_GRPC:
        if path not in ("", "/"):
            raise ValueError(
                f"Raccoon endpoint {shown!r}: a gRPC endpoint has no path "
                f"(the method is {protocol.SEND_EVENT_METHOD})"
            )
        path = ""
    elif path in ("", "/"):
        path = DEFAULT_EVENTS_PATH
    username = urllib.parse.unquote(parts.username) if parts.username is not None else None
    password = urllib.parse.unquote(parts.password) if parts.password is not None else None
    return Endpoint(
        scheme=scheme,
        host=host,
        port=port if port is not None else default_port,
        path=path,
        tls=tls,
        kind=kind,
        username=username,
        password=password,
    )


def check_proxy(url: str) -> str:
    """Checks a proxy URL: ``http://[user:password@]host:port``; returns it stripped.

    One form for the three transports: gRPC only speaks to HTTP proxies
    (``CONNECT``), and an explicit port leaves nothing to each library's
    different default.

    Raises:
      ValueError: the URL is not of that form. The message never contains
        the URL's password.
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"proxy must be a non-empty URL string, got {url!r}")
    text = url.strip()
    shown = redact_url(text)
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError(f"proxy {shown!r} is malformed: its port cannot be read") from None
    if parts.scheme.lower() != "http":
        raise ValueError(f"proxy {shown!r} must be an http:// URL (an HTTP proxy that supports CONNECT)")
    if not parts.hostname or not _valid_host(parts.hostname) or not port:
        raise ValueError(f"proxy {shown!r} must name a host and a port: http://host:port")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"proxy {shown!r} must have no path, query or fragment")
    return text


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    return len(host) <= 253 and all(_HOST_LABEL.match(label) for label in labels)


def redact_url(text: str) -> str:
    """``text`` with every URL's user info (between ``://`` and the last ``@``) replaced by ``***``."""
    # Works on unparseable URLs too: hide everything between "://" and the
    # last "@", since an unencoded password may hold "/", "?" or "#".
    return re.sub(r"(://).*@", r"\1" + REDACTED + "@", text)


def basic_token(username: str, password: Optional[str]) -> str:
    """The token of HTTP basic authentication for ``username:password``."""
    return base64.b64encode(f"{username}:{password or ''}".encode("utf-8")).decode("ascii")
