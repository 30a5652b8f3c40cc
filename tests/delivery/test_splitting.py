"""Splitting only where it helps, and unreachable endpoints, against the real emulator."""

from __future__ import annotations

import pytest

from raccoon_beam._proto import raccoon_pb2
from raccoon_beam.batching import Batch
from raccoon_beam.emulator import Outcome
from raccoon_beam.errors import FailureKind
from raccoon_beam.retry import Verdict
from raccoon_beam.wire import Wire

from tests.transports.helpers import NO_RETRY, TRANSPORT_WIRE_IDS, TRANSPORT_WIRES, make_request
from tests.ports import closed_port
from tests.transports import conftest as transports_fixtures

pytestmark = pytest.mark.timeout(60)

KINDS = {"grpc_endpoint": "grpc", "rest_endpoint": "rest", "ws_endpoint": "websocket"}


# The transports' fixtures: one emulator for the module, reset around each test.
shared_emulator = transports_fixtures.shared_emulator
emulator = transports_fixtures.emulator


def _batch(event_types):
    return Batch(list(event_types), [b'{"i": %d}' % i for i in range(len(event_types))], list(range(len(event_types))))


@pytest.mark.parametrize("attribute, wire", TRANSPORT_WIRES, ids=TRANSPORT_WIRE_IDS)
def test_a_request_level_bad_request_costs_three_requests_per_batch(attribute, wire, emulator, make_client):
    """500 events all answered 'deserialization failure' in batches of 100: 15 requests, not 999."""
    emulator.faults.fail_fraction(
        1.0, Outcome.raccoon(raccoon_pb2.CODE_BAD_REQUEST, "deserialization failure"), transport=KINDS[attribute]
    )
    client = make_client(getattr(emulator, attribute), wire=wire)
    futures = [client.deliver(_batch(["click"] * 100)) for _ in range(5)]
    reports = [future.result(30) for future in futures]
    assert [report.requests for report in reports] == [3] * 5
    assert emulator.counters().received(KINDS[attribute]) == 15
    failed = [source for report in reports for f in report.failures for source in f.sources]
    assert len(failed) == 500 and all(report.acknowledged == 0 for report in reports)
    assert all(f.verdict is Verdict.SPLIT for report in reports for f in report.failures)


@pytest.mark.parametrize("attribute, wire", TRANSPORT_WIRES, ids=TRANSPORT_WIRE_IDS)
def test_the_per_event_rejection_of_a_gateway_still_isolates_the_bad_events(attribute, wire, emulator, make_client):
    emulator.faults.reject_event_type("bad")
    types = ["bad" if i in (3, 40, 41) else "click" for i in range(64)]
    client = make_client(getattr(emulator, attribute), wire=wire)
    report = client.deliver(_batch(types)).result(30)
    assert sorted(s for f in report.failures for s in f.sources) == [3, 40, 41]
    assert all(len(f.sources) == 1 for f in report.failures)
    assert report.acknowledged == 61 and len(emulator.events()) == 61


@pytest.mark.parametrize("scheme, path", [("grpc", ""), ("http", "/api/v1/events"), ("ws", "/api/v1/events")])
def test_a_closed_port_is_unreachable_and_the_request_certainly_not_delivered(scheme, path, make_client):
    client = make_client(f"{scheme}://127.0.0.1:{closed_port()}{path}", policy=NO_RETRY, timeout=5.0)
    outcome = client.submit(make_request(Wire.PROTOBUF)).result(30)
    assert outcome.failure.kind is FailureKind.UNREACHABLE, outcome.failure
    assert outcome.verdict is Verdict.RETRY and not outcome.failure.outcome_unknown
