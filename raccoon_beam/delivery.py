"""Delivering batches: retry, bisection of rejected batches, back-pressure.

:func:`deliver` is the life of one batch on the client's event loop: encode,
send with retries (:func:`raccoon_beam.retry.send_with_retry`), and when the
verdict is *split* (a bad request, or a request too large) send each half on
its own until the bad events stand alone; those, and batches whose retries
ran out, come back as failures. :class:`Dispatcher` is the synchronous side,
used by the DoFns: it keeps at most ``max_in_flight`` batches in flight and
hands back the reports of those that finished, so that Beam metrics and dead
letters are produced on the bundle's own thread.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import time
from typing import Any, Awaitable, Callable, Coroutine, Generic, List, Optional, Set, TypeVar

from raccoon_beam import wire as wire_lib
from raccoon_beam.batching import Batch, split_batch
from raccoon_beam.errors import SendFailure
from raccoon_beam.retry import SendOutcome, Verdict
from raccoon_beam.wire import EncodedRequest, Wire

__all__ = ["FailedEvents", "DeliveryReport", "deliver", "Dispatcher"]

S = TypeVar("S")

SendFn = Callable[[EncodedRequest], Awaitable[SendOutcome]]


@dataclasses.dataclass
class FailedEvents(Generic[S]):
    """Events that could not be delivered, and the last failure they met."""

    sources: List[S]
    event_types: List[str]
    failure: SendFailure
    verdict: Verdict
    attempts: int
    req_guid: str


@dataclasses.dataclass
class DeliveryReport(Generic[S]):
    """What happened to one batch, for metrics and dead letters."""

    events: int = 0
    acknowledged: int = 0
    requests: int = 0
    bytes_sent: int = 0
    latencies_ms: List[int] = dataclasses.field(default_factory=list)
    failures: List[FailedEvents[S]] = dataclasses.field(default_factory=list)


async def deliver(
    batch: Batch[S],
    send: SendFn,
    wire: Wire,
    report: Optional[DeliveryReport[S]] = None,
) -> DeliveryReport[S]:
    """Delivers one batch, splitting it as the failures require.

    Args:
      batch: the events and their sources.
      send: sends one encoded request with retries; never raises ``SendFailure``.
      wire: the wire type to encode requests in.
      report: the report to add to (the halves of a split share one).

    Returns:
      The report: acknowledged events, and every undelivered event with the
      failure that stopped it. Each event is in exactly one of the two.
    """
    if report is None:
        report = DeliveryReport(events=len(batch))
    request = wire_lib.encode_request(batch.events, wire=wire)
    started = time.monotonic()
    outcome = await send(request)
    report.requests += outcome.attempts
    report.bytes_sent += len(request.body) * outcome.attempts
    if outcome.response is not None:
        report.acknowledged += len(batch)
        report.latencies_ms.append(int((time.monotonic() - started) * 1000))
        return report
    assert outcome.failure is not None and outcome.verdict is not None
    if outcome.verdict is Verdict.SPLIT and len(batch) > 1:
        # Halves go one after the other: the batch keeps its one in-flight slot.
        for half in split_batch(batch):
            await deliver(half, send, wire, report)
        return report
    report.failures.append(
        FailedEvents(
            sources=batch.sources,
            event_types=[event_type for event_type, _ in batch.events],
            failure=outcome.failure,
            verdict=outcome.verdict,
            attempts=outcome.attempts,
            req_guid=request.req_guid,
        )
    )
    return report


class Dispatcher(Generic[S]):
    """Runs deliveries on an event loop, at most ``max_in_flight`` at a time.

    Args:
      run: schedules a coroutine on the client's loop (thread-safe).
      deliver_batch: makes the delivery coroutine of one batch.
      max_in_flight: the most batches in flight; ``dispatch`` blocks beyond.
    """

    def __init__(
        self,
        run: Callable[[Coroutine[Any, Any, DeliveryReport[S]]], "concurrent.futures.Future[DeliveryReport[S]]"],
        deliver_batch: Callable[[Batch[S]], Coroutine[Any, Any, DeliveryReport[S]]],
        max_in_flight: int,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self._run = run
        self._deliver_batch = deliver_batch
        self._max_in_flight = max_in_flight
        self._pending: Set["concurrent.futures.Future[DeliveryReport[S]]"] = set()

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def dispatch(self, batch: Batch[S]) -> List[DeliveryReport[S]]:
        """Starts delivering ``batch``; returns the reports of finished deliveries.

        Blocks while ``max_in_flight`` deliveries are under way (back-pressure
        on the bundle, which bounds memory).
        """
        finished: List[DeliveryReport[S]] = []
        if len(self._pending) >= self._max_in_flight:
            done, self._pending = concurrent.futures.wait(
                self._pending, return_when=concurrent.futures.FIRST_COMPLETED
            )
            finished.extend(future.result() for future in done)
        self._pending.add(self._run(self._deliver_batch(batch)))
        finished.extend(self.collect_finished())
        return finished

    def collect_finished(self) -> List[DeliveryReport[S]]:
        """The reports of deliveries that finished, without waiting."""
        done = {future for future in self._pending if future.done()}
        self._pending -= done
        return [future.result() for future in done]

    def wait_all(self) -> List[DeliveryReport[S]]:
        """Waits until every delivery has finished; returns their reports."""
        pending, self._pending = self._pending, set()
        done, _ = concurrent.futures.wait(pending)
        return [future.result() for future in done]

    def cancel_all(self) -> None:
        """Cancels what is still in flight (teardown after a failed bundle)."""
        for future in self._pending:
            future.cancel()
        self._pending = set()
