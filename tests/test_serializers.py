"""Tests of raccoon_beam.serializers: the rules, the error messages, and round trips."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import functools
import io
import json
import math
import re
from typing import Any, NamedTuple, Optional

import apache_beam as beam
import fastavro
import pytest
from apache_beam.internal import pickler
from google.protobuf import struct_pb2, timestamp_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from raccoon_beam.errors import SerializationError
from raccoon_beam.serializers import (
    SERIALIZER_NAMES,
    describe_serializer,
    resolve_serializer,
)

# --------------------------------------------------------------------------- #
# Fixtures shared by the tests
# --------------------------------------------------------------------------- #


class Point(NamedTuple):
    x: int
    y: str


class Click(NamedTuple):
    name: str
    count: int
    price: Optional[float]
    tags: list
    props: dict


@dataclasses.dataclass
class ClickData:
    name: str
    count: int
    price: Optional[float]
    tags: list
    props: dict


@dataclasses.dataclass
class Outer:
    point: Point
    items: list


AVRO_SCHEMA = {
    "type": "record",
    "name": "Event",
    "namespace": "test.raccoon",
    "fields": [
        {"name": "name", "type": "string"},
        {"name": "count", "type": "long"},
        {"name": "price", "type": "double"},
        {"name": "ok", "type": "boolean"},
        {"name": "raw", "type": "bytes"},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "props", "type": {"type": "map", "values": "long"}},
        {"name": "note", "type": ["null", "string"]},
    ],
}
PARSED_AVRO_SCHEMA = fastavro.parse_schema(AVRO_SCHEMA)


class AvroEvent(NamedTuple):
    name: str
    count: int
    price: float
    ok: bool
    raw: bytes
    tags: list
    props: dict
    note: Optional[str]


@dataclasses.dataclass
class AvroEventData:
    name: str
    count: int
    price: float
    ok: bool
    raw: bytes
    tags: list
    props: dict
    note: Optional[str]


GOOD_AVRO = dict(
    name="page_view",
    count=3,
    price=9.5,
    ok=True,
    raw=b"\x00\xff",
    tags=["a", "b"],
    props={"k": 1},
    note=None,
)


def json_of(serializer, element) -> Any:
    data = serializer(element)
    assert type(data) is bytes
    return json.loads(data.decode("utf-8"))


def avro_read(data: bytes) -> dict:
    return fastavro.schemaless_reader(io.BytesIO(data), PARSED_AVRO_SCHEMA, None)


def to_upper_bytes(element: str) -> bytes:
    return element.upper().encode()


# --------------------------------------------------------------------------- #
# resolve_serializer / describe_serializer
# --------------------------------------------------------------------------- #


def test_names_are_the_four_builtins():
    assert SERIALIZER_NAMES == ("json", "protobuf", "avro", "bytes")


@pytest.mark.parametrize("bad", ["xml", "JSON", ""])
def test_unknown_name_is_a_value_error_listing_the_valid_names(bad):
    with pytest.raises(ValueError) as info:
        resolve_serializer(bad)
    for name in SERIALIZER_NAMES:
        assert repr(name) in str(info.value)
    with pytest.raises(ValueError):
        describe_serializer(bad)


def test_a_spec_that_is_neither_name_nor_callable_is_a_type_error():
    with pytest.raises(TypeError, match="got int"):
        resolve_serializer(3)


def test_avro_without_schema_is_a_value_error():
    with pytest.raises(ValueError, match="avro_schema"):
        resolve_serializer("avro")


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "record", "fields": []},  # no name
        {"type": "nope"},
        '{"type": "record", "name": "R", "fields": [{"name": "a", "type": "nope"}]}',
        "{not json",
    ],
)
def test_invalid_avro_schema_is_a_value_error_at_resolve_time(schema):
    with pytest.raises(ValueError, match="avro_schema"):
        resolve_serializer("avro", avro_schema=schema)


def test_avro_schema_with_another_serializer_is_a_value_error():
    with pytest.raises(ValueError, match="only used with serializer='avro'"):
        resolve_serializer("json", avro_schema=AVRO_SCHEMA)


def test_avro_schema_as_json_string():
    serializer = resolve_serializer("avro", avro_schema=json.dumps(AVRO_SCHEMA))
    assert avro_read(serializer(GOOD_AVRO)) == GOOD_AVRO


def test_a_resolved_serializer_resolves_to_itself():
    serializer = resolve_serializer("json")
    assert resolve_serializer(serializer) is serializer


def test_describe():
    assert [describe_serializer(name) for name in SERIALIZER_NAMES] == list(SERIALIZER_NAMES)
    assert describe_serializer(to_upper_bytes) == f"callable {__name__}.to_upper_bytes"
    assert describe_serializer(functools.partial(to_upper_bytes)) == (
        f"callable {__name__}.to_upper_bytes"
    )
    assert describe_serializer(lambda e: b"") == f"callable {__name__}.test_describe.<locals>.<lambda>"
    assert describe_serializer(resolve_serializer("avro", avro_schema=AVRO_SCHEMA)) == "avro"
    assert describe_serializer(resolve_serializer(to_upper_bytes)) == (
        f"callable {__name__}.to_upper_bytes"
    )


@pytest.mark.parametrize("name", ["json", "protobuf", "avro", "bytes"])
def test_none_element_is_an_error_for_every_builtin(name):
    serializer = resolve_serializer(name, avro_schema=AVRO_SCHEMA if name == "avro" else None)
    with pytest.raises(SerializationError, match="element is None"):
        serializer(None)


# --------------------------------------------------------------------------- #
# json
# --------------------------------------------------------------------------- #


def test_json_is_compact_utf8_without_ascii_escapes():
    data = resolve_serializer("json")({"é": "日本", "n": [1, 2.5, None, True]})
    assert data == '{"é":"日本","n":[1,2.5,null,true]}'.encode("utf-8")


def test_json_namedtuples_are_objects_even_when_nested():
    serializer = resolve_serializer("json")
    assert json_of(serializer, Point(1, "a")) == {"x": 1, "y": "a"}
    element = {"p": Point(1, "a"), "l": [Point(2, "b"), (3, Point(4, "c"))], "t": (1, 2)}
    assert json_of(serializer, element) == {
        "p": {"x": 1, "y": "a"},
        "l": [{"x": 2, "y": "b"}, [3, {"x": 4, "y": "c"}]],
        "t": [1, 2],
    }
    assert json_of(serializer, [Point(5, "e")]) == [{"x": 5, "y": "e"}]


def test_json_rows_and_dataclasses_are_objects_of_their_fields():
    serializer = resolve_serializer("json")
    row = beam.Row(a=1, nested=beam.Row(p=Point(2, "b")), items=[beam.Row(z=None)])
    assert json_of(serializer, row) == {
        "a": 1,
        "nested": {"p": {"x": 2, "y": "b"}},
        "items": [{"z": None}],
    }
    element = Outer(Point(1, "a"), [Outer(Point(2, "b"), []), {"r": beam.Row(q=1)}])
    assert json_of(serializer, element) == dataclasses.asdict(
        Outer({"x": 1, "y": "a"}, [Outer({"x": 2, "y": "b"}, []), {"r": {"q": 1}}])
    )


def test_json_does_not_modify_the_element():
    element = {"p": Point(1, "a"), "l": [Point(2, "b")]}
    resolve_serializer("json")(element)
    assert element == {"p": Point(1, "a"), "l": [Point(2, "b")]}
    assert type(element["p"]) is Point


def test_json_scalars_and_subclasses():
    serializer = resolve_serializer("json")
    assert serializer("s") == b'"s"'
    assert serializer(1.5) == b"1.5"
    assert serializer({1: True, None: 2}) == b'{"1":true,"null":2}'
    import collections

    assert serializer(collections.OrderedDict(b=Point(1, "x"))) == b'{"b":{"x":1,"y":"x"}}'


@pytest.mark.parametrize(
    "element, message",
    [
        ({"a": {"b": [1, {1, 2}]}}, "field 'a.b[1]': Object of type set is not JSON serializable"),
        ([1, object()], "element[1]: Object of type object is not JSON serializable"),
        (object(), "element: Object of type object is not JSON serializable"),
        ({"price": float("nan")}, "field 'price': Out of range float value nan"),
        ({"price": float("-inf")}, "field 'price': Out of range float value -inf"),
        ({"n": decimal.Decimal("NaN")}, "field 'n': Out of range Decimal value NaN"),
        ({"n": [decimal.Decimal("-Infinity")]}, "field 'n[0]': Out of range Decimal value -Infinity"),
        ({"p": Point(1, {1})}, "field 'p.y': Object of type set"),
        (beam.Row(when=datetime.timedelta(1)), "field 'when': Object of type timedelta"),
        ({"t": datetime.time(1, tzinfo=datetime.timezone.utc)}, "field 't': a datetime.time with a tzinfo"),
        ({"d": {(1, 2): 1}}, "field 'd': keys must be str, int, float, bool or None, not tuple"),
        ({"s": "bad \ud800"}, "field 's': str is not valid UTF-8"),
    ],
)
def test_json_errors_name_the_field_and_the_type(element, message):
    with pytest.raises(SerializationError) as info:
        resolve_serializer("json")(element)
    assert message in str(info.value)


def test_json_circular_reference_is_an_error():
    element: dict = {"a": [1]}
    element["a"].append(element)
    with pytest.raises(SerializationError, match=r"field 'a\[1\]': circular reference"):
        resolve_serializer("json")(element)


def test_json_nesting_too_deep_is_an_error():
    element: list = []
    for _ in range(5000):
        element = [element]
    with pytest.raises(SerializationError, match="nested deeper than 254 levels"):
        resolve_serializer("json")(element)


# --------------------------------------------------------------------------- #
# protobuf
# --------------------------------------------------------------------------- #


def test_protobuf_serializes_a_message():
    message = timestamp_pb2.Timestamp(seconds=5, nanos=7)
    assert resolve_serializer("protobuf")(message) == message.SerializeToString()


@pytest.mark.parametrize("element, name", [({"a": 1}, "dict"), (b"x", "bytes"), (Point(1, "a"), "Point")])
def test_protobuf_rejects_anything_but_a_message(element, name):
    with pytest.raises(SerializationError, match=f"expected a protobuf Message, got .*{name}"):
        resolve_serializer("protobuf")(element)


# --------------------------------------------------------------------------- #
# avro
# --------------------------------------------------------------------------- #


def test_avro_accepts_dicts_namedtuples_dataclasses_and_rows():
    serializer = resolve_serializer("avro", avro_schema=AVRO_SCHEMA)
    expected = serializer(GOOD_AVRO)
    assert avro_read(expected) == GOOD_AVRO
    assert serializer(AvroEvent(**GOOD_AVRO)) == expected
    assert serializer(AvroEventData(**GOOD_AVRO)) == expected
    assert serializer(beam.Row(**GOOD_AVRO)) == expected


def test_avro_nested_records_may_be_namedtuples():
    schema = {
        "type": "record",
        "name": "Outer",
        "fields": [
            {
                "name": "point",
                "type": {
                    "type": "record",
                    "name": "Point",
                    "fields": [{"name": "x", "type": "int"}, {"name": "y", "type": "string"}],
                },
            },
            {"name": "points", "type": {"type": "array", "items": "Point"}},
        ],
    }
    serializer = resolve_serializer("avro", avro_schema=schema)
    data = serializer({"point": Point(1, "a"), "points": [Point(2, "b")]})
    decoded = fastavro.schemaless_reader(io.BytesIO(data), fastavro.parse_schema(schema), None)
    assert decoded == {"point": {"x": 1, "y": "a"}, "points": [{"x": 2, "y": "b"}]}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"count": "3"}, "field 'count' (test.raccoon.Event.count): got '3' (str), expected long"),
        # fastavro's writer alone would silently write these three:
        ({"count": 1.5}, "field 'count' (test.raccoon.Event.count): got 1.5 (float), expected long"),
        ({"ok": 1}, "field 'ok' (test.raccoon.Event.ok): got 1 (int), expected boolean"),
        ({"tags": "abc"}, "field 'tags' (test.raccoon.Event.tags): got 'abc' (str)"),
        ({"raw": "text"}, "field 'raw' (test.raccoon.Event.raw): got 'text' (str), expected bytes"),
        ({"props": {"k": "v"}}, "field 'props'"),
        ({"note": 5}, "field 'note' (test.raccoon.Event.note): got 5 (int), expected one of null, string"),
        ({"name": None}, "field 'name' (test.raccoon.Event.name): got None (or missing), expected string"),
    ],
)
def test_avro_record_that_does_not_fit_names_the_field(change, message):
    serializer = resolve_serializer("avro", avro_schema=AVRO_SCHEMA)
    with pytest.raises(SerializationError) as info:
        serializer({**GOOD_AVRO, **change})
    assert "record does not fit Avro schema test.raccoon.Event" in str(info.value)
    assert message in str(info.value)


def test_avro_defaults_fill_missing_fields_and_extra_fields_are_ignored():
    schema = {
        "type": "record",
        "name": "R",
        "fields": [{"name": "x", "type": "int", "default": 7}, {"name": "y", "type": "string"}],
    }
    data = resolve_serializer("avro", avro_schema=schema)({"y": "a", "extra": object()})
    decoded = fastavro.schemaless_reader(io.BytesIO(data), fastavro.parse_schema(schema), None)
    assert decoded == {"x": 7, "y": "a"}


def test_avro_logical_types():
    schema = {
        "type": "record",
        "name": "T",
        "fields": [{"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}}],
    }
    when = datetime.datetime(2024, 6, 1, 9, 0, tzinfo=datetime.timezone.utc)
    data = resolve_serializer("avro", avro_schema=schema)({"ts": when})
    decoded = fastavro.schemaless_reader(io.BytesIO(data), fastavro.parse_schema(schema), None)
    assert decoded == {"ts": when}


def test_avro_missing_field_is_named():
    record = dict(GOOD_AVRO)
    del record["count"]
    with pytest.raises(SerializationError, match="field 'count'"):
        resolve_serializer("avro", avro_schema=AVRO_SCHEMA)(record)


def test_avro_without_validation_names_the_field_when_the_writer_fails():
    serializer = resolve_serializer("avro", avro_schema=AVRO_SCHEMA, avro_validate=False)
    assert serializer(GOOD_AVRO) == resolve_serializer("avro", avro_schema=AVRO_SCHEMA)(GOOD_AVRO)
    with pytest.raises(SerializationError, match="field 'count'.*expected long") as info:
        serializer({**GOOD_AVRO, "count": "3"})
    assert info.value.__cause__ is not None


def test_avro_element_that_is_not_a_record():
    with pytest.raises(SerializationError, match="record does not fit.*got 'text' \\(str\\)"):
        resolve_serializer("avro", avro_schema=AVRO_SCHEMA)("text")


# --------------------------------------------------------------------------- #
# bytes
# --------------------------------------------------------------------------- #


def test_bytes_accepts_bytes_like_and_str():
    serializer = resolve_serializer("bytes")
    assert serializer(b"ab") == b"ab"
    assert serializer(bytearray(b"ab")) == b"ab"
    assert serializer(memoryview(b"xaby")[1:3]) == b"ab"
    assert serializer("é") == "é".encode("utf-8")
    assert all(type(serializer(v)) is bytes for v in (bytearray(b"a"), memoryview(b"a"), "a"))


@pytest.mark.parametrize("element, name", [(1, "int"), ({"a": 1}, "dict"), ([1], "list")])
def test_bytes_rejects_other_types_naming_them(element, name):
    with pytest.raises(SerializationError, match=f"got {name}$"):
        resolve_serializer("bytes")(element)


def test_bytes_rejects_a_lone_surrogate():
    with pytest.raises(SerializationError, match="not valid UTF-8"):
        resolve_serializer("bytes")("\ud800")


# --------------------------------------------------------------------------- #
# callables
# --------------------------------------------------------------------------- #


def test_callable_result_is_bytes():
    assert resolve_serializer(to_upper_bytes)("ab") == b"AB"
    assert resolve_serializer(lambda e: bytearray(b"x"))(1) == b"x"
    assert type(resolve_serializer(lambda e: memoryview(b"x"))(1)) is bytes


def test_callable_returning_something_else_names_the_type():
    serializer = resolve_serializer(lambda e: "text")
    with pytest.raises(SerializationError, match="returned str, expected bytes"):
        serializer(1)


def test_callable_exception_becomes_a_chained_serialization_error():
    def explode(element):
        raise KeyError("user_id")

    with pytest.raises(SerializationError, match="raised KeyError: 'user_id'") as info:
        resolve_serializer(explode)({})
    assert isinstance(info.value.__cause__, KeyError)


def test_callable_serialization_error_passes_through():
    def refuse(element):
        raise SerializationError("mine")

    with pytest.raises(SerializationError, match="^mine$"):
        resolve_serializer(refuse)(1)


def test_callable_gets_none_elements():
    assert resolve_serializer(lambda e: repr(e).encode())(None) == b"None"


# --------------------------------------------------------------------------- #
# Pickling with Beam's pickler
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "spec, kwargs, element, expected",
    [
        ("json", {}, {"p": Point(1, "a")}, b'{"p":{"x":1,"y":"a"}}'),
        ("protobuf", {}, timestamp_pb2.Timestamp(seconds=1), timestamp_pb2.Timestamp(seconds=1).SerializeToString()),
        ("avro", {"avro_schema": AVRO_SCHEMA}, GOOD_AVRO, None),
        ("avro", {"avro_schema": json.dumps(AVRO_SCHEMA), "avro_validate": False}, GOOD_AVRO, None),
        ("bytes", {}, "ab", b"ab"),
        (to_upper_bytes, {}, "ab", b"AB"),
        (lambda e: e * 2, {}, b"ab", b"abab"),
    ],
)
def test_resolved_serializers_survive_beams_pickler(spec, kwargs, element, expected):
    serializer = resolve_serializer(spec, **kwargs)
    if expected is None:
        expected = serializer(element)
    copy = pickler.loads(pickler.dumps(serializer))
    assert copy(element) == expected
    assert describe_serializer(copy) == describe_serializer(serializer)
    with pytest.raises(SerializationError):
        copy(None if isinstance(spec, str) else 1)  # int has no .upper(); 2 is not bytes


# --------------------------------------------------------------------------- #
# Round-trip properties
# --------------------------------------------------------------------------- #

text = st.text(st.characters(codec="utf-8"), max_size=20)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(text, children, max_size=5),
    max_leaves=25,
)
click_fields = st.fixed_dictionaries(
    {
        "name": text,
        "count": st.integers(),
        "price": st.none() | st.floats(allow_nan=False, allow_infinity=False),
        "tags": st.lists(text, max_size=4),
        "props": st.dictionaries(text, json_values, max_size=4),
    }
)


@settings(max_examples=150, deadline=None)
@given(json_values.filter(lambda v: v is not None))  # a None element is an error
def test_json_round_trip(value):
    assert json_of(resolve_serializer("json"), value) == value


@settings(deadline=None)
@given(click_fields, st.sampled_from(["namedtuple", "dataclass", "row", "nested"]))
def test_json_round_trip_of_structured_elements(fields, kind):
    serializer = resolve_serializer("json")
    if kind == "namedtuple":
        element = Click(**fields)
    elif kind == "dataclass":
        element = ClickData(**fields)
    elif kind == "row":
        element = beam.Row(**fields)
    else:
        element = {"events": [Click(**fields), beam.Row(inner=ClickData(**fields))]}
        fields = {"events": [fields, {"inner": fields}]}
    assert json_of(serializer, element) == fields


struct_values = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=20,
)


def _struct(fields: dict) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(fields)
    return message


@settings(deadline=None)
@given(st.dictionaries(text, struct_values, max_size=6).map(_struct))
def test_protobuf_round_trip_struct(message):
    assert struct_pb2.Struct.FromString(resolve_serializer("protobuf")(message)) == message


@settings(deadline=None)
@given(
    st.builds(
        timestamp_pb2.Timestamp,
        seconds=st.integers(-62135596800, 253402300799),
        nanos=st.integers(0, 999_999_999),
    )
)
def test_protobuf_round_trip_timestamp(message):
    assert timestamp_pb2.Timestamp.FromString(resolve_serializer("protobuf")(message)) == message


avro_records = st.fixed_dictionaries(
    {
        "name": text,
        "count": st.integers(-(2**63), 2**63 - 1),
        "price": st.floats(allow_nan=False),
        "ok": st.booleans(),
        "raw": st.binary(max_size=20),
        "tags": st.lists(text, max_size=4),
        "props": st.dictionaries(text, st.integers(-(2**63), 2**63 - 1), max_size=4),
        "note": st.none() | text,
    }
)


@settings(deadline=None)
@given(avro_records, st.sampled_from(["dict", "namedtuple", "dataclass", "row"]))
def test_avro_round_trip(record, kind):
    serializer = resolve_serializer("avro", avro_schema=AVRO_SCHEMA)
    element = {
        "dict": dict,
        "namedtuple": lambda r: AvroEvent(**r),
        "dataclass": lambda r: AvroEventData(**r),
        "row": lambda r: beam.Row(**r),
    }[kind](record)
    assert avro_read(serializer(element)) == record


@settings(deadline=None)
@given(st.binary(max_size=64) | st.text(st.characters(codec="utf-8"), max_size=32))
def test_bytes_round_trip(value):
    serializer = resolve_serializer("bytes")
    if isinstance(value, str):
        assert serializer(value).decode("utf-8") == value
    else:
        assert serializer(value) == value
        assert serializer(bytearray(value)) == value
        assert serializer(memoryview(value)) == value


@settings(deadline=None)
@given(st.binary(max_size=64))
def test_callable_round_trip(value):
    assert resolve_serializer(lambda e: bytes(reversed(e)))(value)[::-1] == value


# --------------------------------------------------------------------------- #
# json: the same rules on orjson's fast path and on the walk
# --------------------------------------------------------------------------- #


@dataclasses.dataclass
class _WithPrivate:
    a: int
    _hidden: int = 2


@pytest.mark.parametrize(
    "element, expected",
    [
        ({"big": 2**70, "neg": -(2**64)}, {"big": 2**70, "neg": -(2**64)}),  # beyond orjson's 64 bits
        ({1: "a", None: "b"}, {"1": "a", "null": "b"}),  # non-str keys
        (_WithPrivate(1), {"a": 1, "_hidden": 2}),  # orjson would drop "_hidden"
        ({"n": None, "x": 1.5}, {"n": None, "x": 1.5}),
        ({"t": (1, Point(2, "b"))}, {"t": [1, {"x": 2, "y": "b"}]}),
    ],
)
def test_json_fast_path_keeps_the_standard_semantics(element, expected):
    assert json_of(resolve_serializer("json"), element) == expected


@pytest.mark.parametrize("kind", ["list", "dict", "row"])
def test_json_writes_254_levels_and_dead_letters_a_255th_with_its_reason(kind):
    def nested(levels: int) -> Any:
        element: Any = [1]
        for _ in range(levels - 1):
            element = {"list": lambda e: [e], "dict": lambda e: {"k": e}, "row": lambda e: beam.Row(k=e)}[kind](element)
        return element

    serializer = resolve_serializer("json")
    assert json.loads(serializer(nested(254))) is not None
    assert json.loads(serializer({"null": None, "deep": nested(253)})) is not None
    with pytest.raises(SerializationError, match=r"nested deeper than 254 levels, the most the JSON serializer \(orjson\) writes"):
        serializer(nested(255))
    with pytest.raises(SerializationError, match="nested deeper than 254"):
        serializer({"null": None, "deep": nested(254)})


@pytest.mark.parametrize(
    "element, fragment",
    [
        ({"a": None, "b": [1.0, math.nan]}, "field 'b[1]': Out of range float value nan"),
        ([None, {"x": math.inf}], "element[1].x"),
        (beam.Row(a=None, v=-math.inf), "field 'v': Out of range float value -inf"),
        ({"a": math.nan}, "field 'a': Out of range float value nan"),
    ],
)
def test_json_nan_anywhere_is_an_error_not_null(element, fragment):
    with pytest.raises(SerializationError, match=re.escape(fragment)):
        resolve_serializer("json")(element)


def test_json_keys_that_collide_once_written_are_refused():
    serializer = resolve_serializer("json")
    assert serializer({1: "a", "2": "b"}) == b'{"1":"a","2":"b"}'
    with pytest.raises(SerializationError, match="field 'v': keys '1' and 1 both become the JSON key '1'"):
        serializer({"v": {"1": "a", 1: "b"}})
    with pytest.raises(SerializationError, match="keys True and 'true'"):
        serializer([{True: 1, "true": 2}])
