"""Batcher: count and encoded-byte limits."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raccoon_beam import wire
from raccoon_beam.batching import Batcher, split_batch
from raccoon_beam.wire import Wire


def _drain(batcher, events):
    batches = []
    for index, (event_type, payload) in enumerate(events):
        closed = batcher.add(event_type, payload, index)
        if closed is not None:
            batches.append(closed)
    tail = batcher.flush()
    if tail is not None:
        batches.append(tail)
    return batches


def test_closes_at_max_events():
    batches = _drain(Batcher(Wire.PROTOBUF, 3, 10_000), [("t", b"x")] * 7)
    assert [len(b) for b in batches] == [3, 3, 1]
    assert [s for b in batches for s in b.sources] == list(range(7))


def test_flush_of_an_empty_batcher_is_none():
    assert Batcher(Wire.JSON, 10, 10_000).flush() is None


def test_invalid_limits_are_rejected():
    with pytest.raises(ValueError):
        Batcher(Wire.JSON, 0, 10_000)
    with pytest.raises(ValueError):
        Batcher(Wire.JSON, 10, wire.REQUEST_OVERHEAD_BYTES)


def test_oversized_event_gets_a_batch_of_its_own():
    batches = _drain(Batcher(Wire.PROTOBUF, 100, 1_000), [("t", b"a"), ("t", b"b" * 5_000), ("t", b"c")])
    assert [len(b) for b in batches] == [1, 1, 1]


def test_split_batch_halves_events_and_sources():
    (batch,) = _drain(Batcher(Wire.JSON, 100, 100_000), [("t", bytes([i])) for i in range(5)])
    left, right = split_batch(batch)
    assert left.sources == [0, 1] and right.sources == [2, 3, 4]
    assert left.events + right.events == batch.events
    with pytest.raises(ValueError):
        split_batch(left.__class__(["t"], [b"x"], [0]))


@settings(max_examples=100, deadline=None)
@given(
    events=st.lists(st.tuples(st.sampled_from(["click", "page_view", "ünï"]), st.binary(max_size=400)), max_size=60),
    max_events=st.integers(1, 20),
    max_bytes=st.integers(wire.REQUEST_OVERHEAD_BYTES + 1, 4_000),
    wire_type=st.sampled_from(list(Wire)),
)
def test_every_batch_encodes_within_the_limits(events, max_events, max_bytes, wire_type):
    batches = _drain(Batcher(wire_type, max_events, max_bytes), events)
    assert [e for b in batches for e in b.events] == events  # nothing lost, order kept
    for batch in batches:
        assert 1 <= len(batch) <= max_events
        if len(batch) > 1:  # a lone oversized event is the caller's to reject
            encoded = wire.encode_request(batch.events, wire=wire_type, req_guid="0" * 36)
            assert len(encoded.body) <= max_bytes
