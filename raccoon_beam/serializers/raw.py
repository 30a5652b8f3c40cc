"""``serializer="bytes"`` and the user's own callables: elements that are (or give) bytes already."""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence

from raccoon_beam.errors import SerializationError
from raccoon_beam.serializers.base import ELEMENT_IS_NONE, BaseSerializer, callable_name
from raccoon_beam.serializers.plain import type_name

__all__ = ["BytesSerializer", "CallableSerializer"]


class BytesSerializer(BaseSerializer):
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
            raise SerializationError(ELEMENT_IS_NONE)
        raise SerializationError(f"expected bytes, bytearray, memoryview or str, got {type_name(element)}")

    def serialize_many(self, elements: Sequence[Any]) -> Optional[List[bytes]]:
        """The elements themselves when all are ``bytes``, else None (one by one)."""
        return list(elements) if set(map(type, elements)) == {bytes} else None


class CallableSerializer(BaseSerializer):
    """A user callable element -> bytes, with its failures made uniform.

    It has no batch path: the user's function runs once per element, on the
    caller's one-by-one path.
    """

    __slots__ = ("_fn", "description")

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self._fn = fn
        self.description = f"callable {callable_name(fn)}"

    def __reduce__(self):
        return (CallableSerializer, (self._fn,))

    def __call__(self, element: Any) -> bytes:
        try:
            result = self._fn(element)
        except SerializationError:
            raise
        except Exception as exc:
            raise SerializationError(f"serializer {self.description} raised {type(exc).__name__}: {exc}") from exc
        if type(result) is bytes:
            return result
        if isinstance(result, (bytes, bytearray, memoryview)):
            return bytes(result)
        raise SerializationError(
            f"serializer {self.description} returned {type_name(result)}, expected bytes, bytearray or memoryview"
        )
