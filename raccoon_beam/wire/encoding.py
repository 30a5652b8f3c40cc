"""The client's side: encoding requests, on the sink's hot path.

The protobuf encoder writes the bytes of a ``SendEventRequest`` directly
(tag, length, bytes), exactly as protobuf's own serializer and Go's would
(fields in number order, empty fields omitted), without building a message
per event; ``tests/test_wire.py`` checks it against Go's vectors. The JSON
encoder writes what Raccoon's Go ``encoding/json`` reads.
"""

from __future__ import annotations

import binascii
import functools
import json
import time
import uuid
from typing import Dict, List, Optional, Sequence, Tuple

from raccoon_beam.protocol import KAFKA_TOPIC_MAX_CHARS
from raccoon_beam.wire.types import EncodedRequest, Wire

__all__ = [
    "REQUEST_OVERHEAD_BYTES",
    "new_req_guid",
    "encode_request",
    "encode_batch",
    "encoded_event_size",
    "EventSizer",
]

# Bytes a request may need beyond its events: req_guid (a uuid4, or a user
# guid of up to 64 chars) and sent_time, in either wire type, rounded up.
REQUEST_OVERHEAD_BYTES = 256

# Per-type work is cached: it runs once or twice per event, and a pipeline
# has few distinct event types (the bound keeps a pathological one in check).
_PER_TYPE_CACHE_SIZE = 10_000
# Only types that fit in a Kafka topic are cached (so every type that can
# be published is): the caches stay bounded in bytes too, whatever types a
# caller sends.
_CACHED_TYPE_CHARS = KAFKA_TOPIC_MAX_CHARS


def new_req_guid() -> str:
    """A fresh request guid (a random UUID)."""
    return str(uuid.uuid4())


def encode_request(
    events: Sequence[Tuple[str, bytes]],
    *,
    wire: Wire,
    req_guid: Optional[str] = None,
    sent_time_ns: Optional[int] = None,
) -> EncodedRequest:
    """Encodes one SendEventRequest from ``(event_type, event_bytes)`` pairs.

    Args:
      events: ``(event_type, event_bytes)`` pairs, in order.
      wire: the wire type to produce.
      req_guid: the request guid; a fresh one by default.
      sent_time_ns: Unix time in nanoseconds; now by default. Raccoon computes
        its latency metrics from it, so it is always set.
    """
    return encode_batch(
        [event_type for event_type, _ in events],
        [payload for _, payload in events],
        wire=wire,
        req_guid=req_guid,
        sent_time_ns=sent_time_ns,
    )


def encode_batch(
    event_types: Sequence[str],
    payloads: Sequence[bytes],
    *,
    wire: Wire,
    req_guid: Optional[str] = None,
    sent_time_ns: Optional[int] = None,
) -> EncodedRequest:
    """Encodes one SendEventRequest from parallel lists of types and payloads.

    Args:
      event_types: the type of each event.
      payloads: the bytes of each event.
      wire: the wire type to produce.
      req_guid: the request guid; a fresh one by default.
      sent_time_ns: Unix time in nanoseconds; now by default.
    """
    guid = req_guid if req_guid is not None else new_req_guid()
    nanos_total = time.time_ns() if sent_time_ns is None else sent_time_ns
    seconds, nanos = divmod(nanos_total, 1_000_000_000)
    if wire is Wire.PROTOBUF:
        body = _encode_protobuf(event_types, payloads, guid, seconds, nanos)
    elif wire is Wire.JSON:
        body = _encode_json(event_types, payloads, guid, seconds, nanos)
    else:
        raise ValueError(f"unknown wire type {wire!r}")
    return EncodedRequest(body=body, req_guid=guid, wire=wire, event_count=len(payloads))


# ------------------------------------------------------------------ protobuf

# Field tags (field number << 3 | wire type 2 or 0) of raccoon.proto.
_TAG_REQ_GUID = b"\x0a"  # SendEventRequest.req_guid = 1
_TAG_SENT_TIME = b"\x12"  # SendEventRequest.sent_time = 2
_TAG_EVENTS = b"\x1a"  # SendEventRequest.events = 3
_TAG_EVENT_BYTES = b"\x0a"  # Event.event_bytes = 1
_TAG_TYPE = b"\x12"  # Event.type = 2
_TAG_SECONDS = b"\x08"  # Timestamp.seconds = 1
_TAG_NANOS = b"\x10"  # Timestamp.nanos = 2


def _varint(value: int) -> bytes:
    if value < 0:  # int64 two's complement, as protobuf writes negative numbers
        value += 1 << 64
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# Lengths below 16 KiB (every event of a usual pipeline) are looked up, not
# computed: an Event's ``event_bytes`` tag and length (nothing for empty bytes,
# which protobuf omits), and the request's ``events`` tag and length.
_SMALL = 1 << 14
_EVENT_BYTES_HEADS: Tuple[bytes, ...] = (b"",) + tuple(_TAG_EVENT_BYTES + _varint(n) for n in range(1, _SMALL))
_EVENT_HEADS: Tuple[bytes, ...] = tuple(_TAG_EVENTS + _varint(n) for n in range(_SMALL))


def _type_field(event_type: str) -> bytes:
    """An Event's encoded ``type`` field (empty for an empty type, as protobuf omits it)."""
    return _cached_type_field(event_type) if len(event_type) <= _CACHED_TYPE_CHARS else _make_type_field(event_type)


def _make_type_field(event_type: str) -> bytes:
    encoded = event_type.encode("utf-8")
    return _TAG_TYPE + _varint(len(encoded)) + encoded if encoded else b""


_cached_type_field = functools.lru_cache(maxsize=_PER_TYPE_CACHE_SIZE)(_make_type_field)


def _encode_protobuf(
    event_types: Sequence[str], payloads: Sequence[bytes], guid: str, seconds: int, nanos: int
) -> bytes:
    timestamp = (_TAG_SECONDS + _varint(seconds) if seconds else b"") + (_TAG_NANOS + _varint(nanos) if nanos else b"")
    guid_bytes = guid.encode("utf-8")
    parts: List[bytes] = [
        _TAG_REQ_GUID + _varint(len(guid_bytes)) + guid_bytes if guid_bytes else b"",
        _TAG_SENT_TIME + _varint(len(timestamp)) + timestamp,
    ]
    append = parts.append
    heads, event_heads, small = _EVENT_BYTES_HEADS, _EVENT_HEADS, _SMALL
    distinct = set(event_types)
    if len(distinct) == 1:  # the usual batch: one type, its field computed once
        field = _type_field(distinct.pop())
        rest = len(field)
        for payload in payloads:
            size = len(payload)
            try:
                head = heads[size]
                outer = event_heads[len(head) + size + rest]
            except IndexError:  # 16 KiB or more: computed
                head = _TAG_EVENT_BYTES + _varint(size)
                outer = _TAG_EVENTS + _varint(len(head) + size + rest)
            append(outer)
            append(head)
            append(payload)
            append(field)
        return b"".join(parts)
    fields = {event_type: _type_field(event_type) for event_type in distinct}
    for event_type, payload in zip(event_types, payloads):
        size = len(payload)
        field = fields[event_type]
        head = heads[size] if size < small else _TAG_EVENT_BYTES + _varint(size)
        inner = len(head) + size + len(field)
        append(event_heads[inner] if inner < small else _TAG_EVENTS + _varint(inner))
        append(head)
        append(payload)
        append(field)
    return b"".join(parts)


# ------------------------------------------------------------------ json


def _json_string(value: str) -> str:
    return _cached_json_string(value) if len(value) <= _CACHED_TYPE_CHARS else json.dumps(value)


_cached_json_string = functools.lru_cache(maxsize=_PER_TYPE_CACHE_SIZE)(json.dumps)


def _encode_json(
    event_types: Sequence[str], payloads: Sequence[bytes], guid: str, seconds: int, nanos: int
) -> bytes:
    head = '{"req_guid":%s,"sent_time":{"seconds":%d,"nanos":%d},"events":[' % (json.dumps(guid), seconds, nanos)
    count = len(payloads)
    if not count:
        return head.encode("ascii") + b"]}"
    # The body as one list, filled by slices (no per-event Python code but the
    # base64 call): head, '{"event_bytes":"', then per event its base64 and
    # '","type":"<type>"}', the events separated by ',{"event_bytes":"'.
    closes = {event_type: b'","type":' + _json_string(event_type).encode("ascii") + b"}" for event_type in set(event_types)}
    parts = [b',{"event_bytes":"'] * (3 * count + 2)
    parts[0] = head.encode("ascii")
    parts[1] = b'{"event_bytes":"'
    parts[2:-1:3] = [binascii.b2a_base64(payload, newline=False) for payload in payloads]
    parts[3:-1:3] = map(closes.__getitem__, event_types)
    parts[-1] = b"]}"
    return b"".join(parts)


# ------------------------------------------------------------------ sizes


def encoded_event_size(event_type: str, payload_size: int, wire: Wire) -> int:
    """How many bytes one event adds to an encoded request.

    Exact for the protobuf wire; for the JSON wire exact when ``event_type``
    is ASCII without characters that need escaping, an upper bound otherwise.
    """
    if wire is Wire.PROTOBUF:
        inner = len(_type_field(event_type))
        if payload_size:
            inner += 1 + _varint_size(payload_size) + payload_size
        return 1 + _varint_size(inner) + inner
    # {"event_bytes":"<b64>","type":"<type>"} plus a separating comma.
    return len(_json_string(event_type)) + 4 * ((payload_size + 2) // 3) + 28


def _varint_size(value: int) -> int:
    return 1 if value < 0x80 else (value.bit_length() + 6) // 7


# The longest varint of a length under 4 GiB.
_MAX_LENGTH_VARINT = 5


class EventSizer:
    """What one event adds to a request, cheaply enough for every event.

    Exact for the JSON wire (as :func:`encoded_event_size`); for the protobuf
    wire an upper bound at most 10 bytes over, which costs one addition
    instead of two varint sizes.

    Args:
      wire: the wire type the events will be encoded in.
    """

    def __init__(self, wire: Wire) -> None:
        self._json = wire is Wire.JSON
        self._overheads: Dict[str, int] = {}

    def __call__(self, event_type: str, payload_size: int) -> int:
        overhead = self.overhead(event_type)
        if self._json:
            return 4 * ((payload_size + 2) // 3) + overhead
        return payload_size + overhead

    def overhead(self, event_type: str) -> int:
        """The per-type part of the size: payload size (protobuf) or its base64 size (JSON) plus this."""
        overhead = self._overheads.get(event_type)
        return overhead if overhead is not None else self._overhead(event_type)

    def linear_overhead(self, event_type: str) -> Optional[int]:
        """For the protobuf wire, the constant ``k`` with size = payload size + ``k``; None for JSON."""
        return None if self._json else self._overhead(event_type)

    def _overhead(self, event_type: str) -> int:
        if self._json:
            overhead = len(_json_string(event_type)) + 28
        else:
            # Two tags and two lengths (Event in the request, bytes in the Event).
            overhead = len(_type_field(event_type)) + 2 + 2 * _MAX_LENGTH_VARINT
        if len(self._overheads) < _PER_TYPE_CACHE_SIZE and len(event_type) <= _CACHED_TYPE_CHARS:
            self._overheads[event_type] = overhead
        return overhead
