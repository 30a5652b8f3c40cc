"""The delivery report lists acknowledged requests only when acknowledgements are asked for."""

from __future__ import annotations

import asyncio

from raccoon_beam.delivery import deliver
from raccoon_beam.wire import Wire

from tests.delivery.test_bisection import BAD, FakeServer, _batch


def test_without_acknowledgements_no_request_is_listed():
    report = asyncio.run(deliver(_batch([b"a", b"b"]), FakeServer().send, Wire.PROTOBUF))
    assert report.acked is None and report.acknowledged == 2


def test_each_acknowledged_request_is_listed_with_its_events_and_size():
    server = FakeServer()
    batch = _batch([b"a", b"b", BAD, b"d"])
    report = asyncio.run(deliver(batch, server.send, Wire.JSON, acknowledgements=True))
    assert report.acked is not None
    # Split twice: [a, b] and [d] acknowledged, [bad] dead-lettered.
    assert sorted(acked.sources for acked in report.acked) == [[0, 1], [3]]
    assert sum(len(acked.sources) for acked in report.acked) == report.acknowledged == 3
    for acked in report.acked:
        assert acked.event_types == ["click"] * len(acked.sources)
        assert acked.bytes > 0 and acked.attempts == 1 and acked.ack_time > 0
    acked_guids = {acked.req_guid for acked in report.acked}
    assert {failed.req_guid for failed in report.failures}.isdisjoint(acked_guids)
    assert len(acked_guids) == 2 and len(server.requests) == 5
