"""Beam schema -> Avro schema: what ``serializer="avro"`` uses when no ``avro_schema`` is given.

The input PCollection's element type (a ``NamedTuple``, a ``Row`` type from
``beam.Select`` or ``beam.Row(...)`` in a ``Map`` with a schema, Beam YAML's
rows) carries a Beam schema. The Avro schema derived from it is the one
Beam's own ``apache_beam.io.avroio`` derives (``beam_schema_to_avro_schema``,
what ``WriteToAvro`` writes files with): its function converts every
primitive field, and arrays and nested rows have its shapes, so the same
records encode to the same bytes as in Beam's Avro files:

=====================================  =========================================
Beam type                              Avro type
=====================================  =========================================
``str``, ``bytes``, ``bool``           ``string``, ``bytes``, ``boolean``
``int`` (INT64), INT32                 ``long``, ``int``
``float`` (DOUBLE), FLOAT              ``double``, ``float``
``Optional[T]``                        ``[T, "null"]`` (no default, as in Beam)
``Sequence[T]`` / ``List[T]``          ``{"type": "array", "items": T}``
a nested NamedTuple or Row             a nested ``record``
=====================================  =========================================

Where this derivation differs from avroio's, and why:

- **Record names.** avroio names a record after the Beam schema's id, a
  random UUID: not a valid Avro name (Avro names are identifiers), and a new
  one on every run, which a schema registry would take for a new schema each
  time. Here a record is named after the element type (``Row`` types get
  ``Row``), nested ones after their field (``shipping_address`` ->
  ``ShippingAddress``), made unique with ``_2``, ``_3``, ...
- **Types avroio cannot convert**, derived here rather than refused:
  ``Mapping[str, T]`` -> ``{"type": "map", "values": T}`` (the shape avroio
  means; its code reads a map field that does not exist and fails), INT16
  and BYTE -> ``int``, Beam ``Timestamp`` (micros_instant) -> ``long`` with
  ``logicalType: timestamp-micros``, millis_instant -> ``timestamp-millis``.
- **Optional arrays, maps and rows** are ``[T, "null"]``: avroio drops their
  nullability, so a None there could not be written at all.

Other Beam types (maps with non-string keys, other logical types) have no
Avro equivalent and raise ``ValueError``: give ``avro_schema=``.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from apache_beam.io import avroio
from apache_beam.portability.api import schema_pb2
from apache_beam.typehints import schemas

__all__ = ["avro_schema_from_beam"]

# Beam's own mapping of primitive types (avroio's); INT16 and BYTE are not in it.
_BEAM_PRIMITIVES = avroio.BEAM_PRIMITIVES_TO_AVRO_PRIMITIVES
_NARROW_INTS = {schema_pb2.BYTE: "int", schema_pb2.INT16: "int"}
_LOGICAL = {
    "beam:logical_type:micros_instant:v1": {"type": "long", "logicalType": "timestamp-micros"},
    "beam:logical_type:millis_instant:v1": {"type": "long", "logicalType": "timestamp-millis"},
}


def avro_schema_from_beam(element_type: Any) -> Optional[Dict[str, Any]]:
    """The Avro record schema of a Beam schema'd element type.

    Args:
      element_type: a PCollection's ``element_type`` (a NamedTuple class, a
        Beam ``RowTypeConstraint``, ...), or None.

    Returns:
      An Avro ``record`` schema as a dict, or None when ``element_type`` has
      no Beam schema (``Any``, ``dict``, None).

    Raises:
      ValueError: the schema has a field type with no Avro equivalent.
    """
    if element_type is None:
        return None
    try:
        schema = schemas.schema_from_element_type(element_type)
    except (TypeError, ValueError, AttributeError):
        return None
    name = getattr(element_type, "__name__", None) or "Row"
    if not name.isidentifier() or name.startswith("BeamSchema_") or "RowTypeConstraint" in name:
        name = "Row"
    return _Deriver().record(schema, name, "")


class _Deriver:
    """One derivation: keeps the record names unique within the schema."""

    def __init__(self) -> None:
        self._names: set = set()

    def record(self, schema: schema_pb2.Schema, name: str, path: str) -> Dict[str, Any]:
        unique, counter = name, 1
        while unique in self._names:
            counter += 1
            unique = f"{name}_{counter}"
        self._names.add(unique)
        fields: List[Dict[str, Any]] = [
            {"name": field.name, "type": self.field_type(field.type, f"{path}.{field.name}" if path else field.name)}
            for field in schema.fields
        ]
        return {"type": "record", "name": unique, "fields": fields}

    def field_type(self, field_type: schema_pb2.FieldType, path: str) -> Any:
        """What avroio's ``unnest_primitive_type`` gives for a field's type, where it converts it."""
        if field_type.WhichOneof("type_info") == "atomic_type" and field_type.atomic_type in _BEAM_PRIMITIVES:
            return avroio.unnest_primitive_type(field_type)  # Beam's own: "long", ["string", "null"]
        avro = self.plain_type(field_type, path)
        return [avro, "null"] if field_type.nullable else avro

    def plain_type(self, field_type: schema_pb2.FieldType, path: str) -> Any:
        kind = field_type.WhichOneof("type_info")
        if kind == "atomic_type":
            if field_type.atomic_type in _NARROW_INTS:
                return _NARROW_INTS[field_type.atomic_type]
        elif kind == "array_type" or kind == "iterable_type":
            element = getattr(field_type, kind).element_type
            return {"type": "array", "items": self.field_type(element, f"{path}[]")}
        elif kind == "map_type":
            key = field_type.map_type.key_type
            if key.WhichOneof("type_info") == "atomic_type" and key.atomic_type == schema_pb2.STRING:
                return {"type": "map", "values": self.field_type(field_type.map_type.value_type, f"{path}[]")}
            raise ValueError(f"cannot derive an Avro schema: field {path!r} is a map whose keys are not str")
        elif kind == "row_type":
            return self.record(field_type.row_type.schema, _record_name(path), path)
        elif kind == "logical_type":
            logical = _LOGICAL.get(field_type.logical_type.urn)
            if logical is not None:
                return dict(logical)
            raise ValueError(
                f"cannot derive an Avro schema: field {path!r} has Beam logical type "
                f"{field_type.logical_type.urn}; give avro_schema="
            )
        raise ValueError(f"cannot derive an Avro schema: field {path!r} has Beam type {kind}; give avro_schema=")


def _record_name(path: str) -> str:
    """A record name for a nested row field: ``order.shipping_address`` -> ``ShippingAddress``."""
    field_name = path.rsplit(".", 1)[-1].rstrip("[]")
    name = "".join(part[:1].upper() + part[1:] for part in field_name.split("_") if part)
    return name if name.isidentifier() else "Record"
