"""``serializer="json"``: compact UTF-8 JSON written by orjson, one mapping for every type.

=========================================  ==========================================================
Python value                               JSON
=========================================  ==========================================================
``dict`` (and subclasses)                  object; keys ``str``, or ``int`` / ``float`` / ``bool`` /
                                           ``None`` written as JSON writes them (``1`` -> ``"1"``,
                                           ``True`` -> ``"true"``); two keys that become one are a
                                           dead letter
``list``, ``tuple``                        array
Beam ``Row``, ``NamedTuple``, dataclass    object of its fields, in their order (a dataclass's
                                           ``_private`` fields too)
``str``, ``bool``, ``None``                string, ``true`` / ``false``, ``null``
``int``                                    number, every digit (beyond 64 bits too)
``float``                                  number; NaN and +-Infinity are a dead letter
``decimal.Decimal``                        number with its digits as they are (``Decimal("1.50")``
                                           -> ``1.50``); NaN and Infinity are a dead letter
``datetime.datetime``                      ISO 8601 string: ``"2024-05-01T12:30:00.250000+00:00"``
                                           when aware; a naive one is written as it is, without an
                                           offset (``"2024-05-01T12:30:00"``: BigQuery's DATETIME)
``datetime.date`` / ``datetime.time``      ``"2024-05-01"`` / ``"12:30:00"`` (a time with a tzinfo is
                                           a dead letter)
Beam ``Timestamp``                         ISO 8601 string in UTC (``"...+00:00"``), microseconds
``uuid.UUID``                              ``"0f8f...-..."``
``enum.Enum``                              its value
``bytes``, ``bytearray``, ``memoryview``   base64 string (as BigQuery's JSON export writes BYTES),
                                           or a dead letter with ``json_bytes="error"``
``float`` / ``int`` look-alikes            numbers (``numpy.float64``, ``numpy.int64``: any float
                                           subclass or ``numbers.Integral``)
anything else                              ``json_default(value)`` if given (its result is written
                                           by these same rules), else a dead letter naming the field
=========================================  ==========================================================

Nesting deeper than :data:`MAX_JSON_DEPTH` levels is a dead letter (orjson
encodes no deeper), and so is a circular reference.

The verdict and the bytes of an element depend on that element's values only:
the hot path is one ``orjson.dumps`` call; orjson writes NaN as ``null``
rather than refusing it, so the floats of an element whose payload holds
``null`` are looked at once (one pass over its containers; the full walk
below when they hold a value ``default`` converts); anything orjson
declines (a key that is not a string, an int beyond 64 bits, an unknown type)
is walked the same way, which either finds the field at fault or turns the
element into what orjson writes, with the same mapping.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import enum
import math
import numbers
import uuid
from typing import Any, Callable, Dict, List, Optional, Sequence, Set

import orjson
from apache_beam.utils.timestamp import Timestamp as BeamTimestamp

from raccoon_beam.errors import SerializationError
from raccoon_beam.serializers.base import ELEMENT_IS_NONE, BaseSerializer, callable_name
from raccoon_beam.serializers.plain import PLAIN_SCALARS, fields_of, where

__all__ = [
    "JsonSerializer",
    "JSON_BYTES_MODES",
    "DEFAULT_JSON_BYTES",
    "MAX_JSON_DEPTH",
    "JsonDefault",
]

JsonDefault = Callable[[Any], Any]
"""A user's hook for their own types: value -> something JSON can hold; raises TypeError otherwise."""

JSON_BYTES_MODES = ("base64", "error")
"""What ``json_bytes`` accepts: write bytes as base64 strings, or dead-letter them."""

DEFAULT_JSON_BYTES = "base64"
"""Bytes as base64 strings: what BigQuery's JSON export writes for BYTES, so
rows read from BigQuery go through unchanged."""

MAX_JSON_DEPTH = 254
"""The deepest nesting of arrays and objects written: orjson's own recursion
limit (it refuses a 255th level)."""

# Dataclasses go through ``default``: orjson's own support would drop the
# fields whose names start with "_".
_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS
_dumps = orjson.dumps
_isfinite = math.isfinite
# orjson writes ints in [-2**63, 2**64); wider ones are written as a Fragment of their digits.
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
# Types orjson writes itself, left as they are by the walk.
_NATIVE = frozenset({datetime.datetime, datetime.date, uuid.UUID, orjson.Fragment})
_KEY_LITERALS = {True: "true", False: "false", None: "null"}
# Values that hold no float once written (Decimal's finiteness is checked by ``default``).
_NO_FLOATS = _NATIVE | {datetime.time, decimal.Decimal, bytearray, memoryview}


class JsonSerializer(BaseSerializer):
    """Compact UTF-8 JSON written by orjson under the mapping of this module.

    Args:
      json_bytes: ``"base64"`` or ``"error"`` (see :data:`JSON_BYTES_MODES`).
      json_default: the user's function for values of other types, as
        orjson's ``default``: it returns something this mapping writes, or
        raises ``TypeError``.

    Raises:
      ValueError: an unknown ``json_bytes``, or a ``json_default`` that is not callable.
    """

    __slots__ = ("_bytes_mode", "_user_default", "_default", "description")

    def __init__(self, json_bytes: str = DEFAULT_JSON_BYTES, json_default: Optional[JsonDefault] = None) -> None:
        if json_bytes not in JSON_BYTES_MODES:
            raise ValueError(f"json_bytes must be one of {', '.join(map(repr, JSON_BYTES_MODES))}, got {json_bytes!r}")
        if json_default is not None and not callable(json_default):
            raise ValueError(f"json_default must be a callable value -> JSON-able value, got {json_default!r:.80}")
        self._bytes_mode = json_bytes
        self._user_default = json_default
        self._default = _make_default(json_bytes == "base64", json_default)
        extras = [] if json_bytes == DEFAULT_JSON_BYTES else [f"json_bytes={json_bytes}"]
        if json_default is not None:
            extras.append(f"json_default={callable_name(json_default)}")
        self.description = "json" + (f" ({', '.join(extras)})" if extras else "")

    def __reduce__(self):
        # The default function is a closure; a worker builds its own.
        return (JsonSerializer, (self._bytes_mode, self._user_default))

    def __call__(self, element: Any) -> bytes:
        if element is None:
            raise SerializationError(ELEMENT_IS_NONE)
        try:
            data = _dumps(element, default=self._default, option=_OPTIONS)
        except TypeError:  # orjson.JSONEncodeError is a TypeError
            return self._slow(element)
        if b"null" in data and not _all_finite(element):
            # A None, or a NaN/Infinity that orjson wrote as null: the walk raises for the latter.
            self._walk(element)
        return data

    def serialize_many(self, elements: Sequence[Any]) -> Optional[List[bytes]]:
        """What calling this serializer on each element would return, or None if one would raise.

        One ``orjson.dumps`` per element; only the payloads that hold a
        ``null`` are looked at again, as :meth:`__call__` does.
        """
        default = self._default
        # Each output copied ("%b"): orjson's are shrunk from larger malloc'd
        # buffers, and held by the hundreds until their request is acknowledged
        # they cost malloc more than copies of their own size do (about 0.5
        # us/event in python -m benchmarks.sink_micro).
        try:
            payloads = [b"%b" % _dumps(element, default=default, option=_OPTIONS) for element in elements]
        except TypeError:
            return None
        # One scan for the whole batch, not one per payload; CPython's reverse
        # search of a short needle takes about half the time of its forward one.
        if b"".join(payloads).rfind(b"null") >= 0:
            for element, payload in zip(elements, payloads):
                if b"null" in payload and not _all_finite(element):
                    if element is None:
                        return None
                    try:
                        self._walk(element)
                    except SerializationError:
                        return None
        return payloads

    def _walk(self, element: Any) -> Any:
        """``element`` as values orjson writes by the same mapping, or SerializationError naming the field."""
        return _Walk(self._default).value(element, "", 1)

    def _slow(self, element: Any) -> bytes:
        """The encoding of an element orjson declined as it is: walked first, then written."""
        plain = self._walk(element)
        try:
            return _dumps(plain)
        except TypeError as exc:  # pragma: no cover - the walk leaves only what orjson writes
            raise SerializationError(f"element: {exc}") from exc


def _all_finite(element: Any) -> bool:
    """True when ``element`` holds no float orjson would write as ``null`` (NaN, +-Infinity).

    For an element orjson has just encoded (so without cycles), through dicts,
    lists, tuples and records. False means "look closer", not "invalid": it
    is also the answer for values ``default`` converts (an Enum, the user's
    types), which the walk looks at.
    """
    pending = [element]
    while pending:
        obj = pending.pop()
        cls = type(obj)
        if cls is dict:
            values: Any = obj.values()
        elif cls is list or cls is tuple:
            values = obj
        else:
            fields = fields_of(obj)
            if fields is None:
                return False
            values = [value for _, value in fields]
        if not PLAIN_SCALARS.issuperset(map(type, values)):
            for value in values:
                kind = type(value)
                if kind not in PLAIN_SCALARS and kind not in _NO_FLOATS:
                    pending.append(value)
        if not all(_isfinite(value) for value in values if type(value) is float):
            return False
    return True


def _make_default(bytes_as_base64: bool, user_default: Optional[JsonDefault]) -> Callable[[Any], Any]:
    """orjson's ``default``: the mapping's types orjson does not write itself, then the user's hook."""

    def default(obj: Any) -> Any:
        fields = fields_of(obj)
        if fields is not None:
            return dict(fields)
        if isinstance(obj, (bytes, bytearray, memoryview)):
            if bytes_as_base64:
                return base64.b64encode(obj).decode("ascii")
            raise TypeError(f"Object of type {type(obj).__name__} is not written to JSON with json_bytes='error'")
        if isinstance(obj, decimal.Decimal):
            if not obj.is_finite():
                raise ValueError(f"Out of range Decimal value {obj} is not JSON compliant")
            return orjson.Fragment(str(obj))
        if isinstance(obj, tuple):  # a tuple subclass that is not a NamedTuple
            return list(obj)
        if isinstance(obj, BeamTimestamp):
            return obj.to_utc_datetime(has_tz=True)
        if isinstance(obj, datetime.datetime):  # a subclass (pandas.Timestamp): the plain datetime
            return datetime.datetime.combine(obj.date(), obj.timetz())
        if isinstance(obj, float):  # numpy.float64 and other float subclasses
            if not _isfinite(obj):
                raise ValueError(f"Out of range float value {obj!r} is not JSON compliant")
            return float(obj)
        if isinstance(obj, numbers.Integral):  # numpy.int64 and other integral types
            return int(obj)
        if user_default is not None:
            return user_default(obj)
        raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")

    return default


class _Problem(Exception):
    """Why an element cannot be written, with the place it was found."""


class _Walk:
    """One walk over an element: the values orjson writes, or the first value it cannot hold.

    Mirrors orjson with :func:`_make_default`: the same types are written the
    same way, so its result is written to the same bytes as the element
    itself whenever orjson takes the element.
    """

    __slots__ = ("_default", "_active")

    def __init__(self, default: Callable[[Any], Any]) -> None:
        self._default = default
        self._active: Set[int] = set()  # the containers on the current path, for cycles

    def value(self, obj: Any, path: str, depth: int) -> Any:
        try:
            return self._value(obj, path, depth)
        except _Problem as problem:
            raise SerializationError(str(problem)) from problem.__cause__

    def _value(self, obj: Any, path: str, depth: int) -> Any:
        cls = type(obj)
        if cls is str:
            return _checked_str(obj, path)
        if obj is None or cls is bool:
            return obj
        if cls is int:
            return obj if _INT_MIN <= obj <= _INT_MAX else _big_int(obj, path)
        if cls is float:
            if not _isfinite(obj):
                raise _Problem(f"{where(path)}: Out of range float value {obj!r} is not JSON compliant")
            return obj
        if cls in _NATIVE:
            return obj
        if cls is datetime.time:
            if obj.tzinfo is not None:
                raise _Problem(f"{where(path)}: a datetime.time with a tzinfo has no JSON form; give a datetime")
            return obj
        if isinstance(obj, enum.Enum):
            return self._value(obj.value, path, depth)
        fields = fields_of(obj)
        if fields is not None:
            return self._container(obj, path, depth, dict(fields))
        if isinstance(obj, dict):
            return self._container(obj, path, depth, obj)
        if cls is list or cls is tuple:
            return self._container(obj, path, depth, None)
        if isinstance(obj, str):
            return _checked_str(str.__str__(obj), path)
        if isinstance(obj, int) and not isinstance(obj, bool):
            return self._value(int(obj), path, depth)
        if isinstance(obj, list):
            return self._container(obj, path, depth, None)
        # What orjson hands to ``default``: the mapping's other types, then the user's.
        if depth > MAX_JSON_DEPTH:
            raise _Problem(_too_deep(path))
        try:
            converted = self._default(obj)
        except Exception as exc:  # the mapping's refusal, or the user's json_default failing
            raise _Problem(f"{where(path)}: {_reason(exc)}") from exc
        return self._value(converted, path, depth + 1)

    def _container(self, obj: Any, path: str, depth: int, items: Optional[Dict[Any, Any]]) -> Any:
        if id(obj) in self._active:
            raise _Problem(f"{where(path)}: circular reference")
        if depth > MAX_JSON_DEPTH:
            raise _Problem(_too_deep(path))
        self._active.add(id(obj))
        try:
            if items is None:
                return [self._value(item, f"{path}[{index}]", depth + 1) for index, item in enumerate(obj)]
            out: Dict[str, Any] = {}
            for key, item in items.items():
                name = self._key(key, path)
                if name in out:
                    first = next(k for k in items if self._key(k, path) == name)
                    raise _Problem(f"{where(path)}: keys {first!r} and {key!r} both become the JSON key {name!r}")
                out[name] = self._value(item, f"{path}.{name}" if path else name, depth + 1)
            return out
        finally:
            self._active.discard(id(obj))

    @staticmethod
    def _key(key: Any, path: str) -> str:
        """The JSON object key of a dict key: str as it is; int, float, bool and None as JSON writes them."""
        if isinstance(key, str):
            return _checked_str(str.__str__(key), path, "key ")
        if key is True or key is False or key is None:
            return _KEY_LITERALS[key]
        if isinstance(key, int):
            return int.__repr__(key)
        if isinstance(key, float):
            if not _isfinite(key):
                raise _Problem(f"{where(path)}: Out of range float key {key!r} is not JSON compliant")
            return float.__repr__(key)
        raise _Problem(f"{where(path)}: keys must be str, int, float, bool or None, not {type(key).__name__}")


def _checked_str(text: str, path: str, what: str = "") -> str:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise _Problem(f"{where(path)}: {what}str is not valid UTF-8 ({exc.reason} at {exc.start})") from exc
    return text


def _big_int(value: int, path: str) -> orjson.Fragment:
    try:
        return orjson.Fragment(int.__repr__(value))
    except ValueError as exc:  # more digits than Python converts (sys.set_int_max_str_digits)
        raise _Problem(f"{where(path)}: {exc}") from exc


def _too_deep(path: str) -> str:
    return (
        f"{where(path)}: nested deeper than {MAX_JSON_DEPTH} levels, the most the JSON serializer "
        "(orjson) writes"
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TypeError) and str(exc).startswith("Object of type"):
        return str(exc)
    if isinstance(exc, ValueError) and str(exc).startswith("Out of range"):
        return str(exc)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
