"""Flow control: what holds a sender's attempts back, and the options that shape it.

Before each attempt (first sends and retries alike) a request passes, in
this order: the :class:`~raccoon_beam.delivery.outage.OutageGate` (one
shared backoff while the endpoint is down), the server's latest
``Retry-After`` (it holds every attempt of the sender, not only the one that
got it; an attempt whose retry deadline would pass first is not sent and
fails at once, as a retry of the request that got it would), the
:class:`~raccoon_beam.delivery.rate.RateLimit` (``max_events_per_second``,
with its ramp-up), the
:class:`~raccoon_beam.delivery.throttle.AcceptRatioThrottle` and the
:class:`~raccoon_beam.delivery.concurrency.ConcurrencyLimit` (adaptive
throttling). Each part is skipped when it has nothing to do, so that on a
healthy server an attempt costs a few attribute reads and one throttler
lookup, per request, never per event. Every second a request spends held
back counts once in :attr:`FlowControl.held` (wall clock, however many
requests wait side by side): Beam's ``cumulativeThrottlingSeconds``.

Attempts are admitted on the sender's loop (:meth:`FlowControl.admit`), or
on any thread when nothing would hold them back (:meth:`FlowControl.admit_now`);
a lock keeps the throttle's counts and the outage gate's observations whole.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from typing import Any, Awaitable, Callable, Optional, Union

from raccoon_beam._checks import is_positive_number
from raccoon_beam.delivery.concurrency import ConcurrencyLimit
from raccoon_beam.delivery.held import HeldTime
from raccoon_beam.delivery.outage import OutageGate
from raccoon_beam.delivery.rate import RateLimit
from raccoon_beam.delivery.throttle import AcceptRatioThrottle
from raccoon_beam.errors import Failure
from raccoon_beam.retry import RetryPolicy, signals_overload

__all__ = ["FlowOptions", "FlowControl", "Ticket"]


@dataclasses.dataclass(frozen=True)
class FlowOptions:
    """How a sender paces itself; a plain, picklable, validated value.

    Attributes:
      adaptive_throttling: hold attempts back when the server shows overload
        (accept-ratio throttling and an adaptive limit on requests in flight).
      max_events_per_second: the most events per second this sender (one
        worker process, one endpoint and configuration) sends; None: no limit.
      ramp_up_duration: seconds over which the rate limit grows from a tenth
        of ``max_events_per_second`` to all of it; None: no ramp-up.
    """

    adaptive_throttling: bool = True
    max_events_per_second: Optional[float] = None
    ramp_up_duration: Optional[float] = None

    def __post_init__(self) -> None:
        if not isinstance(self.adaptive_throttling, bool):
            raise TypeError(f"adaptive_throttling must be True or False, got {self.adaptive_throttling!r}")
        for name in ("max_events_per_second", "ramp_up_duration"):
            value = getattr(self, name)
            if value is not None and not is_positive_number(value):
                raise ValueError(f"{name} must be a positive number or None, got {value!r}")
        if self.ramp_up_duration is not None and self.max_events_per_second is None:
            raise ValueError("ramp_up_duration needs max_events_per_second: the rate it ramps up to")


@dataclasses.dataclass
class Ticket:
    """One admitted attempt: what :meth:`FlowControl.finish` needs to know about it."""

    probe: bool = False
    limited: bool = False
    held: bool = False
    started: float = 0.0


class FlowControl:
    """The parts that hold a sender's attempts back.

    :meth:`admit`, :meth:`finish` and :meth:`cancel` belong to the sender's
    event loop; :meth:`admit_now`, :meth:`finish_success` and :meth:`cancel`
    may be called from any thread.

    Args:
      options: the pacing options.
      policy: the retry policy (the outage's schedule).
      max_in_flight: the most requests in flight (the adaptive limit's ceiling).
      endpoint: the endpoint's name for the log (redacted).
      clock: a monotonic clock in seconds (tests).
      sleep: the retry policy's sleep, which the outage's backoff uses (tests).
    """

    def __init__(
        self,
        options: FlowOptions,
        policy: RetryPolicy,
        max_in_flight: int,
        endpoint: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        # Held for the throttle's counts and the gate's observations, never across an await.
        self._lock = threading.Lock()
        self.gate = OutageGate(policy, endpoint, clock=clock, sleep=sleep)
        self.rate: Optional[RateLimit] = None
        if options.max_events_per_second is not None:
            self.rate = RateLimit(options.max_events_per_second, options.ramp_up_duration, clock)
        self.throttle: Optional[AcceptRatioThrottle] = None
        self.limit: Optional[ConcurrencyLimit] = None
        if options.adaptive_throttling:
            self.throttle = AcceptRatioThrottle(clock=clock)
            self.limit = ConcurrencyLimit(max_in_flight, clock=clock)
        # A server's Retry-After holds every attempt of the sender, not only
        # the one that got it: the others would meet the same full server.
        self._not_before = float("-inf")
        self._held_by: Optional[Failure] = None  # the failure that set _not_before
        self.held = HeldTime(clock)
        """Wall-clock seconds during which at least one attempt was held back."""
        self.attempts_held = 0
        """Attempts that were held back at all (counted once each)."""

    async def admit(self, events: int, deadline: Optional[float] = None) -> Union[Ticket, Failure]:
        """Waits until an attempt of ``events`` events may go.

        Args:
          events: the attempt's events (for the rate limit).
          deadline: the clock time past which the request's retry policy
            starts no attempt (None: no deadline).

        Returns:
          A ticket to hand to :meth:`finish`, or a failure: an outage that
          outlasted the retry policy, or a server's Retry-After that ends
          after ``deadline`` (do not send).
        """
        ticket = Ticket()
        try:
            admitted = await self._admit(events, ticket, deadline)
        except asyncio.CancelledError:
            self.cancel(ticket)
            raise
        if isinstance(admitted, Failure):
            # Not sent: an outage's probe must be given back, or every other
            # request would wait for the end of a probe that never happens.
            self.cancel(ticket)
        return admitted

    async def _admit(self, events: int, ticket: Ticket, deadline: Optional[float]) -> Union[Ticket, Failure]:
        gate = self.gate
        if gate.down:
            with self.held.holding():
                ticket.probe, failure = await gate.admit()
            ticket.held = True
            if failure is not None:
                self.attempts_held += 1
                return failure
        wait = self._not_before - self._clock()
        if wait > 0:
            if deadline is not None and self._not_before > deadline and self._held_by is not None:
                # Never wait past the deadline (an hour's Retry-After would hang the bundle): give up now.
                self.attempts_held += 1
                return dataclasses.replace(
                    self._held_by,
                    message=f"not sent: the server asked to wait {wait:.0f} s more (Retry-After), past the "
                    f"retry policy's deadline: {self._held_by.message}",
                )
            await self._hold(asyncio.sleep(wait), ticket)
        if self.rate is not None:
            wait = self.rate.take(events)
            if wait > 0:
                await self._hold(asyncio.sleep(wait), ticket)
        throttle = self.throttle
        if throttle is not None:
            with self._lock:
                throttled = throttle.throttles()
            while throttled:
                await self._hold(asyncio.sleep(throttle.delay), ticket)
                with self._lock:
                    throttled = throttle.throttles_again()
        limit = self.limit
        if limit is not None:
            if not limit.try_acquire():
                await self._hold(limit.acquire(), ticket)
            ticket.limited = True
        if ticket.held:
            self.attempts_held += 1
        ticket.started = self._clock()
        return ticket

    def admit_now(self, events: int) -> Optional[Ticket]:
        """A ticket for an attempt that may go at once, from any thread; None if anything might hold it back.

        Nothing is taken or counted when the answer is None: the attempt
        goes through :meth:`admit` instead. A rate limit always sends it
        there (its waits are the point).
        """
        if self.rate is not None or self.gate.down or self._not_before > self._clock():
            return None
        limit, throttle = self.limit, self.throttle
        with self._lock:
            if limit is not None and not limit.try_acquire():
                return None
            if throttle is not None and not throttle.passes_quietly():
                if limit is not None:
                    limit.release(self._clock(), None, False)
                return None
        return Ticket(limited=limit is not None, started=self._clock())

    def finish(self, ticket: Ticket, failure: Optional[Failure], latency: float) -> None:
        """Learns from the end of an admitted attempt (on the sender's loop)."""
        overload = failure is not None and signals_overload(failure)
        with self._lock:
            if failure is not None and failure.retry_after:
                not_before = self._clock() + failure.retry_after
                if not_before > self._not_before:
                    self._not_before, self._held_by = not_before, failure
            self._observe(ticket, failure, overload)
        self._release(ticket, failure, latency, overload)

    def finish_success(self, ticket: Ticket, latency: float) -> bool:
        """Learns from an attempt the server acknowledged, from any thread.

        Returns False, having learnt nothing, while the endpoint counts as
        down: the gate's waiters are on the loop, so :meth:`finish` must be
        called there.
        """
        with self._lock:
            if self.gate.down:
                return False
            self._observe(ticket, None, False)
        self._release(ticket, None, latency, False)
        return True

    def _observe(self, ticket: Ticket, failure: Optional[Failure], overload: bool) -> None:
        """The throttle's and the gate's share of an attempt's end (under the lock)."""
        if self.throttle is not None:
            if overload:
                self.throttle.overloaded()
            else:
                self.throttle.accepted()
        self.gate.observe(failure, ticket.probe)

    def _release(self, ticket: Ticket, failure: Optional[Failure], latency: float, overload: bool) -> None:
        """Gives the adaptive limit its place back, with what the attempt says about latency."""
        if ticket.limited:
            assert self.limit is not None
            self.limit.release(ticket.started, latency if failure is None else None, overload)

    def cancel(self, ticket: Ticket) -> None:
        """Gives back what an attempt cancelled before its end held (the loop's tickets on the loop)."""
        if ticket.limited:
            assert self.limit is not None
            self.limit.release(ticket.started, None, False)
        if ticket.probe:
            self.gate.abandon_probe()

    async def _hold(self, wait: Awaitable[Any], ticket: Ticket) -> None:
        ticket.held = True
        with self.held.holding():
            await wait
