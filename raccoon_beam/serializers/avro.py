"""``serializer="avro"``: Avro binary encoding (fastavro's schemaless writer), optionally framed for a schema registry.

The schema is the user's ``avro_schema``, or the one derived from the input's
Beam schema (:mod:`raccoon_beam.serializers.avro_schema`). Dicts, Beam
``Row`` s, ``NamedTuple`` s and dataclasses are records; a Beam ``Timestamp``
is its microseconds (``timestamp-micros``). A missing field takes its schema
default; fields the schema does not name are ignored.
"""

from __future__ import annotations

import io
import json
from typing import Any, Mapping, Optional, Union

import fastavro
import fastavro.schema
import fastavro.validation

from raccoon_beam.errors import SerializationError
from raccoon_beam.serializers.base import ELEMENT_IS_NONE, BaseSerializer
from raccoon_beam.serializers.plain import plain_tree, short_repr, type_name

__all__ = ["AvroSerializer", "AvroSchema", "registry_prefix", "REGISTRY_MAGIC_BYTE"]

AvroSchema = Union[Mapping[str, Any], list, str]
"""An Avro schema: a dict (a list for a union) or its JSON text."""

REGISTRY_MAGIC_BYTE = b"\x00"
"""The first byte of a payload in Confluent's schema-registry wire format."""

_MAX_REGISTRY_ID = 2**31 - 1  # registry ids are positive Java ints


def registry_prefix(schema_id: int) -> bytes:
    """The 5 bytes a Confluent schema-registry payload starts with: magic byte 0, the id big-endian.

    Raises:
      ValueError: the id is not an int in [0, 2**31).
    """
    if isinstance(schema_id, bool) or not isinstance(schema_id, int) or not 0 <= schema_id <= _MAX_REGISTRY_ID:
        raise ValueError(f"avro_schema_registry_id must be an int in [0, 2**31), got {schema_id!r}")
    return REGISTRY_MAGIC_BYTE + schema_id.to_bytes(4, "big")


class AvroSerializer(BaseSerializer):
    """Avro binary encoding without header, under one parsed schema.

    Args:
      schema: the Avro schema (a dict, a list for a union, or a JSON string).
      validate: check every record against the schema before writing it.
      schema_registry_id: the schema's id in a Confluent schema registry:
        each payload is then framed as the registry's serializers frame it
        (magic byte 0, the id as 4 bytes big-endian, the Avro binary).
      derived: the schema was derived from the input's Beam schema (shown
        in display data).

    Raises:
      ValueError: an invalid schema, or a registry id that is not an int in [0, 2**31).
    """

    __slots__ = ("_source", "_schema", "_validate", "_name", "_prefix", "_registry_id", "_derived", "description")

    def __init__(
        self,
        schema: AvroSchema,
        *,
        validate: bool = True,
        schema_registry_id: Optional[int] = None,
        derived: bool = False,
    ) -> None:
        self._source = schema
        self._schema = _parse_avro_schema(schema)
        self._validate = validate
        self._name = _avro_schema_label(self._schema)
        self._registry_id = schema_registry_id
        self._prefix = b"" if schema_registry_id is None else registry_prefix(schema_registry_id)
        self._derived = derived
        self.description = "avro" if schema_registry_id is None else f"avro (schema registry id {schema_registry_id})"

    def __reduce__(self):
        # Ship the schema as given; a worker parses it once on unpickling.
        return (_make_avro_serializer, (self._source, self._validate, self._registry_id, self._derived))

    def display(self) -> dict:
        """The schema's name and Avro fingerprint (and the schema itself when it was derived).

        The fingerprint is Avro's own: CRC-64-AVRO of the schema's Parsing
        Canonical Form, what Avro's single-object encoding and schema stores use.
        """
        canonical = fastavro.schema.to_parsing_canonical_form(_plain_schema(self._source))
        items = {
            "avro_schema_name": self._name,
            "avro_schema_fingerprint": "CRC-64-AVRO:" + fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"),
        }
        if self._derived:
            items["avro_schema"] = json.dumps(_plain_schema(self._source), separators=(",", ":"))
        return items

    def __call__(self, element: Any) -> bytes:
        if element is None:
            raise SerializationError(ELEMENT_IS_NONE)
        try:
            record = plain_tree(element, timestamps_as_micros=True)
        except RecursionError as exc:
            raise SerializationError("circular reference or nesting too deep") from exc
        if self._validate and not fastavro.validation.validate(
            record, self._schema, raise_errors=False
        ):
            raise SerializationError(self._explain(record, None))
        buffer = io.BytesIO()
        buffer.write(self._prefix)
        try:
            fastavro.schemaless_writer(buffer, self._schema, record)
        except Exception as exc:  # fastavro raises TypeError, ValueError, KeyError, ...
            raise SerializationError(self._explain(record, exc)) from exc
        return buffer.getvalue()

    def _explain(self, record: Any, exc: Optional[BaseException]) -> str:
        """Names the fields that do not fit, using fastavro's validator."""
        prefix = f"record does not fit Avro schema {self._name}"
        try:
            fastavro.validation.validate(record, self._schema, raise_errors=True)
        except fastavro.validation.ValidationError as invalid:
            return f"{prefix}: {_describe_avro_errors(invalid.errors)}"
        except Exception as other:  # the validator itself failed on this value
            return f"{prefix}: {type(other).__name__}: {other}"
        # The validator accepts what the writer rejected: report the writer.
        return f"{prefix}: {type(exc).__name__}: {exc}"


def _make_avro_serializer(
    schema: AvroSchema, validate: bool, schema_registry_id: Optional[int] = None, derived: bool = False
) -> AvroSerializer:
    return AvroSerializer(schema, validate=validate, schema_registry_id=schema_registry_id, derived=derived)


def _plain_schema(schema: AvroSchema) -> Any:
    return json.loads(schema) if isinstance(schema, (str, bytes)) else schema


def _parse_avro_schema(schema: AvroSchema) -> Any:
    if isinstance(schema, (str, bytes)):
        try:
            schema = json.loads(schema)
        except ValueError as exc:
            raise ValueError(f"avro_schema is not valid JSON: {exc}") from exc
    try:
        return fastavro.parse_schema(schema)
    except Exception as exc:  # fastavro raises several types for a bad schema
        raise ValueError(f"invalid avro_schema: {type(exc).__name__}: {exc}") from exc


def _avro_schema_label(schema: Any) -> str:
    """A short name for a (parsed) schema: its full name, type, or union branches."""
    if isinstance(schema, list):
        return "union[" + ", ".join(_avro_schema_label(branch) for branch in schema) + "]"
    if isinstance(schema, dict):
        if "name" in schema:
            return str(schema["name"])
        label = str(schema.get("type"))
        if label == "array":
            return f"array<{_avro_schema_label(schema.get('items'))}>"
        if label == "map":
            return f"map<{_avro_schema_label(schema.get('values'))}>"
        if "logicalType" in schema:
            return f"{label} ({schema['logicalType']})"
        return label
    return str(schema)


def _describe_avro_errors(errors) -> str:
    """One clause per field from fastavro ``ValidationErrorData``, union branches merged."""
    by_field: dict = {}
    for error in errors:
        entry = by_field.setdefault(error.field, [error.datum, []])
        entry[1].append(_avro_schema_label(error.schema))
    clauses = []
    for field, (datum, expected) in by_field.items():
        # fastavro names a field "<namespace>.<Record>.<field>".
        name = field.rsplit(".", 1)[-1] if field else ""
        where = f"field {name!r} ({field})" if field else "record"
        wanted = expected[0] if len(expected) == 1 else "one of " + ", ".join(expected)
        got = "None (or missing)" if datum is None else f"{short_repr(datum)} ({type_name(datum)})"
        clauses.append(f"{where}: got {got}, expected {wanted}")
    return "; ".join(clauses) or "unknown mismatch"
