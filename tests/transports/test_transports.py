"""Every transport and wire against the emulator: success and each injected fault.

Each fault is checked twice: with a single attempt, the failure carries the
facts the transport observed and ``classify`` gives the promised verdict;
with retries, a RETRY fault is overcome (the same request, resent) while a
SPLIT or PERMANENT one is not retried at all.
"""

from __future__ import annotations

from collections import Counter

import time

import pytest

from raccoon_beam.emulator import Outcome, RaccoonEmulator
from raccoon_beam.errors import FailureKind
from raccoon_beam.retry import RetryPolicy, Verdict
from raccoon_beam.transports import TransportConfig, open_transport
from raccoon_beam.transports.grpc import GrpcTransport
from raccoon_beam.transports.rest import RestTransport
from raccoon_beam.transports.websocket import MAX_OVERDUE_WAITS, WebSocketTransport
from raccoon_beam.wire import Wire, encode_request

from tests.transports.helpers import (
    assert_facts,
    NO_RETRY,
    RecordingSleep,
    SHORT_TIMEOUT,
    TRANSPORT_WIRE_IDS,
    TRANSPORT_WIRES,
    make_request,
)

R, S, P = Verdict.RETRY, Verdict.SPLIT, Verdict.PERMANENT
KINDS = {"grpc_endpoint": "grpc", "rest_endpoint": "rest", "ws_endpoint": "websocket"}

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=TRANSPORT_WIRES, ids=TRANSPORT_WIRE_IDS)
def target(request, emulator):
    """(emulator, endpoint URL, wire, transport kind)."""
    attribute, wire = request.param
    return emulator, getattr(emulator, attribute), wire, KINDS[attribute]


def test_success_and_capture(target, make_client):
    emulator, endpoint, wire, kind = target
    client = make_client(endpoint, wire=wire, group="team-a", headers={"X-Team": "beam"})
    requests = [make_request(wire, n=3, event_type=f"type{i % 2}") for i in range(12)]
    outcomes = [future.result(30) for future in [client.submit(r) for r in requests]]
    assert all(o.ok and o.attempts == 1 for o in outcomes)
    for request, outcome in zip(requests, outcomes):
        assert outcome.response.data["req_guid"] == request.req_guid
    events = emulator.events()
    assert len(events) == 36
    assert {e.transport for e in events} == {kind}
    assert {e.group for e in events} == {"team-a"}
    conn_ids = {e.conn_id for e in events}
    assert len(conn_ids) == 1 and next(iter(conn_ids)).startswith("raccoon-beam-")
    assert {e.req_guid for e in events} == {r.req_guid for r in requests}
    assert sorted(e.event_bytes for e in events) == sorted([b'{"i":0}', b'{"i":1}', b'{"i":2}'] * 12)
    assert Counter(e.type for e in events) == {"type0": 18, "type1": 18}
    assert {e.topic for e in events} == {"clickstream-type0-log", "clickstream-type1-log"}


# outcome -> {kind: (verdict, facts the failure must carry)}
FAULTS = {
    "raccoon-bad-request": (
        lambda: Outcome.raccoon("CODE_BAD_REQUEST", "bad"),
        {
            "grpc": (S, dict(raccoon_code=2)),
            "rest": (S, dict(raccoon_code=2, http_status=400)),
            "websocket": (S, dict(raccoon_code=2)),
        },
    ),
    "raccoon-internal-error": (
        lambda: Outcome.raccoon("CODE_INTERNAL_ERROR", "cannot publish events: kafka"),
        {
            "grpc": (R, dict(raccoon_code=3)),
            "rest": (R, dict(raccoon_code=3, http_status=500)),
            "websocket": (R, dict(raccoon_code=3)),
        },
    ),
    "http-429": (
        lambda: Outcome.http(429, retry_after=1),
        {
            "grpc": (R, dict(grpc_status="UNAVAILABLE")),
            "rest": (R, dict(http_status=429, retry_after=1.0, malformed=True)),
            "websocket": (R, dict(network=True)),
        },
    ),
    "http-502-html": (
        lambda: Outcome.http(502, body=b"<html><body>Bad Gateway</body></html>", content_type="text/html"),
        {
            "grpc": (R, dict(grpc_status="UNAVAILABLE")),
            "rest": (R, dict(http_status=502, malformed=True)),
            "websocket": (R, dict(network=True)),
        },
    ),
    "http-503": (
        lambda: Outcome.http(503),
        {
            "grpc": (R, dict(grpc_status="UNAVAILABLE")),
            "rest": (R, dict(http_status=503)),
            "websocket": (R, {}),
        },
    ),
    "http-504": (
        lambda: Outcome.http(504),
        {
            "grpc": (R, dict(grpc_status="DEADLINE_EXCEEDED", timeout=True)),
            "rest": (R, dict(http_status=504)),
            "websocket": (R, {}),
        },
    ),
    "http-413": (
        lambda: Outcome.http(413),
        {"rest": (S, dict(http_status=413))},
    ),
    "http-401": (
        lambda: Outcome.http(401),
        {"grpc": (P, dict(grpc_status="UNAUTHENTICATED")), "rest": (P, dict(http_status=401))},
    ),
    "http-403": (
        lambda: Outcome.http(403),
        {"grpc": (P, dict(grpc_status="PERMISSION_DENIED")), "rest": (P, dict(http_status=403))},
    ),
    "http-404": (
        lambda: Outcome.http(404),
        {"grpc": (P, dict(grpc_status="UNIMPLEMENTED")), "rest": (P, dict(http_status=404))},
    ),
    "grpc-unavailable": (
        lambda: Outcome.grpc("UNAVAILABLE", "upstream connect error"),
        {
            "grpc": (R, dict(grpc_status="UNAVAILABLE", network=True)),
            "rest": (R, dict(http_status=503)),
            "websocket": (R, dict(network=True)),
        },
    ),
    "grpc-too-large": (
        lambda: Outcome.grpc(
            "RESOURCE_EXHAUSTED", "grpc: received message larger than max (5000000 vs. 4194304)"
        ),
        {"grpc": (S, dict(grpc_status="RESOURCE_EXHAUSTED"))},
    ),
    "grpc-no-conn-id": (
        lambda: Outcome.grpc("UNKNOWN", "connection id header missing"),
        {"grpc": (P, dict(grpc_status="UNKNOWN"))},
    ),
    "grpc-unauthenticated": (
        lambda: Outcome.grpc("UNAUTHENTICATED", "no token"),
        {"grpc": (P, dict(grpc_status="UNAUTHENTICATED")), "rest": (P, dict(http_status=401))},
    ),
    "garbage": (
        lambda: Outcome.garbage(),
        {
            "grpc": (R, dict(malformed=True)),
            "rest": (R, dict(http_status=200, malformed=True)),
            "websocket": (R, dict(timeout=True)),  # an undecodable frame acks nothing
        },
    ),
    "garbage-wrong-content-type": (
        lambda: Outcome.garbage(body=b'{"status":1,"code":1}', content_type="text/plain"),
        {"rest": (R, dict(http_status=200, malformed=True))},
    ),
    "wrong-req-guid": (
        lambda: Outcome.wrong_req_guid(),
        {
            "grpc": (R, dict(malformed=True)),
            "rest": (R, dict(malformed=True, http_status=200)),
            "websocket": (R, dict(timeout=True)),  # another guid's ack never resolves this request
        },
    ),
    "no-answer": (
        lambda: Outcome.no_answer(),
        {
            "grpc": (R, dict(grpc_status="DEADLINE_EXCEEDED", timeout=True)),
            "rest": (R, dict(timeout=True)),
            "websocket": (R, dict(timeout=True)),
        },
    ),
}

FAULT_CASES = [
    pytest.param(name, attribute, wire, id=f"{name}-{wire_id}")
    for name, (_, expected) in FAULTS.items()
    for (attribute, wire), wire_id in zip(TRANSPORT_WIRES, TRANSPORT_WIRE_IDS)
    if KINDS[attribute] in expected
]


def _timeout_for(fault: str) -> float:
    # Faults that leave a request unanswered (on some transport) end in an
    # ack timeout: keep it short; the others keep a generous one.
    return SHORT_TIMEOUT if fault in ("no-answer", "garbage", "wrong-req-guid") else 10.0


@pytest.mark.parametrize("name, attribute, wire", FAULT_CASES)
def test_fault_single_attempt(name, attribute, wire, emulator, make_client):
    outcome_factory, expected = FAULTS[name]
    kind = KINDS[attribute]
    verdict, facts = expected[kind]
    client = make_client(getattr(emulator, attribute), wire=wire, policy=NO_RETRY, timeout=_timeout_for(name))
    emulator.faults.fail_next(1, outcome_factory(), transport=kind)
    outcome = client.submit(make_request(wire)).result(30)
    assert not outcome.ok and outcome.attempts == 1
    assert outcome.verdict is verdict, outcome.failure
    assert_facts(outcome.failure, facts)
    assert emulator.events() == []
    # The transport is still usable afterwards (WebSocket: reconnects).
    assert client.submit(make_request(wire)).result(30).ok
    assert len(emulator.events()) == 1


@pytest.mark.parametrize("name, attribute, wire", FAULT_CASES)
def test_fault_with_retries(name, attribute, wire, emulator, make_client):
    outcome_factory, expected = FAULTS[name]
    kind = KINDS[attribute]
    verdict, _ = expected[kind]
    client = make_client(getattr(emulator, attribute), wire=wire, timeout=_timeout_for(name))
    emulator.faults.fail_next(1, outcome_factory(), transport=kind)
    request = make_request(wire)
    outcome = client.submit(request).result(30)
    if verdict is Verdict.RETRY:
        # A WebSocket frame answered by no ack of its own: its retries first
        # wait for that ack on the same connection (a late ack is no
        # duplicate), then it goes out again on a fresh one.
        unanswered = kind == "websocket" and name in ("garbage", "wrong-req-guid", "no-answer")
        assert outcome.ok and outcome.attempts == (2 + MAX_OVERDUE_WAITS if unanswered else 2), outcome.failure
        assert [e.req_guid for e in emulator.events()] == [request.req_guid]
    else:
        assert not outcome.ok and outcome.attempts == 1 and outcome.verdict is verdict
        assert emulator.events() == []


def test_retry_after_is_read_and_honoured_over_rest(emulator, make_client):
    sleep = RecordingSleep()
    client = make_client(emulator.rest_endpoint, sleep=sleep)
    emulator.faults.fail_next(1, Outcome.http(429, retry_after=1), transport="rest")
    started = time.monotonic()
    outcome = client.submit(make_request(Wire.PROTOBUF)).result(30)
    assert outcome.ok and outcome.attempts == 2
    assert sleep.waits == [1.0]  # FAST_POLICY's jitter is at most 0.01 here
    # The sender holds its attempts (every one, not only this request's) until
    # the server's Retry-After has passed: for real, though RecordingSleep does not wait.
    assert time.monotonic() - started >= 0.9 and client.flow.held.seconds >= 0.9


@pytest.mark.parametrize("attribute, wire", TRANSPORT_WIRES, ids=TRANSPORT_WIRE_IDS)
def test_dropped_connection_is_retried(attribute, wire, emulator, make_client):
    kind = KINDS[attribute]
    client = make_client(getattr(emulator, attribute), wire=wire, policy=NO_RETRY)
    emulator.faults.drop_connection(1, transport=kind)
    outcome = client.submit(make_request(wire)).result(30)
    assert outcome.verdict is Verdict.RETRY
    assert (outcome.failure.kind is FailureKind.NETWORK), outcome.failure
    retrying = make_client(getattr(emulator, attribute), wire=wire)
    emulator.faults.drop_connection(1, transport=kind)
    assert retrying.submit(make_request(wire)).result(30).ok


@pytest.mark.parametrize("attribute, wire", TRANSPORT_WIRES, ids=TRANSPORT_WIRE_IDS)
def test_drop_after_capture_delivers_at_least_once(attribute, wire, emulator, make_client):
    kind = KINDS[attribute]
    client = make_client(getattr(emulator, attribute), wire=wire)
    emulator.faults.drop_connection(1, after_capture=True, transport=kind)
    request = make_request(wire)
    outcome = client.submit(request).result(30)
    assert outcome.ok and outcome.attempts == 2
    # Published by the first attempt, then again by the retry: the same guid twice.
    assert [e.req_guid for e in emulator.events()] == [request.req_guid] * 2


@pytest.mark.parametrize("attribute, wire", TRANSPORT_WIRES, ids=TRANSPORT_WIRE_IDS)
def test_latency_over_timeout_is_a_timeout(attribute, wire, emulator, make_client):
    kind = KINDS[attribute]
    client = make_client(getattr(emulator, attribute), wire=wire, policy=NO_RETRY, timeout=SHORT_TIMEOUT)
    emulator.faults.add_latency(5.0, transport=kind)
    outcome = client.submit(make_request(wire)).result(30)
    assert (outcome.failure.kind is FailureKind.TIMEOUT) and outcome.verdict is Verdict.RETRY


@pytest.mark.parametrize("attribute, wire", TRANSPORT_WIRES, ids=TRANSPORT_WIRE_IDS)
def test_rejected_event_type_is_split_not_retried(attribute, wire, emulator, make_client):
    client = make_client(getattr(emulator, attribute), wire=wire)
    emulator.faults.reject_event_type("poison")
    request = make_request(wire, event_type="poison")
    outcome = client.submit(request).result(30)
    assert outcome.verdict is Verdict.SPLIT and outcome.attempts == 1
    assert outcome.failure.raccoon_code == 2
    assert client.submit(make_request(wire, event_type="fine")).result(30).ok


@pytest.mark.parametrize("attribute, wire", TRANSPORT_WIRES, ids=TRANSPORT_WIRE_IDS)
def test_persistent_failure_exhausts_attempts(attribute, wire, emulator, make_client):
    sleep = RecordingSleep()
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.01)
    client = make_client(getattr(emulator, attribute), wire=wire, policy=policy, sleep=sleep)
    emulator.faults.fail_next(100, Outcome.raccoon("CODE_INTERNAL_ERROR"), transport=KINDS[attribute])
    outcome = client.submit(make_request(wire)).result(30)
    assert not outcome.ok and outcome.attempts == 3 and outcome.verdict is Verdict.RETRY
    assert len(sleep.waits) == 2


@pytest.fixture(scope="module")
def sync_emulator():
    with RaccoonEmulator(ack="sync") as emulator:
        yield emulator


@pytest.mark.parametrize("attribute, wire", TRANSPORT_WIRES, ids=TRANSPORT_WIRE_IDS)
def test_sync_ack_publish_failure_is_retried(attribute, wire, sync_emulator, make_client):
    sync_emulator.faults.clear()
    sync_emulator.reset()
    single = make_client(getattr(sync_emulator, attribute), wire=wire, policy=NO_RETRY)
    sync_emulator.faults.fail_publish(n=1)
    outcome = single.submit(make_request(wire)).result(30)
    assert outcome.failure.raccoon_code == 3 and outcome.verdict is Verdict.RETRY
    if attribute == "rest_endpoint":
        assert outcome.failure.http_status == 500
    client = make_client(getattr(sync_emulator, attribute), wire=wire)
    sync_emulator.faults.fail_publish(n=1)
    request = make_request(wire)
    outcome = client.submit(request).result(30)
    assert outcome.ok and outcome.attempts == 2
    sync_emulator.faults.clear()


def test_grpc_request_over_4mib_is_split(emulator, make_client):
    client = make_client(emulator.grpc_endpoint)
    big = encode_request([("big", b"x" * (5 * 1024 * 1024))], wire=Wire.PROTOBUF)
    outcome = client.submit(big).result(30)
    assert outcome.verdict is Verdict.SPLIT and outcome.attempts == 1
    assert outcome.failure.grpc_status == "RESOURCE_EXHAUSTED"
    assert "larger than max" in outcome.failure.message
    assert client.submit(make_request(Wire.PROTOBUF)).result(30).ok


def test_open_transport_picks_by_scheme():
    assert isinstance(open_transport(TransportConfig("grpc://h")), GrpcTransport)
    assert isinstance(open_transport(TransportConfig("grpcs://h")), GrpcTransport)
    assert isinstance(open_transport(TransportConfig("http://h")), RestTransport)
    assert isinstance(open_transport(TransportConfig("https://h")), RestTransport)
    assert isinstance(open_transport(TransportConfig("ws://h")), WebSocketTransport)
    assert isinstance(open_transport(TransportConfig("wss://h")), WebSocketTransport)
