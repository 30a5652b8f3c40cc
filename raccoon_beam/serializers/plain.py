"""Walking plain data: Beam ``Row`` s, ``NamedTuple`` s and dataclasses as dicts of their fields.

Every serializer that takes structured elements (JSON, Avro, protobuf with
``message_type``) sees a record the same way: its fields, in their order, by
name. This module is that one definition, and the shared pieces of a field
path in error messages.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Iterable, Optional, Tuple, Union

from apache_beam.pvalue import Row
from apache_beam.utils.timestamp import Timestamp as BeamTimestamp

__all__ = ["PLAIN_SCALARS", "fields_of", "is_record", "plain_tree", "where", "type_name", "short_repr"]

PLAIN_SCALARS = frozenset({str, int, float, bool, type(None), bytes})
"""Values every serializer takes as they are: a container holding only these
needs no conversion, which one C-level set test can tell."""

_MAX_REPR = 80
_FIELD_CACHE_SIZE = 1024  # dataclass types per process; a pipeline has a handful


def fields_of(obj: Any) -> Optional[Iterable[Tuple[str, Any]]]:
    """(name, value) pairs of a Row, NamedTuple or dataclass instance; None for anything else.

    A NamedTuple is a tuple to an encoder, which would write an array; a
    dataclass's fields all count, those whose names start with ``_`` included.
    """
    if isinstance(obj, tuple):
        names = getattr(type(obj), "_fields", None)
        return None if names is None else zip(names, obj)
    if isinstance(obj, Row):
        return vars(obj).items()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return ((name, getattr(obj, name)) for name in _dataclass_names(type(obj)))
    return None


def is_record(obj: Any) -> bool:
    """True for a Row, NamedTuple or dataclass instance (what :func:`fields_of` takes)."""
    return fields_of(obj) is not None


@functools.lru_cache(maxsize=_FIELD_CACHE_SIZE)
def _dataclass_names(cls: type) -> Tuple[str, ...]:
    return tuple(field.name for field in dataclasses.fields(cls))


def plain_tree(obj: Any, timestamps_as_micros: bool = False) -> Any:
    """``obj`` with every Row, NamedTuple and dataclass in it made a dict.

    Returns ``obj`` itself when there is nothing to convert (the common case of
    a dict of scalars costs one C-level set test), and otherwise copies only
    the containers on the way to a converted value. Other values are left to
    the encoder, which rejects what it cannot hold; with
    ``timestamps_as_micros`` a Beam ``Timestamp`` becomes its microseconds
    (Avro's ``timestamp-micros``). Raises RecursionError on a circular
    reference.
    """
    cls = type(obj)
    if cls is dict:
        if PLAIN_SCALARS.issuperset(map(type, obj.values())):
            return obj
        return _plain_dict(obj, timestamps_as_micros)
    if cls is list:
        if PLAIN_SCALARS.issuperset(map(type, obj)):
            return obj
        return _plain_sequence(obj, timestamps_as_micros)
    if cls in PLAIN_SCALARS:
        return obj
    fields = fields_of(obj)
    if fields is not None:
        return {name: plain_tree(value, timestamps_as_micros) for name, value in fields}
    if isinstance(obj, dict):
        return _plain_dict(obj, timestamps_as_micros)
    if isinstance(obj, (list, tuple)):
        return _plain_sequence(obj, timestamps_as_micros)
    if timestamps_as_micros and cls is BeamTimestamp:
        return obj.micros
    return obj


def _plain_dict(obj: dict, micros: bool) -> dict:
    copy = None
    for key, value in obj.items():
        if type(value) in PLAIN_SCALARS:
            continue
        plain = plain_tree(value, micros)
        if plain is not value:
            if copy is None:
                copy = dict(obj)
            copy[key] = plain
    return obj if copy is None else copy


def _plain_sequence(obj: Union[list, tuple], micros: bool) -> Union[list, tuple]:
    items = [plain_tree(value, micros) for value in obj]
    if all(new is old for new, old in zip(items, obj)):
        return obj
    return items if isinstance(obj, list) else tuple(items)


def where(path: str) -> str:
    """How an error message names a place in the element: ``element``, ``element[2]`` or ``field 'a.b'``."""
    if not path:
        return "element"
    if path.startswith("["):  # under a top-level list
        return f"element{path}"
    return f"field {path!r}"


def type_name(value: Any) -> str:
    """The type of ``value`` as a message names it: ``int``, ``decimal.Decimal`` (builtins without a module)."""
    cls = type(value)
    module = getattr(cls, "__module__", None)
    qualname = getattr(cls, "__qualname__", cls.__name__)
    return qualname if module in (None, "builtins") else f"{module}.{qualname}"


def short_repr(value: Any, limit: int = _MAX_REPR) -> str:
    """``repr(value)``, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
