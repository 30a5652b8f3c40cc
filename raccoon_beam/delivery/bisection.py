"""Delivering one batch: send it, and split it when the server rejects it whole.

A bad request (Raccoon's ``CODE_BAD_REQUEST``) or one over the server's size
limit cannot succeed as it is, but its parts can: :func:`deliver` sends each
half on its own until the bad events stand alone. Those, and batches whose
retries ran out, come back as failures in the report.
"""

from __future__ import annotations

import time
from typing import Awaitable, Callable, Optional, TypeVar

from raccoon_beam.batching import Batch, split_batch
from raccoon_beam.delivery.report import DeliveryReport, FailedEvents, SendOutcome
from raccoon_beam.retry import Verdict
from raccoon_beam.wire import EncodedRequest, Wire, encode_batch

__all__ = ["SendFn", "deliver"]

S = TypeVar("S")

SendFn = Callable[[EncodedRequest], Awaitable[SendOutcome]]
"""Sends one encoded request with retries; never raises a SendFailure."""


async def deliver(
    batch: Batch[S],
    send: SendFn,
    wire: Wire,
    report: Optional[DeliveryReport[S]] = None,
) -> DeliveryReport[S]:
    """Delivers one batch, splitting it as the failures require.

    Args:
      batch: the events and their sources.
      send: sends one encoded request with retries.
      wire: the wire type to encode requests in.
      report: the report to add to (the halves of a split share one).

    Returns:
      The report: acknowledged events, and every undelivered event with the
      failure that stopped it. Each event is in exactly one of the two.
    """
    if report is None:
        report = DeliveryReport(events=len(batch))
    request = encode_batch(batch.event_types, batch.payloads, wire=wire)
    started = time.monotonic()
    outcome = await send(request)
    report.requests += outcome.attempts
    report.retries += max(outcome.attempts - 1, 0)
    report.waited += outcome.waited
    report.bytes_sent += len(request.body) * outcome.attempts
    if outcome.failure is None:
        report.acknowledged += len(batch)
        report.latencies_ms.append(int((time.monotonic() - started) * 1000))
        return report
    assert outcome.verdict is not None
    if outcome.verdict is Verdict.SPLIT and len(batch) > 1:
        # Halves go one after the other: the batch keeps its one in-flight slot.
        for half in split_batch(batch):
            await deliver(half, send, wire, report)
        return report
    report.failures.append(
        FailedEvents(
            sources=batch.sources,
            event_types=batch.event_types,
            failure=outcome.failure,
            verdict=outcome.verdict,
            attempts=outcome.attempts,
            req_guid=request.req_guid,
            payloads=batch.payloads,
        )
    )
    return report
