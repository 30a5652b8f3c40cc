"""Client-side throttling by accept ratio: Beam's ``AdaptiveThrottler``, fed Raccoon's overload signals.

The rule is Google SRE's (handling overload, client-side throttling), as
Beam's Datastore and RequestResponseIO writers apply it: over a moving
window, requests are refused locally with probability
``max(0, (requests - K * accepts) / (requests + 1))``. Here an attempt is
"accepted" unless it failed with an overload signal
(:func:`raccoon_beam.retry.signals_overload`); a throttled attempt waits
:data:`DEFAULT_THROTTLE_DELAY` and asks again, as ``ReactiveThrottler`` does,
but counts as one request however often it asks (Beam counts every ask, so
that a client whose requests all fail ends up refusing nearly all of its
own), and nothing is throttled while the window holds fewer than
:data:`DEFAULT_MIN_REQUESTS` requests.
"""

from __future__ import annotations

import time
from typing import Callable

from apache_beam.io.components.adaptive_throttler import AdaptiveThrottler

__all__ = [
    "AcceptRatioThrottle",
    "DEFAULT_MIN_REQUESTS",
    "DEFAULT_WINDOW",
    "DEFAULT_BUCKET",
    "DEFAULT_OVERLOAD_RATIO",
    "DEFAULT_THROTTLE_DELAY",
]

# A minute of history (Datastore's writer keeps two; RequestResponseIO's
# default keeps 1 ms): long enough to span a few retry backoffs, short
# enough to let go soon after the server recovers.
DEFAULT_WINDOW = 60.0
# Twelve buckets: every decision sums them, once per request.
DEFAULT_BUCKET = 5.0
# The SRE book's K = 2: requests may reach twice the accepts before any is
# refused locally (Beam's DefaultThrottler uses 2 as well).
DEFAULT_OVERLOAD_RATIO = 2.0
# Requests in the window below which nothing is throttled: a handful of
# requests failing is no storm (their own backoff spaces them), and the
# formula would otherwise hold a lone request back for most of the window.
DEFAULT_MIN_REQUESTS = 20
# How long a throttled attempt waits before asking again: short against the
# seconds Raccoon needs to drain its buffer, long against a request's cost.
DEFAULT_THROTTLE_DELAY = 1.0

_MS = 1000.0


class _Throttler(AdaptiveThrottler):
    """Beam's throttler, with a floor of requests and asks that do not count as requests."""

    def __init__(self, window_ms: float, bucket_ms: float, overload_ratio: float, min_requests: int) -> None:
        super().__init__(window_ms, bucket_ms, overload_ratio)
        self._min_requests = min_requests

    def _throttling_probability(self, now: float) -> float:
        if self._all_requests.sum(now) < self._min_requests:
            return 0.0
        return float(super()._throttling_probability(now))

    def count_request(self, now: float) -> None:
        """Counts a request without deciding (the window holds no overload: nothing to throttle)."""
        self._all_requests.add(now, 1)

    def throttle_again(self, now: float) -> bool:
        """Decides for a request already counted (asking again after a delay)."""
        return bool(self._random.uniform(0, 1) < self._throttling_probability(now))


class AcceptRatioThrottle:
    """Beam's ``AdaptiveThrottler`` with seconds for times; not thread-safe (its owner locks).

    Args:
      window: seconds of history.
      bucket: the granularity of the history, in seconds.
      overload_ratio: K, the requests allowed per accept before throttling.
      delay: seconds a throttled attempt waits before asking again.
      min_requests: requests in the window below which nothing is throttled.
      clock: a clock in seconds (tests).
    """

    def __init__(
        self,
        window: float = DEFAULT_WINDOW,
        bucket: float = DEFAULT_BUCKET,
        overload_ratio: float = DEFAULT_OVERLOAD_RATIO,
        delay: float = DEFAULT_THROTTLE_DELAY,
        min_requests: int = DEFAULT_MIN_REQUESTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._throttler = _Throttler(window * _MS, bucket * _MS, overload_ratio, min_requests)
        self.delay = delay
        self._clock = clock
        self._window = window
        self._last_overload = float("-inf")

    def throttles(self) -> bool:
        """Whether to hold this attempt back (counts it as a request either way)."""
        if self.passes_quietly():
            return False
        return bool(self._throttler.throttle_request(self._clock() * _MS))

    def passes_quietly(self) -> bool:
        """Counts this attempt and lets it pass if the window holds no overload; else counts nothing.

        No overload in the window: every request there was accepted or is
        still out, so the probability is 0. Counted, not computed (that sums
        the window's buckets: the cost of a healthy request).
        """
        now = self._clock()
        if now - self._last_overload > self._window:
            self._throttler.count_request(now * _MS)
            return True
        return False

    def overloaded(self) -> None:
        """Records an attempt that failed with an overload signal (it is not accepted)."""
        self._last_overload = self._clock()

    def throttles_again(self) -> bool:
        """Whether to keep holding back an attempt held back already (not counted again)."""
        return self._throttler.throttle_again(self._clock() * _MS)

    def accepted(self) -> None:
        """Records an attempt the server took (anything but an overload signal)."""
        self._throttler.successful_request(self._clock() * _MS)
