"""Bad input and bad configuration: a clear error when the transform is built,
or a readable dead-letter record at run time while the good elements go through.

Every run-time case mixes good elements in and checks that they were
delivered: a bad element never stops the pipeline.
"""

from __future__ import annotations

import datetime
import json
import math
import time
from typing import Any, Dict, List

import pytest
from google.protobuf import struct_pb2

from raccoon_beam import RetryPolicy, TlsOptions, WriteToRaccoon
from raccoon_beam._proto import raccoon_pb2
from raccoon_beam.emulator import RaccoonEmulator

from tests.reliability.conftest import endpoint_of, run_pipeline
from tests.ports import closed_port

FAST = RetryPolicy(max_attempts=3, initial_backoff=0.001, max_backoff=0.01, deadline=30.0)
GOOD = [{"id": i, "event_name": "click"} for i in range(50)]
# Every run-time case must finish well within this (it takes about a second).
BOUND = 60.0


def captured_ids(emulator: RaccoonEmulator) -> List[Any]:
    return sorted(json.loads(e.event_bytes)["id"] for e in emulator.events())


def readable(letter: Dict[str, Any]) -> None:
    assert letter["error"] and "Traceback" not in letter["error"] and len(letter["error"]) < 2000, letter


# ------------------------------------------------------------------ construction


def _avro(schema):
    return {"serializer": "avro", "avro_schema": schema}


CONSTRUCTION_ERRORS = [
    # (id, kwargs, exception, message fragment)
    ("no-scheme", {"endpoint": "raccoon.internal:8081"}, ValueError, "no scheme"),
    ("unknown-scheme", {"endpoint": "ftp://host:21"}, ValueError, "unknown scheme"),
    ("no-host", {"endpoint": "grpc://:8081"}, ValueError, "no host"),
    ("bad-port", {"endpoint": "http://host:99999"}, ValueError, "malformed"),
    ("port-zero", {"endpoint": "grpc://host:0"}, ValueError, "port 0"),
    ("grpc-with-path", {"endpoint": "grpc://host:8081/api/v1/events"}, ValueError, "no path"),
    ("query-string", {"endpoint": "http://host:8080/api/v1/events?x=1"}, ValueError, "query"),
    ("invalid-host", {"endpoint": "http://ho st:8080"}, ValueError, "invalid host"),
    ("endpoint-not-str", {"endpoint": 8081}, ValueError, "non-empty URL"),
    ("json-over-grpc", {"endpoint": "grpc://host:8081", "wire": "json"}, ValueError, "not possible over gRPC"),
    ("unknown-wire", {"endpoint": "http://host:8080", "wire": "xml"}, ValueError, "wire must be"),
    (
        "tls-on-plain-endpoint",
        {"endpoint": "http://host:8080", "tls": TlsOptions(ca_certs="/etc/ssl/ca.pem")},
        ValueError,
        "plain-text endpoint",
    ),
    (
        "grpc-verify-off",
        {"endpoint": "grpcs://host:443", "tls": TlsOptions(verify=False)},
        ValueError,
        "cannot turn TLS verification off",
    ),
    ("unknown-serializer", {"serializer": "yaml"}, ValueError, "yaml"),
    ("serializer-not-callable", {"serializer": 42}, TypeError, "serializer"),
    ("avro-invalid-schema", _avro({"type": "record", "name": "X", "fields": [{"name": "a", "type": "nope"}]}), ValueError, "avro_schema"),
    ("avro-schema-not-json", _avro("{not json"), ValueError, "not valid JSON"),
    ("retry-not-a-policy", {"retry": {"max_attempts": 3}}, TypeError, "RetryPolicy"),
    ("max-batch-size-zero", {"max_batch_size": 0}, ValueError, "max_batch_size"),
    ("max-batch-size-negative", {"max_batch_size": -5}, ValueError, "max_batch_size"),
    ("max-batch-size-float", {"max_batch_size": 2.5}, ValueError, "max_batch_size"),
    ("max-batch-bytes-negative", {"max_batch_bytes": -1}, ValueError, "max_batch_bytes"),
    ("max-batch-bytes-below-overhead", {"max_batch_bytes": 10}, ValueError, "max_batch_bytes must exceed"),
    ("max-event-bytes-negative", {"max_event_bytes": -1}, ValueError, "max_event_bytes"),
    ("max-in-flight-zero", {"max_in_flight": 0}, ValueError, "max_in_flight"),
    ("timeout-negative", {"timeout": -1}, ValueError, "timeout"),
    ("timeout-nan", {"timeout": math.nan}, ValueError, "timeout"),
    ("timeout-infinite", {"timeout": math.inf}, ValueError, "timeout"),
    ("timeout-bool", {"timeout": True}, ValueError, "timeout"),
    ("buffering-zero", {"max_buffering_duration": 0}, ValueError, "max_buffering_duration"),
    ("buffering-nan", {"max_buffering_duration": math.nan}, ValueError, "max_buffering_duration"),
    ("rate-infinite", {"max_events_per_second": math.inf}, ValueError, "max_events_per_second"),
    ("rate-bool", {"max_events_per_second": True}, ValueError, "max_events_per_second"),
    ("event-type-empty", {"event_type": ""}, ValueError, "event_type"),
    ("event-type-not-str", {"event_type": 5}, TypeError, "event_type"),
    ("header-injection", {"headers": {"X-Team": "a\r\nX-Evil: 1"}}, ValueError, "single-line"),
    ("header-bad-name", {"headers": {"Bad Header": "v"}}, ValueError, "not a valid header name"),
    ("header-value-not-str", {"headers": {"X-Count": 3}}, ValueError, "must be a string or a credential provider"),
    ("conn-id-header-empty", {"conn_id_header": ""}, ValueError, "conn_id_header"),
    ("group-header-invalid", {"group_header": "x y"}, ValueError, "group_header"),
]


@pytest.mark.parametrize(
    "kwargs, exception, fragment", [pytest.param(*case[1:], id=case[0]) for case in CONSTRUCTION_ERRORS]
)
def test_bad_configuration_fails_at_construction_with_a_clear_message(kwargs, exception, fragment):
    arguments = {"endpoint": "grpc://127.0.0.1:8081", "event_type": "click", **kwargs}
    with pytest.raises(exception) as raised:
        WriteToRaccoon(**arguments)
    message = str(raised.value)
    assert fragment.lower() in message.lower(), message
    assert "Traceback" not in message and len(message) < 1000


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 2.5}, "max_attempts"),
        ({"initial_backoff": -1}, "initial_backoff"),
        ({"max_backoff": math.nan}, "max_backoff"),
        ({"deadline": -0.1}, "deadline"),
        ({"initial_backoff": 5, "max_backoff": 1}, "max_backoff"),
    ],
)
def test_bad_retry_policy_fails_at_construction(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        RetryPolicy(**kwargs)


def test_tls_client_cert_without_key_fails_at_construction():
    with pytest.raises(ValueError, match="client_cert and client_key"):
        TlsOptions(client_cert="/tmp/client.pem")


# ------------------------------------------------------------------ run time: elements


class Unserializable:
    def __repr__(self) -> str:
        return "Unserializable()"


def test_malformed_elements_are_dead_lettered_with_readable_reasons(emulator, letters_path):
    # Not here: circular or very deeply nested elements. The sink rejects them
    # (stage serialize), but Beam's own coders recurse forever on them and
    # crash the process when the dead letter crosses a stage boundary.
    bad = [
        ({"id": "set", "event_name": "click", "v": {1, 2}}, "serialize", "set"),
        ({"id": "nan", "event_name": "click", "v": math.nan}, "serialize", "v"),
        ({"id": "object", "event_name": "click", "v": Unserializable()}, "serialize", "Unserializable"),
        ({"id": "time-with-tz", "event_name": "click", "v": datetime.time(1, tzinfo=datetime.timezone.utc)}, "serialize", "tzinfo"),
        ({"id": "type-missing"}, "serialize", "event_type callable failed"),
        ({"id": "type-int", "event_name": 42}, "serialize", "expected str"),
        ({"id": "type-none", "event_name": None}, "serialize", "expected str"),
        ({"id": "type-empty", "event_name": ""}, "validate", "empty"),
        ({"id": "oversized", "event_name": "click", "blob": "x" * 10_000}, "validate", "max_event_bytes=4096"),
    ]
    elements = GOOD[:25] + [element for element, _, _ in bad] + GOOD[25:]
    started = time.monotonic()
    letters = run_pipeline(
        elements,
        letters_path,
        endpoint=emulator.grpc_endpoint,
        event_type=lambda e: e["event_name"],
        max_event_bytes=4096,
        retry=FAST,
    )
    assert time.monotonic() - started < BOUND
    by_id = {letter["id"]: letter for letter in letters}
    assert set(by_id) == {element["id"] for element, _, _ in bad}, letters
    for element, stage, fragment in bad:
        letter = by_id[element["id"]]
        assert letter["stage"] == stage, letter
        assert fragment in letter["error"], letter
        assert letter["attempts"] == 0 and letter["req_guid"] is None, letter
        readable(letter)
    assert captured_ids(emulator) == list(range(50))


def test_wrong_types_for_each_serializer_are_dead_lettered(emulator, letters_path):
    message = struct_pb2.Struct()
    message.update({"id": 1})
    cases = [
        ("bytes", [b"ok-1", "ok-2", 3, None, {"a": 1}], {"3", "None", "{'a': 1}"}),
        ("protobuf", [message, {"id": 2}, b"raw"], {"{'id': 2}", "b'raw'"}),
        (lambda e: e["payload"], [{"payload": b"ok"}, {"payload": "not-bytes"}, {"payload": 7}, {}], None),
    ]
    for serializer, elements, expected_bad in cases:
        emulator.reset()
        path = f"{letters_path}.{len(elements)}"
        letters = run_pipeline(
            elements, path, endpoint=emulator.rest_endpoint, event_type="typed", serializer=serializer, retry=FAST
        )
        for letter in letters:
            assert letter["stage"] == "serialize", letter
            readable(letter)
        if expected_bad is not None:
            assert {letter["element"] for letter in letters} == expected_bad, letters
        assert len(emulator.events()) + len(letters) == len(elements)
        assert len(emulator.events()) >= 1


AVRO_SCHEMA = {
    "type": "record",
    "name": "Click",
    "fields": [{"name": "id", "type": "long"}, {"name": "event_name", "type": "string"}],
}


def test_avro_schema_mismatches_are_dead_lettered(emulator, letters_path):
    elements = [
        {"id": 1, "event_name": "click"},
        {"id": 2},  # missing field
        {"id": "three", "event_name": "click"},  # wrong type
        {"id": 4, "event_name": 4},  # wrong type
        {"id": 5, "event_name": "click", "extra": True},  # extra fields are ignored by Avro
        [1, 2],  # not a record at all
    ]
    letters = run_pipeline(
        elements,
        letters_path,
        endpoint=emulator.ws_endpoint,
        event_type="avro",
        serializer="avro",
        avro_schema=AVRO_SCHEMA,
        retry=FAST,
    )
    assert sorted(letter["element"] for letter in letters) == sorted(
        repr(e) for e in ({"id": 2}, {"id": "three", "event_name": "click"}, {"id": 4, "event_name": 4}, [1, 2])
    )
    for letter in letters:
        assert letter["stage"] == "serialize", letter
        readable(letter)
    assert len(emulator.events()) == 2


def test_event_too_large_for_any_request_is_dead_lettered_not_sent(emulator, letters_path):
    elements = GOOD[:10] + [{"id": "huge", "event_name": "click", "blob": "x" * 200_000}]
    letters = run_pipeline(
        elements, letters_path, endpoint=emulator.grpc_endpoint, event_type="click", max_batch_bytes=64 * 1024
    )
    assert [(letter["id"], letter["stage"]) for letter in letters] == [("huge", "validate")]
    assert "max_batch_bytes=65536" in letters[0]["error"]
    assert captured_ids(emulator) == list(range(10))
    assert emulator.counters().rejected() == 0  # never sent


def test_user_serializer_and_event_type_that_raise_are_dead_lettered(emulator, letters_path):
    def serializer(element):
        if element["id"] % 10 == 3:
            raise RuntimeError(f"cannot encode {element['id']}")
        return json.dumps(element).encode()

    def event_type(element):
        if element["id"] % 10 == 7:
            raise LookupError("no route")
        return "click"

    letters = run_pipeline(
        GOOD, letters_path, endpoint=emulator.rest_endpoint, event_type=event_type, serializer=serializer, retry=FAST
    )
    by_id = {letter["id"]: letter for letter in letters}
    assert set(by_id) == {i for i in range(50) if i % 10 in (3, 7)}
    assert "RuntimeError: cannot encode 3" in by_id[3]["error"]
    assert "event_type callable failed: LookupError: no route" in by_id[7]["error"]
    assert len(captured_ids(emulator)) == 40


# ------------------------------------------------------------------ run time: configuration


@pytest.mark.emulator(conn_id_header="X-Conn")
def test_conn_id_header_mismatch_on_grpc_is_a_clear_non_retried_failure(emulator, letters_path):
    """The server wants X-Conn, the sink sends X-User-ID: gRPC UNKNOWN 'connection id header missing'."""
    started = time.monotonic()
    letters = run_pipeline(
        GOOD,
        letters_path,
        endpoint=emulator.grpc_endpoint,
        event_type="click",
        max_batch_size=10,
        retry=RetryPolicy(max_attempts=5, initial_backoff=0.001, max_backoff=0.01),
    )
    assert time.monotonic() - started < BOUND
    assert len(letters) == 50 and emulator.events() == []
    for letter in letters:
        assert letter["stage"] == "send"
        assert letter["attempts"] == 1, letter  # misconfiguration: never retried
        assert letter["code"] == "grpc:UNKNOWN"
        assert "connection id header missing" in letter["error"] and "not retryable" in letter["error"]


@pytest.mark.emulator(conn_id_header="X-Conn")
def test_matching_conn_id_header_is_accepted(emulator, letters_path):
    letters = run_pipeline(
        GOOD, letters_path, endpoint=emulator.grpc_endpoint, event_type="click", conn_id_header="X-Conn"
    )
    assert letters == [] and len(emulator.events()) == 50
    assert all(e.conn_id.startswith("raccoon-beam-") for e in emulator.events())


@pytest.mark.parametrize("transport", ["rest", "websocket"])
def test_wrong_path_is_a_clear_non_retried_failure(emulator, letters_path, transport):
    endpoint = endpoint_of(emulator, transport).replace("/api/v1/events", "/api/v2/nothing-here")
    letters = run_pipeline(
        GOOD,
        letters_path,
        endpoint=endpoint,
        event_type="click",
        max_batch_size=25,
        retry=RetryPolicy(max_attempts=5, initial_backoff=0.001, max_backoff=0.01),
    )
    assert len(letters) == 50 and emulator.events() == []
    for letter in letters:
        assert letter["attempts"] == 1 and letter["code"] in ("http:404", "http:405"), letter
        readable(letter)


def test_nothing_listening_is_bounded_and_dead_lettered(letters_path):
    port = closed_port()  # a port nobody listens on
    started = time.monotonic()
    letters = run_pipeline(
        GOOD,
        letters_path,
        endpoint=f"grpc://127.0.0.1:{port}",
        event_type="click",
        retry=RetryPolicy(max_attempts=3, initial_backoff=0.001, max_backoff=0.01, deadline=5),
        timeout=2,
    )
    assert time.monotonic() - started < BOUND
    assert len(letters) == 50 and all(letter["code"] == "grpc:UNAVAILABLE" for letter in letters), letters[0]


@pytest.mark.parametrize("scheme", ["https", "wss", "grpcs"])
def test_missing_ca_file_is_a_dead_letter_not_a_crash(emulator, letters_path, scheme, tmp_path):
    """A ca_certs path that does not exist: the pipeline must not crash."""
    port = emulator.grpc_port if scheme == "grpcs" else emulator.http_port
    path = "" if scheme == "grpcs" else "/api/v1/events"
    letters = run_pipeline(
        GOOD,
        letters_path,
        endpoint=f"{scheme}://127.0.0.1:{port}{path}",
        event_type="click",
        tls=TlsOptions(ca_certs=str(tmp_path / "missing-ca.pem")),
        retry=FAST,
    )
    assert len(letters) == 50
    for letter in letters:
        assert letter["attempts"] == 1, letter  # a configuration problem: not retried
        assert "missing-ca.pem" in letter["error"] or "TLS" in letter["error"], letter


@pytest.mark.parametrize("transport", ["grpc", "websocket"])
def test_event_type_that_is_not_utf8_is_dead_lettered(emulator, letters_path, transport):
    def event_type(element):
        # Built here, not in the element: Beam's own coder cannot carry a lone surrogate.
        return "bad\ud800type" if element["id"] == 7 else "click"

    letters = run_pipeline(
        GOOD, letters_path, endpoint=endpoint_of(emulator, transport), event_type=event_type, retry=FAST
    )
    assert [letter["id"] for letter in letters] == [7]
    assert letters[0]["stage"] in ("serialize", "validate")
    assert len(emulator.events()) == 49


def test_request_over_the_grpc_limit_is_split_not_retried_whole(emulator, letters_path):
    """max_batch_bytes above stock Raccoon's 4 MiB: RESOURCE_EXHAUSTED, split, all delivered."""
    elements = [{"id": i, "event_name": "click", "blob": "x" * 100_000} for i in range(60)]
    letters = run_pipeline(
        elements,
        letters_path,
        endpoint=emulator.grpc_endpoint,
        event_type="click",
        max_batch_bytes=16 * 1024 * 1024,
        max_batch_size=60,
        retry=FAST,
    )
    assert letters == []
    assert captured_ids(emulator) == list(range(60))
    # One 6 MB batch was refused (RESOURCE_EXHAUSTED, before the handler) and
    # arrived as halves: several requests, none of them over 4 MiB.
    assert len({e.req_guid for e in emulator.events()}) >= 2


@pytest.mark.emulator(max_connections=0)
def test_websocket_server_full_is_bounded_and_dead_lettered(emulator, letters_path):
    """Every connection refused with CODE_MAX_CONNECTION_LIMIT_REACHED and close 1008."""
    started = time.monotonic()
    letters = run_pipeline(GOOD, letters_path, endpoint=emulator.ws_endpoint, event_type="click", retry=FAST)
    assert time.monotonic() - started < BOUND
    assert len(letters) == 50 and emulator.events() == []
    for letter in letters:
        assert letter["attempts"] == FAST.max_attempts, letter  # retried: the server may free up
        assert letter["code"] == f"raccoon:{raccoon_pb2.CODE_MAX_CONNECTION_LIMIT_REACHED}", letter


@pytest.mark.parametrize("transport", ["grpc", "rest", "websocket"])
def test_failed_bundle_with_fail_on_error_leaves_no_thread_or_socket(emulator, transport):
    import apache_beam as beam

    from raccoon_beam.emulator import Outcome
    from tests.reliability.conftest import assert_no_leaks, sink_threads

    emulator.faults.fail_next(10**6, Outcome.http(503))
    before = sink_threads()
    with pytest.raises(Exception, match="not delivered"):
        with beam.Pipeline() as pipeline:
            _ = pipeline | beam.Create(GOOD) | WriteToRaccoon(
                endpoint_of(emulator, transport), event_type="click", retry=FAST, fail_on_error=True, max_batch_size=10
            )
    assert_no_leaks(before, (emulator.grpc_port, emulator.http_port))


def test_buffering_path_under_faults_reconciles(emulator, letters_path):
    """max_buffering_duration (GroupIntoBatches) with 30% 503s: every event delivered once."""
    from raccoon_beam.emulator import Outcome

    emulator.faults.fail_fraction(0.3, Outcome.http(503), seed=3)
    elements = [{"id": i, "event_name": ("click", "view")[i % 2]} for i in range(3000)]
    letters = run_pipeline(
        elements,
        letters_path,
        endpoint=emulator.rest_endpoint,
        event_type=lambda e: e["event_name"],
        max_buffering_duration=0.5,
        max_batch_size=200,
        retry=RetryPolicy(max_attempts=100, initial_backoff=0.001, max_backoff=0.02),
    )
    assert letters == []
    assert captured_ids(emulator) == list(range(3000))
    assert emulator.counters().injected("http") > 0
