"""Element -> event bytes: the serializers of :class:`WriteToRaccoon`.

A serializer runs once per event on the sink's hot path, so
:func:`resolve_serializer` does all the work that does not depend on the
element (validating the spec, parsing an Avro schema, building a protobuf
converter) once, and returns a small picklable callable that is shipped to
the workers. Every failure to turn an element into bytes is a
:class:`~raccoon_beam.errors.SerializationError` with a readable message that
names the offending field or type, so the sink can dead-letter the element.

One module per format:

- ``"json"`` (:mod:`~raccoon_beam.serializers.json`): dicts, lists, scalars,
  Beam ``Row`` s, ``NamedTuple`` s, dataclasses, datetimes, ``Decimal``,
  ``UUID``, ``Enum``, bytes, ... under one documented mapping, written by
  orjson; ``json_default`` for the user's own types.
- ``"protobuf"`` (:mod:`~raccoon_beam.serializers.protobuf`): a message, or
  with ``message_type`` plain data converted to that message
  (:mod:`~raccoon_beam.serializers.protobuf_data`).
- ``"avro"`` (:mod:`~raccoon_beam.serializers.avro`): Avro binary under a
  given schema or one derived from the input's Beam schema
  (:mod:`~raccoon_beam.serializers.avro_schema`), optionally framed for a
  schema registry.
- ``"bytes"`` and any callable element -> bytes
  (:mod:`~raccoon_beam.serializers.raw`).

:mod:`~raccoon_beam.serializers.plain` is how all of them see a record.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

from raccoon_beam.serializers.avro import AvroSchema, AvroSerializer
from raccoon_beam.serializers.avro_schema import avro_schema_from_beam
from raccoon_beam.serializers.base import BaseSerializer, Serializer
from raccoon_beam.serializers.json import DEFAULT_JSON_BYTES, JsonDefault, JsonSerializer
from raccoon_beam.serializers.protobuf import ProtobufDataSerializer, ProtobufSerializer
from raccoon_beam.serializers.protobuf_data import DEFAULT_IGNORE_UNKNOWN_FIELDS
from raccoon_beam.serializers.protobuf_descriptors import DescriptorSetSpec, MessageTypeSpec, message_class_of
from raccoon_beam.serializers.raw import BytesSerializer, CallableSerializer

__all__ = [
    "Serializer",
    "SERIALIZER_NAMES",
    "resolve_serializer",
    "describe_serializer",
    "serializer_display",
    "AvroSchema",
    "MessageTypeSpec",
    "DescriptorSetSpec",
    "JsonDefault",
]

SERIALIZER_NAMES = ("json", "protobuf", "avro", "bytes")
"""The names of the built-in serializers, accepted by :func:`resolve_serializer`."""

def resolve_serializer(
    spec: Union[str, Callable[[Any], bytes]],
    *,
    avro_schema: Optional[AvroSchema] = None,
    avro_validate: bool = True,
    avro_schema_registry_id: Optional[int] = None,
    message_type: Optional[MessageTypeSpec] = None,
    descriptor_set: Optional[DescriptorSetSpec] = None,
    ignore_unknown_fields: bool = DEFAULT_IGNORE_UNKNOWN_FIELDS,
    json_bytes: str = DEFAULT_JSON_BYTES,
    json_default: Optional[JsonDefault] = None,
    element_type: Any = None,
) -> Serializer:
    """Turns a serializer spec into a picklable callable element -> bytes.

    Args:
      spec: ``"json"``, ``"protobuf"``, ``"avro"``, ``"bytes"``, or any
        callable element -> bytes (``bytes``, ``bytearray`` or ``memoryview``).
        A serializer this function returned is returned unchanged.
      avro_schema: the Avro schema, as a dict (or a list, for a union) or a
        JSON string; with ``"avro"`` only. Without it, the input's Beam
        schema gives it (``element_type``).
      avro_validate: with ``"avro"``, check every record against the schema
        before writing it. fastavro's writer alone silently accepts some
        records that do not fit (it truncates ``1.5`` to ``1`` in a ``long``,
        writes any value as a ``boolean`` by its truth, and writes a string as
        an array of its characters); turning this off saves about 2 us per
        event and only names the field of records the writer rejects.
      avro_schema_registry_id: with ``"avro"``, the schema's id in a
        Confluent schema registry: every payload then starts with the
        registry's 5-byte header (magic byte 0, the id big-endian).
      message_type: with ``"protobuf"``, the message that plain data (dicts,
        Rows, NamedTuples, dataclasses) is converted to: a generated message
        class, or its full name (``"pkg.ClickEvent"``) with
        ``descriptor_set``. Messages of that type are serialized as they are.
      descriptor_set: a FileDescriptorSet (``protoc --descriptor_set_out
        --include_imports``): a path to the file, or its bytes.
      ignore_unknown_fields: with ``message_type``, skip names the message
        does not have instead of dead-lettering the element.
      json_bytes: with ``"json"``, ``"base64"`` (bytes become base64
        strings, as in BigQuery's JSON) or ``"error"`` (a dead letter).
      json_default: with ``"json"``, a function for values of the user's own
        types (as orjson's ``default``): it returns a value JSON can hold, or
        raises ``TypeError``.
      element_type: the input PCollection's element type. With ``"avro"`` and
        no ``avro_schema``, a type with a Beam schema (a NamedTuple, a
        ``Row`` type) gives the Avro schema (see
        :func:`raccoon_beam.serializers.avro_schema.avro_schema_from_beam`).

    Returns:
      A callable element -> ``bytes`` that raises
      :class:`~raccoon_beam.errors.SerializationError` for an element it
      cannot serialize, and pickles with Beam's pickler.

    Raises:
      ValueError: an unknown serializer name, a missing or invalid Avro
        schema (or no Beam schema to derive it from), an option given for
        another serializer, a message type that cannot be loaded, a bad
        ``json_bytes`` or registry id.
      TypeError: ``spec`` is neither a string nor a callable.
    """
    _check_options_fit(
        spec,
        avro=avro_schema is not None or avro_schema_registry_id is not None,
        protobuf=message_type is not None or descriptor_set is not None or bool(ignore_unknown_fields),
        json=json_bytes != DEFAULT_JSON_BYTES or json_default is not None,
    )
    if isinstance(spec, BaseSerializer):
        return spec
    if isinstance(spec, str):
        if spec == "json":
            return JsonSerializer(json_bytes, json_default)
        if spec == "protobuf":
            if message_type is None:
                if descriptor_set is not None or ignore_unknown_fields:
                    raise ValueError("descriptor_set and ignore_unknown_fields need message_type=")
                return ProtobufSerializer()
            return ProtobufDataSerializer(message_class_of(message_type, descriptor_set), ignore_unknown_fields)
        if spec == "bytes":
            return BytesSerializer()
        if spec == "avro":
            derived = avro_schema is None
            if avro_schema is None:
                avro_schema = avro_schema_from_beam(element_type)
                if avro_schema is None:
                    raise ValueError(
                        "serializer='avro' needs avro_schema= (a dict or a JSON string), "
                        "or an input PCollection with a Beam schema to derive it from"
                    )
            return AvroSerializer(
                avro_schema, validate=avro_validate, schema_registry_id=avro_schema_registry_id, derived=derived
            )
        raise ValueError(_unknown_name_message(spec))
    if callable(spec):
        return CallableSerializer(spec)
    raise TypeError(
        f"serializer must be one of {', '.join(map(repr, SERIALIZER_NAMES))} "
        f"or a callable element -> bytes, got {type(spec).__name__}"
    )


def describe_serializer(spec: Union[str, Callable[[Any], bytes]]) -> str:
    """A short description of a serializer spec, for display data and messages.

    Args:
      spec: what :func:`resolve_serializer` accepts, or what it returned.

    Returns:
      ``"json"``, ``"protobuf"``, ``"avro"``, ``"bytes"`` (with their
      options, for a resolved one), or ``"callable <module>.<qualified name>"``.

    Raises:
      ValueError: an unknown serializer name.
    """
    if isinstance(spec, BaseSerializer):
        return spec.description
    if isinstance(spec, str):
        if spec in SERIALIZER_NAMES:
            return spec
        raise ValueError(_unknown_name_message(spec))
    return CallableSerializer(spec).description


def serializer_display(serializer: Any) -> dict:
    """Display data items of a resolved serializer beyond its description (the Avro schema's, ...)."""
    return serializer.display() if isinstance(serializer, BaseSerializer) else {}


def _check_options_fit(spec: Any, *, avro: bool, protobuf: bool, json: bool) -> None:
    """A ValueError for options of one serializer given with another."""
    for name, given, options in (
        ("avro", avro, "avro_schema and avro_schema_registry_id"),
        ("protobuf", protobuf, "message_type, descriptor_set and ignore_unknown_fields"),
        ("json", json, "json_bytes and json_default"),
    ):
        if given and spec != name:
            raise ValueError(f"{options} are only used with serializer={name!r}, not with {describe_serializer(spec)}")


def _unknown_name_message(name: str) -> str:
    return (
        f"unknown serializer {name!r}; expected one of "
        f"{', '.join(map(repr, SERIALIZER_NAMES))} or a callable element -> bytes"
    )
