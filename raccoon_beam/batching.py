"""Accumulating events into requests under count and byte limits.

The byte limit is on the *encoded request*. Each event comes with its size in
a request (exact from ``wire.encoded_event_size``, or the cheaper upper bound
``wire.event_size_bound`` that the sink's hot path uses), so a batch that
fits here fits under the server's receive limit without encoding it twice.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Generic, List, Optional, Tuple, TypeVar

from raccoon_beam import wire as wire_lib
from raccoon_beam.wire import Wire

__all__ = [
    "Batch",
    "Batcher",
    "split_batch",
    "check_batch_limits",
    "check_positive_int",
    "DEFAULT_MAX_BATCH_SIZE",
    "DEFAULT_MAX_BATCH_BYTES",
]

# Safely under the gRPC limit, with room for framing and metadata.
DEFAULT_MAX_BATCH_BYTES = 3 * 1024 * 1024
# Large enough to amortise a request's cost, small enough that a request
# stays well under a second of work for Raccoon.
DEFAULT_MAX_BATCH_SIZE = 500

S = TypeVar("S")


@dataclasses.dataclass
class Batch(Generic[S]):
    """Events of one request, with the source of each (for dead letters).

    Parallel lists, so that adding an event allocates nothing of its own.

    Attributes:
      event_types: the type of each event, in arrival order.
      payloads: the bytes of each event.
      sources: one opaque source per event (the element and its windowing).
    """

    event_types: List[str] = dataclasses.field(default_factory=list)
    payloads: List[bytes] = dataclasses.field(default_factory=list)
    sources: List[S] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.payloads)

    @property
    def events(self) -> List[Tuple[str, bytes]]:
        """``(event_type, event_bytes)`` pairs, in arrival order."""
        return list(zip(self.event_types, self.payloads))


def check_positive_int(name: str, value: object) -> None:
    """Raises ValueError, naming the parameter, unless ``value`` is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_batch_limits(max_batch_size: int, max_batch_bytes: int) -> None:
    """Raises ValueError, naming the parameter, when a batch limit is unusable."""
    check_positive_int("max_batch_size", max_batch_size)
    check_positive_int("max_batch_bytes", max_batch_bytes)
    if max_batch_bytes <= wire_lib.REQUEST_OVERHEAD_BYTES:
        raise ValueError(
            f"max_batch_bytes must exceed the request overhead of "
            f"{wire_lib.REQUEST_OVERHEAD_BYTES} bytes, got {max_batch_bytes}"
        )


class Batcher(Generic[S]):
    """Accumulates events and hands out full batches.

    Args:
      wire: the wire type the batches will be encoded in.
      max_batch_size: the most events in one request.
      max_batch_bytes: the most bytes in one encoded request. A single event
        larger than this still gets a batch of its own; validating event
        sizes is the caller's job (``max_event_bytes``).
      on_close: called with each batch as it closes; :meth:`add` then
        returns None (the sink's hot path saves a call per event this way).

    Raises:
      ValueError: a limit is not a positive integer, or leaves no room for events.
    """

    _event_types: List[str]
    _payloads: List[bytes]
    _sources: List[S]
    _size: int

    def __init__(
        self,
        wire: Wire,
        max_batch_size: int,
        max_batch_bytes: int,
        on_close: Optional[Callable[[Batch[S]], None]] = None,
    ) -> None:
        check_batch_limits(max_batch_size, max_batch_bytes)
        self._wire = wire
        self._max_events = max_batch_size
        self._max_bytes = max_batch_bytes
        self._on_close = on_close
        self._start()

    def add(
        self, event_type: str, payload: bytes, source: S, encoded_size: Optional[int] = None
    ) -> Optional[Batch[S]]:
        """Adds one event; returns the batch it closed, if adding it closed one.

        A batch closes before an event that would take it over
        ``max_batch_bytes``, or as soon as it holds ``max_batch_size``; one
        event never closes both ways, since a full batch was handed out already.

        Args:
          event_type: the event's type.
          payload: the event's bytes.
          source: what the event came from (for dead letters).
          encoded_size: what the event adds to a request, at least
            ``wire.encoded_event_size`` (the caller may pass an upper
            bound it has already); computed exactly otherwise.
        """
        if encoded_size is None:
            encoded_size = wire_lib.encoded_event_size(event_type, len(payload), self._wire)
        closed: Optional[Batch[S]] = None
        size = self._size + encoded_size
        if size > self._max_bytes and self._payloads:
            closed = self._take()
            size = wire_lib.REQUEST_OVERHEAD_BYTES + encoded_size
        self._size = size
        self._event_types.append(event_type)
        self._payloads.append(payload)
        self._sources.append(source)
        if len(self._payloads) >= self._max_events:
            closed = self._take()
        if closed is not None and self._on_close is not None:
            self._on_close(closed)
            return None
        return closed

    def extend(
        self, event_types: List[str], payloads: List[bytes], sources: List[S], encoded_size: int
    ) -> List[Batch[S]]:
        """Adds many events at once; returns the batches that closed (none with ``on_close``).

        Batches close on the count and stay under the byte limit as with
        :meth:`add`. ``encoded_size`` is what all the events add to a
        request (an upper bound, :meth:`EventBuilder.build_many
        <raccoon_beam.events.EventBuilder.build_many>`): when they all fit in
        the open batch, the usual case, no event is sized on its own.
        """
        count = len(self._payloads) + len(payloads)
        size = self._size + encoded_size
        if count > self._max_events or size > self._max_bytes:
            # A limit falls among these events: one by one, each closing a batch where it must.
            return [batch for batch in map(self.add, event_types, payloads, sources) if batch is not None]
        self._size = size
        self._event_types.extend(event_types)
        self._payloads.extend(payloads)
        self._sources.extend(sources)
        if count < self._max_events:
            return []
        closed = self._take()
        if self._on_close is not None:
            self._on_close(closed)
            return []
        return [closed]

    @property
    def room(self) -> int:
        """How many more events the open batch takes before it closes on its count."""
        return self._max_events - len(self._payloads)

    def flush(self) -> Optional[Batch[S]]:
        """Returns the open batch, if it holds any event, and starts a new one."""
        return self._take() if self._payloads else None

    def _start(self) -> None:
        self._event_types = []
        self._payloads = []
        self._sources = []
        self._size = wire_lib.REQUEST_OVERHEAD_BYTES

    def _take(self) -> Batch[S]:
        closed = Batch(self._event_types, self._payloads, self._sources)
        self._start()
        return closed

    def __len__(self) -> int:
        return len(self._payloads)


def split_batch(batch: Batch[S]) -> Tuple[Batch[S], Batch[S]]:
    """Splits a batch of two or more events into halves (for bisection)."""
    if len(batch) < 2:
        raise ValueError("only a batch of two or more events can be split")
    middle = len(batch) // 2
    return (
        Batch(batch.event_types[:middle], batch.payloads[:middle], batch.sources[:middle]),
        Batch(batch.event_types[middle:], batch.payloads[middle:], batch.sources[middle:]),
    )
