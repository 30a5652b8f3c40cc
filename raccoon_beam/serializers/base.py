"""What every resolved serializer is: a picklable callable element -> bytes."""

from __future__ import annotations

import functools
from typing import Any, Callable

__all__ = ["BaseSerializer", "Serializer", "ELEMENT_IS_NONE", "callable_name"]

Serializer = Callable[[Any], bytes]
"""A function element -> event bytes; raises ``SerializationError`` on failure."""

ELEMENT_IS_NONE = "element is None"
"""The reason every built-in serializer gives for a None element."""


class BaseSerializer:
    """A resolved serializer: a picklable callable element -> bytes.

    A serializer that is a pure function of the element may also have
    ``serialize_many(elements)``: the payloads of all the elements, or None
    when one of them would raise (the caller then serializes one by one).
    ``display`` is what the sink shows in its display data beyond the
    description (for example the derived Avro schema).
    """

    __slots__ = ()
    description = ""

    def __call__(self, element: Any) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def display(self) -> dict:
        """Extra display data items (name -> value); none by default."""
        return {}

    def __repr__(self) -> str:
        return f"<serializer {self.description}>"


def callable_name(fn: Any) -> str:
    """``module.qualified_name`` of a function (or of the function of a ``functools.partial``)."""
    target = fn.func if isinstance(fn, functools.partial) else fn
    name = getattr(target, "__qualname__", None) or type(target).__qualname__
    module = getattr(target, "__module__", None) or type(target).__module__
    return f"{module}.{name}" if module else name
