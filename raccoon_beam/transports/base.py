"""The transport interface, its configuration, and what the transports share.

A :class:`Transport` sends one :class:`~raccoon_beam.wire.EncodedRequest` and
returns the server's successful ``SendEventResponse``, or raises a
:class:`~raccoon_beam.errors.SendFailure` carrying the facts it observed. It
never decides what a failure means: that is :func:`raccoon_beam.retry.classify`'s
job. The endpoint URL's scheme picks the implementation; everything a
transport needs besides the URL is in the picklable :class:`TransportConfig`.

The helpers below (endpoint parsing, header building, turning a decoded
response into a success or a failure, Retry-After parsing, redaction) are the
only copies of that logic: ``grpc.py``, ``rest.py`` and ``websocket.py`` call
them rather than repeating it.
"""

from __future__ import annotations

import abc
import base64
import dataclasses
import email.utils
import ipaddress
import math
import re
import ssl
import time
import urllib.parse
import uuid
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from raccoon_beam import protocol
from raccoon_beam._proto import raccoon_pb2
from raccoon_beam.errors import SendFailure
from raccoon_beam.wire import EncodedRequest, Wire

__all__ = [
    "Transport",
    "TransportConfig",
    "TlsOptions",
    "Endpoint",
    "parse_endpoint",
    "check_response",
    "closed_failure",
    "parse_retry_after",
    "redact",
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

KIND_GRPC = "grpc"
KIND_REST = "rest"
KIND_WEBSOCKET = "websocket"

# Generous on purpose: with synchronous acks Raccoon answers only once the
# batch is in Kafka, which takes seconds under back-pressure (the 1 s default
# of some official clients turns a slow broker into duplicate deliveries).
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_IN_FLIGHT = 4
DEFAULT_CONN_ID_HEADER = protocol.CONN_ID_HEADER
DEFAULT_GROUP_HEADER = protocol.GROUP_HEADER
DEFAULT_CONN_ID_PREFIX = "raccoon-beam"
DEFAULT_EVENTS_PATH = protocol.EVENTS_PATH
# Header values never shown in reprs, logs or failure messages.
DEFAULT_SECRET_HEADERS: Tuple[str, ...] = (
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "api-key",
)

_REDACTED = "***"

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
        userinfo = f"{_REDACTED}@" if self.username is not None else ""
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
            f"Raccoon endpoint {_redact_url_text(text)!r} has no scheme; "
            f"expected one of {', '.join(sorted(_SCHEMES))} (e.g. grpc://host:8081)"
        )
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError:
        # Not urllib's message: it quotes the part it could not read, which may be a password.
        raise ValueError(
            f"Raccoon endpoint {_redact_url_text(text)!r} is malformed: its port cannot be read "
            "(percent-encode '/', '?', '#' and '@' in a user name or password)"
        ) from None
    shown = _redact_url_text(text)
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


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    return len(host) <= 253 and all(_HOST_LABEL.match(label) for label in labels)


def _redact_url_text(text: str) -> str:
    # Works on unparseable URLs too: hide everything between "://" and the
    # last "@", since an unencoded password may hold "/", "?" or "#".
    return re.sub(r"(://).*@", r"\1" + _REDACTED + "@", text)


@dataclasses.dataclass(frozen=True)
class TlsOptions:
    """TLS settings for ``grpcs``, ``https`` and ``wss`` endpoints.

    Attributes:
      ca_certs: path of a PEM file of root certificates to trust instead of
        the system roots (e.g. a private CA).
      verify: verify the server's certificate and host name. Only REST and
        WebSocket can turn this off; gRPC always verifies.
      client_cert: path of a PEM client certificate chain, for mutual TLS.
      client_key: path of the PEM private key of ``client_cert``.
      server_hostname: the name to verify the certificate against, when it
        differs from the endpoint's host (e.g. connecting by IP address).
    """

    ca_certs: Optional[str] = None
    verify: bool = True
    client_cert: Optional[str] = None
    client_key: Optional[str] = None
    server_hostname: Optional[str] = None

    def __post_init__(self) -> None:
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("TlsOptions: client_cert and client_key must be given together")

    def ssl_context(self) -> Union[ssl.SSLContext, bool]:
        """The ``ssl`` argument for aiohttp (REST and WebSocket).

        Raises:
          ValueError: a certificate file cannot be read.
        """
        if self.verify:
            context = ssl.create_default_context(cafile=self.ca_certs)
        else:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.client_cert is not None:
            context.load_cert_chain(self.client_cert, self.client_key)
        return context

    def files(self) -> Tuple[str, ...]:
        """The certificate and key paths given (for error messages)."""
        return tuple(path for path in (self.ca_certs, self.client_cert, self.client_key) if path)

    def read_pem(self) -> Tuple[Optional[bytes], Optional[bytes], Optional[bytes]]:
        """``(root certificates, client key, client certificate chain)`` as bytes, for gRPC."""
        return (_read(self.ca_certs), _read(self.client_key), _read(self.client_cert))


def _read(path: Optional[str]) -> Optional[bytes]:
    if path is None:
        return None
    with open(path, "rb") as handle:
        return handle.read()


@dataclasses.dataclass(frozen=True)
class TransportConfig:
    """Everything a transport needs; a plain picklable value.

    Args:
      endpoint: the endpoint URL (see :func:`parse_endpoint`).
      wire: ``"protobuf"`` or ``"json"`` (JSON only over REST and WebSocket).
      timeout: seconds to wait for one request's answer (gRPC deadline, HTTP
        total timeout, WebSocket deadline over the frame's send and its ack;
        it also sets the WebSocket heartbeat, capped at 30 s).
      headers: extra headers sent with every request (gRPC metadata, lower-cased).
      conn_id_header: the header carrying the connection id
        (``SERVER_WEBSOCKET_CONN_ID_HEADER`` of the server).
      conn_id_prefix: prefix of generated connection ids.
      conn_id: a fixed connection id instead of a generated one.
      group: the connection group, sent in ``group_header`` when given.
      group_header: the header carrying the group
        (``SERVER_WEBSOCKET_CONN_GROUP_HEADER`` of the server).
      tls: TLS options for ``grpcs``, ``https`` and ``wss``.
      max_in_flight: the most requests a client sends at once.
      secret_headers: names of headers whose values are never shown.

    Raises:
      ValueError: the endpoint is malformed, the wire is unknown, JSON is
        asked over gRPC, a number is out of range, or (gRPC) a header value,
        the connection id, its prefix or the group is not printable ASCII.
    """

    endpoint: str
    wire: Union[Wire, str] = Wire.PROTOBUF
    timeout: float = DEFAULT_TIMEOUT
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    conn_id_header: str = DEFAULT_CONN_ID_HEADER
    conn_id_prefix: str = DEFAULT_CONN_ID_PREFIX
    conn_id: Optional[str] = None
    group: Optional[str] = None
    group_header: str = DEFAULT_GROUP_HEADER
    tls: TlsOptions = dataclasses.field(default_factory=TlsOptions)
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    secret_headers: Tuple[str, ...] = DEFAULT_SECRET_HEADERS

    def __post_init__(self) -> None:
        endpoint = parse_endpoint(self.endpoint)
        try:
            wire = Wire(self.wire.lower() if isinstance(self.wire, str) else self.wire)
        except ValueError:
            raise ValueError(f"wire must be 'protobuf' or 'json', got {self.wire!r}") from None
        if wire is Wire.JSON and endpoint.kind == KIND_GRPC:
            raise ValueError(
                f"wire='json' is not possible over gRPC ({endpoint.redacted}): gRPC is always protobuf; "
                "use wire='protobuf', or an http(s):// or ws(s):// endpoint"
            )
        if not (isinstance(self.timeout, (int, float)) and math.isfinite(self.timeout) and self.timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {self.timeout!r}")
        if not isinstance(self.max_in_flight, int) or self.max_in_flight < 1:
            raise ValueError(f"max_in_flight must be a positive integer, got {self.max_in_flight!r}")
        if not self.conn_id_header or not _is_token(self.conn_id_header):
            raise ValueError(f"conn_id_header must be a header name, got {self.conn_id_header!r}")
        if not self.group_header or not _is_token(self.group_header):
            raise ValueError(f"group_header must be a header name, got {self.group_header!r}")
        headers = dict(self.headers or {})
        for name, value in headers.items():
            if not isinstance(name, str) or not _is_token(name):
                raise ValueError(f"header name {name!r} is not a valid header name")
            if not isinstance(value, str) or "\n" in value or "\r" in value:
                raise ValueError(f"header {name!r} must have a single-line string value")
        if endpoint.kind == KIND_GRPC:
            _check_grpc_metadata(headers, self.conn_id_prefix, self.conn_id, self.group)
        if endpoint.tls is False and (self.tls.ca_certs or self.tls.client_cert):
            raise ValueError(f"TLS options given for a plain-text endpoint {endpoint.redacted}")
        if endpoint.kind == KIND_GRPC and endpoint.tls and not self.tls.verify:
            raise ValueError("gRPC cannot turn TLS verification off; give TlsOptions(ca_certs=...) instead")
        # Normalised copies: frozen, so set through object.__setattr__.
        object.__setattr__(self, "wire", wire)
        object.__setattr__(self, "headers", headers)
        object.__setattr__(self, "secret_headers", tuple(name.lower() for name in self.secret_headers))

    def __hash__(self) -> int:
        # The generated hash would fail on the headers dict.
        values = tuple(getattr(self, field.name) for field in dataclasses.fields(self))
        return hash(tuple(tuple(sorted(v.items())) if isinstance(v, dict) else v for v in values))

    @property
    def parsed_endpoint(self) -> Endpoint:
        """The endpoint, parsed (cheap; not cached so the config stays a plain value)."""
        return parse_endpoint(self.endpoint)

    @property
    def kind(self) -> str:
        """``"grpc"``, ``"rest"`` or ``"websocket"``."""
        return self.parsed_endpoint.kind

    def new_conn_id(self) -> str:
        """A connection id: the fixed ``conn_id``, or the prefix and a uuid4."""
        if self.conn_id is not None:
            return self.conn_id
        return f"{self.conn_id_prefix}-{uuid.uuid4().hex}"

    def request_headers(self, conn_id: str) -> Dict[str, str]:
        """The headers of every request: user headers, identity, group, credentials.

        The connection id and group are set last so that a user header of the
        same name cannot silently replace them.
        """
        headers = dict(self.headers)
        endpoint = self.parsed_endpoint
        if endpoint.username is not None and not any(k.lower() == "authorization" for k in headers):
            headers["Authorization"] = "Basic " + _basic_token(endpoint.username, endpoint.password)
        _set_header(headers, self.conn_id_header, conn_id)
        if self.group is not None:
            _set_header(headers, self.group_header, self.group)
        return headers

    def redact_headers(self, headers: Mapping[str, str]) -> Dict[str, str]:
        """A copy of ``headers`` with secret values replaced by ``***``."""
        return {k: (_REDACTED if k.lower() in self.secret_headers else v) for k, v in headers.items()}

    def __repr__(self) -> str:
        fields = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "endpoint":
                value = self.parsed_endpoint.redacted
            elif field.name == "headers":
                value = self.redact_headers(value)
            elif field.name == "wire":
                value = value.value
            fields.append(f"{field.name}={value!r}")
        return f"TransportConfig({', '.join(fields)})"


_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# What gRPC accepts in an ASCII (non "-bin") metadata value.
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")


def _check_grpc_metadata(
    headers: Mapping[str, str], conn_id_prefix: str, conn_id: Optional[str], group: Optional[str]
) -> None:
    """Rejects values gRPC cannot send as metadata, at construction.

    gRPC refuses a metadata value outside printable ASCII (unless its key
    ends in ``-bin``) with an error raised from deep inside the call; caught
    here it is a clear configuration error instead of a failure per request.
    The offending value is never quoted (it may be a credential).
    """
    for name, value in headers.items():
        if name.lower().endswith("-bin"):
            continue
        if not _PRINTABLE_ASCII.fullmatch(value):
            raise ValueError(
                f"header {name!r}: gRPC metadata values must be printable ASCII "
                "(or the key must end in '-bin'); the value has other characters"
            )
    for field, value in (("conn_id_prefix", conn_id_prefix), ("conn_id", conn_id), ("group", group)):
        if value is not None and (not isinstance(value, str) or not _PRINTABLE_ASCII.fullmatch(value)):
            raise ValueError(f"{field} {value!r} cannot be sent as gRPC metadata: it must be printable ASCII")


def _is_token(name: str) -> bool:
    return bool(_TOKEN.match(name))


def _set_header(headers: Dict[str, str], name: str, value: str) -> None:
    for key in [k for k in headers if k.lower() == name.lower()]:
        del headers[key]
    headers[name] = value


class Transport(abc.ABC):
    """Sends encoded requests to one Raccoon endpoint over one protocol.

    A transport lives on one asyncio loop: it is created anywhere, but opens
    its channel, session or connection lazily inside :meth:`send`, on the
    loop that calls it. Requests may be sent concurrently.
    """

    def __init__(self, config: TransportConfig) -> None:
        self.config = config
        self.endpoint = config.parsed_endpoint

    @abc.abstractmethod
    async def send(self, request: EncodedRequest) -> raccoon_pb2.SendEventResponse:
        """Sends ``request`` and returns the server's successful response.

        Raises:
          SendFailure: the request was not acknowledged with STATUS_SUCCESS.
        """

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
    return SendFailure(f"transport to {endpoint.redacted} is closed", network=True)


def tls_files_failure(config: TransportConfig, exc: BaseException) -> SendFailure:
    """The failure of a transport whose certificate or key files cannot be loaded.

    A configuration error, hence ``tls_error`` (PERMANENT): retrying cannot help.
    """
    return SendFailure(
        f"cannot load the TLS files {list(config.tls.files())} for {config.parsed_endpoint.redacted}: "
        f"{type(exc).__name__}: {exc}",
        tls_error=True,
    )


def check_response(
    response: raccoon_pb2.SendEventResponse,
    request: EncodedRequest,
    *,
    http_status: Optional[int] = None,
    retry_after: Optional[float] = None,
    reconnect: bool = False,
    config: Optional[TransportConfig] = None,
) -> raccoon_pb2.SendEventResponse:
    """Returns a successful response for ``request``; raises SendFailure otherwise.

    Shared by every transport so that "what counts as an ack" is decided once:
    STATUS_SUCCESS (with a 2xx status over HTTP) whose ``data.req_guid``, when
    present, is the request's. A response without a known status (e.g. an
    empty protobuf body) is not Raccoon's and is reported as malformed.

    Args:
      response: the decoded response.
      request: the request it answers.
      http_status: the HTTP status it came with (REST).
      retry_after: the server's Retry-After, in seconds, if any.
      reconnect: the connection carrying it must be replaced.
      config: the transport's configuration; the server's reason text is
        redacted with it.
    """
    facts: Dict[str, Any] = {"http_status": http_status, "retry_after": retry_after, "reconnect": reconnect}
    echoed = response.data.get("req_guid")
    if response.status == raccoon_pb2.STATUS_SUCCESS:
        if echoed and echoed != request.req_guid:
            raise SendFailure(
                f"acknowledgement for request {echoed!r} received for request {request.req_guid!r}",
                malformed=True,
                **facts,
            )
        if http_status is None or 200 <= http_status < 300:
            return response
        raise SendFailure(f"HTTP {http_status} with a success body", **facts)
    if response.status != raccoon_pb2.STATUS_ERROR:
        raise SendFailure(
            f"not a Raccoon response (status {response.status}){_http_suffix(http_status)}",
            malformed=True,
            **facts,
        )
    code_name = (
        raccoon_pb2.Code.Name(response.code)
        if response.code in raccoon_pb2.Code.values()
        else str(response.code)
    )
    shown = redact(response.reason, config) if config is not None else response.reason
    reason = f": {shown}" if shown else ""
    raccoon_code = response.code if response.code != raccoon_pb2.CODE_UNSPECIFIED else None
    raise SendFailure(
        f"Raccoon answered {code_name}{reason}{_http_suffix(http_status)}",
        raccoon_code=raccoon_code,
        reason=response.reason or None,
        **facts,
    )


def _http_suffix(http_status: Optional[int]) -> str:
    return f" (HTTP {http_status})" if http_status is not None else ""


def parse_retry_after(value: Optional[str], *, now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date).

    Args:
      value: the header value, or None.
      now: the current Unix time (for tests); defaults to ``time.time()``.

    Returns:
      A non-negative number of seconds, or None when absent or unreadable;
      it never raises.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DELTA_SECONDS.fullmatch(text):
        # Decimals are not RFC 9110, but some servers send them; harmless.
        seconds = float(text)
        return seconds if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
        if when is None or when.tzinfo is None:
            return None
        timestamp = when.timestamp()
    except (TypeError, ValueError, IndexError, OverflowError, OSError):
        return None
    current = time.time() if now is None else now
    return max(0.0, timestamp - current)


# delta-seconds, as ASCII digits only (str.isdigit would accept "²" or "٣").
_DELTA_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def redact(text: str, config: TransportConfig) -> str:
    """``text`` without the endpoint's credentials or the user's header values.

    Removed: the URL's password (plain and percent-encoded), the Basic
    authorization token built from the URL's ``user:password`` (whole and
    its base64 part), the values of secret headers, and the value of every
    other header given in ``config.headers`` that is at least
    :data:`_MIN_REDACTED_VALUE` characters long (shorter ones, such as
    ``"1"``, would mangle the text and cannot be credentials). The connection
    id and group are not secrets: messages name them on purpose.

    Library exceptions and servers' bodies may quote a URL or a header;
    failure messages end up in dead letters and logs, so they pass through
    here first.
    """
    endpoint = config.parsed_endpoint
    secrets = []
    for name, value in config.headers.items():
        if name.lower() in config.secret_headers or len(value) >= _MIN_REDACTED_VALUE:
            secrets.append(value)
    if endpoint.username is not None:
        token = _basic_token(endpoint.username, endpoint.password)
        secrets.extend(("Basic " + token, token))
    if endpoint.password:
        secrets.append(endpoint.password)
        secrets.append(urllib.parse.quote(endpoint.password, safe=""))
    # Longest first: a value that contains another is replaced whole.
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret:
            text = text.replace(secret, _REDACTED)
    return _redact_url_text(text)


# Header values shorter than this are left in messages (see redact).
_MIN_REDACTED_VALUE = 6


def _basic_token(username: str, password: Optional[str]) -> str:
    return base64.b64encode(f"{username}:{password or ''}".encode("utf-8")).decode("ascii")
