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

__all__ = ["BundleWriter"]

S = TypeVar("S")



class BundleWriter(Generic[S]):
    """Batches events and starts the delivery of each full batch.

    Args:
      sender: where batches go.
      batcher: the open batch and its limits.
    """

    def __init__(self, sender: Sender, batcher: Batcher[S]) -> None:
        self._sender = sender
        self._batcher = batcher
        self._pending: Set["concurrent.futures.Future[DeliveryReport[S]]"] = set()
        # Appended to by the sender's loop as deliveries finish; a deque
        # because appending and popping from two threads is safe.
        self._finished: Deque["concurrent.futures.Future[DeliveryReport[S]]"] = collections.deque()

    def add(self, event_type: str, payload: bytes, encoded_size: int, source: S) -> None:
        """Adds one event; starts delivering the batch it closes, if any (may block: back-pressure)."""
        closed = self._batcher.add(event_type, payload, source, encoded_size)
        if closed is not None:
            self._start(closed)

    def flush(self) -> None:
        """Starts delivering the open batch, if it holds any event."""
        closed = self._batcher.flush()
        if closed is not None:
            self._start(closed)

    @property
    def has_finished(self) -> bool:
        """Whether some delivery finished since :meth:`take_finished` (cheap: once per event)."""
        return bool(self._finished)

    def take_finished(self) -> List[DeliveryReport[S]]:
        """The reports of the deliveries that finished so far, each handed out once."""
        reports = []
        while self._finished:
            future = self._finished.popleft()
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
        self._finished.clear()

    def _start(self, batch: Batch[S]) -> None:
        future = self._sender.deliver(batch)
        self._pending.add(future)
        future.add_done_callback(self._finished.append)
