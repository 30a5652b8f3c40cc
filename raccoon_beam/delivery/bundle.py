"""One DoFn's share of a bundle: batching its events and keeping track of their deliveries.

A :class:`BundleWriter` belongs to one DoFn instance (one thread); the
:class:`~raccoon_beam.delivery.sender.Sender` it sends through may be shared
by every DoFn of the worker process. Finished deliveries are handed back on
the bundle's own thread (:meth:`BundleWriter.take_finished`), where Beam
metrics and dead letters can be made.
"""

from __future__ import annotations

import collections
import concurrent.futures
from typing import Deque, Generic, List, Set, TypeVar

from raccoon_beam.batching import Batch, Batcher
from raccoon_beam.delivery.report import DeliveryReport
from raccoon_beam.delivery.sender import Sender
from raccoon_beam.wire import Wire

__all__ = ["BundleWriter"]

S = TypeVar("S")


class BundleWriter(Generic[S]):
    """Batches events and starts the delivery of each full batch.

    Attributes:
      finished: deliveries that finished since :meth:`take_finished`, in the
        order they did; non-empty means there are reports to take (checked
        once per chunk of events, so it is a plain deque).

    Args:
      sender: where batches go.
      wire, max_batch_size, max_batch_bytes: the batches' wire type and limits.
      acknowledgements: list the acknowledged requests in the reports (``acked``).
    """

    def __init__(
        self, sender: Sender, wire: Wire, max_batch_size: int, max_batch_bytes: int, acknowledgements: bool = False
    ) -> None:
        self._sender = sender
        self._acknowledgements = acknowledgements
        self._pending: Set["concurrent.futures.Future[DeliveryReport[S]]"] = set()
        # Appended to by the sender's loop as deliveries finish; a deque
        # because appending and popping from two threads is safe.
        self.finished: Deque["concurrent.futures.Future[DeliveryReport[S]]"] = collections.deque()
        self._batcher: Batcher[S] = Batcher(wire, max_batch_size, max_batch_bytes, on_close=self._start)
        self.add = self._batcher.add
        """Adds one event, ``add(event_type, payload, source, encoded_size)``; starts
        delivering the batch it closes, if any (which may block: back-pressure)."""
        self.extend = self._batcher.extend
        """Adds many events, ``extend(event_types, payloads, sources, encoded_size)``;
        starts delivering the batches they close, as :attr:`add` does."""

    @property
    def room(self) -> int:
        """How many more events the open batch takes before it closes on its count."""
        return self._batcher.room

    def flush(self) -> None:
        """Starts delivering the open batch, if it holds any event."""
        closed = self._batcher.flush()
        if closed is not None:
            self._start(closed)

    def take_finished(self) -> List[DeliveryReport[S]]:
        """The reports of the deliveries that finished so far, each handed out once."""
        reports = []
        while self.finished:
            future = self.finished.popleft()
            if future in self._pending:
                self._pending.discard(future)
                reports.append(future.result())
        return reports

    def finish(self) -> List[DeliveryReport[S]]:
        """Sends what is left and waits for every delivery; returns the reports not taken yet."""
        self.flush()
        concurrent.futures.wait(list(self._pending))
        return self.take_finished()

    def discard(self) -> None:
        """Forgets the open batch and cancels what is in flight (a failed bundle is retried whole)."""
        self._batcher.flush()
        pending, self._pending = self._pending, set()
        for future in pending:
            future.cancel()
        self.finished.clear()

    def _start(self, batch: Batch[S]) -> None:
        future = self._sender.deliver(batch, acknowledgements=self._acknowledgements)
        self._pending.add(future)
        future.add_done_callback(self.finished.append)
