"""Delivering one batch: send it, and split it only where splitting can help.

A request over the server's size limit cannot succeed as it is, but its
halves can: it is split until the parts fit. A rejection of some events
(a gateway in front of Raccoon that judges content) is bisected until the
bad events stand alone. A rejection of the request as a whole (Raccoon's
``CODE_BAD_REQUEST``: the request did not decode) says nothing about any
event: the batch is split once, and when both halves fail the same way that
is the whole batch's fate (3 requests, not one per event and level). Those
events, and batches whose retries ran out, come back as failures in the report.
"""

from __future__ import annotations

import time
from typing import Awaitable, Callable, Optional, Tuple, TypeVar

from raccoon_beam.batching import Batch, split_batch
from raccoon_beam.delivery.report import AckedRequest, DeliveryReport, FailedEvents, SendOutcome
from raccoon_beam.errors import Failure
from raccoon_beam.retry import Verdict, rejects_whole_request
from raccoon_beam.wire import EncodedRequest, Wire, encode_batch

__all__ = ["SendFn", "deliver", "acknowledged_at_once"]

S = TypeVar("S")

SendFn = Callable[[EncodedRequest], Awaitable[SendOutcome]]
"""Sends one encoded request with retries; never raises a SendFailure."""


async def deliver(
    batch: Batch[S],
    send: SendFn,
    wire: Wire,
    report: Optional[DeliveryReport[S]] = None,
    *,
    acknowledgements: bool = False,
    maybe_published: bool = False,
    first: Optional[Tuple[EncodedRequest, Awaitable[SendOutcome]]] = None,
) -> DeliveryReport[S]:
    """Delivers one batch, splitting it as the failures require.

    Args:
      batch: the events and their sources.
      send: sends one encoded request with retries.
      wire: the wire type to encode requests in.
      report: the report to add to (the halves of a split share one).
      acknowledgements: list each acknowledged request in ``report.acked``
        (only for a new report; otherwise the report says).
      maybe_published: whether the batch this one was split from met an
        attempt whose outcome is unknown (its dead letters say so).
      first: the batch's request, already encoded, and the outcome of its
        sending, to await in place of ``send`` for it (a send begun elsewhere).

    Returns:
      The report: acknowledged events, and every undelivered event with the
      failure that stopped it. Each event is in exactly one of the two.
    """
    if report is None:
        report = DeliveryReport(events=len(batch), acked=[] if acknowledgements else None)
    if first is None:
        request, outcome = await _send(batch, send, wire, report)
    else:
        request, sending = first
        outcome = await sending
        _count(batch, request, outcome, report)
    if not outcome.ok:
        await _settle(batch, request, outcome, send, wire, report, maybe_published)
    return report


def acknowledged_at_once(
    batch: Batch[S], request: EncodedRequest, outcome: SendOutcome, *, acknowledgements: bool = False
) -> DeliveryReport[S]:
    """The report of a batch whose one request was acknowledged (``outcome.ok``), with nothing to split."""
    report: DeliveryReport[S] = DeliveryReport(events=len(batch), acked=[] if acknowledgements else None)
    _count(batch, request, outcome, report)
    return report


async def _send(
    batch: Batch[S], send: SendFn, wire: Wire, report: DeliveryReport[S]
) -> Tuple[EncodedRequest, SendOutcome]:
    """Sends ``batch`` as one request (with retries) and counts it in ``report``."""
    request = encode_batch(batch.event_types, batch.payloads, wire=wire)
    outcome = await send(request)
    _count(batch, request, outcome, report)
    return request, outcome


def _count(batch: Batch[S], request: EncodedRequest, outcome: SendOutcome, report: DeliveryReport[S]) -> None:
    """Counts the sending of ``batch`` as ``request`` in ``report``."""
    report.requests += outcome.attempts
    report.retries += max(outcome.attempts - 1, 0)
    report.waited += outcome.waited
    report.bytes_sent += len(request.body) * outcome.attempts
    report.timeouts += outcome.timeouts
    report.latencies_ms.extend(int(seconds * 1000) for seconds in outcome.latencies)
    if outcome.ok:
        report.acknowledged += len(batch)
        if report.acked is not None:
            report.acked.append(
                AckedRequest(
                    request.req_guid,
                    batch.sources,
                    batch.event_types,
                    len(request.body),
                    outcome.attempts,
                    outcome.conn_id,
                    time.time(),
                )
            )


async def _settle(
    batch: Batch[S],
    request: EncodedRequest,
    outcome: SendOutcome,
    send: SendFn,
    wire: Wire,
    report: DeliveryReport[S],
    maybe_published: bool,
) -> None:
    """Splits a failed batch where that can help; records the events it cannot deliver.

    ``maybe_published`` goes down to the halves: an attempt of the whole
    batch whose outcome is unknown may have published any of its events.
    """
    failure = outcome.failure
    assert failure is not None and outcome.verdict is not None
    maybe_published = maybe_published or outcome.maybe_published
    if outcome.verdict is not Verdict.SPLIT or len(batch) < 2:
        _fail(batch, request, outcome, report, maybe_published)
        return
    # Halves go one after the other: the batch keeps its one in-flight slot.
    halves = split_batch(batch)
    if not rejects_whole_request(failure):
        for half in halves:
            await deliver(half, send, wire, report, maybe_published=maybe_published)
        return
    sent = [(half, *await _send(half, send, wire, report)) for half in halves]
    failed = [(half, half_request, half_outcome) for half, half_request, half_outcome in sent if not half_outcome.ok]
    if len(failed) == len(halves) and all(_same(failure, half_outcome.failure) for _, _, half_outcome in failed):
        for half, half_request, half_outcome in failed:
            _fail(half, half_request, half_outcome, report, maybe_published)  # the whole batch's fate
        return
    for half, half_request, half_outcome in failed:
        await _settle(half, half_request, half_outcome, send, wire, report, maybe_published)


def _same(first: Failure, second: Optional[Failure]) -> bool:
    """Whether two failures are the same answer (the messages may name different requests)."""
    return second is not None and (
        first.kind,
        first.raccoon_code,
        first.http_status,
        first.grpc_status,
        first.reason,
    ) == (second.kind, second.raccoon_code, second.http_status, second.grpc_status, second.reason)


def _fail(
    batch: Batch[S], request: EncodedRequest, outcome: SendOutcome, report: DeliveryReport[S], maybe_published: bool
) -> None:
    assert outcome.failure is not None and outcome.verdict is not None
    report.failures.append(
        FailedEvents(
            sources=batch.sources,
            event_types=batch.event_types,
            failure=outcome.failure,
            verdict=outcome.verdict,
            attempts=outcome.attempts,
            req_guid=request.req_guid,
            payloads=batch.payloads,
            maybe_published=maybe_published or outcome.maybe_published,
        )
    )
