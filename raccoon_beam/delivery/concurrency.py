"""An adaptive limit on requests in flight, from latency and overload signals.

Raccoon does not refuse work when it is overloaded: its handlers block on a
full buffer, so overload shows as latency that grows with everything in
flight, then as timeouts, and a timed-out request is still published later
(its retry is a duplicate). Requests in flight are the lever, as in TCP
congestion control: :class:`ConcurrencyLimit` keeps an estimate of the
requests queued at the server, ``limit * (1 - healthy latency / latency)``
(TCP Vegas, as Netflix's concurrency-limits library does), grows the limit
while that queue is short, shrinks it when it is long, and halves it on an
overload signal (a timeout, 429, 503, ...) at most once per round trip.
The limit stays within ``[1, max_in_flight]``; it starts low, so that a
writer allowed many requests in flight does not open with a burst.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from typing import Callable, Deque, Optional

__all__ = [
    "ConcurrencyLimit",
    "DEFAULT_INITIAL_LIMIT",
    "DEFAULT_QUEUE_LOW",
    "DEFAULT_QUEUE_HIGH",
    "DEFAULT_BACKOFF_RATIO",
    "DEFAULT_BASELINE_WINDOW",
]

# The sink's default max_in_flight: a writer with the defaults starts, and
# can stay, where it always was.
DEFAULT_INITIAL_LIMIT = 4
# Requests queued at the server (Vegas's alpha and beta): under LOW the limit
# grows by one, over HIGH it shrinks by one. A limit of HIGH or less can
# never be shrunk by latency alone (the queue estimate never exceeds the
# limit), so a writer with the default max_in_flight is never slowed by
# latency noise, only by overload signals.
DEFAULT_QUEUE_LOW = 3
DEFAULT_QUEUE_HIGH = 6
# The multiplicative decrease on an overload signal (TCP's halving).
DEFAULT_BACKOFF_RATIO = 0.5
# The healthy latency is the least of the last one or two windows of this
# many seconds: it follows a server whose healthy latency changes.
DEFAULT_BASELINE_WINDOW = 60.0


class ConcurrencyLimit:
    """Bounds the attempts in flight by a limit that adapts; thread-safe.

    Attempts take slots from any thread (:meth:`try_acquire`) or wait for
    one on an event loop (:meth:`acquire`); a slot given back on another
    thread is handed to the waiter on its loop.

    Args:
      max_limit: the largest limit (``max_in_flight``).
      initial: the limit at the start (at most ``max_limit``).
      clock: a monotonic clock in seconds (tests).
    """

    def __init__(
        self,
        max_limit: int,
        initial: int = DEFAULT_INITIAL_LIMIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max = max_limit
        self._clock = clock
        self.limit = float(min(max_limit, initial))
        self.in_flight = 0
        self._lock = threading.Lock()
        self._waiters: Deque["asyncio.Future[None]"] = collections.deque()
        self._last_decrease = float("-inf")
        self._window_start: Optional[float] = None
        self._window_min = float("inf")
        self._previous_min = float("inf")

    @property
    def healthy_latency(self) -> Optional[float]:
        """The least latency of the recent window(s), or None before any success."""
        least = min(self._window_min, self._previous_min)
        return None if least == float("inf") else least

    def try_acquire(self) -> bool:
        """Takes a slot if one is free at once (the fast path)."""
        with self._lock:
            return self._take()

    def _take(self) -> bool:
        if self.in_flight < int(self.limit) and not self._waiters:
            self.in_flight += 1
            return True
        return False

    async def acquire(self) -> None:
        """Waits for a slot (first come, first served)."""
        with self._lock:
            if self._take():
                return
            future: "asyncio.Future[None]" = asyncio.get_running_loop().create_future()
            self._waiters.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                with self._lock:
                    self._release_slot()  # granted just as it was cancelled: pass it on
            raise

    def release(self, started: float, latency: Optional[float], overload: bool) -> None:
        """Gives the slot back and learns from the attempt.

        Args:
          started: when the attempt started, on the limit's clock.
          latency: the attempt's latency in seconds, when it succeeded.
          overload: whether it failed with an overload signal.
        """
        with self._lock:
            # At least half the limit in use (Netflix's rule): an application
            # that does not fill its limit proves nothing about a larger one.
            saturated = self.in_flight * 2 >= self.limit
            self._release_slot()
            if overload:
                # Once per round trip: the attempts that were already out when
                # the limit last came down carry old news.
                if started >= self._last_decrease:
                    self._set(self.limit * DEFAULT_BACKOFF_RATIO)
                    self._last_decrease = self._clock()
                return
            if latency is None:
                return
            self._sample(latency)
            healthy = self.healthy_latency
            assert healthy is not None
            queued = self.limit * (1.0 - healthy / latency) if latency > 0 else 0.0
            if queued > DEFAULT_QUEUE_HIGH:
                self._set(self.limit - 1)
            elif queued < DEFAULT_QUEUE_LOW and saturated:
                self._set(self.limit + 1)

    def _sample(self, latency: float) -> None:
        now = self._clock()
        if self._window_start is None:
            self._window_start = now
        elif now - self._window_start >= DEFAULT_BASELINE_WINDOW:
            self._previous_min, self._window_min, self._window_start = self._window_min, float("inf"), now
        self._window_min = min(self._window_min, latency)

    def _set(self, limit: float) -> None:
        self.limit = max(1.0, min(float(self._max), limit))
        self._wake()

    def _release_slot(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < int(self.limit):
            future = self._waiters.popleft()
            if future.done():
                continue
            self.in_flight += 1
            loop = future.get_loop()
            if _running_loop() is loop:
                future.set_result(None)
            else:  # released on another thread: grant on the waiter's loop
                try:
                    loop.call_soon_threadsafe(self._grant, future)
                except RuntimeError:  # that loop is closed: nobody waits there any more
                    self.in_flight -= 1

    def _grant(self, future: "asyncio.Future[None]") -> None:
        if future.done():  # cancelled meanwhile: its slot goes to the next
            with self._lock:
                self._release_slot()
        else:
            future.set_result(None)


def _running_loop() -> Optional[asyncio.AbstractEventLoop]:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
