"""The benchmark workload: deterministic click events, generated inside the pipeline.

Event ``i`` is a function of ``i`` alone, so the pipeline generates its input
from a few integers (``beam.Create`` of chunk numbers, then a ``FlatMap``)
and the benchmark process recomputes the very same events to know the digest
the emulator must report. Each event is a dict of six fields, about 110
bytes of compact JSON (the size of the events the throughput targets were set with),
with one of five event types; the protobuf and Avro variants carry the same
fields.

The expected digests are computed with the plain libraries (``orjson.dumps``,
``SerializeToString``, ``fastavro.schemaless_writer``), not with the sink's
serializers, so a serializer that altered an event would be caught too.
"""

from __future__ import annotations

import io
import itertools
from typing import Any, Callable, Dict, Iterable, Iterator, List, Tuple

import fastavro
import orjson
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

__all__ = [
    "EVENT_TYPES",
    "AVRO_SCHEMA",
    "ClickEvent",
    "make_event",
    "make_proto_event",
    "generate",
    "event_type_of",
    "expected_digests",
]

EVENT_TYPES = ("page_view", "click", "search", "add_to_cart", "checkout")
_PAGES = ("/", "/search", "/products/kettle", "/products/teapot", "/cart", "/checkout")
_BASE_TS = 1_700_000_000_000
_DIGEST_MOD = 1 << 128

AVRO_SCHEMA: Dict[str, Any] = {
    "type": "record",
    "name": "ClickEvent",
    "namespace": "bench",
    "fields": [
        {"name": "event_name", "type": "string"},
        {"name": "seq", "type": "long"},
        {"name": "user_id", "type": "string"},
        {"name": "page", "type": "string"},
        {"name": "ts", "type": "long"},
        {"name": "amount", "type": "double"},
    ],
}


def _proto_class():
    """A ``bench.ClickEvent`` message class with the fields of the dict events."""
    proto = descriptor_pb2.FileDescriptorProto(name="raccoon_bench_click.proto", package="bench", syntax="proto3")
    message = proto.message_type.add(name="ClickEvent")
    kinds = {
        "string": descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
        "long": descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
        "double": descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE,
    }
    for number, field in enumerate(AVRO_SCHEMA["fields"], start=1):
        message.field.add(
            name=field["name"],
            number=number,
            type=kinds[field["type"]],
            label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
        )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("bench.ClickEvent"))


ClickEvent = _proto_class()


def make_event(i: int) -> Dict[str, Any]:
    """Event number ``i``: about 110 bytes of compact JSON (111 on average over the first million)."""
    return {
        "event_name": EVENT_TYPES[i % 5],
        "seq": i,
        "user_id": f"u-{i % 100_003:06d}",
        "page": _PAGES[i % 6],
        "ts": _BASE_TS + i * 3,
        "amount": (i % 1000) / 4,
    }


def make_proto_event(i: int) -> Any:
    """Event number ``i`` as a ``bench.ClickEvent`` message."""
    return ClickEvent(**make_event(i))


_MAKERS: Dict[str, Callable[[int], Any]] = {"json": make_event, "avro": make_event, "protobuf": make_proto_event}


def generate(serializer: str, chunk_size: int) -> Callable[[int], Iterator[Any]]:
    """A FlatMap function: chunk number -> its ``chunk_size`` events."""
    make = _MAKERS[serializer]

    def events_of_chunk(chunk: int) -> Iterator[Any]:
        start = chunk * chunk_size
        return map(make, range(start, start + chunk_size))

    return events_of_chunk


def event_type_of(serializer: str) -> Callable[[Any], str]:
    """The sink's ``event_type`` callable for the elements of ``serializer``."""
    if serializer == "protobuf":
        return lambda event: event.event_name
    return lambda event: event["event_name"]


def _payload_fn(serializer: str) -> Callable[[int], bytes]:
    if serializer == "json":
        return lambda i: orjson.dumps(make_event(i))
    if serializer == "protobuf":
        return lambda i: make_proto_event(i).SerializeToString()
    if serializer == "avro":
        schema = fastavro.parse_schema(AVRO_SCHEMA)

        def avro(i: int) -> bytes:
            buffer = io.BytesIO()
            fastavro.schemaless_writer(buffer, schema, make_event(i))
            return buffer.getvalue()

        return avro
    raise ValueError(f"unknown serializer {serializer!r}")


def events(serializer: str, count: int) -> Iterator[Tuple[str, bytes]]:
    """``(event_type, event_bytes)`` of events ``0 .. count - 1``, as the sink must send them."""
    payload = _payload_fn(serializer)
    for i in range(count):
        yield EVENT_TYPES[i % 5], payload(i)


Digest = Dict[str, Tuple[int, int, str]]


def expected_digests(serializer: str, counts: Iterable[int]) -> Dict[int, Digest]:
    """For each of ``counts``: ``{type: (count, total_bytes, digest)}`` of events ``0 .. count - 1``.

    One pass over the largest count; the digest is a sum, so each smaller
    count is a snapshot on the way.
    """
    from raccoon_beam.emulator.capture import expected_digest as digest_of

    wanted = sorted(set(counts))
    results: Dict[int, Digest] = {}
    sums: Dict[str, List[int]] = {}
    done = 0
    payload_events = events(serializer, wanted[-1] if wanted else 0)
    for count in wanted:
        part = digest_of(itertools.islice(payload_events, count - done))
        done = count
        for event_type, digest in part.items():
            acc = sums.setdefault(event_type, [0, 0, 0])
            acc[0] += digest.count
            acc[1] += digest.total_bytes
            acc[2] = (acc[2] + int(digest.digest, 16)) % _DIGEST_MOD
        results[count] = {t: (c, b, format(h, "032x")) for t, (c, b, h) in sums.items()}
    return results
