"""Turning an element into a Raccoon event: its type, its bytes, its checks.

:class:`EventBuilder` is the first step of the data path. It runs the user's
``event_type`` and serializer and checks the result against the size limits,
raising :class:`EventRejected` with the dead-letter stage and a readable
reason for anything that cannot be sent.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable, Optional, Set, Tuple, Union

from raccoon_beam import wire as wire_lib
from raccoon_beam.errors import STAGE_SERIALIZE, STAGE_VALIDATE, RaccoonError
from raccoon_beam.wire import Wire

__all__ = ["EventTypeSpec", "EventBuilder", "EventRejected", "describe_event_type"]

EventTypeSpec = Union[str, Callable[[Any], str]]


class EventRejected(RaccoonError):
    """An element cannot become an event; it is dead-lettered, not sent.

    Attributes:
      stage: ``"serialize"`` or ``"validate"``.
      reason: a readable reason.
      event_type: the event type, when it was computed.
    """

    def __init__(self, stage: str, reason: str, event_type: Optional[str] = None) -> None:
        super().__init__(reason)
        self.stage = stage
        self.reason = reason
        self.event_type = event_type


def describe_event_type(spec: EventTypeSpec) -> str:
    """A short description of an event type spec, for display data."""
    if isinstance(spec, str):
        return spec
    name = getattr(spec, "__qualname__", None) or type(spec).__name__
    return f"callable {getattr(spec, '__module__', '')}.{name}".replace(" .", " ")


class EventBuilder:
    """Builds ``(event_type, event_bytes, encoded_size)`` from an element.

    ``encoded_size`` is what the event adds to an encoded request, an upper
    bound (:class:`~raccoon_beam.wire.EventSizer`); the batcher takes it as it
    is rather than computing it a second time. It runs once per event: the
    common case is one call of the serializer and a few comparisons.

    Args:
      event_type: a constant type, or a callable element -> type.
      serializer: a resolved serializer, element -> bytes; raises
        ``SerializationError`` (or anything else) for elements it cannot take.
      wire: the wire type, which decides how large an event is on the wire.
      max_event_bytes: the largest payload accepted, or None for no limit of
        its own.
      max_batch_bytes: the largest encoded request; an event that would not
        fit in a request of its own is rejected too.
    """

    def __init__(
        self,
        event_type: EventTypeSpec,
        serializer: Callable[[Any], bytes],
        wire: Wire,
        max_event_bytes: Optional[int],
        max_batch_bytes: int,
    ) -> None:
        if isinstance(event_type, str):
            problem = _type_problem(event_type)
            if problem:
                raise ValueError(f"event_type {event_type!r:.80} {problem}")
        elif not callable(event_type):
            raise TypeError(f"event_type must be a string or a callable, got {type(event_type).__name__}")
        self._event_type = event_type
        self._constant_type = event_type if isinstance(event_type, str) else ""
        # Types the callable returned that were checked already (checked once, then a set lookup).
        self._valid_types: Set[str] = set()
        self._serialize = serializer
        self._wire = wire
        self._sizer = wire_lib.EventSizer(wire)
        self._constant_overhead = (self._sizer.linear_overhead(self._constant_type) or 0) if self._constant_type else 0
        # No limit of its own: events are bounded only by what fits in a request.
        self._max_event_bytes = max_event_bytes if max_event_bytes is not None else sys.maxsize
        self._max_batch_bytes = max_batch_bytes
        # What the events of a request may take beyond its fixed overhead.
        self._room = max_batch_bytes - wire_lib.REQUEST_OVERHEAD_BYTES

    def __call__(self, element: Any) -> Tuple[str, bytes, int]:
        """Returns the event of ``element`` and its size in a request; raises :class:`EventRejected`."""
        event_type = self._constant_type or self._type_of(element)
        try:
            payload = self._serialize(element)
        except Exception as exc:  # any serializer failure is the element's, not the bundle's
            raise EventRejected(STAGE_SERIALIZE, _reason(exc), event_type) from exc
        size = len(payload)
        if self._constant_overhead:  # a constant type on the protobuf wire: one addition
            encoded_size = size + self._constant_overhead
        else:
            encoded_size = self._sizer(event_type, size)
        if encoded_size > self._room or size > self._max_event_bytes:
            encoded_size = self._checked_size(event_type, size)
        return event_type, payload, encoded_size

    def _checked_size(self, event_type: str, size: int) -> int:
        """The exact size of an event near a limit, or :class:`EventRejected` if it is over one."""
        if size > self._max_event_bytes:
            raise EventRejected(
                STAGE_VALIDATE, f"event of {size} bytes is over max_event_bytes={self._max_event_bytes}", event_type
            )
        encoded_size = wire_lib.encoded_event_size(event_type, size, self._wire)
        if encoded_size > self._room:
            raise EventRejected(
                STAGE_VALIDATE,
                f"event of {size} bytes takes {encoded_size + wire_lib.REQUEST_OVERHEAD_BYTES} bytes "
                f"in a {self._wire.value} request, over max_batch_bytes={self._max_batch_bytes}",
                event_type,
            )
        return encoded_size

    def _type_of(self, element: Any) -> str:
        try:
            event_type = self._event_type(element)  # type: ignore[operator]  # a callable here
        except Exception as exc:  # the user's callable failed on this element
            raise EventRejected(STAGE_SERIALIZE, f"event_type callable failed: {_reason(exc)}") from exc
        if type(event_type) is str and event_type in self._valid_types:  # the usual case: seen before
            return event_type
        return self._checked_type(event_type)

    def _checked_type(self, event_type: Any) -> str:
        """``event_type`` if it can route an event (remembered), or :class:`EventRejected`."""
        if not isinstance(event_type, str):
            raise EventRejected(
                STAGE_SERIALIZE,
                f"event_type callable returned {type(event_type).__name__} {event_type!r:.80}, expected str",
            )
        problem = _type_problem(event_type)
        if problem:
            raise EventRejected(STAGE_VALIDATE, f"event_type {event_type!r:.80} {problem}")
        if type(event_type) is str and len(self._valid_types) < _TYPE_CACHE_SIZE:
            self._valid_types.add(event_type)
        return event_type


# A pipeline has few distinct event types; the bound keeps a pathological one in check.
_TYPE_CACHE_SIZE = 10_000


@functools.lru_cache(maxsize=_TYPE_CACHE_SIZE)
def _type_problem(event_type: str) -> Optional[str]:
    """Why ``event_type`` cannot route an event, or None."""
    if not event_type:
        return "is empty"
    try:
        event_type.encode("utf-8")  # a lone surrogate cannot go on the wire
    except UnicodeEncodeError:
        return "is not valid Unicode text (it holds a lone surrogate)"
    return None


def _reason(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
