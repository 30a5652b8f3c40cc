"""Beam schema -> Avro schema: what ``serializer="avro"`` uses when no ``avro_schema`` is given.

The input PCollection's element type (a ``NamedTuple``, a ``Row`` type from
``beam.Select`` or ``beam.Row(...)`` in a ``Map`` with a schema, Beam YAML's
rows) carries a Beam schema; :func:`avro_schema_from_beam` maps it field by
field, in schema order:

=====================================  =========================================
Beam type                              Avro type
=====================================  =========================================
``str``                                ``string``
``bytes``                              ``bytes``
``bool``                               ``boolean``
``int`` (INT64), INT32, INT16, BYTE    ``long``, ``int``, ``int``, ``int``
``float`` (DOUBLE), FLOAT              ``double``, ``float``
``Optional[T]``                        ``["null", T]`` with default ``null``
``Sequence[T]`` / ``List[T]``          ``{"type": "array", "items": T}``
``Mapping[str, T]``                    ``{"type": "map", "values": T}``
a nested NamedTuple or Row             a nested ``record``
Beam ``Timestamp`` (micros_instant)    ``long`` with ``logicalType: timestamp-micros``
``datetime`` (millis_instant)          ``long`` with ``logicalType: timestamp-millis``
=====================================  =========================================

Records are named after the element type (``Row`` types get ``Row``,
``Row_2``, ... in schema order) in the namespace ``raccoon_beam.derived``.
Other Beam types (maps with non-string keys, other logical types) have no
Avro equivalent here and raise ``ValueError``: give ``avro_schema=``.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from apache_beam.portability.api import schema_pb2
from apache_beam.typehints import schemas

__all__ = ["avro_schema_from_beam", "AVRO_NAMESPACE"]

AVRO_NAMESPACE = "raccoon_beam.derived"
"""The namespace of derived records; any fixed name works, it only has to be valid Avro."""

_ATOMIC = {
    schema_pb2.BYTE: "int",
    schema_pb2.INT16: "int",
    schema_pb2.INT32: "int",
    schema_pb2.INT64: "long",
    schema_pb2.FLOAT: "float",
    schema_pb2.DOUBLE: "double",
    schema_pb2.STRING: "string",
    schema_pb2.BOOLEAN: "boolean",
    schema_pb2.BYTES: "bytes",
}
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
      ValueError: the schema has a field type with no Avro equivalent here.
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
        fields: List[Dict[str, Any]] = []
        for field in schema.fields:
            where = f"{path}.{field.name}" if path else field.name
            avro_type = self.field_type(field.type, where, field.name)
            entry: Dict[str, Any] = {"name": field.name, "type": avro_type}
            if field.type.nullable:
                entry["default"] = None
            fields.append(entry)
        return {"type": "record", "name": unique, "namespace": AVRO_NAMESPACE, "fields": fields}

    def field_type(self, field_type: schema_pb2.FieldType, path: str, name: str) -> Any:
        avro = self.plain_type(field_type, path, name)
        return ["null", avro] if field_type.nullable else avro

    def plain_type(self, field_type: schema_pb2.FieldType, path: str, name: str) -> Any:
        kind = field_type.WhichOneof("type_info")
        if kind == "atomic_type":
            if field_type.atomic_type in _ATOMIC:
                return _ATOMIC[field_type.atomic_type]
        elif kind == "array_type" or kind == "iterable_type":
            element = getattr(field_type, kind).element_type
            return {"type": "array", "items": self.field_type(element, f"{path}[]", name)}
        elif kind == "map_type":
            key = field_type.map_type.key_type
            if key.WhichOneof("type_info") == "atomic_type" and key.atomic_type == schema_pb2.STRING:
                return {"type": "map", "values": self.field_type(field_type.map_type.value_type, f"{path}[]", name)}
            raise ValueError(f"cannot derive an Avro schema: field {path!r} is a map whose keys are not str")
        elif kind == "row_type":
            return self.record(field_type.row_type.schema, _record_name(name), path)
        elif kind == "logical_type":
            logical = _LOGICAL.get(field_type.logical_type.urn)
            if logical is not None:
                return dict(logical)
            raise ValueError(
                f"cannot derive an Avro schema: field {path!r} has Beam logical type "
                f"{field_type.logical_type.urn}; give avro_schema="
            )
        raise ValueError(f"cannot derive an Avro schema: field {path!r} has Beam type {kind}; give avro_schema=")


def _record_name(field_name: str) -> str:
    """A record name for a nested row field: ``shipping_address`` -> ``ShippingAddress``."""
    name = "".join(part[:1].upper() + part[1:] for part in field_name.split("_") if part)
    return name if name.isidentifier() else "Record"
