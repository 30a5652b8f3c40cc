"""Element -> event bytes: the serializers of :class:`WriteToRaccoon`.

A serializer runs once per event on the sink's hot path, so
:func:`resolve_serializer` does all the work that does not depend on the
element (validating the spec, parsing an Avro schema, building the JSON
encoder) once, and returns a small picklable callable that is shipped to the
workers. Every failure to turn an element into bytes is a
:class:`~raccoon_beam.errors.SerializationError` with a readable message that
names the offending field or type, so the sink can dead-letter the element.

Built-in serializers:

- ``"json"``: dicts, lists, scalars, Beam ``Row`` s, ``NamedTuple`` s and
  dataclasses (the last three as JSON objects of their fields), nested in any
  combination. Compact UTF-8 JSON written by orjson; NaN and Infinity are
  rejected.
- ``"protobuf"``: a ``google.protobuf.message.Message`` instance; with
  ``message_type``, plain data converted to that message
  (:mod:`raccoon_beam.protobuf_data`).
- ``"avro"``: Avro binary encoding without header (fastavro's schemaless
  writer) under a user-given schema, or one derived from the input's Beam
  schema (:mod:`raccoon_beam.avro_schema`); dicts, ``Row`` s, ``NamedTuple`` s
  and dataclasses as records. A missing field takes its schema default;
  fields the schema does not name are ignored.
- ``"bytes"``: ``bytes``, ``bytearray``, ``memoryview``, and ``str`` as UTF-8.

Any other callable element -> bytes is accepted too; its failures are turned
into ``SerializationError`` s.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import math
import os
import sys
from json import encoder as _json_encoder
from typing import Any, Callable, Dict, Hashable, Iterable, List, Mapping, Optional, Sequence, Tuple, Type, Union, cast

import fastavro
import fastavro.validation
import orjson
from apache_beam.pvalue import Row
from apache_beam.utils.timestamp import Timestamp as BeamTimestamp
from google.protobuf.message import EncodeError, Message

from raccoon_beam.avro_schema import avro_schema_from_beam
from raccoon_beam.errors import SerializationError
from raccoon_beam.protobuf_data import (
    DEFAULT_IGNORE_UNKNOWN_FIELDS,
    converter_for,
    descriptor_set_of,
    load_message_class,
)

__all__ = [
    "Serializer",
    "SERIALIZER_NAMES",
    "resolve_serializer",
    "describe_serializer",
]

Serializer = Callable[[Any], bytes]
"""A function element -> event bytes; raises ``SerializationError`` on failure."""

SERIALIZER_NAMES = ("json", "protobuf", "avro", "bytes")
"""The names of the built-in serializers, accepted by :func:`resolve_serializer`."""

AvroSchema = Union[Mapping[str, Any], list, str]
MessageTypeSpec = Union[str, Type[Message]]
"""A generated message class, or a message's full name (with a descriptor set)."""
DescriptorSetSpec = Union[str, "os.PathLike[str]", bytes]
"""A FileDescriptorSet: the path of its file, or its bytes."""

# Values that JSON and Avro take as they are: a container holding only these
# needs no conversion, which one C-level set test can tell.
_PLAIN_SCALARS = frozenset({str, int, float, bool, type(None), bytes})

_ELEMENT_IS_NONE = "element is None"
_MAX_REPR = 80


# --------------------------------------------------------------------------- #
# Public functions
# --------------------------------------------------------------------------- #


def resolve_serializer(
    spec: Union[str, Callable[[Any], bytes]],
    *,
    avro_schema: Optional[AvroSchema] = None,
    avro_validate: bool = True,
    message_type: Optional[MessageTypeSpec] = None,
    descriptor_set: Optional[DescriptorSetSpec] = None,
    ignore_unknown_fields: bool = DEFAULT_IGNORE_UNKNOWN_FIELDS,
    element_type: Any = None,
) -> Serializer:
    """Turns a serializer spec into a picklable callable element -> bytes.

    Args:
      spec: ``"json"``, ``"protobuf"``, ``"avro"``, ``"bytes"``, or any
        callable element -> bytes (``bytes``, ``bytearray`` or ``memoryview``).
        A serializer this function returned is returned unchanged.
      avro_schema: the Avro schema, as a dict (or a list, for a union) or a
        JSON string; required with ``"avro"`` and rejected with anything else.
      avro_validate: with ``"avro"``, check every record against the schema
        before writing it. fastavro's writer alone silently accepts some
        records that do not fit (it truncates ``1.5`` to ``1`` in a ``long``,
        writes any value as a ``boolean`` by its truth, and writes a string as
        an array of its characters); turning this off saves about 2 us per
        event and only names the field of records the writer rejects.
      message_type: with ``"protobuf"``, the message that plain data (dicts,
        Rows, NamedTuples, dataclasses) is converted to: a generated message
        class, or its full name (``"pkg.ClickEvent"``) with
        ``descriptor_set``. Messages of that type are serialized as they are.
      descriptor_set: a FileDescriptorSet (``protoc --descriptor_set_out
        --include_imports``): a path to the file, or its bytes.
      ignore_unknown_fields: with ``message_type``, skip names the message
        does not have instead of dead-lettering the element.
      element_type: the input PCollection's element type. With ``"avro"`` and
        no ``avro_schema``, a type with a Beam schema (a NamedTuple, a
        ``Row`` type) gives the Avro schema (see
        :func:`raccoon_beam.avro_schema.avro_schema_from_beam`).

    Returns:
      A callable element -> ``bytes`` that raises
      :class:`~raccoon_beam.errors.SerializationError` for an element it
      cannot serialize, and pickles with Beam's pickler.

    Raises:
      ValueError: an unknown serializer name, a missing or invalid Avro
        schema (or no Beam schema to derive it from), an Avro schema given
        for another serializer, a message type that cannot be loaded, or
        protobuf options given for another serializer.
      TypeError: ``spec`` is neither a string nor a callable.
    """
    if avro_schema is not None and spec != "avro":
        raise ValueError(
            f"avro_schema is only used with serializer='avro', not with {describe_serializer(spec)}"
        )
    if spec != "protobuf" and (message_type is not None or descriptor_set is not None or ignore_unknown_fields):
        raise ValueError(
            "message_type, descriptor_set and ignore_unknown_fields are only used with "
            f"serializer='protobuf', not with {describe_serializer(spec)}"
        )
    if isinstance(spec, _BaseSerializer):
        return spec
    if isinstance(spec, str):
        if spec == "json":
            return _JsonSerializer()
        if spec == "protobuf":
            if message_type is None:
                if descriptor_set is not None or ignore_unknown_fields:
                    raise ValueError("descriptor_set and ignore_unknown_fields need message_type=")
                return _ProtobufSerializer()
            return _ProtobufDataSerializer(
                _message_class(message_type, descriptor_set), ignore_unknown_fields
            )
        if spec == "bytes":
            return _BytesSerializer()
        if spec == "avro":
            if avro_schema is None:
                avro_schema = avro_schema_from_beam(element_type)
                if avro_schema is None:
                    raise ValueError(
                        "serializer='avro' needs avro_schema= (a dict or a JSON string), "
                        "or an input PCollection with a Beam schema to derive it from"
                    )
            return _AvroSerializer(avro_schema, validate=avro_validate)
        raise ValueError(_unknown_name_message(spec))
    if callable(spec):
        return _CallableSerializer(spec)
    raise TypeError(
        f"serializer must be one of {', '.join(map(repr, SERIALIZER_NAMES))} "
        f"or a callable element -> bytes, got {type(spec).__name__}"
    )


def describe_serializer(spec: Union[str, Callable[[Any], bytes]]) -> str:
    """A short description of a serializer spec, for display data and messages.

    Args:
      spec: what :func:`resolve_serializer` accepts, or what it returned.

    Returns:
      ``"json"``, ``"protobuf"``, ``"avro"``, ``"bytes"``, or
      ``"callable <module>.<qualified name>"``.

    Raises:
      ValueError: an unknown serializer name.
    """
    if isinstance(spec, _BaseSerializer):
        return spec.description
    if isinstance(spec, str):
        if spec in SERIALIZER_NAMES:
            return spec
        raise ValueError(_unknown_name_message(spec))
    return f"callable {_callable_name(spec)}"


# --------------------------------------------------------------------------- #
# Serializers
# --------------------------------------------------------------------------- #


class _BaseSerializer:
    """A resolved serializer: a picklable callable element -> bytes.

    A serializer that is a pure function of the element may also have
    ``serialize_many(elements)``: the payloads of all the elements, or None
    when one of them would raise (the caller then serializes one by one).
    """

    __slots__ = ()
    description = ""

    def __call__(self, element: Any) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<serializer {self.description}>"


class _JsonSerializer(_BaseSerializer):
    """Compact UTF-8 JSON written by orjson; NaN and Infinity are rejected.

    The hot path is one ``orjson.dumps`` call. orjson cannot refuse NaN (it
    writes ``null``), so only output that contains ``null`` is checked again
    with the standard library's encoder (``allow_nan=False``), which is also
    the path of everything orjson declines: ints beyond 64 bits, non-str
    keys, nesting deeper than orjson's 255 levels. The standard encoder's
    output or error is then the answer, so both paths accept the same
    elements and fail with the same readable reasons.
    """

    __slots__ = ("_chunks",)
    description = "json"

    def __init__(self) -> None:
        self._chunks = _make_json_chunker()

    def __reduce__(self):
        # The C encoder does not pickle; a worker builds its own.
        return (_JsonSerializer, ())

    def __call__(self, element: Any) -> bytes:
        if element is None:
            raise SerializationError(_ELEMENT_IS_NONE)
        try:
            data = _orjson_dumps(element, default=_orjson_default, option=_ORJSON_OPTIONS)
        except TypeError:  # orjson.JSONEncodeError is a TypeError
            return self._stdlib(element)
        if b"null" in data and not _flat_and_finite(element):
            # A None, or a NaN/Infinity that orjson made null: the standard
            # encoder raises for the latter.
            self._stdlib(element)
        return data

    def serialize_many(self, elements: Sequence[Any]) -> Optional[List[bytes]]:
        """What calling this serializer on each element would return, or None if one would raise.

        One ``orjson.dumps`` per element; only the payloads that hold a
        ``null`` are looked at again, as :meth:`__call__` does.
        """
        # Each output copied ("%b"): orjson's are shrunk from larger malloc'd
        # buffers, and held by the hundreds until their request is acknowledged
        # they cost malloc more than copies of their own size do (about 0.5
        # us/event in python -m benchmarks.sink_micro).
        try:
            payloads = [
                b"%b" % _orjson_dumps(element, default=_orjson_default, option=_ORJSON_OPTIONS) for element in elements
            ]
        except TypeError:
            return None
        if b"null" in b"".join(payloads):  # one scan for the whole batch, not one per payload
            for element, payload in zip(elements, payloads):
                if b"null" in payload and not _flat_and_finite(element):
                    if element is None:
                        return None
                    try:
                        self._stdlib(element)
                    except SerializationError:
                        return None
        return payloads

    def _stdlib(self, element: Any) -> bytes:
        """The standard library's compact encoding of ``element``, or its readable failure."""
        try:
            plain = _plain_tree(element)
            encoded = "".join(self._chunks(plain, 0)).encode("utf-8")
        except (TypeError, ValueError, RecursionError) as exc:
            # ValueError covers NaN, circular references and the
            # UnicodeEncodeError of a lone surrogate.
            raise SerializationError(_explain_json_failure(element, exc)) from exc
        collision = _key_collision(plain)
        if collision:
            raise SerializationError(collision)
        return encoded


class _ProtobufSerializer(_BaseSerializer):
    """``Message.SerializeToString()`` of a protobuf message."""

    __slots__ = ()
    description = "protobuf"

    def __call__(self, element: Any) -> bytes:
        if isinstance(element, Message):
            try:
                return element.SerializeToString()
            except EncodeError as exc:  # e.g. a proto2 required field is unset
                raise SerializationError(
                    f"{type(element).DESCRIPTOR.full_name}: {exc}"
                ) from exc
        if element is None:
            raise SerializationError(_ELEMENT_IS_NONE)
        raise SerializationError(
            f"expected a protobuf Message, got {_type_name(element)}"
        )

    def serialize_many(self, elements: Sequence[Any]) -> Optional[List[bytes]]:
        """What calling this serializer on each element would return, or None if one would raise."""
        if not all(issubclass(kind, Message) for kind in set(map(type, elements))):
            return None
        try:
            return [element.SerializeToString() for element in elements]
        except EncodeError:
            return None


class _ProtobufDataSerializer(_BaseSerializer):
    """Plain data (or messages) of one message type -> its serialized bytes.

    The converter is built once per message type and process
    (:func:`raccoon_beam.protobuf_data.converter_for`).
    """

    __slots__ = ("_convert", "_ignore_unknown", "description")

    def __init__(self, message_class: Type[Message], ignore_unknown_fields: bool) -> None:
        self._convert = converter_for(cast(Hashable, message_class), ignore_unknown_fields)
        self._ignore_unknown = ignore_unknown_fields
        self.description = f"protobuf {message_class.DESCRIPTOR.full_name}"

    def __reduce__(self):
        message_class = self._convert.message_class
        module = sys.modules.get(message_class.__module__)
        if getattr(module, message_class.__qualname__, None) is message_class:
            source: Any = message_class  # generated code: the worker imports it
        else:  # a class made from a descriptor set: ship the schema itself
            source = (message_class.DESCRIPTOR.full_name, descriptor_set_of(message_class.DESCRIPTOR))
        return (_make_protobuf_data_serializer, (source, self._ignore_unknown))

    def __call__(self, element: Any) -> bytes:
        return self._convert(element)


def _make_protobuf_data_serializer(source: Any, ignore_unknown_fields: bool) -> _ProtobufDataSerializer:
    if isinstance(source, tuple):
        source = load_message_class(*source)
    return _ProtobufDataSerializer(source, ignore_unknown_fields)


def _message_class(message_type: MessageTypeSpec, descriptor_set: Optional[DescriptorSetSpec]) -> Type[Message]:
    """The message class a ``message_type`` (and ``descriptor_set``) names."""
    if isinstance(message_type, type) and issubclass(message_type, Message):
        if descriptor_set is not None:
            raise ValueError("descriptor_set is only used with message_type given as a full name")
        return message_type
    if not isinstance(message_type, str) or not message_type:
        raise ValueError(
            "message_type must be a generated protobuf message class or a full message name, "
            f"got {message_type!r}"
        )
    if descriptor_set is None:
        raise ValueError(
            f"message_type={message_type!r} needs descriptor_set= (a FileDescriptorSet file, as "
            "protoc --descriptor_set_out --include_imports writes it)"
        )
    if isinstance(descriptor_set, (bytes, bytearray, memoryview)):
        data = bytes(descriptor_set)
    else:
        try:
            with open(descriptor_set, "rb") as file:
                data = file.read()
        except OSError as exc:
            raise ValueError(f"descriptor_set {os.fspath(descriptor_set)!r} cannot be read: {exc}") from exc
    return load_message_class(message_type, data)


class _BytesSerializer(_BaseSerializer):
    """Bytes-like elements as they are; ``str`` as UTF-8."""

    __slots__ = ()
    description = "bytes"

    def __call__(self, element: Any) -> bytes:
        if type(element) is bytes:
            return element
        if isinstance(element, str):
            try:
                return element.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise SerializationError(f"str is not valid UTF-8: {exc}") from exc
        if isinstance(element, (bytes, bytearray, memoryview)):
            return bytes(element)
        if element is None:
            raise SerializationError(_ELEMENT_IS_NONE)
        raise SerializationError(
            f"expected bytes, bytearray, memoryview or str, got {_type_name(element)}"
        )

    def serialize_many(self, elements: Sequence[Any]) -> Optional[List[bytes]]:
        """The elements themselves when all are ``bytes``, else None (one by one)."""
        return list(elements) if set(map(type, elements)) == {bytes} else None


class _AvroSerializer(_BaseSerializer):
    """Avro binary encoding without header, under one parsed schema."""

    __slots__ = ("_source", "_schema", "_validate", "_name")
    description = "avro"

    def __init__(self, schema: AvroSchema, *, validate: bool = True) -> None:
        self._source = schema
        self._schema = _parse_avro_schema(schema)
        self._validate = validate
        self._name = _avro_schema_label(self._schema)

    def __reduce__(self):
        # Ship the schema as given; a worker parses it once on unpickling.
        return (_make_avro_serializer, (self._source, self._validate))

    def __call__(self, element: Any) -> bytes:
        if element is None:
            raise SerializationError(_ELEMENT_IS_NONE)
        try:
            record = _plain_tree(element, avro=True)
        except RecursionError as exc:
            raise SerializationError("circular reference or nesting too deep") from exc
        if self._validate and not fastavro.validation.validate(
            record, self._schema, raise_errors=False
        ):
            raise SerializationError(self._explain(record, None))
        buffer = io.BytesIO()
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


class _CallableSerializer(_BaseSerializer):
    """A user callable element -> bytes, with its failures made uniform."""

    __slots__ = ("_fn", "description")

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self._fn = fn
        self.description = f"callable {_callable_name(fn)}"

    def __reduce__(self):
        return (_CallableSerializer, (self._fn,))

    def __call__(self, element: Any) -> bytes:
        try:
            result = self._fn(element)
        except SerializationError:
            raise
        except Exception as exc:
            raise SerializationError(
                f"serializer {self.description} raised {type(exc).__name__}: {exc}"
            ) from exc
        if type(result) is bytes:
            return result
        if isinstance(result, (bytes, bytearray, memoryview)):
            return bytes(result)
        raise SerializationError(
            f"serializer {self.description} returned {_type_name(result)}, "
            "expected bytes, bytearray or memoryview"
        )


def _make_avro_serializer(schema: AvroSchema, validate: bool) -> _AvroSerializer:
    return _AvroSerializer(schema, validate=validate)


# --------------------------------------------------------------------------- #
# Rows, NamedTuples and dataclasses -> dicts
# --------------------------------------------------------------------------- #


def _json_key(key: Any) -> str:
    """The JSON object key the standard encoder writes for a dict key (str, int, float, bool or None)."""
    if isinstance(key, str):
        return key
    if key is True or key is False or key is None:
        return json.dumps(key)
    return float.__repr__(key) if isinstance(key, float) else int.__repr__(key)


def _key_collision(obj: Any, path: str = "") -> Optional[str]:
    """Why ``obj`` cannot be one JSON document: two keys of a dict that become one JSON key.

    Non-string keys are written as JSON writes them (``1`` as ``"1"``); when
    that makes two keys of one object equal, the object would carry the key
    twice and a reader would keep one value: the element is refused instead.
    Only the standard encoder's path (orjson declines non-string keys) pays for this walk.
    """
    if isinstance(obj, dict):
        seen: Dict[str, Any] = {}
        for key, value in obj.items():
            name = _json_key(key)
            where = f"{path}.{name}" if path else name
            if name in seen:
                first = seen[name]
                return (
                    f"field {path or '(top)'!r}: keys {first!r} and {key!r} both become the JSON key {name!r}"
                )
            seen[name] = key
            found = _key_collision(value, where)
            if found:
                return found
    elif isinstance(obj, (list, tuple)):
        for index, item in enumerate(obj):
            found = _key_collision(item, f"{path}[{index}]")
            if found:
                return found
    return None


def _plain_tree(obj: Any, avro: bool = False) -> Any:
    """``obj`` with every Row, NamedTuple and dataclass in it made a dict.

    Returns ``obj`` itself when there is nothing to convert (the common case of
    a dict of scalars costs one C-level set test), and otherwise copies only
    the containers on the way to a converted value. Other values are left to
    the encoder, which rejects what it cannot hold; for Avro (``avro=True``)
    a Beam ``Timestamp`` becomes its microseconds. Raises RecursionError on a
    circular reference.
    """
    cls = type(obj)
    if cls is dict:
        if _PLAIN_SCALARS.issuperset(map(type, obj.values())):
            return obj
        return _plain_dict(obj, avro)
    if cls is list:
        if _PLAIN_SCALARS.issuperset(map(type, obj)):
            return obj
        return _plain_sequence(obj, avro)
    if cls in _PLAIN_SCALARS:
        return obj
    fields = _fields_of(obj)
    if fields is not None:
        return {name: _plain_tree(value, avro) for name, value in fields}
    if isinstance(obj, dict):
        return _plain_dict(obj, avro)
    if isinstance(obj, (list, tuple)):
        return _plain_sequence(obj, avro)
    if avro and cls is BeamTimestamp:
        # The derived schema's timestamp-micros (Beam's micros_instant).
        return obj.micros
    return obj


def _plain_dict(obj: dict, avro: bool) -> dict:
    copy = None
    for key, value in obj.items():
        if type(value) in _PLAIN_SCALARS:
            continue
        plain = _plain_tree(value, avro)
        if plain is not value:
            if copy is None:
                copy = dict(obj)
            copy[key] = plain
    return obj if copy is None else copy


def _plain_sequence(obj: Union[list, tuple], avro: bool) -> Union[list, tuple]:
    items = [_plain_tree(value, avro) for value in obj]
    if all(new is old for new, old in zip(items, obj)):
        return obj
    return items if isinstance(obj, list) else tuple(items)


def _fields_of(obj: Any) -> Optional[Iterable[Tuple[str, Any]]]:
    """(name, value) pairs of a Row, NamedTuple or dataclass; None for anything else.

    A NamedTuple is a tuple to the JSON encoder, which would write an array.
    """
    if isinstance(obj, tuple):
        fields = getattr(type(obj), "_fields", None)
        return None if fields is None else zip(fields, obj)
    if isinstance(obj, Row):
        return vars(obj).items()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return ((f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj))
    return None


# --------------------------------------------------------------------------- #
# JSON
# --------------------------------------------------------------------------- #


# orjson leaves datetimes and dataclasses to ``default``: the standard encoder
# rejects datetimes, and orjson would drop a dataclass's fields whose names
# start with "_", so both keep the stdlib semantics.
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_orjson_dumps = orjson.dumps
_isfinite = math.isfinite


def _flat_and_finite(element: Any) -> bool:
    """True for a dict of plain scalars without NaN or Infinity (the common case).

    False means "look closer", not "invalid": nested values are left to the
    standard encoder.
    """
    if type(element) is not dict:
        return False
    values = element.values()
    if not _PLAIN_SCALARS.issuperset(map(type, values)):
        return False
    return all(_isfinite(value) for value in values if type(value) is float)


def _orjson_default(obj: Any) -> Any:
    """What orjson writes for a Row, NamedTuple or dataclass: a dict of its fields.

    Anything else raises TypeError, which sends the element to the standard
    encoder for the verdict and its readable reason.
    """
    fields = _fields_of(obj)
    if fields is None:
        if isinstance(obj, tuple):  # a tuple subclass that is not a NamedTuple
            return list(obj)
        raise TypeError(type(obj).__name__)
    return dict(fields)


def _reject_json_value(obj: Any) -> Any:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _make_json_chunker() -> Callable[[Any, int], Sequence[str]]:
    """A function ``(value, 0) -> chunks`` of compact JSON text, built once.

    ``json.dumps`` with options builds a ``JSONEncoder`` and a C encoder on
    every call; here the C encoder is built once and called directly, which
    makes a small dict as cheap as a bare ``json.dumps``. It runs without
    circular-reference markers: :func:`_plain_tree` walks every container
    first and turns a cycle into a RecursionError. Falls back to the
    equivalent ``JSONEncoder.encode`` where the C encoder is unavailable or
    behaves differently.
    """
    encoder = json.JSONEncoder(
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=_reject_json_value,
    )

    def fallback(value: Any, _indent_level: int) -> Sequence[str]:
        return (encoder.encode(value),)

    make_c_encoder = getattr(_json_encoder, "c_make_encoder", None)
    if make_c_encoder is None:
        return fallback
    try:
        chunker = make_c_encoder(
            None,  # markers: no circular-reference check (see above)
            _reject_json_value,
            _json_encoder.encode_basestring,  # ensure_ascii=False
            None,  # indent
            ":",
            ",",
            False,  # sort_keys
            False,  # skipkeys
            False,  # allow_nan
        )
        probe = {"a": [1, 2.5, "\u00e9\u2028\"", None, True], "b": {"c": ()}}
        if "".join(chunker(probe, 0)) != encoder.encode(probe):
            return fallback
        return chunker
    except Exception:  # a Python whose C encoder has another signature
        return fallback


def _explain_json_failure(element: Any, exc: BaseException) -> str:
    """Finds where in ``element`` the value JSON cannot hold is, and says so."""
    try:
        found = _find_json_problem(
            element, "", set(), cycles_only=isinstance(exc, RecursionError)
        )
    except RecursionError:
        found = None
    if found:
        return found
    if isinstance(exc, RecursionError):
        return "element is nested too deeply for JSON"
    return f"{type(exc).__name__}: {exc}"


def _find_json_problem(obj: Any, path: str, active: set, cycles_only: bool) -> Optional[str]:
    """The first value under ``obj`` that JSON cannot hold, with its path; or None."""
    if not path:
        where = "element"
    elif path.startswith("["):  # under a top-level list
        where = f"element{path}"
    else:
        where = f"field {path!r}"
    if isinstance(obj, str):
        if not cycles_only:
            try:
                obj.encode("utf-8")
            except UnicodeEncodeError as exc:
                return f"{where}: str is not valid UTF-8 ({exc.reason} at {exc.start})"
        return None
    if obj is None or isinstance(obj, int):  # bool is an int
        return None
    if isinstance(obj, float):
        if not cycles_only and not math.isfinite(obj):
            return f"{where}: Out of range float value {obj!r} is not JSON compliant"
        return None
    if isinstance(obj, dict):
        items: Optional[Iterable[Tuple[Any, Any]]] = obj.items()
    elif (fields := _fields_of(obj)) is not None:
        items = fields
    elif isinstance(obj, (list, tuple)):
        items = None
    else:
        if cycles_only:
            return None
        return f"{where}: Object of type {type(obj).__name__} is not JSON serializable"
    if id(obj) in active:
        return f"{where}: circular reference"
    active.add(id(obj))
    try:
        if items is None:
            for index, value in enumerate(obj):
                found = _find_json_problem(value, f"{path}[{index}]", active, cycles_only)
                if found:
                    return found
            return None
        for key, value in items:
            if not cycles_only:
                if not (key is None or isinstance(key, (str, int, float))):
                    return (
                        f"{where}: keys must be str, int, float, bool or None, "
                        f"not {type(key).__name__}"
                    )
                if isinstance(key, float) and not math.isfinite(key):
                    return f"{where}: Out of range float key {key!r} is not JSON compliant"
                if isinstance(key, str):
                    try:
                        key.encode("utf-8")
                    except UnicodeEncodeError:
                        return f"{where}: key {key!r} is not valid UTF-8"
            child = f"{path}.{key}" if path else str(key)
            found = _find_json_problem(value, child, active, cycles_only)
            if found:
                return found
        return None
    finally:
        active.discard(id(obj))


# --------------------------------------------------------------------------- #
# Avro
# --------------------------------------------------------------------------- #


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
        got = "None (or missing)" if datum is None else f"{_short_repr(datum)} ({_type_name(datum)})"
        clauses.append(f"{where}: got {got}, expected {wanted}")
    return "; ".join(clauses) or "unknown mismatch"


# --------------------------------------------------------------------------- #
# Small helpers
# --------------------------------------------------------------------------- #


def _unknown_name_message(name: str) -> str:
    return (
        f"unknown serializer {name!r}; expected one of "
        f"{', '.join(map(repr, SERIALIZER_NAMES))} or a callable element -> bytes"
    )


def _callable_name(fn: Any) -> str:
    target = fn.func if isinstance(fn, functools.partial) else fn
    name = getattr(target, "__qualname__", None) or type(target).__qualname__
    module = getattr(target, "__module__", None) or type(target).__module__
    return f"{module}.{name}" if module else name


def _type_name(value: Any) -> str:
    cls = type(value)
    if cls.__module__ in ("builtins", None):
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_REPR else text[: _MAX_REPR - 3] + "..."
