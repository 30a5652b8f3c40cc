"""Retry policy, and the one place that decides what a failure means.

Transports report what happened as a :class:`~raccoon_beam.errors.Failure`
value; :func:`classify` alone turns it into a :class:`Verdict`, following the
table "What a failure means for a client" of Raccoon's protocol:

* ``RETRY``: the same request may succeed later (publish failure, 429/5xx,
  network errors, timeouts, a garbled answer, a full or duplicate-id
  WebSocket server).
* ``SPLIT``: the request as a whole can never succeed, but parts of it can
  (a bad request: bisect to isolate the bad events; a request over the
  server's size limit).
* ``PERMANENT``: no request to this endpoint can succeed until someone fixes
  the configuration (missing connection id, authentication, wrong path,
  TLS that cannot work, a port speaking another protocol than the scheme
  says, a proxy refusing the request), or the client itself
  failed in a way nobody anticipated (``unexpected``).

:class:`RetryPolicy` says how often and how long ``RETRY`` verdicts are
retried (full-jitter exponential backoff with tenacity, ``Retry-After`` as a
minimum wait, an overall deadline). This module does no I/O: the retry loop
runs in :mod:`raccoon_beam.delivery`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import math
import time
from typing import Any, Awaitable, Callable, Dict, List, Optional

import tenacity

from raccoon_beam import protocol
from raccoon_beam._proto import raccoon_pb2
from raccoon_beam.errors import Failure, FailureKind, SendFailure

__all__ = [
    "Verdict",
    "classify",
    "rejects_whole_request",
    "signals_overload",
    "refused_credentials",
    "RetryPolicy",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_INITIAL_BACKOFF",
    "DEFAULT_MAX_BACKOFF",
    "DEFAULT_DEADLINE",
]

# Sized to ride out a Raccoon restart or a rolling deploy (tens of seconds):
# waits are bounded by 0.5, 1, 2, 4, 8, 16, 30, 30, 30 s (about 2 minutes in
# all, half that on average with full jitter), within a 5-minute deadline.
DEFAULT_MAX_ATTEMPTS = 10
DEFAULT_INITIAL_BACKOFF = 0.5
DEFAULT_MAX_BACKOFF = 30.0
DEFAULT_DEADLINE = 300.0

class Verdict(enum.Enum):
    """What to do about a failed request."""

    RETRY = "retry"
    SPLIT = "split"
    PERMANENT = "permanent"


# Raccoon codes. CODE_MAX_CONNECTION_LIMIT_REACHED / CODE_MAX_USER_LIMIT_REACHED
# come with a WebSocket close: the server is full or the id is taken, and a
# new connection (with a new id) later may succeed.
_RACCOON_CODES: Dict[int, Verdict] = {
    raccoon_pb2.CODE_BAD_REQUEST: Verdict.SPLIT,
    raccoon_pb2.CODE_INTERNAL_ERROR: Verdict.RETRY,
    raccoon_pb2.CODE_MAX_CONNECTION_LIMIT_REACHED: Verdict.RETRY,
    raccoon_pb2.CODE_MAX_USER_LIMIT_REACHED: Verdict.RETRY,
}

# HTTP statuses with a fixed meaning; other 4xx are PERMANENT, other 5xx RETRY.
# A 400 is SPLIT only with Raccoon's CODE_BAD_REQUEST decoded from its body
# (see classify): a proxy's 400 says nothing about the events, and bisecting
# on it would send a storm of requests that all fail the same way.
_HTTP_STATUSES = {
    400: Verdict.PERMANENT,
    413: Verdict.SPLIT,  # a proxy's body size limit
    408: Verdict.RETRY,
    425: Verdict.RETRY,
    429: Verdict.RETRY,
}

# gRPC status names. RESOURCE_EXHAUSTED and UNKNOWN depend on the details
# (see classify); a status not listed here is retried.
_GRPC_STATUSES = {
    "UNAVAILABLE": Verdict.RETRY,
    "DEADLINE_EXCEEDED": Verdict.RETRY,
    "ABORTED": Verdict.RETRY,
    "INTERNAL": Verdict.RETRY,
    "CANCELLED": Verdict.RETRY,
    "DATA_LOSS": Verdict.RETRY,
    "INVALID_ARGUMENT": Verdict.SPLIT,
    "UNAUTHENTICATED": Verdict.PERMANENT,
    "PERMISSION_DENIED": Verdict.PERMANENT,
    "UNIMPLEMENTED": Verdict.PERMANENT,
    "NOT_FOUND": Verdict.PERMANENT,
    "FAILED_PRECONDITION": Verdict.PERMANENT,
    "OUT_OF_RANGE": Verdict.PERMANENT,
    "ALREADY_EXISTS": Verdict.PERMANENT,
}
_TOO_LARGE = "larger than max"
_CLIENT_SIDE = "client:"
# Raccoon's reasons for a request that did not decode as a whole (REST's
# "deserialization failure", WebSocket's "cannot deserialize request: ...");
# "invalid content type" is PERMANENT outright.
_WHOLE_REQUEST_REASONS = (protocol.REASON_DESERIALIZATION_FAILURE, protocol.REASON_CANNOT_DESERIALIZE)
# HTTP statuses by which a server or a gateway says it has too much to do.
_OVERLOAD_HTTP = frozenset({429, 503})


def classify(failure: Failure) -> Verdict:
    """Decides what a failed request means for the client.

    The most specific fact wins: an unexpected client error, TLS that
    cannot work or a port speaking another protocol, then a size refusal, then the Raccoon code the server
    answered with, then the HTTP status, then the gRPC status; what is left
    (network errors, timeouts, malformed answers) is transient.

    Args:
      failure: what the transport observed.

    Returns:
      RETRY, SPLIT or PERMANENT. A failure with no recognised status is
      retried: retries are bounded, while a wrong PERMANENT loses data.
    """
    kind = failure.kind
    if kind is FailureKind.UNEXPECTED or kind is FailureKind.TLS or kind is FailureKind.PROTOCOL:
        return Verdict.PERMANENT
    if kind is FailureKind.TOO_LARGE:
        return Verdict.SPLIT
    if failure.raccoon_code == raccoon_pb2.CODE_BAD_REQUEST and (
        failure.reason == protocol.REASON_INVALID_CONTENT_TYPE
    ):
        # The client sends exactly Raccoon's content types: something between
        # them (a proxy) rewrites the header, and no split can fix that.
        return Verdict.PERMANENT
    if failure.raccoon_code in _RACCOON_CODES:
        return _RACCOON_CODES[failure.raccoon_code]
    status = failure.http_status
    if (
        kind is FailureKind.REFUSED
        and status is not None
        and status < 300
        and failure.raccoon_code is None
        and failure.reason is None
    ):
        # Refused with a success status and no Raccoon code: a WebSocket
        # upgrade answered with something else than the upgrade (no
        # WebSocket endpoint there), which no retry changes.
        return Verdict.PERMANENT
    if status is not None and not 200 <= status < 300:
        if status in _HTTP_STATUSES:
            return _HTTP_STATUSES[status]
        if 300 <= status < 500:
            # 3xx (never followed), 401/403/404/405...: the endpoint or credentials are wrong.
            return Verdict.PERMANENT
        return Verdict.RETRY
    grpc_status = failure.grpc_status
    if grpc_status is not None:
        if grpc_status == "RESOURCE_EXHAUSTED":
            # grpc-go's receive limit ("received message larger than max"):
            # resending the same bytes can never pass. Any other exhaustion is
            # a quota or a full server, which passes with time.
            # gRPC's own limit on the *answer* says "CLIENT: Received message
            # larger than max": a misbehaving server, not a request too large.
            message = failure.message.lower()
            if _TOO_LARGE in message and _CLIENT_SIDE not in message:
                return Verdict.SPLIT
            return Verdict.RETRY
        if grpc_status == "UNKNOWN" and protocol.CONN_ID_MISSING in failure.message.lower():
            return Verdict.PERMANENT
        return _GRPC_STATUSES.get(grpc_status, Verdict.RETRY)
    return Verdict.RETRY


def rejects_whole_request(failure: Failure) -> bool:
    """Whether a SPLIT failure is about the request as a whole, not any of its events.

    Raccoon never judges single events: its ``CODE_BAD_REQUEST`` means the
    request did not decode, and gRPC's ``INVALID_ARGUMENT`` says nothing
    about which event. Splitting such a batch helps only if something in
    front of Raccoon judges events: the bisection splits it once, and when
    both halves fail the same way the batch fails whole.
    """
    if failure.grpc_status == "INVALID_ARGUMENT" and failure.raccoon_code is None:
        return True
    if failure.raccoon_code != raccoon_pb2.CODE_BAD_REQUEST:
        return False
    return (failure.reason or "").lower().startswith(_WHOLE_REQUEST_REASONS)


def signals_overload(failure: Failure) -> bool:
    """Whether ``failure`` says the server (or a gateway) has more than it can take.

    Raccoon blocks when its buffer is full, so its overload shows as
    timeouts; with sync acks as ``CODE_INTERNAL_ERROR`` when publishing
    fails; a gateway in front answers 429 or 503, gRPC ``UNAVAILABLE`` or
    ``RESOURCE_EXHAUSTED`` (a quota, not a message over the size limit).
    A connection that cannot be opened is an outage, not an overload.
    """
    kind = failure.kind
    if kind is FailureKind.TIMEOUT:
        return True
    if failure.raccoon_code == raccoon_pb2.CODE_INTERNAL_ERROR:
        return True
    if failure.http_status in _OVERLOAD_HTTP:
        return True
    if failure.grpc_status == "UNAVAILABLE":
        return kind is not FailureKind.UNREACHABLE and kind is not FailureKind.TLS
    if failure.grpc_status == "RESOURCE_EXHAUSTED":
        return classify(failure) is Verdict.RETRY
    return False


def refused_credentials(failure: Failure) -> bool:
    """Whether the server refused the request's credentials (HTTP 401, gRPC UNAUTHENTICATED).

    Such a failure is PERMANENT for :func:`classify`, but a header value
    from a credential provider (an expired token) may be read again and the
    request resent once before that verdict stands (see
    :func:`raccoon_beam.delivery.sender.send_with_retry`). A 403 is not
    included: it refuses who the client is, not a stale credential.
    """
    return failure.http_status == 401 or failure.grpc_status == "UNAUTHENTICATED"


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a request.

    Waits use "full jitter": before attempt ``n + 1`` the wait is uniform in
    ``[0, min(max_backoff, initial_backoff * 2 ** (n - 1))]``, raised to the
    server's ``Retry-After`` when it sent one. No attempt starts whose wait
    would end after ``deadline`` seconds from the first attempt.

    The defaults (10 attempts, waits bounded by 0.5 s doubling to 30 s, a
    300 s deadline) keep a request alive through about two minutes of
    backoff, long enough for a Raccoon restart, instead of dead-lettering
    everything in flight.

    While the endpoint is down (refused, unresolvable, or failing every
    attempt), the sender applies the policy once for the endpoint rather
    than once per request: one request at a time probes on the policy's
    schedule, and when its attempts or deadline run out everything waiting
    is dead-lettered together (see ``docs/backfill.md``).

    Attributes:
      max_attempts: attempts in all, the first one included (1 = no retry);
        default 10; None: no limit.
      initial_backoff: the first wait's upper bound, in seconds; default 0.5.
      max_backoff: the largest upper bound of a wait, in seconds; default 30.
      deadline: seconds from the first attempt after which no retry starts;
        default 300; None: no deadline. With neither limit (see
        :meth:`forever`) retries never end.
    """

    max_attempts: Optional[int] = DEFAULT_MAX_ATTEMPTS
    initial_backoff: float = DEFAULT_INITIAL_BACKOFF
    max_backoff: float = DEFAULT_MAX_BACKOFF
    deadline: Optional[float] = DEFAULT_DEADLINE

    def __post_init__(self) -> None:
        attempts = self.max_attempts
        if attempts is not None and (not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1):
            raise ValueError(f"max_attempts must be a positive integer or None, got {attempts!r}")
        for name in ("initial_backoff", "max_backoff", "deadline"):
            value = getattr(self, name)
            if value is None and name == "deadline":
                continue
            if not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
                raise ValueError(f"{name} must be a non-negative number of seconds, got {value!r}")
        if self.max_backoff < self.initial_backoff:
            raise ValueError("max_backoff must not be smaller than initial_backoff")

    @classmethod
    def no_retry(cls) -> "RetryPolicy":
        """A policy that makes a single attempt."""
        return cls(max_attempts=1)

    @classmethod
    def forever(cls, initial_backoff: float = DEFAULT_INITIAL_BACKOFF, max_backoff: float = DEFAULT_MAX_BACKOFF) -> "RetryPolicy":
        """A policy that never gives up on a retryable failure (as ``WriteToBigQuery``'s ``RETRY_ALWAYS``).

        For pipelines that prefer back-pressure to dead letters: while
        Raccoon is down or overloaded the sink waits (and logs that it
        waits, and why) instead of dead-lettering, and the pipeline stalls
        until Raccoon is back. Failures that no retry can fix (a bad
        request, a wrong configuration) are still dead-lettered at once.
        """
        return cls(max_attempts=None, initial_backoff=initial_backoff, max_backoff=max_backoff, deadline=None)

    @property
    def gives_up(self) -> bool:
        """Whether retries ever end (False for :meth:`forever`)."""
        return self.max_attempts is not None or self.deadline is not None

    def backoff_bound(self, attempt_number: int) -> float:
        """The upper bound of the wait after failed attempt ``attempt_number`` (1-based)."""
        if self.initial_backoff == 0:
            return 0.0
        exponent = attempt_number - 1
        if exponent >= 64 or self.initial_backoff * 2.0**exponent >= self.max_backoff:
            return float(self.max_backoff)
        return self.initial_backoff * 2.0**exponent

    def _wait(self) -> tenacity.wait.wait_base:
        jitter = tenacity.wait_random_exponential(multiplier=self.initial_backoff, max=self.max_backoff)

        def wait(retry_state: tenacity.RetryCallState) -> float:
            seconds = jitter(retry_state) if self.initial_backoff > 0 else 0.0
            error = retry_state.outcome.exception() if retry_state.outcome else None
            retry_after = error.failure.retry_after if isinstance(error, SendFailure) else None
            if retry_after is not None and retry_after > seconds:
                seconds = float(retry_after)  # the server's wish is a minimum
            return seconds

        return wait  # type: ignore[return-value]

    def retrying(
        self,
        *,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        on_retry: Optional[Callable[[Failure, float], None]] = None,
        started: Optional[float] = None,
    ) -> tenacity.AsyncRetrying:
        """A tenacity ``AsyncRetrying`` that retries SendFailures classified RETRY.

        It only decides and waits; the caller runs the attempts.

        Args:
          sleep: the coroutine function that waits (injectable for tests).
          clock: a monotonic clock in seconds, for the deadline.
          on_retry: called with the failure and the wait before each retry.
          started: when the first attempt started, on ``clock`` (default: now).
        """
        def before_sleep(retry_state: tenacity.RetryCallState) -> None:
            if on_retry is not None and retry_state.outcome is not None:
                error = retry_state.outcome.exception()
                if isinstance(error, SendFailure):
                    on_retry(error.failure, retry_state.upcoming_sleep)

        stops: List[tenacity.stop.stop_base] = []
        if self.max_attempts is not None:
            stops.append(tenacity.stop_after_attempt(self.max_attempts))
        if self.deadline is not None:
            stops.append(_PastDeadline(self.deadline, clock, started))
        return tenacity.AsyncRetrying(
            stop=tenacity.stop_any(*stops) if stops else tenacity.stop_never,
            wait=self._wait(),
            retry=tenacity.retry_if_exception(
                lambda exc: isinstance(exc, SendFailure) and classify(exc.failure) is Verdict.RETRY
            ),
            sleep=sleep,
            before_sleep=before_sleep,
            reraise=True,
        )


class _PastDeadline(tenacity.stop.stop_base):
    """Stops when the next wait would end past the deadline, counted from now."""

    def __init__(self, deadline: float, clock: Callable[[], float], started: Optional[float] = None) -> None:
        self._deadline = deadline
        self._clock = clock
        self._started = clock() if started is None else started

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        # tenacity computes the wait (upcoming_sleep) before asking stop:
        # give up now rather than sleep past the deadline.
        upcoming = retry_state.upcoming_sleep or 0.0
        return self._clock() - self._started + upcoming > self._deadline
