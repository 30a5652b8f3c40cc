"""Wall-clock time during which something was held back, however many were held at once.

Beam's ``cumulativeThrottlingSeconds`` (what Dataflow's autoscaler reads)
means seconds a worker was held back: four requests waiting one second side
by side are one second, not four. :class:`HeldTime` counts the union of the
holding intervals, so its total never exceeds the time that passed.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Callable, Iterator, Optional

__all__ = ["HeldTime"]


class HeldTime:
    """Counts the seconds during which at least one holder was holding; thread-safe.

    Args:
      clock: a monotonic clock in seconds (tests inject one).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._holders = 0
        self._since: Optional[float] = None
        self._total = 0.0
        self._taken = 0

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """Counts the time inside the ``with`` block (overlaps with other holders count once)."""
        with self._lock:
            if self._holders == 0:
                self._since = self._clock()
            self._holders += 1
        try:
            yield
        finally:
            with self._lock:
                self._holders -= 1
                if self._holders == 0 and self._since is not None:
                    self._total += self._clock() - self._since
                    self._since = None

    @property
    def seconds(self) -> float:
        """The seconds held so far, the interval under way included."""
        with self._lock:
            return self._seconds()

    def take_whole_seconds(self) -> int:
        """The whole seconds held since the last call (Beam counters are integers).

        Each second is handed out once, whoever asks: DoFns sharing a sender
        together report exactly the sender's time.
        """
        with self._lock:
            whole = int(self._seconds()) - self._taken
            self._taken += whole
            return whole

    def _seconds(self) -> float:
        running = self._clock() - self._since if self._since is not None else 0.0
        return self._total + running
