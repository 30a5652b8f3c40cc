"""WriteToRaccoon end to end: pipelines on the DirectRunner against the emulator."""

from __future__ import annotations

import json
from typing import Any, Dict, List, NamedTuple

import apache_beam as beam
import fastavro
import pytest
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import window
from google.protobuf import struct_pb2

from raccoon_beam import RaccoonDeadLetter, RetryPolicy, WriteToRaccoon
from raccoon_beam._proto import raccoon_pb2
from raccoon_beam.emulator import Outcome

EVENT_TYPES = ("page_view", "click", "add_to_cart", "checkout", "search")
N_EVENTS = 10_000
FAST_RETRY = RetryPolicy(max_attempts=4, initial_backoff=0.001, max_backoff=0.01)


def make_events(n: int) -> List[Dict[str, Any]]:
    return [
        {"id": i, "event_name": EVENT_TYPES[i % len(EVENT_TYPES)], "user": f"u-{i % 97}", "page": f"/p/{i}"}
        for i in range(n)
    ]


def captured_json(emulator) -> List[tuple]:
    return sorted((e.type, json.loads(e.event_bytes)["id"]) for e in emulator.events())


def expected_json(events) -> List[tuple]:
    return sorted((e["event_name"], e["id"]) for e in events)


def run_write(elements, *, collect_failed=None, **kwargs) -> None:
    """Runs a pipeline that writes ``elements``; ``collect_failed`` checks the dead letters."""
    with beam.Pipeline() as pipeline:
        result = pipeline | beam.Create(elements, reshuffle=False) | WriteToRaccoon(**kwargs)
        assert_that(result.failed, collect_failed or equal_to([]), label="CheckFailed")


TRANSPORT_WIRES = [
    ("grpc", "protobuf"),
    ("rest", "protobuf"),
    ("rest", "json"),
    ("websocket", "protobuf"),
    ("websocket", "json"),
]


def endpoint_of(emulator, transport: str) -> str:
    return {"grpc": emulator.grpc_endpoint, "rest": emulator.rest_endpoint, "websocket": emulator.ws_endpoint}[
        transport
    ]


@pytest.mark.parametrize("transport, wire", TRANSPORT_WIRES)
def test_json_events_arrive_exactly_once_on_every_transport_and_wire(emulator, transport, wire):
    events = make_events(N_EVENTS)
    run_write(
        events,
        endpoint=endpoint_of(emulator, transport),
        event_type=lambda e: e["event_name"],
        wire=wire,
        max_batch_size=500,
    )
    assert captured_json(emulator) == expected_json(events)
    assert {e.transport for e in emulator.events()} == {transport}
    assert {e.topic for e in emulator.events()} == {f"clickstream-{t}-log" for t in EVENT_TYPES}


def test_protobuf_serializer(emulator):
    messages = []
    for i in range(N_EVENTS):
        message = struct_pb2.Struct()
        message.update({"id": i, "kind": EVENT_TYPES[i % 5]})
        messages.append(message)
    run_write(messages, endpoint=emulator.grpc_endpoint, event_type="proto_event", serializer="protobuf")
    ids = sorted(int(struct_pb2.Struct.FromString(e.event_bytes)["id"]) for e in emulator.events())
    assert ids == list(range(N_EVENTS))
    assert {e.type for e in emulator.events()} == {"proto_event"}


AVRO_SCHEMA = {
    "type": "record",
    "name": "Click",
    "fields": [{"name": "id", "type": "long"}, {"name": "event_name", "type": "string"}],
}


def test_avro_serializer(emulator):
    records = [{"id": i, "event_name": EVENT_TYPES[i % 5]} for i in range(N_EVENTS)]
    run_write(
        records,
        endpoint=emulator.grpc_endpoint,
        event_type=lambda r: r["event_name"],
        serializer="avro",
        avro_schema=AVRO_SCHEMA,
    )
    parsed = fastavro.parse_schema(AVRO_SCHEMA)
    import io

    decoded = sorted(
        (e.type, fastavro.schemaless_reader(io.BytesIO(e.event_bytes), parsed)["id"]) for e in emulator.events()
    )
    assert decoded == sorted((r["event_name"], r["id"]) for r in records)


def test_bytes_serializer_over_websocket(emulator):
    payloads = [f"event-{i}".encode() for i in range(N_EVENTS)]
    run_write(payloads, endpoint=emulator.ws_endpoint, event_type="raw", serializer="bytes")
    assert sorted(e.event_bytes for e in emulator.events()) == sorted(payloads)


class Point(NamedTuple):
    x: int
    y: int


def test_rows_and_namedtuples_serialize_as_their_fields(emulator):
    run_write([beam.Row(id=1, name="a")], endpoint=emulator.grpc_endpoint, event_type="shape")
    run_write([Point(2, 3)], endpoint=emulator.grpc_endpoint, event_type="shape")
    captured = sorted((json.loads(e.event_bytes) for e in emulator.events()), key=str)
    assert captured == sorted([{"id": 1, "name": "a"}, {"x": 2, "y": 3}], key=str)


# ------------------------------------------------------------------ bad input


def check_letters(expected: Dict[Any, tuple]):
    """A matcher: dead letters keyed by element id, each (stage, reason fragment)."""

    def matcher(letters):
        by_id = {}
        for letter in letters:
            assert isinstance(letter, RaccoonDeadLetter), letter
            by_id[_element_id(letter.element)] = letter
        assert set(by_id) == set(expected), f"dead-lettered {sorted(by_id, key=str)}"
        for key, (stage, fragment) in expected.items():
            letter = by_id[key]
            assert letter.stage == stage, letter
            assert fragment in letter.error, letter
            assert letter.error and "Traceback" not in letter.error

    return matcher


def _element_id(element):
    if element is None:
        return None
    if isinstance(element, dict) and "id" in element:
        return element["id"]
    return repr(element)


def test_bad_elements_are_dead_lettered_and_good_ones_delivered(emulator):
    emulator.faults.reject_event_type("forbidden")
    good = make_events(200)

    def event_type(e):
        if e.get("id") == "raises":
            raise KeyError("no event name here")
        return e.get("event_name", "click")

    bad = [
        {"id": "unserializable", "event_name": "click", "value": {1, 2}},
        {"id": "nan", "event_name": "click", "value": float("nan")},
        {"id": "raises"},
        {"id": "too_big", "event_name": "click", "blob": "x" * 5000},
        {"id": "rejected", "event_name": "forbidden"},
        {"id": "list_type", "event_name": ["not", "a", "string"]},
        {"id": "int_type", "event_name": 42},
        None,
    ]
    elements = good[:100] + bad + good[100:]
    run_write(
        elements,
        endpoint=emulator.grpc_endpoint,
        event_type=lambda e: "none" if e is None else event_type(e),
        max_event_bytes=4096,
        retry=FAST_RETRY,
        collect_failed=check_letters(
            {
                "unserializable": ("serialize", "set"),
                "nan": ("serialize", "field 'value'"),
                "raises": ("serialize", "event_type callable failed"),
                "too_big": ("validate", "max_event_bytes=4096"),
                "rejected": ("send", "rejected by the server"),
                "list_type": ("serialize", "returned list"),
                "int_type": ("serialize", "returned int"),
                None: ("serialize", "None"),
            }
        ),
    )
    assert captured_json(emulator) == expected_json(good)


def test_wrong_protobuf_type_and_bad_avro_record_are_dead_lettered(emulator):
    message = struct_pb2.Struct()
    message.update({"id": 1})
    run_write(
        [message, {"not": "a message"}],
        endpoint=emulator.grpc_endpoint,
        event_type="p",
        serializer="protobuf",
        collect_failed=check_letters({repr({"not": "a message"}): ("serialize", "dict")}),
    )
    emulator.reset()
    run_write(
        [{"id": 1, "event_name": "click"}, {"id": 2, "event_name": 5}],
        endpoint=emulator.grpc_endpoint,
        event_type="avro",
        serializer="avro",
        avro_schema=AVRO_SCHEMA,
        collect_failed=check_letters({2: ("serialize", "event_name")}),
    )
    assert len(emulator.events()) == 1


def test_bisection_delivers_all_but_the_rejected_events(emulator):
    emulator.faults.reject_event_type("bad")
    events = make_events(1000)
    for i in (3, 500, 999):
        events[i]["event_name"] = "bad"
    run_write(
        events,
        endpoint=emulator.rest_endpoint,
        event_type=lambda e: e["event_name"],
        max_batch_size=250,
        collect_failed=check_letters({i: ("send", "") for i in (3, 500, 999)}),
    )
    assert captured_json(emulator) == expected_json([e for e in events if e["event_name"] != "bad"])


def test_exhausted_retries_dead_letter_with_attempts_and_code(emulator):
    emulator.faults.fail_next(1000, Outcome.http(503), transport="rest")

    def matcher(letters):
        assert len(letters) == 10
        for letter in letters:
            assert letter.stage == "send"
            assert "gave up after 3 attempt(s)" in letter.error
            assert letter.attempts == 3
            assert letter.code == "http:503"
            assert letter.delivered is False  # the server answered: certainly not published
            assert letter.payload is not None
            assert letter.req_guid

    run_write(
        make_events(10),
        endpoint=emulator.rest_endpoint,
        event_type="click",
        retry=RetryPolicy(max_attempts=3, initial_backoff=0.001, max_backoff=0.001),
        collect_failed=matcher,
    )
    assert emulator.events() == []


def test_transient_failures_are_retried_until_delivered(emulator):
    emulator.faults.fail_next(3, Outcome.raccoon(raccoon_pb2.CODE_INTERNAL_ERROR), transport="grpc")
    events = make_events(300)
    run_write(events, endpoint=emulator.grpc_endpoint, event_type="click", max_batch_size=100, retry=FAST_RETRY)
    assert sorted(json.loads(e.event_bytes)["id"] for e in emulator.events()) == list(range(300))


def test_fail_on_error_fails_the_pipeline(emulator):
    with pytest.raises(Exception, match="not delivered|serialize"):
        run_write(
            [{"id": 1, "v": {1}}],
            endpoint=emulator.grpc_endpoint,
            event_type="click",
            fail_on_error=True,
        )


def test_dead_letters_keep_their_windows_and_timestamps(emulator):
    emulator.faults.reject_event_type("bad")
    elements = [
        ({"id": 1, "event_name": "ok"}, 5),
        ({"id": 2, "event_name": "bad"}, 15),  # rejected by the server: stage send
        ({"id": 3, "event_name": "ok", "v": {1}}, 25),  # unserializable: stage serialize
    ]
    with beam.Pipeline() as pipeline:
        stamped = (
            pipeline
            | beam.Create(elements)
            | beam.Map(lambda pair: window.TimestampedValue(pair[0], pair[1]))
            | beam.WindowInto(window.FixedWindows(10))
        )
        result = stamped | WriteToRaccoon(
            emulator.grpc_endpoint, event_type=lambda e: e["event_name"], retry=FAST_RETRY
        )
        described = result.failed | beam.Map(
            lambda letter, ts=beam.DoFn.TimestampParam, w=beam.DoFn.WindowParam: (
                letter.element["id"],
                letter.stage,
                float(ts),
                (float(w.start), float(w.end)),
            )
        )
        assert_that(
            described,
            equal_to([(2, "send", 15.0, (10.0, 20.0)), (3, "serialize", 25.0, (20.0, 30.0))]),
        )
    assert [json.loads(e.event_bytes)["id"] for e in emulator.events()] == [1]


def _stamped(pipeline, pairs, window_size):
    """``(element, timestamp)`` pairs as timestamped elements of one bundle, in fixed windows."""
    return (
        pipeline
        | beam.Create(pairs, reshuffle=False)
        | beam.Map(lambda pair: window.TimestampedValue(pair[0], pair[1]))
        | beam.WindowInto(window.FixedWindows(window_size))
    )


def _described_dead_letters(failed):
    """Each dead letter as (id, stage, timestamp, window start)."""
    return failed | beam.Map(
        lambda letter, ts=beam.DoFn.TimestampParam, w=beam.DoFn.WindowParam: (
            letter.element["id"],
            letter.stage,
            float(ts),
            float(w.start),
        )
    )


def test_dead_letters_of_elements_sharing_a_window_keep_it_and_their_timestamp(emulator):
    """The usual bundle: every element in one window at one timestamp (then the sink keeps elements bare)."""
    emulator.faults.reject_event_type("bad")
    elements = [{"id": i, "event_name": "bad" if i % 5 == 0 else "ok"} for i in range(200)]
    elements.append({"id": 200, "event_name": "ok", "v": {1}})  # unserializable: stage serialize
    with beam.Pipeline() as pipeline:
        result = _stamped(pipeline, [(element, 25) for element in elements], 10) | WriteToRaccoon(
            emulator.grpc_endpoint, event_type=lambda e: e["event_name"], max_batch_size=50, retry=FAST_RETRY
        )
        expected = [(i, "send", 25.0, 20.0) for i in range(0, 200, 5)] + [(200, "serialize", 25.0, 20.0)]
        assert_that(_described_dead_letters(result.failed), equal_to(expected))
    assert len(emulator.events()) == 200 - len(range(0, 200, 5))


def test_dead_letters_keep_their_windows_when_the_window_changes_within_a_bundle(emulator):
    """Runs of one window, then of another, then alternating: batches mix bare elements and WindowedValues."""
    emulator.faults.reject_event_type("bad")

    def timestamp(i: int) -> int:
        return 5 if i < 150 else 15 if i < 300 else (25 if i % 2 else 35)

    elements = [({"id": i, "event_name": "bad" if i % 7 == 0 else "ok"}, timestamp(i)) for i in range(450)]
    with beam.Pipeline() as pipeline:
        result = _stamped(pipeline, elements, 10) | WriteToRaccoon(
            emulator.grpc_endpoint, event_type=lambda e: e["event_name"], max_batch_size=100, retry=FAST_RETRY
        )
        expected = [(i, "send", float(timestamp(i)), float(timestamp(i) // 10 * 10)) for i in range(0, 450, 7)]
        assert_that(_described_dead_letters(result.failed), equal_to(expected))
    assert len(emulator.events()) == 450 - len(range(0, 450, 7))


# ------------------------------------------------------------- construction


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"endpoint": "ftp://host:1"}, "scheme"),
        ({"endpoint": "grpc://"}, "no host"),
        ({"endpoint": "grpc://h:1", "wire": "json"}, "gRPC"),
        ({"endpoint": "grpc://h:1", "serializer": "yaml"}, "yaml"),
        ({"endpoint": "grpc://h:1", "max_batch_size": 0}, "max_batch_size"),
        ({"endpoint": "grpc://h:1", "max_buffering_duration": -1}, "max_buffering_duration"),
        ({"endpoint": "grpc://h:1", "event_type": ""}, "event_type"),
        ({"endpoint": "grpc://h:1", "max_batch_bytes": 10}, "max_batch_bytes must exceed"),
    ],
)
def test_bad_configuration_is_a_clear_error_at_construction(kwargs, message):
    kwargs = {"event_type": "click", **kwargs}
    with pytest.raises(ValueError, match=message):
        WriteToRaccoon(**kwargs)


def test_display_data_hides_credentials():
    from apache_beam.transforms.display import DisplayData

    transform = WriteToRaccoon(
        "https://alice:s3cret@raccoon.example:8443/api/v1/events",
        event_type="click",
        headers={"Authorization": "Bearer tok-123", "X-Api-Key": "key-456", "X-Team": "growth"},
        secret_headers=["X-Api-Key"],
    )
    items = {item.key: str(item.value) for item in DisplayData.create_from(transform).items}
    shown = " ".join(items.values())
    for secret in ("s3cret", "tok-123", "key-456"):
        assert secret not in shown
    assert items["transport"] == "rest"
    assert "raccoon.example:8443" in items["endpoint"]
    assert items["headers"] == "Authorization, X-Api-Key, X-Team"
    assert items["serializer"] == "json"


def test_event_type_that_cannot_go_on_the_wire_is_dead_lettered_not_fatal(emulator):
    run_write(
        [{"id": 1, "t": "ok"}, {"id": 2, "t": "surrogate"}, {"id": 3, "t": ""}],
        endpoint=emulator.grpc_endpoint,
        # Made here: Beam's Create cannot even encode an element holding a lone surrogate.
        event_type=lambda e: "bad\ud800" if e["t"] == "surrogate" else e["t"],
        collect_failed=check_letters({2: ("validate", "lone surrogate"), 3: ("validate", "empty")}),
    )
    assert [json.loads(e.event_bytes)["id"] for e in emulator.events()] == [1]


def test_constant_event_type_is_checked_at_construction():
    with pytest.raises(ValueError, match="lone surrogate"):
        WriteToRaccoon("grpc://h:1", event_type="bad\ud800")


def test_dead_letters_emitted_mid_bundle_keep_their_windows_and_timestamps(emulator):
    # Small batches and one request in flight: most batches finish while the
    # bundle is still processing, so their dead letters leave from process().
    emulator.faults.reject_event_type("bad")
    elements = [({"id": i, "event_name": "bad" if i % 7 == 0 else "ok"}, i) for i in range(300)]
    with beam.Pipeline() as pipeline:
        result = _stamped(pipeline, elements, 50) | WriteToRaccoon(
            emulator.grpc_endpoint,
            event_type=lambda e: e["event_name"],
            max_batch_size=10,
            max_in_flight=1,
            retry=FAST_RETRY,
        )
        described = result.failed | beam.Map(
            lambda letter, ts=beam.DoFn.TimestampParam, w=beam.DoFn.WindowParam: (
                letter.element["id"],
                float(ts),
                float(w.start),
            )
        )
        assert_that(described, equal_to([(i, float(i), float(i // 50 * 50)) for i in range(0, 300, 7)]))
    assert len(emulator.events()) == 300 - len(range(0, 300, 7))
