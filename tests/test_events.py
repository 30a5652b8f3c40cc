"""EventBuilder: element -> (type, bytes, size in a request), or a rejection with its stage."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raccoon_beam import wire
from raccoon_beam.errors import STAGE_SERIALIZE, STAGE_VALIDATE
from raccoon_beam.events import EventBuilder, EventRejected
from raccoon_beam.serializers import resolve_serializer
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
    # Types Kafka takes as topics: the builder refuses the others (tested below).
    event_type=st.from_regex(r"[A-Za-z0-9._-]{1,40}", fullmatch=True),
    payload=st.binary(max_size=3_000),
    wire_type=st.sampled_from(list(Wire)),
)
def test_the_size_given_to_the_batcher_bounds_the_encoded_size(event_type, payload, wire_type):
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


# ------------------------------------------------------------------ build_many

_JSON_ELEMENTS = st.one_of(
    st.dictionaries(
        st.sampled_from(["a", "b", "event_name"]),
        st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=30), st.booleans()),
        max_size=4,
    ),
    st.none(),
    st.sets(st.integers(), max_size=2),
    st.lists(st.floats(), max_size=3),
    st.text(max_size=2_000),
    st.integers(min_value=2**64, max_value=2**65),
    st.dictionaries(st.integers(), st.integers(), max_size=2),
)


def _one_by_one(builder, elements):
    """What build_many must equal: the builder called on each element."""
    types, payloads, sizes, rejected = [], [], [], []
    for index, element in enumerate(elements):
        try:
            event_type, payload, size = builder(element)
        except EventRejected as rejection:
            rejected.append((index, rejection.stage, rejection.reason, rejection.event_type))
            continue
        types.append(event_type)
        payloads.append(payload)
        sizes.append(size)
    return types, payloads, sizes, rejected


def _type_of_element(element):
    if isinstance(element, dict) and "event_name" in element:
        return element["event_name"]  # any value: a str, "", None, a number ...
    if isinstance(element, str):
        raise LookupError("no type for text")
    return "click"


@settings(max_examples=300, deadline=None)
@given(
    elements=st.lists(_JSON_ELEMENTS, max_size=40),
    computed_type=st.booleans(),
    wire_type=st.sampled_from(list(Wire)),
    max_event_bytes=st.sampled_from([None, 60, 1_500]),
    max_batch_bytes=st.sampled_from([1_000, 100_000]),
)
def test_build_many_equals_building_one_by_one(elements, computed_type, wire_type, max_event_bytes, max_batch_bytes):
    json = resolve_serializer("json")
    event_type = _type_of_element if computed_type else "click"
    single = EventBuilder(event_type, json, wire_type, max_event_bytes, max_batch_bytes)
    many = EventBuilder(event_type, json, wire_type, max_event_bytes, max_batch_bytes)
    types, payloads, sizes, rejected = _one_by_one(single, elements)
    built = many.build_many(elements)
    assert built.event_types == types
    assert built.payloads == payloads
    assert [(i, r.stage, r.reason, r.event_type) for i, r in built.rejected] == rejected
    exact = sum(wire.encoded_event_size(t, len(p), wire_type) for t, p in zip(types, payloads))
    assert exact <= built.encoded_size
    # A second call goes through the types remembered by the first: same answer.
    again = many.build_many(elements)
    assert (again.event_types, again.payloads) == (types, payloads)


def test_build_many_runs_the_users_callables_once_per_element():
    seen = []

    def event_type(element):
        seen.append(("type", element))
        if element == 3:
            raise ValueError("three")
        return "click"

    def serializer(element):
        seen.append(("serialize", element))
        if element == 5:
            raise TypeError("five")
        return str(element).encode()

    builder = EventBuilder(event_type, serializer, Wire.PROTOBUF, None, 10_000)
    built = builder.build_many(list(range(8)))
    assert [index for index, _ in built.rejected] == [3, 5]
    assert built.rejected[0][1].reason == "event_type callable failed: ValueError: three"
    assert built.payloads == [b"0", b"1", b"2", b"4", b"6", b"7"]
    assert sorted(seen) == sorted([("type", i) for i in range(8)] + [("serialize", i) for i in range(8) if i != 3])


def test_build_many_takes_the_fast_path_for_plain_elements_and_leaves_it_for_others(monkeypatch):
    json = resolve_serializer("json")
    builder = EventBuilder(lambda e: e["event_name"], json, Wire.PROTOBUF, None, 10_000)
    plain = [{"event_name": "click", "n": i, "gone": None} for i in range(10)]
    builder.build_many(plain[:1])  # the first sight of a type: checked on the slow path
    monkeypatch.setattr(builder, "_one_by_one", lambda *args: pytest.fail("slow path taken"))
    built = builder.build_many(plain)
    assert built.payloads == [orjson.dumps(element) for element in plain] and built.rejected == []
    monkeypatch.undo()
    with_nan = plain[:3] + [{"event_name": "click", "n": float("nan")}]
    built = builder.build_many(with_nan)
    assert [index for index, _ in built.rejected] == [3] and len(built.payloads) == 3
    assert "NaN" in built.rejected[0][1].reason or "nan" in built.rejected[0][1].reason.lower()


class _UnhashableStr(str):
    __hash__ = None  # type: ignore[assignment]


class _LyingStr(str):
    def __hash__(self) -> int:
        raise RuntimeError("no hash for you")

    def __str__(self) -> str:
        return "something else"


@pytest.mark.parametrize("make", [_UnhashableStr, _LyingStr], ids=["hash-none", "hash-raises"])
def test_a_str_subclass_type_routes_as_its_plain_text_and_never_crashes(make):
    builder = EventBuilder(lambda e: make("click"), _bytes, Wire.PROTOBUF, None, 10_000)
    event_type, payload, _ = builder(b"x")
    assert (type(event_type), event_type, payload) == (str, "click", b"x")
    built = builder.build_many([b"a", b"b"])
    assert [type(t) for t in built.event_types] == [str, str] and built.event_types == ["click", "click"]
    assert built.rejected == []


def test_a_bytes_or_unhashable_type_is_a_rejection_not_a_crash():
    for value in (b"click", ["click"], {"t": "click"}):
        builder = EventBuilder(lambda e, v=value: v, _bytes, Wire.PROTOBUF, None, 10_000)
        assert _rejection(builder, b"x").stage == STAGE_SERIALIZE
        built = builder.build_many([b"a", b"b"])
        assert built.event_types == [] and [index for index, _ in built.rejected] == [0, 1]
