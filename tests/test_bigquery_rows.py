"""BigQuery-shaped rows (datetimes, dates, times, Decimals, UUIDs, bytes, nested records, Nones) through each serializer.

Every row is delivered to the emulator, and what it captured decodes back to values equal to the row's.
"""

# No "from __future__ import annotations": Beam reads the NamedTuples' annotations as they are.

import base64
import datetime
import decimal
import io
import json
import uuid
from typing import NamedTuple, Optional, Sequence

import apache_beam as beam
import fastavro
from apache_beam.utils.timestamp import Timestamp

from raccoon_beam import WriteToRaccoon
from raccoon_beam.serializers.avro_schema import avro_schema_from_beam
from tests.protobuf_helpers import order_class

UTC = datetime.timezone.utc
ROWS = 40


def bigquery_row(i: int) -> dict:
    """A row as ReadFromBigQuery returns one: TIMESTAMP aware, DATETIME naive, NUMERIC a Decimal, BYTES bytes."""
    return {
        "order_id": f"o-{i}",
        "user_id": i,
        "created_at": datetime.datetime(2024, 5, 1, tzinfo=UTC) + datetime.timedelta(seconds=i, microseconds=7),
        "local_time": datetime.datetime(2024, 5, 1, 9, 30) + datetime.timedelta(minutes=i),
        "day": datetime.date(2024, 5, 1) + datetime.timedelta(days=i),
        "at": datetime.time(8, i % 60, 1),
        "price": decimal.Decimal(f"{i}.50"),
        "uid": uuid.UUID(int=i),
        "token": bytes([i % 256, 255, 0]),
        "billing": {"city": "Pune", "country": None if i % 2 else "IN"},
        "items": [{"sku": f"s{i}", "quantity": 1, "price": 2.5, "tags": ["a", None]}],
        "note": None if i % 3 else "gift",
    }


def from_json(decoded: dict) -> dict:
    """The JSON mapping undone for this row's fields (docs/serializers.md)."""
    return dict(
        decoded,
        created_at=datetime.datetime.fromisoformat(decoded["created_at"]),
        local_time=datetime.datetime.fromisoformat(decoded["local_time"]),
        day=datetime.date.fromisoformat(decoded["day"]),
        at=datetime.time.fromisoformat(decoded["at"]),
        uid=uuid.UUID(decoded["uid"]),
        token=base64.b64decode(decoded["token"]),
    )


def test_json_delivers_every_row_and_decodes_back_to_equal_values(emulator):
    rows = [bigquery_row(i) for i in range(ROWS)]
    with beam.Pipeline() as pipeline:
        result = pipeline | beam.Create(rows) | WriteToRaccoon(emulator.rest_endpoint, event_type="order")
        result.failed | beam.Map(lambda letter: pytest_fail(letter))
    decoded = [from_json(json.loads(e.event_bytes, parse_float=decimal.Decimal)) for e in emulator.events()]
    assert sorted(decoded, key=lambda row: row["user_id"]) == rows
    assert all(type(row["price"]) is decimal.Decimal for row in decoded)  # the digits, not a float


def test_protobuf_with_message_type_delivers_every_row_and_decodes_back(emulator):
    Order = order_class()  # made from a descriptor set at run time: it pickles as its name and schema
    rows = [
        {key: bigquery_row(i)[key] for key in ("order_id", "user_id", "created_at", "token", "billing", "note")}
        | {"items": [{"sku": f"s{i}", "quantity": 1, "price": 2.5, "tags": ["a"]}], "coupon_id": None}
        for i in range(ROWS)
    ]
    with beam.Pipeline() as pipeline:
        result = pipeline | beam.Create(rows) | WriteToRaccoon(
            emulator.grpc_endpoint,
            event_type="order",
            serializer="protobuf",
            message_type=Order,
        )
        result.failed | beam.Map(lambda letter: pytest_fail(letter))
    messages = sorted((Order.FromString(e.event_bytes) for e in emulator.events()), key=lambda m: m.user_id)
    assert len(messages) == ROWS
    for row, message in zip(rows, messages):
        assert message.order_id == row["order_id"] and message.token == row["token"]
        assert message.created_at.ToDatetime(tzinfo=UTC) == row["created_at"]
        assert message.billing.city == "Pune" and message.billing.country == (row["billing"]["country"] or "")
        assert [(item.sku, item.price, list(item.tags)) for item in message.items] == [
            (item["sku"], item["price"], item["tags"]) for item in row["items"]
        ]
        assert message.HasField("note") == (row["note"] is not None) and not message.HasField("coupon_id")


class BillingAddress(NamedTuple):
    city: str
    country: Optional[str]


class Item(NamedTuple):
    sku: str
    quantity: int
    price: float
    tags: Sequence[Optional[str]]


class OrderRow(NamedTuple):
    order_id: str
    user_id: int
    created_at: Timestamp
    price: Optional[float]
    token: bytes
    billing: BillingAddress
    items: Sequence[Item]
    note: Optional[str]


def order_row(i: int) -> OrderRow:
    row = bigquery_row(i)
    return OrderRow(
        order_id=row["order_id"],
        user_id=i,
        created_at=Timestamp.from_utc_datetime(row["created_at"]),
        price=None if i % 4 == 0 else float(row["price"]),
        token=row["token"],
        billing=BillingAddress(**row["billing"]),
        items=[Item(**item) for item in row["items"]],
        note=row["note"],
    )


def test_avro_with_the_schema_derived_from_the_beam_schema_delivers_every_row_and_decodes_back(emulator):
    rows = [order_row(i) for i in range(ROWS)]
    schema = fastavro.parse_schema(avro_schema_from_beam(OrderRow))
    with beam.Pipeline() as pipeline:
        elements = pipeline | beam.Create(rows).with_output_types(OrderRow)
        result = elements | WriteToRaccoon(emulator.ws_endpoint, event_type="order", serializer="avro")
        result.failed | beam.Map(lambda letter: pytest_fail(letter))
    decoded = sorted(
        (fastavro.schemaless_reader(io.BytesIO(e.event_bytes), schema, None) for e in emulator.events()),
        key=lambda record: record["user_id"],
    )
    expected = [
        dict(
            row._asdict(),
            created_at=row.created_at.to_utc_datetime(has_tz=True),
            billing=row.billing._asdict(),
            items=[item._asdict() for item in row.items],
        )
        for row in rows
    ]
    assert decoded == expected


def pytest_fail(letter):
    raise AssertionError(f"dead letter: {letter}")
