"""The server restarted while requests are in flight: the client reconnects, nothing hangs."""

from __future__ import annotations

import threading

import pytest

from raccoon_beam.emulator import Outcome, RaccoonEmulator
from raccoon_beam.retry import RetryPolicy

from tests.transports.helpers import TRANSPORT_WIRE_IDS, TRANSPORT_WIRES, GatedSleep, eventually, make_request

pytestmark = pytest.mark.timeout(90)

KINDS = {"grpc_endpoint": "grpc", "rest_endpoint": "rest", "ws_endpoint": "websocket"}
# Many cheap attempts: after the restart gRPC's own reconnect backoff may
# fail a few of them at once; the waits are the gated sleep's, not real backoff.
PATIENT = RetryPolicy(max_attempts=60, initial_backoff=0.01, max_backoff=0.1, deadline=120.0)


@pytest.fixture
def restartable():
    emulator = RaccoonEmulator().start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.mark.parametrize("attribute, wire", TRANSPORT_WIRES, ids=TRANSPORT_WIRE_IDS)
def test_restart_with_requests_in_flight(attribute, wire, restartable, make_client):
    emulator = restartable
    kind = KINDS[attribute]
    back = threading.Event()
    sleep = GatedSleep(back)
    client = make_client(getattr(emulator, attribute), wire=wire, policy=PATIENT, sleep=sleep, timeout=30.0)
    assert client.submit(make_request(wire)).result(30).ok  # connected before the restart
    emulator.faults.fail_next(3, Outcome.no_answer(), transport=kind)
    requests = [make_request(wire) for _ in range(3)]
    futures = [client.submit(r) for r in requests]
    assert eventually(lambda: emulator.counters().received(kind) >= 4)
    emulator.stop()  # the three requests are in flight, never answered
    emulator.start()  # same ports
    back.set()
    outcomes = [f.result(60) for f in futures]
    assert all(o.ok for o in outcomes), [o.failure for o in outcomes]
    assert all(o.attempts >= 2 for o in outcomes)
    captured = {e.req_guid for e in emulator.events()}
    assert {r.req_guid for r in requests} <= captured
    assert client.submit(make_request(wire)).result(30).ok


@pytest.mark.parametrize("attribute, wire", TRANSPORT_WIRES, ids=TRANSPORT_WIRE_IDS)
def test_server_down_then_back(attribute, wire, restartable, make_client):
    emulator = restartable
    endpoint = getattr(emulator, attribute)
    back = threading.Event()
    sleep = GatedSleep(back)
    client = make_client(endpoint, wire=wire, policy=PATIENT, sleep=sleep, timeout=30.0)
    emulator.stop()
    future = client.submit(make_request(wire))
    assert eventually(lambda: len(sleep.waits) >= 1)  # first attempt failed: connection refused
    emulator.start()
    back.set()
    outcome = future.result(60)
    assert outcome.ok and outcome.attempts >= 2, outcome.failure
