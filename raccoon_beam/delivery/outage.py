"""One outage, one schedule: the sender's shared backoff while its endpoint is down.

Without it every batch runs the whole retry policy on its own, so giving up
on a dead endpoint takes about (batches / max_in_flight) times the policy's
length: hours for a backfill. :class:`OutageGate` notices that the endpoint
is down (a connection cannot be opened, or every one of the last attempts
failed), holds every request behind one backoff of the
:class:`~raccoon_beam.retry.RetryPolicy` during which one request at a time
probes the endpoint, and when the policy's attempts or its deadline run out
gives up for all of them at once: what is waiting, and what arrives while the
endpoint stays down, is dead-lettered without being sent, while one probe
per ``max_backoff`` watches for the endpoint's return. A policy that never
gives up (:meth:`RetryPolicy.forever <raccoon_beam.retry.RetryPolicy.forever>`)
waits for as long as it takes, and says so in the log.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any, Awaitable, Callable, Optional, Tuple

from raccoon_beam.delivery.log import DEFAULT_LOG_INTERVAL, RateLimitedLog
from raccoon_beam.errors import Failure, FailureKind
from raccoon_beam.retry import RetryPolicy, Verdict, classify

__all__ = ["OutageGate", "DEFAULT_FAILURES_FOR_OUTAGE"]

# Retryable failures in a row, with no success between them, after which the
# endpoint counts as down (a refused connection counts at once). More than
# the default max_in_flight, so that one burst of timeouts from a busy
# server is not yet an outage.
DEFAULT_FAILURES_FOR_OUTAGE = 8

_log = logging.getLogger(__name__)


class OutageGate:
    """Holds requests behind one shared backoff while the endpoint is down.

    Used on the sender's event loop: :meth:`admit` before each attempt,
    :meth:`observe` after it.

    Args:
      policy: the retry policy whose backoff and limits the outage follows.
      endpoint: the endpoint's name for the log (redacted).
      clock: a monotonic clock in seconds (tests).
      sleep: the coroutine function that waits for the next probe (the
        retry policy's sleep: tests make it virtual).
      rng: the random source of the backoff's jitter (tests).
      failures_for_outage: retryable failures in a row that make an outage.
      log_interval: the least seconds between two log lines.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        endpoint: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rng: Optional[random.Random] = None,
        failures_for_outage: int = DEFAULT_FAILURES_FOR_OUTAGE,
        log_interval: float = DEFAULT_LOG_INTERVAL,
    ) -> None:
        self._policy = policy
        self._endpoint = endpoint
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._failures_for_outage = failures_for_outage
        self._in_a_row = 0
        self._down_since: Optional[float] = None
        self._probes = 0  # attempts made during the outage (the first failure included)
        self._next_probe = 0.0
        self._probing = False
        self._gave_up = False
        self._last: Optional[Failure] = None
        self._changed: Optional[asyncio.Event] = None
        self._waiting_log = RateLimitedLog(
            _log, logging.WARNING, "request(s) held while the endpoint is down", log_interval, clock
        )

    @property
    def down(self) -> bool:
        """Whether the endpoint counts as down."""
        return self._down_since is not None

    async def admit(self) -> Tuple[bool, Optional[Failure]]:
        """Waits while the endpoint is down and it is not this request's turn to probe.

        Returns:
          ``(probe, failure)``: send now unless ``failure`` is set (the
          outage outlasted the policy: do not send, dead-letter); ``probe``
          says whether this attempt is the outage's probe (pass it to
          :meth:`observe`).
        """
        counted = False
        while self._down_since is not None:
            now = self._clock()
            if not self._probing and now >= self._next_probe:
                self._probing = True
                return True, None
            if self._gave_up:
                return False, self._given_up_failure(now)
            self._waiting_log.record(0 if counted else 1, self._waiting_reason(now))
            counted = True
            event = self._changed = self._changed or asyncio.Event()
            if self._probing:
                await event.wait()  # the probe's end decides
            else:
                await self._sleep_or_change(event, self._next_probe - now)
        return False, None

    def observe(self, failure: Optional[Failure], probe: bool) -> None:
        """Learns from one attempt's end.

        Args:
          failure: what went wrong, or None on success.
          probe: whether the attempt was this gate's probe.
        """
        if failure is None or classify(failure) is not Verdict.RETRY:
            # The endpoint answered: whatever it said, it is there.
            self._in_a_row = 0
            if self._down_since is not None:
                self._up()
            return
        self._last = failure
        self._in_a_row += 1
        now = self._clock()
        if self._down_since is None:
            if failure.kind is FailureKind.UNREACHABLE or self._in_a_row >= self._failures_for_outage:
                self._down_since = now
                self._probes = 1
                _log.warning(
                    "raccoon_beam: %s looks down (%s); holding new requests behind one backoff",
                    self._endpoint,
                    failure.message,
                )
                self._next(now, failure)  # a policy of one attempt gives up at once
            return
        if not probe:
            return
        self._probing = False
        self._probes += 1
        self._next(now, failure)
        self._wake()

    def _next(self, now: float, failure: Failure) -> None:
        """After an attempt of the outage: the next probe's time, or giving up when the policy has run out."""
        assert self._down_since is not None
        policy = self._policy
        out_of_attempts = policy.max_attempts is not None and self._probes >= policy.max_attempts
        past_deadline = policy.deadline is not None and now - self._down_since >= policy.deadline
        if not (out_of_attempts or past_deadline):
            self._schedule(now)
            return
        if not self._gave_up:
            _log.warning(
                "raccoon_beam: %s down for %.0f s (%d attempts): dead-lettering what waits and "
                "what comes until it answers again; latest: %s",
                self._endpoint,
                now - self._down_since,
                self._probes,
                failure.message,
            )
        self._gave_up = True
        # From now on one probe per longest backoff watches for the return.
        self._next_probe = now + policy.max_backoff

    async def _sleep_or_change(self, event: asyncio.Event, seconds: float) -> None:
        """Waits ``seconds`` (on the injected sleep), or less if the gate changes meanwhile."""
        waits = [asyncio.ensure_future(self._sleep(seconds)), asyncio.ensure_future(event.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    def abandon_probe(self) -> None:
        """The probe was cancelled before its end: let another request probe."""
        if self._probing:
            self._probing = False
            self._wake()

    def _schedule(self, now: float) -> None:
        """The next probe: the policy's jittered backoff after ``_probes`` attempts, Retry-After as a minimum."""
        bound = self._policy.backoff_bound(self._probes)
        wait = self._rng.uniform(0, bound)
        retry_after = self._last.retry_after if self._last is not None else None
        if retry_after is not None and retry_after > wait:
            wait = retry_after
        if self._policy.deadline is not None and self._down_since is not None:
            # Never wait past the deadline: give up when it comes.
            wait = min(wait, max(0.0, self._down_since + self._policy.deadline - now))
        self._next_probe = now + wait

    def _up(self) -> None:
        if self._gave_up or self._probes > 1:
            _log.warning("raccoon_beam: %s answers again after %.0f s", self._endpoint, self._clock() - (self._down_since or 0))
        self._down_since = None
        self._probes = 0
        self._probing = False
        self._gave_up = False
        self._wake()

    def _wake(self) -> None:
        event, self._changed = self._changed, None
        if event is not None:
            event.set()

    def _waiting_reason(self, now: float) -> str:
        assert self._down_since is not None
        latest = self._last.message if self._last is not None else "?"
        return (
            f"{self._endpoint} down for {now - self._down_since:.0f} s after {self._probes} attempt(s); "
            f"next attempt in {max(0.0, self._next_probe - now):.1f} s: {latest}"
        )

    def _given_up_failure(self, now: float) -> Failure:
        assert self._down_since is not None and self._last is not None
        last = self._last
        return Failure(
            FailureKind.UNREACHABLE,
            f"not sent: {self._endpoint} down for {now - self._down_since:.0f} s "
            f"({self._probes} attempts, past the retry policy): {last.message}",
            raccoon_code=last.raccoon_code,
            http_status=last.http_status,
            grpc_status=last.grpc_status,
            reason=last.reason,
        )
