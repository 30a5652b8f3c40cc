"""EventBuilder: element -> (type, bytes, size in a request), or a rejection with its stage."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raccoon_beam import wire
from raccoon_beam.errors import STAGE_SERIALIZE, STAGE_VALIDATE
from raccoon_beam.events import EventBuilder, EventRejected
from raccoon_beam.wire import Wire


def _bytes(element):
    if not isinstance(element, bytes):
        raise TypeError(f"expected bytes, got {type(element).__name__}")
    return element


def _rejection(builder, element) -> EventRejected:
    with pytest.raises(EventRejected) as info:
        builder(element)
    return info.value


def test_constant_and_computed_types():
    assert EventBuilder("click", _bytes, Wire.PROTOBUF, None, 10_000)(b"x")[:2] == ("click", b"x")
    by_first_byte = EventBuilder(lambda e: e[:1].decode(), _bytes, Wire.JSON, None, 10_000)
    assert by_first_byte(b"view")[:2] == ("v", b"view")


def test_rejections_name_their_stage_and_reason():
    builder = EventBuilder("click", _bytes, Wire.PROTOBUF, 8, 10_000)
    rejected = _rejection(builder, "text")
    assert (rejected.stage, rejected.reason, rejected.event_type) == (
        STAGE_SERIALIZE, "TypeError: expected bytes, got str", "click"
    )
    rejected = _rejection(builder, b"x" * 9)
    assert rejected.stage == STAGE_VALIDATE and "over max_event_bytes=8" in rejected.reason
    too_big = EventBuilder("click", _bytes, Wire.JSON, None, 1_000)
    rejected = _rejection(too_big, b"x" * 800)
    assert rejected.stage == STAGE_VALIDATE and "over max_batch_bytes=1000" in rejected.reason
    failing_type = EventBuilder(lambda e: 1 / 0, _bytes, Wire.PROTOBUF, None, 10_000)
    assert _rejection(failing_type, b"x").reason.startswith("event_type callable failed: ZeroDivisionError")
    not_text = EventBuilder(lambda e: 7, _bytes, Wire.PROTOBUF, None, 10_000)
    assert _rejection(not_text, b"x").reason == "event_type callable returned int 7, expected str"
    empty = EventBuilder(lambda e: "", _bytes, Wire.PROTOBUF, None, 10_000)
    assert _rejection(empty, b"x").stage == STAGE_VALIDATE
    with pytest.raises(ValueError):
        EventBuilder("", _bytes, Wire.PROTOBUF, None, 10_000)


@settings(max_examples=200, deadline=None)
@given(
    event_type=st.text(min_size=1, max_size=40),
    payload=st.binary(max_size=3_000),
    wire_type=st.sampled_from(list(Wire)),
)
def test_the_size_given_to_the_batcher_bounds_the_encoded_size(event_type, payload, wire_type):
    try:
        event_type.encode("utf-8")
    except UnicodeEncodeError:
        return  # rejected, tested above
    builder = EventBuilder(event_type, _bytes, wire_type, None, 1_000_000)
    _, _, size = builder(payload)
    exact = wire.encoded_event_size(event_type, len(payload), wire_type)
    assert exact <= size <= exact + (10 if wire_type is Wire.PROTOBUF else 0)
    request = wire.encode_request([(event_type, payload)] * 3, wire=wire_type, req_guid="0" * 36)
    alone = wire.encode_request([], wire=wire_type, req_guid="0" * 36)
    assert len(request.body) - len(alone.body) <= 3 * size


def test_a_computed_type_is_checked_once_and_a_rejected_one_every_time():
    types = iter(["click", "click", "", "", "\ud800", "click"])
    builder = EventBuilder(lambda e: next(types), _bytes, Wire.PROTOBUF, None, 10_000)
    assert builder(b"x")[0] == builder(b"x")[0] == "click"
    for _ in range(3):  # "" twice, then a lone surrogate: never remembered as valid
        assert _rejection(builder, b"x").stage == STAGE_VALIDATE
    assert builder(b"x")[0] == "click"
