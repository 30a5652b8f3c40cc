"""A rate limit on events, with an optional ramp-up: a token bucket shared by a sender's requests.

``max_events_per_second`` bounds what one worker process sends to one
endpoint (every DoFn sharing the sender draws from one bucket); a fleet's
rate is that times its processes. The ramp-up follows the precedent of
Beam's ``RampupThrottlingFn`` for Datastore: start low and grow, so that a
backfill does not hit a cold server at full speed; here the rate grows
linearly from :data:`DEFAULT_RAMP_UP_START` of the limit to all of it.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

__all__ = ["RateLimit", "DEFAULT_BURST_SECONDS", "DEFAULT_RAMP_UP_START"]

# Credit an idle sender may save up: one second's worth, so that a pause
# between bundles does not waste the rate, nor let a burst of more than a
# second's events through.
DEFAULT_BURST_SECONDS = 1.0
# The share of the limit a ramp-up starts from (Datastore's starts from 500
# ops/s against limits of thousands: about a tenth).
DEFAULT_RAMP_UP_START = 0.1


class RateLimit:
    """A token bucket of events that may go into debt: a request takes all its events at once.

    A request of ``n`` events takes ``n`` tokens and waits until the debt it
    leaves is paid at the current rate; requests that follow queue behind
    it. The long-run rate is the limit exactly, whatever the batch size.
    Not thread-safe: used on the sender's event loop.

    Args:
      events_per_second: the limit.
      ramp_up: seconds over which the rate grows from
        :data:`DEFAULT_RAMP_UP_START` of the limit to all of it, counted
        from the first request; None for the full rate at once.
      clock: a monotonic clock in seconds (tests).
    """

    def __init__(
        self,
        events_per_second: float,
        ramp_up: Optional[float] = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = float(events_per_second)
        self._ramp_up = ramp_up
        self._clock = clock
        self._started: Optional[float] = None
        self._tokens = 0.0
        self._updated = 0.0

    def rate(self, now: float) -> float:
        """Events per second allowed at ``now`` (the ramp-up applied)."""
        if not self._ramp_up or self._started is None:
            return self._limit
        share = DEFAULT_RAMP_UP_START + (1.0 - DEFAULT_RAMP_UP_START) * (now - self._started) / self._ramp_up
        return self._limit * min(1.0, share)

    def take(self, events: int) -> float:
        """Takes ``events`` tokens; returns the seconds to wait before sending them (0: go now)."""
        now = self._clock()
        if self._started is None:
            self._started = self._updated = now
            self._tokens = 0.0
        rate = self.rate(now)
        self._tokens = min(rate * DEFAULT_BURST_SECONDS, self._tokens + (now - self._updated) * rate)
        self._updated = now
        self._tokens -= events
        return -self._tokens / rate if self._tokens < 0 else 0.0
