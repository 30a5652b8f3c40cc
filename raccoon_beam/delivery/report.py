"""What became of a batch: acknowledged events, failed ones, and why.

A :class:`DeliveryReport` is produced on the sender's event loop (or, for a
batch acknowledged at its first attempt, on the thread that saw the
acknowledgement) and read on the bundle's thread, where Beam metrics and dead
letters are made.
"""

from __future__ import annotations

import dataclasses
from typing import Generic, List, Optional, TypeVar

from raccoon_beam._proto import raccoon_pb2
from raccoon_beam.errors import Failure
from raccoon_beam.retry import Verdict

__all__ = ["SendOutcome", "FailedEvents", "AckedRequest", "DeliveryReport", "dead_letter_reason"]

S = TypeVar("S")


@dataclasses.dataclass
class SendOutcome:
    """How one request ended after its retries.

    Attributes:
      response: the server's successful response, or None.
      failure: the last failure, or None on success.
      verdict: the classification of ``failure`` (None on success).
      attempts: how many times the request was sent.
      waited: seconds spent backing off between attempts.
      conn_id: the id of the connection that acknowledged it ("" on failure).
      latencies: each attempt's latency in seconds, failures included
        (from the send to its answer: no backoff, no time held back).
      timeouts: how many attempts timed out.
      maybe_published: whether an attempt ended with its outcome unknown (a
        timeout, a connection lost after the request was written): the
        server may have published the request, whatever later attempts met.
    """

    response: Optional[raccoon_pb2.SendEventResponse]
    failure: Optional[Failure]
    verdict: Optional[Verdict]
    attempts: int
    waited: float = 0.0
    conn_id: str = ""
    latencies: List[float] = dataclasses.field(default_factory=list)
    timeouts: int = 0
    maybe_published: bool = False

    @property
    def ok(self) -> bool:
        """Whether the server acknowledged the request."""
        return self.failure is None


@dataclasses.dataclass
class FailedEvents(Generic[S]):
    """Events that could not be delivered, and the last failure they met."""

    sources: List[S]
    event_types: List[str]
    failure: Failure
    verdict: Verdict
    attempts: int
    req_guid: str
    payloads: List[bytes] = dataclasses.field(default_factory=list)
    """The events' bytes, parallel to ``sources`` (they go into the dead letters)."""
    maybe_published: bool = False
    """Whether an earlier attempt that carried the events (of this request, or
    of the batch it was split from) ended with its outcome unknown."""

    @property
    def reason(self) -> str:
        """The dead letter's ``error``: see :func:`dead_letter_reason`."""
        return dead_letter_reason(self.failure, self.verdict, self.attempts)

    @property
    def delivered(self) -> Optional[bool]:
        """The dead letters' ``delivered``: None when the server may have published them, else False.

        Any attempt counts, not only the last: a request that timed out and
        was then refused with a 503 may have been published by the first.
        """
        return None if self.maybe_published or self.failure.outcome_unknown else False


@dataclasses.dataclass
class AckedRequest(Generic[S]):
    """One acknowledged request, for the acknowledgement output (made only when it is asked for).

    ``sources`` and ``event_types`` are the batch's own lists (no copy):
    counting per type and per window happens on the bundle's thread.
    """

    req_guid: str
    sources: List[S]
    event_types: List[str]
    bytes: int
    attempts: int
    conn_id: str
    ack_time: float
    """When the ack arrived, in seconds since the epoch."""


@dataclasses.dataclass
class DeliveryReport(Generic[S]):
    """What happened to one batch, for metrics and dead letters.

    Every event of the batch is either counted in ``acknowledged`` or is
    one of the ``failures``' sources. ``latencies_ms`` holds every
    attempt's latency, failed ones included; ``timeouts`` the attempts
    that timed out.
    """

    events: int = 0
    acknowledged: int = 0
    requests: int = 0
    retries: int = 0
    waited: float = 0.0
    bytes_sent: int = 0
    timeouts: int = 0
    latencies_ms: List[int] = dataclasses.field(default_factory=list)
    failures: List[FailedEvents[S]] = dataclasses.field(default_factory=list)
    acked: Optional[List[AckedRequest[S]]] = None
    """The acknowledged requests, when acknowledgements were asked for (None otherwise)."""


def dead_letter_reason(failure: Failure, verdict: Verdict, attempts: int) -> str:
    """A dead letter's reason: why the sink stopped trying, then what the server said."""
    if attempts == 0:
        return failure.message  # held behind an outage, never sent: its message says so
    if verdict is Verdict.RETRY:
        return f"gave up after {attempts} attempt(s): {failure.message}"
    if verdict is Verdict.SPLIT:
        return f"rejected by the server: {failure.message}"
    return f"not retryable: {failure.message}"
