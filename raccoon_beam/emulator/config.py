"""The emulator's settings: the one list, named after the Raccoon settings they stand for.

:class:`EmulatorConfig` is the only place a setting is written down. Each
field carries, in its ``metadata``, a one-line help text and the Raccoon
setting it mirrors (see :func:`setting_help`); the ``RaccoonEmulator``
constructor takes the fields as keyword overrides (:meth:`EmulatorConfig.build`)
and the ``raccoon-emulator`` command line is generated from them
(:mod:`raccoon_beam.emulator.cli`).

This module imports only the standard library and :mod:`raccoon_beam.protocol`,
so that ``raccoon-emulator --help`` answers without loading the servers.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from raccoon_beam import protocol
from raccoon_beam.protocol import DEFAULT_TOPIC_PATTERN, GRPC_MAX_RECEIVE_BYTES

__all__ = [
    "EmulatorConfig",
    "ACK_MODES",
    "CAPTURE_MODES",
    "TRANSPORTS",
    "DEFAULT_HOST",
    "DEFAULT_CONN_ID_HEADER",
    "DEFAULT_GROUP_HEADER",
    "DEFAULT_GROUP",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_READ_TIMEOUT",
    "DEFAULT_PING_INTERVAL",
    "DEFAULT_PONG_TIMEOUT",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_TOPIC_PATTERN",
    "DEFAULT_CAPTURE",
    "DEFAULT_CLI_GRPC_PORT",
    "CONSOLE_TOKEN_ENV",
    "DEFAULT_CLI_HTTP_PORT",
    "DEFAULT_WORKER_BUFFER_SIZE",
    "DEFAULT_WORKER_POOL_SIZE",
    "DEFAULT_GATEWAY_STATUS",
    "DEFAULT_GATEWAY_RETRY_AFTER",
    "GATEWAY_STATUSES",
    "GRPC_MAX_RECEIVE_BYTES",
    "check_overload_settings",
    "setting_help",
    "setting_default",
    "has_flag",
]

ACK_MODES = ("async", "sync")
# "events" keeps every event (what tests inspect); "digest" keeps, per type,
# a count, a byte total and a multiset hash: constant memory for benchmarks.
CAPTURE_MODES = ("events", "digest")
# The names the emulator gives its transports (in counters, captures and fault rules).
TRANSPORTS = ("grpc", "rest", "websocket")
# Tests must not be reachable from elsewhere; a server is one flag away.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_CONN_ID_HEADER = protocol.CONN_ID_HEADER  # X-User-ID, as in Raccoon's sample config
DEFAULT_GROUP_HEADER = protocol.GROUP_HEADER
DEFAULT_GROUP = protocol.DEFAULT_GROUP
DEFAULT_MAX_CONNECTIONS = 30000  # Raccoon's default SERVER_WEBSOCKET_MAX_CONN
# Generous for a client on a loaded machine, short enough that slow or stalled
# clients (slowloris) give their sockets back: a request's headers (from
# connecting, or from the previous answer on a kept-alive connection), its
# body, a TLS handshake and an idle keep-alive each get this long.
DEFAULT_READ_TIMEOUT = 30.0
DEFAULT_PING_INTERVAL = 30.0  # Raccoon's default SERVER_WEBSOCKET_PING_INTERVAL_MS, in seconds
DEFAULT_PONG_TIMEOUT = 60.0  # Raccoon's default SERVER_WEBSOCKET_PONG_WAIT_INTERVAL_MS, in seconds
# Go's net/http and gorilla impose no body or message limit; the emulator
# keeps one so that a runaway client cannot exhaust the test machine, and
# answers it as the proxy in front of a real deployment would (REST 413,
# WebSocket close 1009).
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
# Tests read events(), so the library keeps them; the command line keeps the
# same default (one default per setting) and long runs pass --capture digest.
DEFAULT_CAPTURE = "events"
# The library picks free ports (port 0) so that tests run side by side; the
# command line listens on Raccoon's own ports (SERVER_GRPC_PORT and
# SERVER_WEBSOCKET_PORT) so that a client configured for Raccoon finds it.
# The environment variable the command line reads the console token from
# (a command line is visible to every user of the machine: never argv).
CONSOLE_TOKEN_ENV = "RACCOON_EMULATOR_CONSOLE_TOKEN"
DEFAULT_CLI_GRPC_PORT = 8081
DEFAULT_CLI_HTTP_PORT = 8080
DEFAULT_WORKER_BUFFER_SIZE = 100  # Raccoon's default WORKER_BUFFER_CHANNEL_SIZE (requests)
DEFAULT_WORKER_POOL_SIZE = 5  # Raccoon's default WORKER_POOL_SIZE
# What an overloaded proxy answers most often (Envoy's circuit breaker, a
# load balancer with no healthy capacity); 429 is the rate limiter's answer.
DEFAULT_GATEWAY_STATUS = 503
GATEWAY_STATUSES = (429, 503)
# One second: about what a request waits in a full buffer at a modest
# capacity, so a client that honours it comes back when there is room.
DEFAULT_GATEWAY_RETRY_AFTER = 1.0


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_overload_settings(
    capacity: Optional[float], depth: Optional[int], status: int, retry_after: float
) -> None:
    """Raises ValueError for overload settings that cannot work (at construction and on changes).

    Args:
      capacity: ``capacity_events_per_second``.
      depth: ``gateway_queue_depth``.
      status: ``gateway_status``.
      retry_after: ``gateway_retry_after``.
    """
    if capacity is not None and not (_is_number(capacity) and capacity > 0):  # also refuses NaN
        raise ValueError(f"capacity_events_per_second must be > 0 (or None: unlimited), not {capacity!r}")
    if depth is not None:
        if capacity is None:
            raise ValueError(
                "gateway_queue_depth needs capacity_events_per_second: the gateway counts requests "
                "waiting for the publisher, and without a capacity none wait"
            )
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"gateway_queue_depth must be a positive integer (or None: no gateway), not {depth!r}")
    if status not in GATEWAY_STATUSES:
        raise ValueError(f"gateway_status must be one of {GATEWAY_STATUSES}, not {status!r}")
    if not (_is_number(retry_after) and retry_after >= 0):
        raise ValueError(f"gateway_retry_after must be >= 0 seconds, not {retry_after!r}")


def _setting(
    default: Any,
    help: str,
    *,
    raccoon: Optional[str] = None,
    choices: Optional[Tuple[Any, ...]] = None,
    cli_default: Any = dataclasses.MISSING,
    metavar: Any = None,
    default_factory: Optional[Callable[[], Any]] = None,
    flag: Optional[str] = None,
    cli: bool = True,
) -> Any:
    """A field of EmulatorConfig with what the CLI and the docs need to know about it.

    Args:
      default: the value when the setting is not given (``dataclasses.MISSING``
        with ``default_factory``).
      help: one line saying what the setting does.
      raccoon: the Raccoon setting (environment variable) it mirrors, if any.
      choices: the allowed values, for settings that take one of a few words.
      cli_default: a different default for ``raccoon-emulator`` (ports only).
      metavar: the argument's name(s) in ``--help``.
      default_factory: makes the default of a mutable setting (a Mapping: ``dict``).
      flag: the command-line flag's name when it is not the field's (``decode``
        for ``decoders``: one ``--decode TYPE=SPEC`` per entry).
      cli: False for a setting that has no flag (a secret: a command line is
        visible to every user of the machine); the CLI reads it another way.
    """
    metadata: Dict[str, Any] = {"help": help, "raccoon": raccoon, "choices": choices, "metavar": metavar}
    if cli_default is not dataclasses.MISSING:
        metadata["cli_default"] = cli_default
    if flag is not None:
        metadata["flag"] = flag
    if not cli:
        metadata["cli"] = False
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class EmulatorConfig:
    """Everything that shapes the emulator's behaviour (``RaccoonEmulator(**fields)``).

    The defaults make a stock Raccoon with ``X-User-ID`` as the connection-id
    header and async acks, on ephemeral loopback ports. Each field's help
    text and Raccoon setting are in its metadata: ``setting_help(field)``
    (the Attributes below are generated from it).
    """

    host: str = _setting(DEFAULT_HOST, "address to listen on")
    http_host: Optional[str] = _setting(
        None, "address of the HTTP port (REST, WebSocket, console, control routes) when not host's"
    )
    grpc_port: int = _setting(
        0, "gRPC port; 0 picks a free one", raccoon="SERVER_GRPC_PORT", cli_default=DEFAULT_CLI_GRPC_PORT
    )
    http_port: int = _setting(
        0,
        "REST and WebSocket port; 0 picks a free one",
        raccoon="SERVER_WEBSOCKET_PORT",
        cli_default=DEFAULT_CLI_HTTP_PORT,
    )
    conn_id_header: str = _setting(
        DEFAULT_CONN_ID_HEADER,
        "header naming the connection (gRPC: its lower-cased metadata key)",
        raccoon="SERVER_WEBSOCKET_CONN_ID_HEADER",
    )
    group_header: str = _setting(
        DEFAULT_GROUP_HEADER, "header naming the connection's group", raccoon="SERVER_WEBSOCKET_CONN_GROUP_HEADER"
    )
    default_group: str = _setting(
        DEFAULT_GROUP, "group of a connection without the group header", raccoon="SERVER_WEBSOCKET_CONN_GROUP_DEFAULT"
    )
    ack: str = _setting(
        "async",
        "async (0): ack on receipt; sync (1): ack once published",
        raccoon="EVENT_ACK",
        choices=ACK_MODES,
    )
    dedup: bool = _setting(
        False,
        "drop a repeated req_guid within one WebSocket connection",
        raccoon="SERVER_BATCH_DEDUP_IN_CONNECTION_ENABLED",
    )
    max_connections: int = _setting(
        DEFAULT_MAX_CONNECTIONS, "most WebSocket connections open at once", raccoon="SERVER_WEBSOCKET_MAX_CONN"
    )
    capture: str = _setting(
        DEFAULT_CAPTURE,
        "events: keep every event; digest: per-type counts and digests only (constant memory)",
        choices=CAPTURE_MODES,
    )
    output: Optional[str] = _setting(None, "JSONL file receiving every captured event", metavar="PATH")
    topic_pattern: str = _setting(
        DEFAULT_TOPIC_PATTERN,
        "topic of an event type (%s: the type)",
        raccoon="EVENT_DISTRIBUTION_PUBLISHER_PATTERN",
    )
    check_origin: bool = _setting(
        True, "refuse WebSocket upgrades from another origin", raccoon="SERVER_WEBSOCKET_CHECK_ORIGIN"
    )
    ping_interval: float = _setting(
        DEFAULT_PING_INTERVAL, "seconds between server pings", raccoon="SERVER_WEBSOCKET_PING_INTERVAL_MS"
    )
    pong_timeout: float = _setting(
        DEFAULT_PONG_TIMEOUT,
        "seconds without a pong before a connection is dropped",
        raccoon="SERVER_WEBSOCKET_PONG_WAIT_INTERVAL_MS",
    )
    tls: Optional[Tuple[str, str]] = _setting(
        None, "PEM certificate and private key: serve grpcs, https and wss", metavar=("CERT", "KEY")
    )
    read_timeout: float = _setting(
        DEFAULT_READ_TIMEOUT,
        "seconds a client has to send a request's headers (from connecting, or after the previous answer) "
        "and its body, and to finish a TLS handshake (gRPC: its HTTP/2 handshake); also the idle keep-alive",
    )
    max_http_connections: Optional[int] = _setting(
        None,
        "most connections open at once on the HTTP port; at the cap a new one closes the oldest that never "
        "made progress, else one idle for a second, or is answered 503; unset: 3/4 of the file descriptors "
        "the process may open",
        metavar="N",
    )
    max_body_bytes: int = _setting(
        DEFAULT_MAX_BODY_BYTES, "largest REST body or WebSocket message read (Raccoon has no limit)"
    )
    console_token: Optional[str] = _setting(
        None,
        "token every /_emulator route (console, control) requires; unset: none on loopback, "
        "elsewhere one generated at start (and printed once); never empty beyond loopback. "
        "The command line reads it from --console-token-file or $RACCOON_EMULATOR_CONSOLE_TOKEN, never argv",
        metavar="TOKEN",
        cli=False,
    )
    decoders: Mapping[str, str] = _setting(
        dataclasses.MISSING,
        "how the console shows an event type's (or topic's) payloads: json, hex, proto:<message> "
        "(needs a descriptor set) or avro:<schema file or JSON>; unlisted types: JSON if they parse, else hex",
        default_factory=dict,
        flag="decode",
        metavar="TYPE=SPEC",
    )
    descriptor_set: Optional[str] = _setting(
        None, "FileDescriptorSet (protoc --include_imports --descriptor_set_out) for proto: decoders", metavar="PATH"
    )
    require_header: Optional[Tuple[str, str]] = _setting(
        None,
        "answer 401 (gRPC UNAUTHENTICATED; WebSocket: at the upgrade) to requests without header NAME = VALUE, "
        "as an authenticating gateway in front of Raccoon does",
        metavar=("NAME", "VALUE"),
    )
    rotate_header_every: int = _setting(
        0,
        "with require_header: a new value after this many requests passed with the current one, 401 to the old "
        "one (an expiring token; read it at GET /_emulator/credential); 0: never",
        metavar="N",
    )

    capacity_events_per_second: Optional[float] = _setting(
        None,
        "events per second the publisher takes; beyond it handlers block on the buffer and latency grows "
        "with what is in flight (Raccoon's Kafka producer); unset: unlimited",
        metavar="EVENTS",
    )
    worker_buffer_size: int = _setting(
        DEFAULT_WORKER_BUFFER_SIZE,
        "requests the buffer holds before handlers block (with a capacity)",
        raccoon="WORKER_BUFFER_CHANNEL_SIZE",
    )
    worker_pool_size: int = _setting(
        DEFAULT_WORKER_POOL_SIZE, "workers draining the buffer (with a capacity)", raccoon="WORKER_POOL_SIZE"
    )
    gateway_queue_depth: Optional[int] = _setting(
        None,
        "a gateway in front answers gateway_status with Retry-After once this many requests wait for the "
        "publisher (needs a capacity); unset: no gateway",
        metavar="REQUESTS",
    )
    gateway_status: int = _setting(
        DEFAULT_GATEWAY_STATUS, "the gateway's HTTP status (gRPC: UNAVAILABLE)", choices=GATEWAY_STATUSES
    )
    gateway_retry_after: float = _setting(
        DEFAULT_GATEWAY_RETRY_AFTER, "the gateway's Retry-After, in seconds", metavar="SECONDS"
    )

    def __post_init__(self) -> None:
        check_overload_settings(
            self.capacity_events_per_second, self.gateway_queue_depth, self.gateway_status, self.gateway_retry_after
        )
        if self.worker_buffer_size < 1 or self.worker_pool_size < 1:
            raise ValueError("worker_buffer_size and worker_pool_size must be >= 1")
        if self.ack not in ACK_MODES:
            raise ValueError(f"ack must be one of {ACK_MODES}, not {self.ack!r}")
        if self.capture not in CAPTURE_MODES:
            raise ValueError(f"capture must be one of {CAPTURE_MODES}, not {self.capture!r}")
        if self.max_connections < 0:
            raise ValueError("max_connections must be >= 0")
        if self.ping_interval <= 0 or self.pong_timeout <= 0:
            raise ValueError("ping_interval and pong_timeout must be > 0")
        if not (isinstance(self.read_timeout, (int, float)) and 0 < self.read_timeout < float("inf")):
            raise ValueError(f"read_timeout must be a positive number of seconds, not {self.read_timeout!r}")
        if self.max_http_connections is not None and self.max_http_connections < 1:
            raise ValueError(f"max_http_connections must be >= 1, not {self.max_http_connections!r}")
        if self.max_body_bytes <= 0:
            raise ValueError("max_body_bytes must be > 0")
        if self.tls is not None:
            tls = tuple(self.tls)  # a list (e.g. from JSON) is accepted too
            if len(tls) != 2:
                raise ValueError("tls must be (certfile, keyfile)")
            object.__setattr__(self, "tls", tls)
        if self.require_header is not None:
            required = tuple(self.require_header)
            if len(required) != 2 or not all(isinstance(part, str) and part for part in required):
                raise ValueError("require_header must be (name, value), two non-empty strings")
            object.__setattr__(self, "require_header", required)
        if not isinstance(self.rotate_header_every, int) or self.rotate_header_every < 0:
            raise ValueError(f"rotate_header_every must be a number of requests >= 0, not {self.rotate_header_every!r}")
        if self.rotate_header_every and self.require_header is None:
            raise ValueError("rotate_header_every needs require_header (the header whose value rotates)")
        # A copy: the caller's dict changing later must not change a frozen config.
        object.__setattr__(self, "decoders", dict(self.decoders))
        if self.decoders:
            from raccoon_beam.emulator.payloads import PayloadDecoders  # orjson; protobuf/fastavro on demand

            PayloadDecoders(self.decoders, self.descriptor_set)  # a bad spec fails here, not at start

    @property
    def http_address(self) -> str:
        """The address the HTTP port listens on: ``http_host``, else ``host``."""
        return self.http_host or self.host

    @classmethod
    def build(
        cls, config: Optional["EmulatorConfig"] = None, overrides: Optional[Mapping[str, Any]] = None
    ) -> "EmulatorConfig":
        """``config`` (default: the defaults) with some fields replaced.

        Args:
          config: the base settings.
          overrides: field name -> value.

        Raises:
          TypeError: an override is not a field; the message names the closest one.
        """
        if config is not None and not isinstance(config, cls):
            raise TypeError(f"config must be an EmulatorConfig, not {type(config).__name__}; settings go by keyword")
        overrides = dict(overrides or {})
        names = [f.name for f in dataclasses.fields(cls)]
        for name in overrides:
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
                hint = f"; did you mean {close[0]!r}?" if close else f"; settings: {', '.join(names)}"
                raise TypeError(f"{name!r} is not an emulator setting{hint}")
        base = config if config is not None else cls()
        return dataclasses.replace(base, **overrides) if overrides else base

    @property
    def sync_ack(self) -> bool:
        return self.ack == "sync"


def setting_help(field: "dataclasses.Field[Any]") -> str:
    """A field's help text, with the Raccoon setting it mirrors.

    Args:
      field: a field of :class:`EmulatorConfig`.
    """
    raccoon = field.metadata.get("raccoon")
    text: str = field.metadata["help"]
    return f"{text} [Raccoon: {raccoon}]" if raccoon else text


def has_flag(field: "dataclasses.Field[Any]") -> bool:
    """Whether a field of :class:`EmulatorConfig` has a command-line flag (a secret has none).

    Args:
      field: a field of :class:`EmulatorConfig`.
    """
    return bool(field.metadata.get("cli", True))


def setting_default(field: "dataclasses.Field[Any]", cli: bool = False) -> Any:
    """A field's default value (a fresh one for a ``default_factory`` field).

    Args:
      field: a field of :class:`EmulatorConfig`.
      cli: the command line's default (which differs for the ports).
    """
    if cli and "cli_default" in field.metadata:
        return field.metadata["cli_default"]
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def _attributes_doc() -> str:
    lines = ["", "    Attributes:"]
    for field in dataclasses.fields(EmulatorConfig):
        cli = f"; command line: {field.metadata['cli_default']!r}" if "cli_default" in field.metadata else ""
        lines.append(f"      {field.name}: {setting_help(field)} (default: {setting_default(field)!r}{cli}).")
    return "\n".join(lines) + "\n"


# The field list documented from the fields themselves, never written out by hand.
EmulatorConfig.__doc__ = (EmulatorConfig.__doc__ or "").rstrip() + "\n" + _attributes_doc()
