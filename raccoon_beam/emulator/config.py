"""The emulator's settings, named after the Raccoon settings they stand for."""

from __future__ import annotations

import dataclasses
from typing import Mapping, Optional, Tuple

from raccoon_beam import protocol
from raccoon_beam.emulator.capture import CAPTURE_MODES, DEFAULT_TOPIC_PATTERN
from raccoon_beam.protocol import GRPC_MAX_RECEIVE_BYTES

__all__ = [
    "EmulatorConfig",
    "ACK_MODES",
    "DEFAULT_HOST",
    "DEFAULT_CONN_ID_HEADER",
    "DEFAULT_GROUP_HEADER",
    "DEFAULT_GROUP",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_PING_INTERVAL",
    "DEFAULT_PONG_TIMEOUT",
    "DEFAULT_MAX_BODY_BYTES",
    "GRPC_MAX_RECEIVE_BYTES",
]

ACK_MODES = ("async", "sync")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_CONN_ID_HEADER = protocol.CONN_ID_HEADER  # SERVER_WEBSOCKET_CONN_ID_HEADER in the sample config
DEFAULT_GROUP_HEADER = protocol.GROUP_HEADER  # SERVER_WEBSOCKET_CONN_GROUP_HEADER
DEFAULT_GROUP = protocol.DEFAULT_GROUP  # SERVER_WEBSOCKET_CONN_GROUP_DEFAULT
DEFAULT_MAX_CONNECTIONS = 30000  # SERVER_WEBSOCKET_MAX_CONN
DEFAULT_PING_INTERVAL = 30.0  # SERVER_WEBSOCKET_PING_INTERVAL_MS
DEFAULT_PONG_TIMEOUT = 60.0  # SERVER_WEBSOCKET_PONG_WAIT_INTERVAL_MS
# Go's net/http and gorilla impose no body or message limit; the emulator
# keeps one so that a runaway client cannot exhaust the test machine, and
# answers it as the proxy in front of a real deployment would (REST 413,
# WebSocket close 1009).
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class EmulatorConfig:
    """Everything that shapes the emulator's behaviour (see RaccoonEmulator)."""

    host: str = DEFAULT_HOST
    grpc_port: int = 0
    http_port: int = 0
    conn_id_header: str = DEFAULT_CONN_ID_HEADER
    group_header: str = DEFAULT_GROUP_HEADER
    default_group: str = DEFAULT_GROUP
    ack: str = "async"
    dedup: bool = False
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    capture: str = "events"
    output: Optional[str] = None
    topic_pattern: str = DEFAULT_TOPIC_PATTERN
    check_origin: bool = True
    ping_interval: float = DEFAULT_PING_INTERVAL
    pong_timeout: float = DEFAULT_PONG_TIMEOUT
    tls: Optional[Tuple[str, str]] = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # The token every /_emulator route (console, control) requires; None: none on
    # loopback, generated at start otherwise (see raccoon_beam.emulator.access).
    console_token: Optional[str] = None
    # How the console shows payloads, per event type or topic: "json", "hex",
    # "proto:<full message name>" (needs descriptor_set) or "avro:<schema file or JSON>";
    # unlisted types: JSON when they parse as JSON, else hex.
    decoders: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # A FileDescriptorSet (protoc --include_imports --descriptor_set_out) for "proto:" decoders.
    descriptor_set: Optional[str] = None

    def __post_init__(self) -> None:
        if self.ack not in ACK_MODES:
            raise ValueError(f"ack must be one of {ACK_MODES}, not {self.ack!r}")
        if self.capture not in CAPTURE_MODES:
            raise ValueError(f"capture must be one of {CAPTURE_MODES}, not {self.capture!r}")
        if self.max_connections < 0:
            raise ValueError("max_connections must be >= 0")
        if self.ping_interval <= 0 or self.pong_timeout <= 0:
            raise ValueError("ping_interval and pong_timeout must be > 0")
        if self.decoders:
            from raccoon_beam.emulator.payloads import PayloadDecoders

            PayloadDecoders(self.decoders, self.descriptor_set)  # a bad spec fails here, not at start

    @property
    def sync_ack(self) -> bool:
        return self.ack == "sync"
