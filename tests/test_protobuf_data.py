"""serializer="protobuf" with message_type: plain data -> the bytes ParseDict + SerializeToString give."""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
from typing import Any, Dict, List, Optional

import apache_beam as beam
import pytest
from apache_beam.internal import pickler
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.utils.timestamp import Timestamp as BeamTimestamp
from google.protobuf import duration_pb2, json_format, message_factory, timestamp_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from raccoon_beam import WriteToRaccoon
from raccoon_beam.errors import SerializationError
from raccoon_beam.serializers import describe_serializer, resolve_serializer
from tests.protobuf_helpers import ORDER, order_class, parse_dict_form, shop_descriptor_set, write_shop_descriptor_set

Order = order_class()
DEVICES = ["DEVICE_UNSPECIFIED", "DEVICE_ANDROID", "DEVICE_IOS", "DEVICE_WEB"]


def order_serializer(**kwargs):
    return resolve_serializer("protobuf", message_type=Order, **kwargs)


def parse_dict(data: Dict[str, Any]) -> bytes:
    return json_format.ParseDict(data, Order()).SerializeToString()


# --------------------------------------------------------------------------- #
# Property: the same bytes as ParseDict + SerializeToString
# --------------------------------------------------------------------------- #

text = st.text(st.characters(codec="utf-8"), max_size=12)
int32 = st.integers(-(2**31), 2**31 - 1)
int64 = st.integers(-(2**63), 2**63 - 1)
doubles = st.floats(allow_nan=False, allow_infinity=False)
float32s = st.floats(width=32, allow_nan=False, allow_infinity=False)
when = st.datetimes(
    min_value=datetime.datetime(1, 1, 1), max_value=datetime.datetime(9999, 12, 31, 23, 59, 59),
    timezones=st.just(datetime.timezone.utc),
)
durations = st.timedeltas(min_value=datetime.timedelta(days=-10**6), max_value=datetime.timedelta(days=10**6))
items = st.fixed_dictionaries(
    {"sku": text, "quantity": int32, "price": doubles, "tags": st.lists(text, max_size=3)}
)
orders = st.fixed_dictionaries(
    {
        "order_id": text,
        "user_id": int64,
        "attempt": st.integers(0, 2**32 - 1),
        "gift": st.booleans(),
        "discount": float32s,
        "token": st.binary(max_size=16),
        "device": st.sampled_from(DEVICES) | st.integers(0, 3),
        "items": st.lists(items, max_size=3),
        "attributes": st.dictionaries(text, text, max_size=3),
        "slots": st.dictionaries(int32, items, max_size=2),
        "created_at": when,
        "time_on_page": durations,
        "coupon_id": st.none() | int64,
        "note": st.none() | text,
        "seen_on": st.lists(st.sampled_from(DEVICES), max_size=3),
    },
    optional={
        "ship_to": st.fixed_dictionaries({"city": text, "country": text}),
        "billing": st.fixed_dictionaries({"city": text}),
    },
).flatmap(
    lambda order: st.just(order) if "ship_to" in order else st.one_of(
        st.just(order), text.map(lambda store: {**order, "pickup_store": store})
    )
)


@dataclasses.dataclass
class ItemData:
    sku: str
    quantity: int
    price: float
    tags: List[str]


@dataclasses.dataclass
class AddressData:
    city: str
    country: Optional[str] = None


@dataclasses.dataclass
class OrderData:
    order_id: str
    user_id: int
    attempt: int
    gift: bool
    discount: float
    token: bytes
    device: Any
    items: List[ItemData]
    attributes: Dict[str, str]
    slots: Dict[int, ItemData]
    created_at: datetime.datetime
    time_on_page: datetime.timedelta
    coupon_id: Optional[int]
    note: Optional[str]
    seen_on: List[str]
    ship_to: Optional[AddressData] = None
    billing: Optional[AddressData] = None
    pickup_store: Optional[str] = None


def as_kind(order: Dict[str, Any], kind: str) -> Any:
    if kind == "dict":
        return order
    if kind == "row":
        nested = {
            **order,
            "items": [beam.Row(**item) for item in order["items"]],
            "slots": {key: beam.Row(**item) for key, item in order["slots"].items()},
        }
        for name in ("ship_to", "billing"):
            if name in order:
                nested[name] = beam.Row(**order[name])
        return beam.Row(**nested)
    nested = {
        **order,
        "items": [ItemData(**item) for item in order["items"]],
        "slots": {key: ItemData(**item) for key, item in order["slots"].items()},
    }
    for name in ("ship_to", "billing"):
        if name in order:
            nested[name] = AddressData(**order[name])
    return OrderData(**nested)


@settings(max_examples=150, deadline=None)
@given(orders, st.sampled_from(["dict", "row", "dataclass"]))
def test_plain_data_serializes_to_the_bytes_of_parse_dict(order, kind):
    expected = parse_dict(parse_dict_form(order))
    assert order_serializer()(as_kind(order, kind)) == expected


@settings(max_examples=50, deadline=None)
@given(orders)
def test_json_forms_are_accepted_too(order):
    """What ReadFromJson gives (RFC 3339 times, base64 bytes, str map keys) converts the same."""
    data = parse_dict_form(order)
    assert order_serializer()(data) == parse_dict(data)


def test_timestamp_forms():
    serializer = resolve_serializer("protobuf", message_type=Order)
    moment = datetime.datetime(2024, 6, 1, 12, 0, 0, 250000, tzinfo=datetime.timezone.utc)
    expected = parse_dict({"created_at": "2024-06-01T12:00:00.250Z"})
    assert serializer({"created_at": moment}) == expected
    assert serializer({"created_at": moment.replace(tzinfo=None)}) == expected  # naive is UTC
    assert serializer({"created_at": moment.astimezone(datetime.timezone(datetime.timedelta(hours=5)))}) == expected
    assert serializer({"created_at": BeamTimestamp.of(moment.timestamp())}) == expected
    assert serializer({"created_at": moment.timestamp()}) == expected
    assert serializer({"created_at": {"seconds": int(moment.timestamp()), "nanos": 250_000_000}}) == expected
    assert serializer({"time_on_page": -1.5}) == parse_dict({"time_on_page": "-1.5s"})
    assert serializer({"time_on_page": "2.5s"}) == parse_dict({"time_on_page": "2.5s"})


def test_messages_of_the_type_are_serialized_as_they_are():
    message = json_format.ParseDict({"order_id": "m", "items": [{"sku": "a"}]}, Order())
    assert order_serializer()(message) == message.SerializeToString()
    item_class = message_factory.GetMessageClass(Order.DESCRIPTOR.fields_by_name["items"].message_type)
    assert order_serializer()({"order_id": "m", "items": [item_class(sku="a")]}) == message.SerializeToString()


# --------------------------------------------------------------------------- #
# Errors name the field path
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "data, message",
    [
        ({"items": [{}, {}, {"price": "abc"}]}, "items[2].price: expected double, got 'abc' (str)"),
        ({"order_id": "a", "colour": "red"}, "colour: unknown field of shop.v1.Order"),
        ({"items": [{"sku": "a", "size": 3}]}, "items[0].size: unknown field of shop.v1.Item"),
        ({"device": "DEVICE_FRIDGE"}, "device: 'DEVICE_FRIDGE' is not a value of enum shop.v1.Device"),
        ({"seen_on": ["DEVICE_IOS", "TV"]}, "seen_on[1]: 'TV' is not a value of enum"),
        ({"attempt": -1}, "attempt: -1 is out of range for uint32"),
        ({"items": [{"quantity": 2**31}]}, "items[0].quantity: 2147483648 is out of range for int32"),
        ({"user_id": True}, "user_id: expected int64, got True (bool)"),
        ({"user_id": 1.5}, "user_id: expected int64, got 1.5 (float)"),
        ({"created_at": "yesterday"}, "created_at: 'yesterday' is not a valid Timestamp"),
        ({"created_at": 10**12}, "created_at: 1000000000000 is out of the Timestamp range"),
        ({"created_at": [1]}, "created_at: expected Timestamp"),
        ({"discount": 1e39}, "discount: 1e+39 is out of range for float"),
        ({"slots": {"x": {}}}, "slots['x']: expected a int32 key, got 'x' (str)"),
        ({"slots": {1: {"price": None, "sku": 5}}}, "slots[1].sku: expected string, got 5 (int)"),
        ({"attributes": ["a"]}, "attributes: expected a map (dict), got ['a'] (list)"),
        ({"items": {"sku": "a"}}, "items: expected a list"),
        ({"ship_to": {"city": "c"}, "pickup_store": "s"}, "pickup_store: oneof 'destination' already has 'ship_to' set"),
        ({"coupon_id": "7"}, "coupon_id: expected int64, got '7' (str)"),
        ({"billing": "Berlin"}, "billing: expected shop.v1.Address"),
        ("not a record", "element: expected shop.v1.Order"),
    ],
)
def test_wrong_input_is_an_error_naming_the_field(data, message):
    with pytest.raises(SerializationError) as info:
        order_serializer()(data)
    assert str(info.value).startswith(message), str(info.value)


def test_unknown_fields_can_be_ignored():
    serializer = order_serializer(ignore_unknown_fields=True)
    assert serializer({"order_id": "a", "colour": "red", "items": [{"size": 1}]}) == parse_dict(
        {"order_id": "a", "items": [{}]}
    )


def test_a_message_of_another_type_is_an_error():
    with pytest.raises(SerializationError, match="expected a shop.v1.Order message or plain data, got a google.protobuf.Timestamp"):
        order_serializer()(timestamp_pb2.Timestamp(seconds=1))


# --------------------------------------------------------------------------- #
# Resolution, descriptor sets, pickling
# --------------------------------------------------------------------------- #


def test_descriptor_set_file_and_bytes(tmp_path):
    path = write_shop_descriptor_set(tmp_path)
    data = {"order_id": "x", "device": "DEVICE_WEB", "items": [{"sku": "s", "price": 2.5}]}
    for source in (path, str(path), shop_descriptor_set()):
        serializer = resolve_serializer("protobuf", message_type=ORDER, descriptor_set=source)
        assert serializer(data) == parse_dict(data)
        assert describe_serializer(serializer) == "protobuf shop.v1.Order"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"message_type": "shop.v1.Order"}, "needs descriptor_set"),
        ({"message_type": "shop.v1.Nope", "descriptor_set": "SET"}, "is not in the descriptor set; it has shop.v1.Address"),
        ({"message_type": ORDER, "descriptor_set": b"\xff\xff"}, "not a serialized FileDescriptorSet"),
        ({"message_type": ORDER, "descriptor_set": "/nonexistent/x.desc"}, "cannot be read"),
        ({"message_type": 42}, "must be a generated protobuf message class"),
        ({"descriptor_set": "SET"}, "need message_type"),
    ],
)
def test_bad_protobuf_options_fail_at_resolution(kwargs, message):
    if kwargs.get("descriptor_set") == "SET":
        kwargs["descriptor_set"] = shop_descriptor_set()
    with pytest.raises(ValueError, match=re.escape(message)):
        resolve_serializer("protobuf", **kwargs)


def test_protobuf_options_with_another_serializer_are_an_error():
    with pytest.raises(ValueError, match="only used with serializer='protobuf'"):
        resolve_serializer("json", message_type=Order)


def test_resolved_data_serializer_survives_beams_pickler():
    serializer = resolve_serializer("protobuf", message_type=ORDER, descriptor_set=shop_descriptor_set())
    copy = pickler.loads(pickler.dumps(serializer))
    data = {"order_id": "p", "created_at": datetime.datetime(2024, 1, 1)}
    assert copy(data) == serializer(data)
    with pytest.raises(SerializationError, match="colour: unknown field"):
        copy({"colour": 1})


# --------------------------------------------------------------------------- #
# Through the sink and the emulator
# --------------------------------------------------------------------------- #


def make_order(i: int) -> Dict[str, Any]:
    return {
        "order_id": f"o-{i}",
        "user_id": i * 7919,
        "device": DEVICES[i % 4] if i % 2 else i % 4,
        "items": [{"sku": f"sku-{j}", "quantity": j + 1, "price": j * 1.25, "tags": ["a"] * j} for j in range(i % 3)],
        "attributes": {"campaign": f"c{i % 5}"},
        "slots": {i % 7: {"sku": "slot"}},
        "created_at": datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(seconds=i, microseconds=i),
        "time_on_page": datetime.timedelta(milliseconds=i),
        "coupon_id": i if i % 3 else None,
        "note": f"n{i}" if i % 4 else None,
        **({"ship_to": {"city": "Pune"}} if i % 2 else {"pickup_store": "s1"}),
    }


BAD_ORDERS = [
    ({"order_id": "bad-unknown", "colour": "red"}, "colour: unknown field"),
    ({"order_id": "bad-type", "items": [{}, {}, {"price": "abc"}]}, "items[2].price: expected double, got 'abc' (str)"),
    ({"order_id": "bad-enum", "device": "DEVICE_FRIDGE"}, "device: 'DEVICE_FRIDGE' is not a value"),
    ({"order_id": "bad-range", "attempt": 2**32}, "attempt: 4294967296 is out of range for uint32"),
    ({"order_id": "bad-time", "created_at": "soon"}, "created_at: 'soon' is not a valid Timestamp"),
]


@pytest.mark.slow
def test_ten_thousand_orders_through_the_emulator_decode_to_the_same_messages(emulator):
    good = [make_order(i) for i in range(10_000)]
    elements = good[:5000] + [bad for bad, _ in BAD_ORDERS] + good[5000:]
    with beam.Pipeline() as pipeline:
        result = (
            pipeline
            | beam.Create(elements, reshuffle=False)
            | WriteToRaccoon(
                emulator.grpc_endpoint,
                event_type="order",
                serializer="protobuf",
                message_type=Order,
                max_batch_size=500,
            )
        )
        letters = result.failed | beam.Map(lambda letter: (letter.element["order_id"], letter.stage, letter.error))
        assert_that(
            letters | beam.Map(lambda t: (t[0], t[1])),
            equal_to([(bad["order_id"], "serialize") for bad, _ in BAD_ORDERS]),
            label="DeadLetters",
        )
        reasons = dict((bad["order_id"], reason) for bad, reason in BAD_ORDERS)
        assert_that(
            letters | beam.Filter(lambda t: reasons[t[0]] not in t[2]),
            equal_to([]),
            label="Reasons",
        )
    received = sorted(
        (Order.FromString(event.event_bytes) for event in emulator.events()), key=lambda m: int(m.order_id[2:])
    )
    assert len(received) == len(good)
    for message, order in zip(received, good):
        expected = Order()
        json_format.ParseDict(json.loads(json.dumps(order, default=_json_default)), expected)
        assert message == expected


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        stamp = timestamp_pb2.Timestamp()
        stamp.FromDatetime(value)
        return stamp.ToJsonString()
    if isinstance(value, datetime.timedelta):
        duration = duration_pb2.Duration()
        duration.FromTimedelta(value)
        return duration.ToJsonString()
    raise TypeError(type(value).__name__)


def test_the_converter_benchmark_runs_and_checks_its_bytes():
    """benchmarks/protobuf_convert.py asserts the converter's bytes equal ParseDict's; no timing here."""
    from benchmarks.protobuf_convert import measure

    results = measure(repeat=1, min_seconds=0.001)
    assert set(results) == {"flat ClickEvent", "nested Order", "json"}
    assert all(value > 0 for case in results.values() for value in case.values())


def test_a_descriptor_set_without_its_well_known_imports_still_loads():
    """protoc without --include_imports leaves Timestamp & co out: they come from the runtime."""
    from google.protobuf import descriptor_pb2

    full = descriptor_pb2.FileDescriptorSet.FromString(shop_descriptor_set())
    only_shop = descriptor_pb2.FileDescriptorSet(file=[f for f in full.file if f.name == "shop/v1/shop.proto"])
    serializer = resolve_serializer("protobuf", message_type=ORDER, descriptor_set=only_shop.SerializeToString())
    data = {"order_id": "w", "created_at": "2024-01-01T00:00:00Z", "coupon_id": 3}
    assert serializer(data) == parse_dict(data)
