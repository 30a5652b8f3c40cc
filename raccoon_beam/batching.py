"""Accumulating events into requests under count and byte limits.

The byte limit is on the *encoded request*, computed exactly per event from
the wire type (``wire.encoded_event_size``), so a batch that fits here fits
under the server's receive limit without encoding it twice.
"""

from __future__ import annotations

import dataclasses
from typing import Generic, List, Optional, Tuple, TypeVar

from raccoon_beam import wire as wire_lib
from raccoon_beam.wire import Wire

__all__ = [
    "Batch",
    "Batcher",
    "split_batch",
    "DEFAULT_MAX_BATCH_SIZE",
    "DEFAULT_MAX_BATCH_BYTES",
]

# Safely under the gRPC limit, with room for framing and metadata.
DEFAULT_MAX_BATCH_BYTES = 3 * 1024 * 1024
DEFAULT_MAX_BATCH_SIZE = 500

S = TypeVar("S")


@dataclasses.dataclass
class Batch(Generic[S]):
    """Events of one request, with the source of each (for dead letters).

    Attributes:
      events: ``(event_type, event_bytes)`` pairs, in arrival order.
      sources: one opaque source per event (the element and its windowing).
    """

    events: List[Tuple[str, bytes]] = dataclasses.field(default_factory=list)
    sources: List[S] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.events)


class Batcher(Generic[S]):
    """Accumulates events and hands out full batches.

    Args:
      wire: the wire type the batches will be encoded in.
      max_events: the most events in one request.
      max_bytes: the most bytes in one encoded request. A single event larger
        than this still gets a batch of its own; validating event sizes is the
        caller's job (``max_event_bytes``).
    """

    def __init__(self, wire: Wire, max_events: int, max_bytes: int) -> None:
        if max_events < 1:
            raise ValueError(f"max_events must be at least 1, got {max_events}")
        if max_bytes <= wire_lib.REQUEST_OVERHEAD_BYTES:
            raise ValueError(
                f"max_bytes must exceed the request overhead of "
                f"{wire_lib.REQUEST_OVERHEAD_BYTES} bytes, got {max_bytes}"
            )
        self._wire = wire
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._batch: Batch[S] = Batch()
        self._size = wire_lib.REQUEST_OVERHEAD_BYTES

    def add(
        self, event_type: str, payload: bytes, source: S, encoded_size: Optional[int] = None
    ) -> Optional[Batch[S]]:
        """Adds one event; returns the batch it closed, if adding it closed one.

        A batch closes before an event that would take it over ``max_bytes``,
        or as soon as it holds ``max_events``; one event never closes both
        ways, since a batch at ``max_events`` has already been handed out.

        Args:
          event_type: the event's type.
          payload: the event's bytes.
          source: what the event came from (for dead letters).
          encoded_size: ``wire.encoded_event_size`` of the event, when the
            caller has it already; computed otherwise.
        """
        if encoded_size is None:
            encoded_size = wire_lib.encoded_event_size(event_type, len(payload), self._wire)
        closed: Optional[Batch[S]] = None
        if self._batch.events and self._size + encoded_size > self._max_bytes:
            closed = self._take()
        batch = self._batch
        batch.events.append((event_type, payload))
        batch.sources.append(source)
        self._size += encoded_size
        if len(batch.events) >= self._max_events:
            closed = self._take()
        return closed

    def flush(self) -> Optional[Batch[S]]:
        """Returns the open batch, if it holds any event, and starts a new one."""
        return self._take() if self._batch.events else None

    def _take(self) -> Batch[S]:
        closed, self._batch = self._batch, Batch()
        self._size = wire_lib.REQUEST_OVERHEAD_BYTES
        return closed

    def __len__(self) -> int:
        return len(self._batch)


def split_batch(batch: Batch[S]) -> Tuple[Batch[S], Batch[S]]:
    """Splits a batch of two or more events into halves (for bisection)."""
    if len(batch) < 2:
        raise ValueError("only a batch of two or more events can be split")
    middle = len(batch) // 2
    return (
        Batch(batch.events[:middle], batch.sources[:middle]),
        Batch(batch.events[middle:], batch.sources[middle:]),
    )
