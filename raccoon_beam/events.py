"""Turning an element into a Raccoon event: its type, its bytes, its checks.

:class:`EventBuilder` is the first step of the data path. It runs the user's
``event_type`` and serializer and checks the result against the size limits,
raising :class:`EventRejected` with the dead-letter stage and a readable
reason for anything that cannot be sent.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable, List, NamedTuple, Optional, Sequence, Set, Tuple, Union

from raccoon_beam import wire as wire_lib
from raccoon_beam.protocol import DEFAULT_TOPIC_PATTERN, KAFKA_TOPIC_MAX_CHARS, topic_problem
from raccoon_beam.errors import STAGE_SERIALIZE, STAGE_VALIDATE, RaccoonError
from raccoon_beam.wire import Wire

__all__ = [
    "EventTypeSpec",
    "EventBuilder",
    "EventRejected",
    "BuiltEvents",
    "describe_event_type",
    "check_topic_pattern",
]

EventTypeSpec = Union[str, Callable[[Any], str]]


class EventRejected(RaccoonError):
    """An element cannot become an event; it is dead-lettered, not sent.

    Attributes:
      stage: ``"serialize"`` or ``"validate"``.
      reason: a readable reason.
      event_type: the event type, when it was computed.
      payload: the event's bytes, when it was serialized (a validate-stage rejection).
    """

    def __init__(
        self, stage: str, reason: str, event_type: Optional[str] = None, payload: Optional[bytes] = None
    ) -> None:
        super().__init__(reason)
        self.stage = stage
        self.reason = reason
        self.event_type = event_type
        self.payload = payload


class BuiltEvents(NamedTuple):
    """The events of many elements (:meth:`EventBuilder.build_many`).

    Attributes:
      event_types: the type of each event built.
      payloads: the bytes of each event built.
      encoded_size: what these events add to an encoded request, at least
        the sum of their ``wire.encoded_event_size`` (an upper bound).
      rejected: ``(index, rejection)`` of each element that could not become
        an event, by its index in the elements given; the events above are
        those of the other elements, in order.
    """

    event_types: List[str]
    payloads: List[bytes]
    encoded_size: int
    rejected: List[Tuple[int, EventRejected]]


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
        topic_pattern: str = DEFAULT_TOPIC_PATTERN,
    ) -> None:
        check_topic_pattern(topic_pattern)
        self._topic_pattern = topic_pattern
        if isinstance(event_type, str):
            event_type = str.__str__(event_type)  # a plain str (see _checked_type)
            problem = _type_problem(event_type, topic_pattern)
            if problem:
                raise ValueError(f"event_type {event_type!r:.80} {problem}")
        elif not callable(event_type):
            raise TypeError(f"event_type must be a string or a callable, got {type(event_type).__name__}")
        self._event_type = event_type
        self._constant_type = event_type if isinstance(event_type, str) else ""
        # Types the callable returned that were checked already (checked once, then a set lookup).
        self._valid_types: Set[str] = set()
        self._serialize = serializer
        # The serializer's own batch path, if it has one (see serializers.base.BaseSerializer).
        self._serialize_all: Optional[Callable[[Sequence[Any]], Optional[List[bytes]]]] = getattr(
            serializer, "serialize_many", None
        )
        self._wire = wire
        self._sizer = wire_lib.EventSizer(wire)
        self._constant_overhead = (self._sizer.linear_overhead(self._constant_type) or 0) if self._constant_type else 0
        # The largest per-type overhead of the types an event may have (the
        # constant one, or any of _valid_types): a bound for a chunk of known types.
        self._max_overhead = self._sizer.overhead(self._constant_type) if self._constant_type else 0
        # No limit of its own: events are bounded only by what fits in a request.
        self._max_event_bytes = max_event_bytes if max_event_bytes is not None else sys.maxsize
        self._max_batch_bytes = max_batch_bytes
        # What the events of a request may take beyond its fixed overhead.
        self._room = max_batch_bytes - wire_lib.REQUEST_OVERHEAD_BYTES

    @property
    def serializer(self) -> Callable[[Any], bytes]:
        """The resolved serializer this builder runs."""
        return self._serialize

    def __call__(self, element: Any) -> Tuple[str, bytes, int]:
        """Returns the event of ``element`` and its size in a request; raises :class:`EventRejected`."""
        return self._event_of(element, self._constant_type or self._type_of(element))

    def build_many(self, elements: Sequence[Any]) -> BuiltEvents:
        """The events of ``elements``: what calling the builder on each would give, for less.

        The user's callables run once per element, as with single calls. The
        common case (every type known, the serializer takes every element,
        no event near a limit) costs a few list operations per element; any
        other element is built on its own, with its reason if rejected.
        """
        count = len(elements)
        if self._constant_type:
            types: List[Any] = [self._constant_type] * count
            known = True
        else:
            types = self._type_values(elements)
            try:
                known = self._valid_types.issuperset(types)
            except Exception:  # the callable returned something unhashable (or whose hash fails)
                known = False
        # Only a serializer with a batch path of its own (a pure one of this
        # package): the user's runs once per element, on the path below.
        if known and count and self._serialize_all is not None:
            payloads = self._serialize_all(elements)
            if payloads is not None:
                encoded_size = self._fast_size(types, payloads)
                if encoded_size is not None:
                    return BuiltEvents(types, payloads, encoded_size, [])
        return self._one_by_one(elements, types)

    def _one_by_one(self, elements: Sequence[Any], type_values: List[Any]) -> BuiltEvents:
        """:meth:`build_many` element by element, with the types (or their failures) computed already."""
        built_types: List[str] = []
        payloads: List[bytes] = []
        encoded_size = 0
        rejected: List[Tuple[int, EventRejected]] = []
        for index, (element, value) in enumerate(zip(elements, type_values)):
            try:
                event_type = value if self._constant_type else self._checked_value(value)
                event_type, payload, size = self._event_of(element, event_type)
            except EventRejected as rejection:
                rejected.append((index, rejection))
                continue
            built_types.append(event_type)
            payloads.append(payload)
            encoded_size += size
        return BuiltEvents(built_types, payloads, encoded_size, rejected)

    def _event_of(self, element: Any, event_type: str) -> Tuple[str, bytes, int]:
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
            try:
                encoded_size = self._checked_size(event_type, size)
            except EventRejected as rejection:
                rejection.payload = payload
                raise
        return event_type, payload, encoded_size

    def _fast_size(self, types: List[str], payloads: List[bytes]) -> Optional[int]:
        """An upper bound of what the events add to a request, or None if one is near a limit.

        ``types`` are all known (checked before). No event can be over a
        limit that all of them together are under, so in the usual case no
        event is looked at on its own.
        """
        total = sum(map(len, payloads))
        count = len(payloads)
        overhead = self._constant_overhead or self._max_overhead
        if self._wire is Wire.JSON:
            # 4 * ceil(n / 3) <= (4 n + 8) / 3 for each event's base64.
            encoded = (4 * total + 8 * count) // 3 + overhead * count
        else:
            encoded = total + overhead * count
        if total <= self._max_event_bytes and encoded <= self._room:
            return encoded
        longest = max(map(len, payloads))
        if longest > self._max_event_bytes:
            return None
        longest_size = 4 * ((longest + 2) // 3) + overhead if self._wire is Wire.JSON else longest + overhead
        return encoded if longest_size <= self._room else None

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
            value = self._event_type(element)  # type: ignore[operator]  # a callable here
        except Exception as exc:  # the user's callable failed on this element
            raise _type_failure(exc) from exc
        return self._checked_value(value)

    def _type_values(self, elements: Sequence[Any]) -> List[Any]:
        """What the ``event_type`` callable returned for each element, or an :class:`_TypeFailure`."""
        compute = self._event_type
        values: List[Any] = []
        append = values.append
        for element in elements:
            try:
                append(compute(element))  # type: ignore[operator]  # a callable here
            except Exception as exc:  # the user's callable failed on this element
                append(_TypeFailure(exc))
        return values

    def _checked_value(self, value: Any) -> str:
        """A value of :meth:`_type_values` as an event type, or :class:`EventRejected`."""
        if isinstance(value, _TypeFailure):
            raise _type_failure(value.error) from value.error
        if type(value) is str and value in self._valid_types:  # the usual case: seen before
            return value
        return self._checked_type(value)

    def _checked_type(self, event_type: Any) -> str:
        """``event_type`` if it can route an event (remembered), or :class:`EventRejected`."""
        if not isinstance(event_type, str):
            raise EventRejected(
                STAGE_SERIALIZE,
                f"event_type callable returned {type(event_type).__name__} {event_type!r:.80}, expected str",
            )
        if type(event_type) is not str:
            # A str subclass: its own __hash__/__eq__ may fail (``__hash__ =
            # None``) or lie; its plain text is what routes the event.
            event_type = str.__str__(event_type)
        problem = _type_problem(event_type, self._topic_pattern)
        if problem:
            raise EventRejected(STAGE_VALIDATE, f"event_type {event_type!r:.80} {problem}")
        if len(self._valid_types) < _TYPE_CACHE_SIZE:
            self._valid_types.add(event_type)
            self._max_overhead = max(self._max_overhead, self._sizer.overhead(event_type))
        return event_type


# A pipeline has few distinct event types; the bound keeps a pathological one in check.
_TYPE_CACHE_SIZE = 10_000


class _TypeFailure:
    """The exception the ``event_type`` callable raised for one element (kept until its rejection)."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


def _type_failure(exc: Exception) -> EventRejected:
    if isinstance(exc, EventRejected):  # a callable of this package that explains itself (a missing field)
        return EventRejected(exc.stage, exc.reason, exc.event_type)
    return EventRejected(STAGE_SERIALIZE, f"event_type callable failed: {_reason(exc)}")


def check_topic_pattern(pattern: str) -> None:
    """Raises ValueError unless ``pattern`` makes a Kafka topic of a type, as Raccoon's does.

    Raccoon's ``EVENT_DISTRIBUTION_PUBLISHER_PATTERN`` holds one ``%s``, the
    event type; the rest of it must be legal in a Kafka topic name.
    """
    if not isinstance(pattern, str) or pattern.count("%s") != 1 or "%" in pattern.replace("%s", ""):
        raise ValueError(f"topic_pattern must hold exactly one %s (the event type) and no other %, got {pattern!r}")
    problem = topic_problem(pattern.replace("%s", "x"))
    if problem:
        raise ValueError(f"topic_pattern {pattern!r} makes topics Kafka refuses: the topic {problem}")


def _type_problem(event_type: str, topic_pattern: str) -> Optional[str]:
    """Why ``event_type`` cannot route an event, or None.

    A type longer than any topic fails on its length before anything is
    cached: the cache holds only types short enough to be topics, so it is
    bounded in bytes as well as entries.
    """
    if len(event_type) > KAFKA_TOPIC_MAX_CHARS:
        return f"is {len(event_type)} characters long; Raccoon publishes to a Kafka topic of at most {KAFKA_TOPIC_MAX_CHARS}"
    return _short_type_problem(event_type, topic_pattern)


@functools.lru_cache(maxsize=_TYPE_CACHE_SIZE)
def _short_type_problem(event_type: str, topic_pattern: str) -> Optional[str]:
    if not event_type:
        return "is empty"
    try:
        event_type.encode("utf-8")  # a lone surrogate cannot go on the wire
    except UnicodeEncodeError:
        return "is not valid Unicode text (it holds a lone surrogate)"
    topic = topic_pattern.replace("%s", event_type)
    problem = topic_problem(topic)
    if problem:
        return f"makes the Kafka topic {topic!r:.100}, which {problem} (Raccoon would fail to publish it)"
    return None


def _reason(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
