"""Facts of the Raccoon protocol shared by the client and the emulator.

Each value is what a stock Raccoon server uses (docs/protocol.md describes the protocol);
the transports and the emulator import them from here so that the two sides
cannot drift apart.
"""

from __future__ import annotations

import re
from typing import Optional

__all__ = [
    "DEFAULT_TOPIC_PATTERN",
    "KAFKA_TOPIC_MAX_CHARS",
    "topic_problem",
    "EVENTS_PATH",
    "PING_PATH",
    "HTTP_PORT",
    "GRPC_PORT",
    "SERVICE_NAME",
    "METHOD_NAME",
    "SEND_EVENT_METHOD",
    "CONTENT_TYPE_PROTOBUF",
    "CONTENT_TYPE_JSON",
    "CONN_ID_HEADER",
    "GROUP_HEADER",
    "DEFAULT_GROUP",
    "GRPC_MAX_RECEIVE_BYTES",
    "CLOSE_POLICY_VIOLATION",
    "CLOSE_MESSAGE_TOO_BIG",
    "REASON_INVALID_CONTENT_TYPE",
    "REASON_DESERIALIZATION_FAILURE",
    "REASON_CANNOT_DESERIALIZE",
    "CONN_ID_MISSING",
]

# REST (POST) and WebSocket (GET with an upgrade) share one path on the HTTP port.
EVENTS_PATH = "/api/v1/events"
PING_PATH = "/ping"  # GET answers "pong" (liveness)
HTTP_PORT = 8080  # REST and WebSocket
GRPC_PORT = 8081

SERVICE_NAME = "raystack.raccoon.v1beta1.EventService"
METHOD_NAME = "SendEvent"
SEND_EVENT_METHOD = f"/{SERVICE_NAME}/{METHOD_NAME}"

# The only Content-Type values REST accepts (not even with a charset).
CONTENT_TYPE_PROTOBUF = "application/proto"
CONTENT_TYPE_JSON = "application/json"

# SERVER_WEBSOCKET_CONN_ID_HEADER of the sample config (gRPC metadata: lower case).
CONN_ID_HEADER = "X-User-ID"
# SERVER_WEBSOCKET_CONN_GROUP_HEADER, and SERVER_WEBSOCKET_CONN_GROUP_DEFAULT.
GROUP_HEADER = "X-User-Group"
DEFAULT_GROUP = "--default--"

# grpc-go's default receive limit, which Raccoon keeps: a larger request
# fails with RESOURCE_EXHAUSTED "received message larger than max".
GRPC_MAX_RECEIVE_BYTES = 4 * 1024 * 1024

# WebSocket close codes (RFC 6455): Raccoon closes a refused connection
# (duplicate id, server full) with 1008; a server or proxy whose message
# size limit a frame exceeds closes with 1009.
CLOSE_POLICY_VIOLATION = 1008
CLOSE_MESSAGE_TOO_BIG = 1009

# Reasons of REST's 400 CODE_BAD_REQUEST answers.
REASON_INVALID_CONTENT_TYPE = "invalid content type"
REASON_DESERIALIZATION_FAILURE = "deserialization failure"
# The start of the reason of WebSocket's CODE_BAD_REQUEST for a frame that does not decode.
REASON_CANNOT_DESERIALIZE = "cannot deserialize request"
# gRPC UNKNOWN details when the connection-id metadata is missing.
CONN_ID_MISSING = "connection id header missing"


# EVENT_DISTRIBUTION_PUBLISHER_PATTERN: Raccoon publishes an event of type T
# to the Kafka topic ``pattern % T``.
DEFAULT_TOPIC_PATTERN = "clickstream-%s-log"
# Kafka's topic names: ASCII letters, digits, '.', '_' and '-', at most 249
# characters (and not "." or ".."). A type that makes another topic fails at
# publish: with async acks after the client was told success.
KAFKA_TOPIC_MAX_CHARS = 249
_KAFKA_TOPIC = re.compile(r"[A-Za-z0-9._-]+")


def topic_problem(topic: str) -> Optional[str]:
    """Why Kafka refuses ``topic`` as a topic name, or None when it takes it."""
    if len(topic) > KAFKA_TOPIC_MAX_CHARS:
        return f"is {len(topic)} characters long, over Kafka's {KAFKA_TOPIC_MAX_CHARS}"
    if topic in ("", ".", ".."):
        return "is not a name Kafka takes (empty, '.' or '..')"
    if _KAFKA_TOPIC.fullmatch(topic) is None:
        bad = next(char for char in topic if _KAFKA_TOPIC.fullmatch(char) is None)
        return f"holds {bad!r}: Kafka topics take only ASCII letters, digits, '.', '_' and '-'"
    return None
