"""The Avro schema derived from a Beam schema, and schema order for JSON."""

# No "from __future__ import annotations" here: Beam reads NamedTuple annotations as they are.


import datetime
import io
import json
from typing import Mapping, NamedTuple, Optional, Sequence

import apache_beam as beam
import fastavro
import pytest
from apache_beam.typehints.row_type import RowTypeConstraint
from apache_beam.utils.timestamp import Timestamp

from raccoon_beam import WriteToRaccoon
from raccoon_beam.serializers.avro_schema import avro_schema_from_beam
from raccoon_beam.serializers import resolve_serializer


class Address(NamedTuple):
    city: str
    zip_code: Optional[int]


class Click(NamedTuple):
    user: str
    seq: int
    price: Optional[float]
    ok: bool
    raw: bytes
    at: Timestamp
    tags: Sequence[str]
    props: Mapping[str, int]
    home: Address
    work: Optional[Address]


def test_derived_schema_names_types_nullability_and_timestamps():
    schema = avro_schema_from_beam(Click)
    assert schema["type"] == "record" and schema["name"] == "Click"
    fields = {field["name"]: field for field in schema["fields"]}
    assert [field["name"] for field in schema["fields"]] == list(Click._fields)  # schema order
    assert fields["user"]["type"] == "string"
    assert fields["seq"]["type"] == "long"
    assert fields["price"] == {"name": "price", "type": ["double", "null"]}  # Beam's order, no default
    assert fields["ok"]["type"] == "boolean" and fields["raw"]["type"] == "bytes"
    assert fields["at"]["type"] == {"type": "long", "logicalType": "timestamp-micros"}
    assert fields["tags"]["type"] == {"type": "array", "items": "string"}
    assert fields["props"]["type"] == {"type": "map", "values": "long"}
    assert fields["home"]["type"]["type"] == "record"
    assert fields["work"]["type"][1] == "null" and fields["work"]["type"][0]["type"] == "record"
    names = {fields["home"]["type"]["name"], fields["work"]["type"][0]["name"]}
    assert len(names) == 2  # two records of one type get two unique names
    fastavro.parse_schema(schema)


class Line(NamedTuple):
    sku: str
    quantity: int
    price: Optional[float]


class Order(NamedTuple):
    order_id: str
    small: beam.typehints.schemas.np.int32  # INT32
    ratio: beam.typehints.schemas.np.float32  # FLOAT
    paid: Optional[bool]
    blob: Optional[bytes]
    lines: Sequence[Line]
    shipping_address: Address
    notes: Sequence[Optional[str]]


def _names_unified(schema):
    """The schema with every record named "R": avroio names records after random UUIDs (docs/serializers.md)."""
    if isinstance(schema, dict):
        return {key: ("R" if key == "name" and schema.get("type") == "record" else _names_unified(value)) for key, value in schema.items()}
    if isinstance(schema, list):
        return [_names_unified(item) for item in schema]
    return schema


@pytest.mark.parametrize("element_type", [Order, Line, Address])
def test_derived_schema_is_beams_avroio_schema_but_for_the_record_names(element_type):
    from apache_beam.io import avroio
    from apache_beam.typehints import schemas

    beams = avroio.beam_schema_to_avro_schema(schemas.schema_from_element_type(element_type))
    ours = avro_schema_from_beam(element_type)
    assert _names_unified(ours) == _names_unified(beams)
    assert ours["name"] == element_type.__name__
    fastavro.parse_schema(ours)


def test_display_data_shows_the_derived_schema_and_its_fingerprint():
    from apache_beam.transforms.display import DisplayData

    transform = WriteToRaccoon("grpc://127.0.0.1:1", event_type="x", serializer="avro")
    transform._options = transform.options.for_element_type(Line)
    items = {item.key: item.value for item in DisplayData.create_from(transform).items}
    assert json.loads(items["avro_schema"]) == avro_schema_from_beam(Line)
    assert items["avro_schema_name"] == "Line"
    canonical = fastavro.schema.to_parsing_canonical_form(avro_schema_from_beam(Line))
    assert items["avro_schema_fingerprint"] == "CRC-64-AVRO:" + fastavro.schema.fingerprint(canonical, "CRC-64-AVRO")
    given = WriteToRaccoon("grpc://127.0.0.1:1", event_type="x", serializer="avro", avro_schema=avro_schema_from_beam(Line))
    given_items = {item.key: item.value for item in DisplayData.create_from(given).items}
    assert "avro_schema" not in given_items  # the user's own schema: its name and fingerprint only
    assert given_items["avro_schema_fingerprint"] == items["avro_schema_fingerprint"]


def test_schema_registry_framing_is_magic_byte_id_then_the_avro_binary():
    import struct

    schema = avro_schema_from_beam(Line)
    plain = resolve_serializer("avro", avro_schema=schema)
    framed = resolve_serializer("avro", avro_schema=schema, avro_schema_registry_id=421)
    line = Line("sku-1", 2, None)
    payload = framed(line)
    assert payload[:1] == b"\x00" and struct.unpack(">I", payload[1:5]) == (421,)
    assert payload[5:] == plain(line)
    assert fastavro.schemaless_reader(io.BytesIO(payload[5:]), fastavro.parse_schema(schema), None) == line._asdict()
    for bad in (-1, 2**31, "7", True):
        with pytest.raises(ValueError, match="avro_schema_registry_id must be an int"):
            resolve_serializer("avro", avro_schema=schema, avro_schema_registry_id=bad)
    with pytest.raises(ValueError, match="only used with serializer='avro'"):
        resolve_serializer("json", avro_schema_registry_id=1)


def test_types_without_a_beam_schema_derive_nothing():
    assert avro_schema_from_beam(None) is None
    assert avro_schema_from_beam(dict) is None
    with pytest.raises(ValueError, match="or an input PCollection with a Beam schema"):
        resolve_serializer("avro", element_type=dict)


def test_a_field_with_no_avro_equivalent_is_a_clear_error():
    with pytest.raises(ValueError, match="field 'm' is a map whose keys are not str"):
        avro_schema_from_beam(RowTypeConstraint.from_fields([("m", Mapping[int, str])]))


def test_json_writes_a_rows_fields_in_schema_order():
    row = beam.Row(z=1, a=2, m=3)
    assert resolve_serializer("json")(row) == b'{"z":1,"a":2,"m":3}'


def make_click(i: int) -> Click:
    return Click(
        user=f"u{i}",
        seq=i,
        price=None if i % 3 == 0 else i * 0.5,
        ok=i % 2 == 0,
        raw=bytes([i % 256]),
        at=Timestamp(micros=1_700_000_000_000_000 + i),
        tags=[f"t{j}" for j in range(i % 3)],
        props={"n": i},
        home=Address("Pune", 411001 if i % 2 else None),
        work=None if i % 2 else Address("Delhi", None),
    )


def expected_record(click: Click) -> dict:
    record = click._asdict()
    record["at"] = datetime.datetime.fromtimestamp(click.at.micros / 1e6, datetime.timezone.utc).replace(
        microsecond=click.at.micros % 1_000_000
    )
    record["home"] = click.home._asdict()
    record["work"] = None if click.work is None else click.work._asdict()
    record["tags"] = list(click.tags)
    return record


@pytest.mark.parametrize("as_rows", [False, True])
def test_schema_pcollection_delivers_events_fastavro_decodes_with_the_derived_schema(emulator, as_rows):
    clicks = [make_click(i) for i in range(300)]
    schema = fastavro.parse_schema(avro_schema_from_beam(Click))
    with beam.Pipeline() as pipeline:
        elements = pipeline | beam.Create(clicks).with_output_types(Click)
        if as_rows:  # Rows with a schema, as Beam YAML makes them
            row_type = RowTypeConstraint.from_fields(list(Click.__annotations__.items()))
            elements = elements | beam.Map(lambda c: beam.Row(**c._asdict())).with_output_types(row_type)
        result = elements | WriteToRaccoon(emulator.rest_endpoint, event_type="click", serializer="avro")
        result.failed | beam.Map(lambda letter: pytest.fail(f"dead letter: {letter}"))
    decoded = sorted(
        (fastavro.schemaless_reader(io.BytesIO(event.event_bytes), schema) for event in emulator.events()),
        key=lambda record: record["seq"],
    )
    assert decoded == [expected_record(click) for click in clicks]


def test_avro_without_schema_on_a_schemaless_input_fails_when_applied():
    transform = WriteToRaccoon("grpc://127.0.0.1:1", event_type="x", serializer="avro")
    with pytest.raises(ValueError, match="needs avro_schema"):
        with beam.Pipeline() as pipeline:
            pipeline | beam.Create([json.dumps({"a": 1})]) | transform
