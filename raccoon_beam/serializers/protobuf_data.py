"""Plain data -> protobuf bytes: the converters behind ``serializer="protobuf"`` with ``message_type``.

A converter is built once per message type (:func:`converter_for`) from its
descriptor: one small checking function per field, looked up by name. It
turns a dict, Beam ``Row``, ``NamedTuple`` or dataclass into the keyword
arguments of the generated class (nested messages as dicts, enums as numbers),
and the C implementation builds and serializes the message in one call. The
bytes are those of ``json_format.ParseDict`` + ``SerializeToString`` for the
same data, because the same runtime serializes the same message; only the
Python-side walk is ours, and it is several times cheaper than ParseDict's.

What a field takes:

- scalars: ``int`` for integer fields (range-checked; ``bool`` is not an
  int here), ``int`` or ``float`` for ``float``/``double``, ``bool``, ``str``,
  and ``bytes`` (or a base64 ``str``, as in ParseDict) for ``bytes``;
- enums: the value's name, or its number;
- messages: a dict, Row, NamedTuple, dataclass, or a message of that type;
- repeated fields: a list or tuple; maps: a dict (integer keys may be given
  as digit strings, as JSON writes them);
- ``google.protobuf.Timestamp``: ``datetime`` (naive means UTC), Beam
  ``Timestamp``, epoch seconds (int or float), or an RFC 3339 string;
- ``google.protobuf.Duration``: ``timedelta``, seconds, or ``"1.5s"``;
- wrapper types (``Int64Value``, ``StringValue``, ...): the bare value;
- ``Struct``, ``Value``, ``ListValue``, ``Any``, ``FieldMask``: what ParseDict takes;
- ``None`` anywhere leaves the field unset.

Every failure is a :class:`~raccoon_beam.errors.SerializationError` whose
message starts with the field path, e.g. ``items[2].price: expected double,
got 'abc' (str)``.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import functools
import math
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Type

from apache_beam.utils.timestamp import Timestamp as BeamTimestamp
from google.protobuf import json_format, message_factory  # type: ignore[import-untyped, unused-ignore]
from google.protobuf.descriptor import Descriptor, FieldDescriptor  # type: ignore[import-untyped, unused-ignore]
from google.protobuf.message import Message  # type: ignore[import-untyped, unused-ignore]

from raccoon_beam.errors import SerializationError
from raccoon_beam.serializers.plain import fields_of, is_record, short_repr

__all__ = [
    "MessageConverter",
    "converter_for",
    "DEFAULT_IGNORE_UNKNOWN_FIELDS",
]

DEFAULT_IGNORE_UNKNOWN_FIELDS = False
"""A field the message does not have is an error by default: a typo would
otherwise drop data silently."""

_PER_TYPE_CACHE_SIZE = 1024  # message types per process; a pipeline has a handful

_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: ("int32", -(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: ("sint32", -(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: ("sfixed32", -(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: ("int64", -(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: ("sint64", -(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: ("sfixed64", -(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: ("uint32", 0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: ("fixed32", 0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: ("uint64", 0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: ("fixed64", 0, 2**64 - 1),
}
_FLOAT32_MAX = 3.4028234663852886e38
# google.protobuf.Timestamp's range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
_TIMESTAMP_SECONDS = (-62135596800, 253402300799)
_DURATION_SECONDS = 315576000000  # 10,000 years, the Duration bound
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_WRAPPERS = frozenset(
    f"google.protobuf.{name}Value"
    for name in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
)
# Well-known types whose plain-data form is their JSON form: ParseDict handles them.
_PARSE_DICT_TYPES = frozenset(
    f"google.protobuf.{name}" for name in ("Struct", "Value", "ListValue", "Any", "FieldMask", "Empty")
)
_MAX_REPR = 60

Check = Callable[[Any], Any]
"""A field's converter: value -> the value for the generated class; raises :class:`_Invalid`."""


class _Invalid(Exception):
    """A value that does not fit, with the path to it collected on the way out.

    The checks take no path argument: building path strings for every field of
    every event would cost more than the checks themselves, so each level adds
    its segment (``.name``, ``[2]``, ``['key']``) only when an error passes through.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.where: List[str] = []

    def path(self) -> str:
        return "".join(reversed(self.where)).lstrip(".") or "element"


class MessageConverter:
    """Plain data -> serialized message, for one message type.

    Args:
      message_class: the generated (or factory-made) message class.
      ignore_unknown_fields: skip names the message does not have instead of
        failing.
    """

    def __init__(self, message_class: Type[Message], ignore_unknown_fields: bool = DEFAULT_IGNORE_UNKNOWN_FIELDS) -> None:
        self.message_class = message_class
        self.full_name = message_class.DESCRIPTOR.full_name
        self.ignore_unknown_fields = ignore_unknown_fields
        self._to_kwargs = _message_check(message_class.DESCRIPTOR, ignore_unknown_fields)

    def __call__(self, element: Any) -> bytes:
        """Serializes ``element``; raises SerializationError naming the bad field."""
        if isinstance(element, Message):
            if element.DESCRIPTOR.full_name != self.full_name:
                raise SerializationError(
                    f"expected a {self.full_name} message or plain data, got a {element.DESCRIPTOR.full_name} message"
                )
            return element.SerializeToString()
        if element is None:
            raise SerializationError("element is None")
        try:
            kwargs = self._to_kwargs(element)
        except _Invalid as invalid:
            raise SerializationError(f"{invalid.path()}: {invalid.message}") from None
        try:
            return self.message_class(**kwargs).SerializeToString()
        except Exception as exc:  # the runtime rejected a value the checks let through
            raise SerializationError(f"{self.full_name}: {type(exc).__name__}: {exc}") from exc


@functools.lru_cache(maxsize=_PER_TYPE_CACHE_SIZE)
def converter_for(message_class: Any, ignore_unknown_fields: bool = DEFAULT_IGNORE_UNKNOWN_FIELDS) -> MessageConverter:
    """The converter of ``message_class``, built once per process and type.

    Args:
      message_class: a generated message class.
      ignore_unknown_fields: as in :class:`MessageConverter`.

    Returns:
      The cached :class:`MessageConverter`.
    """
    return MessageConverter(message_class, ignore_unknown_fields)


# --------------------------------------------------------------------------- #
# Building the checks
# --------------------------------------------------------------------------- #


# Field kinds whose plain value the generated class takes as it is: one type
# test instead of a call to their check.
_AS_IS = {
    FieldDescriptor.TYPE_STRING: frozenset({str}),
    FieldDescriptor.TYPE_BOOL: frozenset({bool}),
    FieldDescriptor.TYPE_DOUBLE: frozenset({float, int}),
    FieldDescriptor.TYPE_BYTES: frozenset({bytes}),
}
_NOTHING: frozenset = frozenset()


@functools.lru_cache(maxsize=_PER_TYPE_CACHE_SIZE)
def _message_check(descriptor: Descriptor, ignore_unknown: bool) -> Check:
    """A check data -> kwargs dict for one message type (recursive types share it lazily)."""
    fields: Dict[str, list] = {}
    # Filled on first use, so that a recursive message type finds its own
    # (cached) check instead of recursing forever.
    pending = []
    for field in descriptor.fields:
        oneof = field.containing_oneof.name if field.containing_oneof is not None else None
        as_is = _NOTHING if _is_repeated(field) else _AS_IS.get(field.type, _NOTHING)
        entry = [field.name, oneof, as_is, None]
        pending.append((entry, field))
        fields[field.name] = entry
        if field.json_name != field.name:
            fields[field.json_name] = entry
    full_name = descriptor.full_name
    resolved = False

    def check(data: Any) -> Dict[str, Any]:
        nonlocal resolved
        if not resolved:
            for entry, field in pending:
                entry[3] = _field_check(field, ignore_unknown)
            resolved = True
        items = data.items() if type(data) is dict else _items_of(data, full_name)
        kwargs: Dict[str, Any] = {}
        oneofs: Optional[Dict[str, str]] = None
        for key, value in items:
            found = fields.get(key)
            if found is None:
                if ignore_unknown:
                    continue
                invalid = _Invalid(f"unknown field of {full_name}")
                invalid.where.append(f".{key}")
                raise invalid
            if value is None:
                continue
            name, oneof, as_is, field_check = found
            if oneof is not None:
                if oneofs is None:
                    oneofs = {}
                other = oneofs.setdefault(oneof, name)
                if other != name:
                    invalid = _Invalid(f"oneof {oneof!r} already has {other!r} set")
                    invalid.where.append(f".{key}")
                    raise invalid
            if type(value) in as_is:
                kwargs[name] = value
                continue
            try:
                kwargs[name] = field_check(value)
            except _Invalid as invalid:
                invalid.where.append(f".{key}")
                raise
        return kwargs

    return check


def _field_check(field: FieldDescriptor, ignore_unknown: bool) -> Check:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key_check = _map_key_check(field.message_type.fields_by_name["key"])
        value_check = _single_check(field.message_type.fields_by_name["value"], ignore_unknown)

        def check_map(value: Any) -> Dict[Any, Any]:
            if not isinstance(value, Mapping):
                raise _wrong("a map (dict)", value)
            out = {}
            for key, item in value.items():
                try:
                    if item is None:
                        raise _Invalid("map values cannot be None")
                    out[key_check(key)] = value_check(item)
                except _Invalid as invalid:
                    invalid.where.append(f"[{key!r}]")
                    raise
            return out

        return check_map
    single = _single_check(field, ignore_unknown)
    if _is_repeated(field):

        def check_repeated(value: Any) -> list:
            if not isinstance(value, (list, tuple)):
                raise _wrong("a list", value)
            try:
                return [single(item) for item in value]
            except _Invalid:
                pass
            # Only on failure: find the index of the element that fails.
            for index, item in enumerate(value):
                try:
                    single(item)
                except _Invalid as invalid:
                    invalid.where.append(f"[{index}]")
                    raise
            raise AssertionError("unreachable: a check failed once and then passed")  # pragma: no cover

        return check_repeated
    return single


def _is_repeated(field: FieldDescriptor) -> bool:
    flag = getattr(field, "is_repeated", None)  # protobuf >= 6.31; ``label`` is deprecated there
    if flag is None:
        return field.label == FieldDescriptor.LABEL_REPEATED
    return bool(flag() if callable(flag) else flag)


def _single_check(field: FieldDescriptor, ignore_unknown: bool) -> Check:
    """The check of one value of ``field`` (an element of it, if repeated)."""
    kind = field.type
    if kind in _INT_RANGES:
        return _int_check(*_INT_RANGES[kind])
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return _double_check
    if kind == FieldDescriptor.TYPE_FLOAT:
        return _float_check
    if kind == FieldDescriptor.TYPE_BOOL:
        return _bool_check
    if kind == FieldDescriptor.TYPE_STRING:
        return _string_check
    if kind == FieldDescriptor.TYPE_BYTES:
        return _bytes_check
    if kind == FieldDescriptor.TYPE_ENUM:
        return _enum_check(field)
    return _message_value_check(field.message_type, ignore_unknown)


def _message_value_check(descriptor: Descriptor, ignore_unknown: bool) -> Check:
    full_name = descriptor.full_name
    if full_name == "google.protobuf.Timestamp":
        return _timestamp_check
    if full_name == "google.protobuf.Duration":
        return _duration_check
    if full_name in _WRAPPERS:
        inner = _single_check(descriptor.fields_by_name["value"], ignore_unknown)
        return lambda value: {"value": inner(value)}
    if full_name in _PARSE_DICT_TYPES:
        return _parse_dict_check(descriptor, ignore_unknown)
    nested = _message_check(descriptor, ignore_unknown)

    def check_message(value: Any) -> Any:
        if isinstance(value, Message):
            if value.DESCRIPTOR.full_name != full_name:
                raise _wrong(full_name, value)
            return value
        return nested(value)

    return check_message


def _map_key_check(field: FieldDescriptor) -> Check:
    if field.type in _INT_RANGES:
        as_int = _int_check(*_INT_RANGES[field.type])

        def check_int_key(key: Any) -> int:
            if isinstance(key, str):  # JSON object keys are strings
                try:
                    key = int(key)
                except ValueError:
                    raise _wrong(f"a {_INT_RANGES[field.type][0]} key", key) from None
            return as_int(key)

        return check_int_key
    if field.type == FieldDescriptor.TYPE_BOOL:

        def check_bool_key(key: Any) -> bool:
            if key in ("true", "false"):
                return key == "true"
            return _bool_check(key)

        return check_bool_key
    return _string_check


# --------------------------------------------------------------------------- #
# Scalar checks
# --------------------------------------------------------------------------- #


def _int_check(name: str, low: int, high: int) -> Check:
    def check(value: Any) -> int:
        if type(value) is not int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise _wrong(name, value)
            value = int(value)
        if not low <= value <= high:
            raise _Invalid(f"{value} is out of range for {name} [{low}, {high}]")
        return value

    return check


def _double_check(value: Any) -> float:
    cls = type(value)
    if cls is float or cls is int:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _wrong("double", value)
    return float(value)


def _float_check(value: Any) -> float:
    value = _double_check(value)
    if math.isfinite(value) and abs(value) > _FLOAT32_MAX:
        raise _Invalid(f"{value!r} is out of range for float")
    return value


def _bool_check(value: Any) -> bool:
    if type(value) is not bool:
        raise _wrong("bool", value)
    return value


def _string_check(value: Any) -> str:
    if type(value) is str:
        return value
    if isinstance(value, str):
        return str(value)
    raise _wrong("string", value)


def _bytes_check(value: Any) -> bytes:
    if type(value) is bytes:
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):  # ParseDict's form of bytes: base64, standard or URL-safe
        try:
            return base64.urlsafe_b64decode(value.replace("+", "-").replace("/", "_") + "=" * (-len(value) % 4))
        except (binascii.Error, ValueError):
            raise _Invalid(f"expected bytes or a base64 string, got {_show(value)}") from None
    raise _wrong("bytes", value)


def _enum_check(field: FieldDescriptor) -> Check:
    enum = field.enum_type
    by_name = {value.name: value.number for value in enum.values}
    numbers = frozenset(by_name.values())
    closed = enum.is_closed

    def check(value: Any) -> int:
        if type(value) is str:
            number = by_name.get(value)
            if number is None:
                raise _Invalid(f"{value!r} is not a value of enum {enum.full_name} (one of {', '.join(by_name)})")
            return number
        if type(value) is not int:
            name = getattr(value, "name", None)  # a Python Enum member named like the proto value
            if isinstance(name, str) and name in by_name and not isinstance(value, int):
                return by_name[name]
            if isinstance(value, bool) or not isinstance(value, int):
                raise _wrong(f"enum {enum.full_name} (a name or a number)", value)
            value = int(value)
        if closed and value not in numbers:
            raise _Invalid(f"{value} is not a value of enum {enum.full_name}")
        if not -(2**31) <= value <= 2**31 - 1:
            raise _Invalid(f"{value} is out of range for enum {enum.full_name}")
        return value

    return check


# --------------------------------------------------------------------------- #
# Well-known types
# --------------------------------------------------------------------------- #


def _timestamp_check(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:  # naive means UTC, as in Timestamp.FromDatetime
            value = value.replace(tzinfo=datetime.timezone.utc)
        delta = value - _EPOCH
        seconds = delta.days * 86400 + delta.seconds
        nanos = delta.microseconds * 1000
    elif isinstance(value, BeamTimestamp):
        seconds, micros = divmod(value.micros, 1_000_000)
        nanos = micros * 1000
    elif isinstance(value, str):
        return _from_json_string(value, "Timestamp", "an RFC 3339 time such as 2024-01-01T00:00:00Z")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds, nanos = _split_seconds(value, "Timestamp")
    elif isinstance(value, (Mapping, Message)) or is_record(value):
        return _plain_message(value, "google.protobuf.Timestamp", ("seconds", "nanos"))
    else:
        raise _wrong("Timestamp (datetime, Beam Timestamp, epoch seconds or RFC 3339 string)", value)
    if not _TIMESTAMP_SECONDS[0] <= seconds <= _TIMESTAMP_SECONDS[1]:
        raise _Invalid(f"{_show(value)} is out of the Timestamp range (years 1 to 9999)")
    return {"seconds": seconds, "nanos": nanos}


def _duration_check(value: Any) -> Any:
    if isinstance(value, datetime.timedelta):
        micros = (value.days * 86400 + value.seconds) * 1_000_000 + value.microseconds
        # Duration's seconds and nanos carry the same sign.
        sign = -1 if micros < 0 else 1
        seconds, micros = divmod(abs(micros), 1_000_000)
        seconds, nanos = sign * seconds, sign * micros * 1000
    elif isinstance(value, str):
        return _from_json_string(value, "Duration", "seconds with an 's', such as 1.5s")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds, nanos = _split_seconds(value, "Duration")
        if seconds < 0 and nanos:  # floor split -> same-sign split
            seconds, nanos = seconds + 1, nanos - 1_000_000_000
    elif isinstance(value, (Mapping, Message)) or is_record(value):
        return _plain_message(value, "google.protobuf.Duration", ("seconds", "nanos"))
    else:
        raise _wrong("Duration (timedelta, seconds or a string such as 1.5s)", value)
    if abs(seconds) > _DURATION_SECONDS:
        raise _Invalid(f"{_show(value)} is out of the Duration range (10,000 years)")
    return {"seconds": seconds, "nanos": nanos}


def _split_seconds(value: Any, kind: str) -> Tuple[int, int]:
    if isinstance(value, int):
        return int(value), 0
    if not math.isfinite(value):
        raise _Invalid(f"{value!r} is not a valid {kind}")
    seconds = math.floor(value)
    nanos = round((value - seconds) * 1e9)
    if nanos >= 1_000_000_000:
        seconds, nanos = seconds + 1, nanos - 1_000_000_000
    return seconds, nanos


def _from_json_string(value: str, kind: str, form: str) -> Any:
    from google.protobuf import duration_pb2, timestamp_pb2

    message = timestamp_pb2.Timestamp() if kind == "Timestamp" else duration_pb2.Duration()
    try:
        message.FromJsonString(value)
    except ValueError as exc:
        raise _Invalid(f"{value!r} is not a valid {kind} ({form}): {exc}") from None
    return {"seconds": message.seconds, "nanos": message.nanos}


def _plain_message(value: Any, full_name: str, names: Iterable[str]) -> Any:
    if isinstance(value, Message):
        if value.DESCRIPTOR.full_name != full_name:
            raise _wrong(full_name, value)
        return value
    allowed = set(names)
    out = {}
    for key, item in _items_of(value, full_name):
        try:
            if key not in allowed:
                raise _Invalid(f"unknown field of {full_name}")
            if item is not None:
                out[key] = _int_check(key, -(2**63), 2**63 - 1)(item)
        except _Invalid as invalid:
            invalid.where.append(f".{key}")
            raise
    return out


def _parse_dict_check(descriptor: Descriptor, ignore_unknown: bool) -> Check:
    message_class = message_factory.GetMessageClass(descriptor)

    def check(value: Any) -> Any:
        if isinstance(value, Message):
            if value.DESCRIPTOR.full_name != descriptor.full_name:
                raise _wrong(descriptor.full_name, value)
            return value
        message = message_class()
        try:
            json_format.ParseDict(value, message, ignore_unknown_fields=ignore_unknown)
        except json_format.ParseError as exc:
            raise _Invalid(f"not a valid {descriptor.full_name}: {exc}") from None
        return message

    return check


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #


def _items_of(data: Any, full_name: str) -> Iterable[Tuple[Any, Any]]:
    """(name, value) pairs of a dict, Row, NamedTuple or dataclass."""
    if type(data) is dict or isinstance(data, Mapping):
        return data.items()
    fields = fields_of(data)
    if fields is None:
        raise _wrong(f"{full_name} (a dict, Row, NamedTuple, dataclass or message)", data)
    return fields


def _show(value: Any) -> str:
    return short_repr(value, _MAX_REPR)


def _wrong(expected: str, value: Any) -> _Invalid:
    return _Invalid(f"expected {expected}, got {_show(value)} ({type(value).__name__})")
