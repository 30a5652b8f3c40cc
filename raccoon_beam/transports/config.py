"""The transports' configuration: a plain, picklable, validated value.

Everything a transport needs besides the URL is in :class:`TransportConfig`;
it checks every setting when it is made, so that a bad one fails before the
pipeline runs rather than on a worker.
"""

from __future__ import annotations

import dataclasses
import re
import ssl
import uuid
from typing import Dict, Mapping, Optional, Tuple, Union

from raccoon_beam import protocol
from raccoon_beam._checks import is_positive_number
from raccoon_beam.transports.credentials import CredentialProvider, HeaderValue, check_header_value, header_value
from raccoon_beam.transports.endpoint import (
    KIND_GRPC,
    REDACTED,
    Endpoint,
    basic_token,
    check_proxy,
    parse_endpoint,
    redact_url,
)
from raccoon_beam.wire import Wire

__all__ = [
    "TransportConfig",
    "TlsOptions",
    "DEFAULT_TIMEOUT",
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_CONN_ID_HEADER",
    "DEFAULT_GROUP_HEADER",
    "DEFAULT_CONN_ID_PREFIX",
    "DEFAULT_SECRET_HEADERS",
]

# Generous on purpose: with synchronous acks Raccoon answers only once the
# batch is in Kafka, which takes seconds under back-pressure (the 1 s default
# of some official clients turns a slow broker into duplicate deliveries).
DEFAULT_TIMEOUT = 30.0
# Enough requests in flight that a round trip overlaps the next batches, few
# enough that a fleet of worker processes does not fill Raccoon's buffer of
# requests (100 by default) on its own.
DEFAULT_MAX_IN_FLIGHT = 4
# X-User-ID: the connection-id header of Raccoon's sample configuration
# (SERVER_WEBSOCKET_CONN_ID_HEADER); gRPC requires it, as lower-cased metadata.
DEFAULT_CONN_ID_HEADER = protocol.CONN_ID_HEADER
# X-User-Group: the group header of Raccoon's sample configuration (SERVER_WEBSOCKET_CONN_GROUP_HEADER).
DEFAULT_GROUP_HEADER = protocol.GROUP_HEADER
# Connection ids read "raccoon-beam-<uuid>" in Raccoon's logs and metrics: whose connection it is.
DEFAULT_CONN_ID_PREFIX = "raccoon-beam"
# Header values never shown in reprs, logs or failure messages.
DEFAULT_SECRET_HEADERS: Tuple[str, ...] = (
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "api-key",
)


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
        twice it is the WebSocket heartbeat, capped at 30 s).
      headers: extra headers sent with every request (gRPC metadata, lower-cased);
        a value is a string or a
        :class:`~raccoon_beam.transports.credentials.CredentialProvider`
        resolved on the worker (a callable is wrapped in ``FromCallable``).
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
      proxy: an HTTP proxy, ``http://[user:password@]host:port``, that every
        transport goes through (``CONNECT``; plain-text REST and WebSocket
        requests are forwarded). ``None`` (the default): no proxy, whatever
        the environment says: ``http_proxy`` and the like are ignored by
        all three transports alike.

    Raises:
      ValueError: the endpoint is malformed, the wire is unknown, JSON is
        asked over gRPC, a number is out of range, or (gRPC) a header value,
        the connection id, its prefix or the group is not printable ASCII.
    """

    endpoint: str
    wire: Union[Wire, str] = Wire.PROTOBUF
    timeout: float = DEFAULT_TIMEOUT
    headers: Mapping[str, HeaderValue] = dataclasses.field(default_factory=dict)
    conn_id_header: str = DEFAULT_CONN_ID_HEADER
    conn_id_prefix: str = DEFAULT_CONN_ID_PREFIX
    conn_id: Optional[str] = None
    group: Optional[str] = None
    group_header: str = DEFAULT_GROUP_HEADER
    tls: TlsOptions = dataclasses.field(default_factory=TlsOptions)
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    secret_headers: Tuple[str, ...] = DEFAULT_SECRET_HEADERS
    proxy: Optional[str] = None

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
        if not is_positive_number(self.timeout):
            raise ValueError(f"timeout must be a positive number of seconds, got {self.timeout!r}")
        if not isinstance(self.max_in_flight, int) or self.max_in_flight < 1:
            raise ValueError(f"max_in_flight must be a positive integer, got {self.max_in_flight!r}")
        if not self.conn_id_header or not _is_token(self.conn_id_header):
            raise ValueError(f"conn_id_header must be a header name, got {self.conn_id_header!r}")
        if not self.group_header or not _is_token(self.group_header):
            raise ValueError(f"group_header must be a header name, got {self.group_header!r}")
        headers: Dict[str, HeaderValue] = {}
        for name, value in dict(self.headers or {}).items():
            if not isinstance(name, str) or not _is_token(name):
                raise ValueError(f"header name {name!r} is not a valid header name")
            headers[name] = header_value(name, value)
        if endpoint.kind == KIND_GRPC:
            _check_grpc_metadata(headers, self.conn_id_prefix, self.conn_id, self.group)
        if endpoint.tls is False and (self.tls.ca_certs or self.tls.client_cert):
            raise ValueError(f"TLS options given for a plain-text endpoint {endpoint.redacted}")
        if endpoint.kind == KIND_GRPC and endpoint.tls and not self.tls.verify:
            raise ValueError("gRPC cannot turn TLS verification off; give TlsOptions(ca_certs=...) instead")
        if self.proxy is not None:
            object.__setattr__(self, "proxy", check_proxy(self.proxy))
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

    @property
    def credential_providers(self) -> Dict[str, CredentialProvider]:
        """The headers whose value comes from a provider (resolved on the worker)."""
        return {name: value for name, value in self.headers.items() if isinstance(value, CredentialProvider)}

    def request_headers(self, conn_id: str, values: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
        """The headers of every request: user headers, identity, group, credentials.

        The connection id and group are set last so that a user header of the
        same name cannot silently replace them.

        Args:
          conn_id: the connection id.
          values: the user headers' values, providers resolved
            (:class:`~raccoon_beam.transports.credentials.HeaderValues`);
            by default ``headers``, which must then hold strings only.
        """
        if values is None:
            if self.credential_providers:
                raise ValueError("headers with credential providers need their resolved values")
            values = self.headers  # type: ignore[assignment]
        assert values is not None
        headers = dict(values)
        endpoint = self.parsed_endpoint
        if endpoint.username is not None and not any(k.lower() == "authorization" for k in headers):
            headers["Authorization"] = "Basic " + basic_token(endpoint.username, endpoint.password)
        _set_header(headers, self.conn_id_header, conn_id)
        if self.group is not None:
            _set_header(headers, self.group_header, self.group)
        return headers

    def __repr__(self) -> str:
        fields = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "endpoint":
                value = self.parsed_endpoint.redacted
            elif field.name == "headers":
                # Names only: a value is a credential more often than the
                # secret list knows (X-Auth-Token, a short key). A provider
                # shows where its value comes from, never the value.
                value = {name: (v if isinstance(v, CredentialProvider) else REDACTED) for name, v in value.items()}
            elif field.name == "proxy" and value is not None:
                value = redact_url(value)
            elif field.name == "wire":
                value = value.value
            fields.append(f"{field.name}={value!r}")
        return f"TransportConfig({', '.join(fields)})"


_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# What gRPC accepts in an ASCII (non "-bin") metadata value.
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")


def _check_grpc_metadata(
    headers: Mapping[str, HeaderValue], conn_id_prefix: str, conn_id: Optional[str], group: Optional[str]
) -> None:
    """Rejects values gRPC cannot send as metadata, at construction.

    gRPC refuses a metadata value outside printable ASCII (unless its key
    ends in ``-bin``) with an error raised from deep inside the call; caught
    here it is a clear configuration error instead of a failure per request.
    The offending value is never quoted (it may be a credential). A
    provider's value is checked once resolved, on the worker.
    """
    for name, value in headers.items():
        problem = check_header_value(name, value, grpc=True) if isinstance(value, str) else None
        if problem is not None:
            raise ValueError(problem)
    checked: Tuple[Tuple[str, Optional[str]], ...] = (
        ("conn_id_prefix", conn_id_prefix),
        ("conn_id", conn_id),
        ("group", group),
    )
    for field, setting in checked:
        if setting is not None and (not isinstance(setting, str) or not _PRINTABLE_ASCII.fullmatch(setting)):
            raise ValueError(f"{field} {setting!r} cannot be sent as gRPC metadata: it must be printable ASCII")


def _is_token(name: str) -> bool:
    return bool(_TOKEN.match(name))


def _set_header(headers: Dict[str, str], name: str, value: str) -> None:
    for key in [k for k in headers if k.lower() == name.lower()]:
        del headers[key]
    headers[name] = value
