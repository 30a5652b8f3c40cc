"""The JSON serializer's type mapping (docs/serializers.md), json_default, json_bytes, and verdicts that depend on one value only."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import decimal
import enum
import json
import math
import uuid
from typing import Any, NamedTuple

import apache_beam as beam
import numpy
import pytest
from apache_beam.internal import pickler
from apache_beam.utils.timestamp import Timestamp
from hypothesis import given, settings
from hypothesis import strategies as st

from raccoon_beam.errors import SerializationError
from raccoon_beam.serializers import describe_serializer, resolve_serializer

UTC = datetime.timezone.utc


class Color(enum.Enum):
    RED = "red"
    LEVEL = 3


class Point(NamedTuple):
    x: int
    y: str


@dataclasses.dataclass
class Money:
    currency: str
    units: int


class Opaque:
    def __init__(self, value: str) -> None:
        self.value = value


def opaque_to_json(value: Any) -> Any:
    if isinstance(value, Opaque):
        return {"opaque": value.value}
    raise TypeError(f"not mine: {type(value).__name__}")


JSON = resolve_serializer("json")

# One row as ReadFromBigQuery returns it: every type of the mapping, nested records and Nones.
BIGQUERY_ROW = {
    "id": 7,
    "created": datetime.datetime(2024, 5, 1, 12, 30, 0, 250000, tzinfo=UTC),
    "civil": datetime.datetime(2024, 5, 1, 12, 30),
    "day": datetime.date(2024, 5, 1),
    "at": datetime.time(8, 15, 1),
    "price": decimal.Decimal("1234.50"),
    "big": decimal.Decimal("-0.000000001"),
    "uid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "color": Color.RED,
    "raw": b"\x00\xffbytes",
    "address": {"city": "Pune", "zip": None, "lines": ["a", None]},
    "note": None,
}
BIGQUERY_JSON = (
    '{"id":7,"created":"2024-05-01T12:30:00.250000+00:00","civil":"2024-05-01T12:30:00",'
    '"day":"2024-05-01","at":"08:15:01","price":1234.50,"big":-1E-9,'
    '"uid":"12345678-1234-5678-1234-567812345678","color":"red","raw":"AP9ieXRlcw==",'
    '"address":{"city":"Pune","zip":null,"lines":["a",null]},"note":null}'
).encode()


def test_a_bigquery_shaped_row_is_written_by_the_documented_mapping():
    assert JSON(BIGQUERY_ROW) == BIGQUERY_JSON
    decoded = json.loads(BIGQUERY_JSON, parse_float=decimal.Decimal)
    assert decoded["price"] == decimal.Decimal("1234.50")  # the digits, not a float's
    assert base64.b64decode(decoded["raw"]) == BIGQUERY_ROW["raw"]


@pytest.mark.parametrize(
    "value, written",
    [
        (Timestamp(micros=1_700_000_000_123_456), '"2023-11-14T22:13:20.123456+00:00"'),
        (Color.LEVEL, "3"),
        (bytearray(b"\x01"), '"AQ=="'),
        (memoryview(b"\x01\x02"), '"AQI="'),
        (numpy.float64(2.5), "2.5"),
        (numpy.int64(-4), "-4"),
        (decimal.Decimal("1E+2"), "1E+2"),
        (2**64, str(2**64)),
        ((1, Point(2, "b")), '[1,{"x":2,"y":"b"}]'),
        (Money("EUR", 5), '{"currency":"EUR","units":5}'),
        (beam.Row(a=datetime.date(2024, 1, 2)), '{"a":"2024-01-02"}'),
    ],
)
def test_each_type_of_the_mapping(value, written):
    assert JSON({"v": value}) == f'{{"v":{written}}}'.encode()
    assert JSON({"v": value, "k": {1: None}}) == f'{{"v":{written},"k":{{"1":null}}}}'.encode()  # on the walk too


def test_bytes_are_a_dead_letter_with_json_bytes_error():
    serializer = resolve_serializer("json", json_bytes="error")
    with pytest.raises(SerializationError, match="field 'raw': Object of type bytes is not written to JSON with json_bytes='error'"):
        serializer({"raw": b"x"})
    assert serializer({"s": "x"}) == b'{"s":"x"}'
    assert describe_serializer(serializer) == "json (json_bytes=error)"


def test_json_default_writes_the_users_types_by_the_same_rules():
    serializer = resolve_serializer("json", json_default=opaque_to_json)
    assert serializer({"o": Opaque("x"), "when": datetime.date(2024, 1, 1)}) == (
        b'{"o":{"opaque":"x"},"when":"2024-01-01"}'
    )
    with pytest.raises(SerializationError, match=r"field 'o\[0\]': TypeError: not mine: set"):
        serializer({"o": [{1}]})
    assert "json_default=tests.test_json_mapping.opaque_to_json" in describe_serializer(serializer)
    copy = pickler.loads(pickler.dumps(serializer))
    assert copy({"o": Opaque("y")}) == b'{"o":{"opaque":"y"}}'
    # What the hook returns is checked as any value: a NaN is still refused.
    with pytest.raises(SerializationError, match="field 'o.opaque': Out of range float value nan"):
        resolve_serializer("json", json_default=lambda v: {"opaque": math.nan})({"o": Opaque("z")})


def test_json_options_are_checked_at_construction():
    with pytest.raises(ValueError, match="json_bytes must be one of 'base64', 'error'"):
        resolve_serializer("json", json_bytes="hex")
    with pytest.raises(ValueError, match="json_default must be a callable"):
        resolve_serializer("json", json_default="str")
    with pytest.raises(ValueError, match="json_bytes and json_default are only used with serializer='json'"):
        resolve_serializer("bytes", json_default=str)


def test_a_circular_reference_through_a_record_is_named():
    element: dict = {"a": []}
    element["a"].append(beam.Row(back=element))
    with pytest.raises(SerializationError, match=r"field 'a\[0\].back': circular reference"):
        JSON(element)


# --------------------------------------------------------------------------- #
# The verdict and the bytes of an element depend on its own values only
# --------------------------------------------------------------------------- #

scalars = (
    st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()  # NaN and infinities included: they must be refused wherever they are
    | st.text(max_size=8)
    | st.decimals(places=3)
    | st.datetimes(timezones=st.none() | st.just(UTC))
    | st.dates()
    | st.uuids()
    | st.binary(max_size=8)
    | st.sampled_from(list(Color))
    | st.builds(Point, st.integers(-5, 5), st.text(max_size=3))
    | st.frozensets(st.integers(), max_size=2)  # never JSON: a dead letter wherever it is
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=4), children, max_size=3)
    | st.dictionaries(st.integers(-3, 3), children, max_size=2),
    max_leaves=10,
)
unrelated = st.recursive(
    st.none(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=6,
)


def verdict(element: Any) -> Any:
    try:
        return JSON(element)
    except SerializationError as exc:
        return ("dead", str(exc))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=4), values, max_size=4), unrelated, st.sampled_from(["dict", "row"]))
def test_unrelated_nones_and_nested_values_change_neither_verdict_nor_bytes(fields, extra, kind):
    fields = {f"f_{name}": value for name, value in fields.items()}
    alone = dict(fields)
    together = {**fields, "unrelated": extra, "also": {"n": None, "l": [None, {"x": None}]}}
    if kind == "row":
        alone, together = beam.Row(**alone), beam.Row(**together)
    first, second = verdict(alone), verdict(together)
    if isinstance(first, bytes):
        assert isinstance(second, bytes), second
        extra_json = json.dumps({"unrelated": extra, "also": {"n": None, "l": [None, {"x": None}]}}, separators=(",", ":"), ensure_ascii=False)
        if first == b"{}":
            assert second == extra_json.encode()
        else:
            assert second == first[:-1] + b"," + extra_json[1:].encode()
    else:
        assert second == first
    # In a batch: the same bytes, or None (the caller then goes one by one, as above).
    many = JSON.serialize_many([alone, together])
    assert many is None or many == [first, second]
    if not isinstance(first, bytes):
        assert many is None
