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


def _drain_in_chunks(batcher, events, chunk_sizes):
    """Adds ``events`` with Batcher.extend, in chunks of the given sizes (cycled)."""
    batches = []
    start = 0
    for size in chunk_sizes * (len(events) + 1):
        if start >= len(events):
            break
        chunk = events[start:start + size]
        sizes = [wire.encoded_event_size(event_type, len(payload), batcher._wire) for event_type, payload in chunk]
        batches += batcher.extend(
            [t for t, _ in chunk], [p for _, p in chunk], list(range(start, start + len(chunk))), sum(sizes)
        )
        start += len(chunk)
    tail = batcher.flush()
    if tail is not None:
        batches.append(tail)
    return batches


@settings(max_examples=100, deadline=None)
@given(
    events=st.lists(st.tuples(st.sampled_from(["click", "page_view", "ünï"]), st.binary(max_size=400)), max_size=60),
    chunk_sizes=st.lists(st.integers(1, 25), min_size=1, max_size=5),
    max_events=st.integers(1, 20),
    max_bytes=st.integers(wire.REQUEST_OVERHEAD_BYTES + 1, 4_000),
    wire_type=st.sampled_from(list(Wire)),
)
def test_extend_keeps_the_limits_and_the_order(events, chunk_sizes, max_events, max_bytes, wire_type):
    batches = _drain_in_chunks(Batcher(wire_type, max_events, max_bytes), events, chunk_sizes)
    assert [e for b in batches for e in b.events] == events
    assert [s for b in batches for s in b.sources] == list(range(len(events)))
    for batch in batches:
        assert 1 <= len(batch) <= max_events
        if len(batch) > 1:
            encoded = wire.encode_request(batch.events, wire=wire_type, req_guid="0" * 36)
            assert len(encoded.body) <= max_bytes


def test_extend_closes_a_full_batch_and_hands_it_to_on_close():
    closed = []
    batcher = Batcher(Wire.PROTOBUF, 4, 10_000, on_close=closed.append)
    assert batcher.extend(["t"] * 3, [b"x"] * 3, [0, 1, 2], 30) == []
    assert batcher.room == 1 and closed == []
    assert batcher.extend(["t"], [b"y"], [3], 10) == []  # fills it exactly: one batch, closed
    assert [len(b) for b in closed] == [4] and batcher.room == 4
    assert batcher.extend(["t"] * 6, [b"z"] * 6, list(range(4, 10)), 60) == []  # over the count: one by one
    assert [len(b) for b in closed] == [4, 4] and len(batcher) == 2
