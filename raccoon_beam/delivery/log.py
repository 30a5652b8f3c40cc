"""What the sender tells its user: rate-limited log lines about retries and dead letters.

A pipeline against a dead endpoint fails thousands of requests a second; one
line per failure would drown the worker's log. :class:`RateLimitedLog` writes
the first occurrence at once and then at most one line per interval, with the
count since the last line and the latest reason (as BigQuery's streaming
sink does for failed rows). Messages are already free of credentials: every
failure message is redacted where it is made.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Optional

__all__ = ["RateLimitedLog", "dead_letter_log", "DEFAULT_LOG_INTERVAL"]

# Often enough to see a problem develop, rarely enough to stay readable.
DEFAULT_LOG_INTERVAL = 10.0


class RateLimitedLog:
    """Logs one kind of occurrence at most once per ``interval`` seconds.

    Args:
      logger: where to log.
      level: the level of every line.
      what: what is counted, e.g. ``"request(s) failed and will be retried"``.
      interval: the least time between two lines, in seconds.
      clock: a monotonic clock (tests).
    """

    def __init__(
        self,
        logger: logging.Logger,
        level: int,
        what: str,
        interval: float = DEFAULT_LOG_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._level = level
        self._what = what
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._count = 0
        self._last_line: Optional[float] = None

    def record(self, count: int, reason: str) -> None:
        """Counts ``count`` occurrences; logs if the interval has passed since the last line."""
        with self._lock:
            self._count += count
            now = self._clock()
            if self._last_line is not None and now - self._last_line < self._interval:
                return
            total, self._count, self._last_line = self._count, 0, now
        self._logger.log(self._level, "%d %s; latest: %s", total, self._what, reason)


def dead_letter_log(
    logger: logging.Logger,
    stage: str,
    interval: float = DEFAULT_LOG_INTERVAL,
    clock: Callable[[], float] = time.monotonic,
) -> RateLimitedLog:
    """The rate-limited ERROR log of the events dead-lettered at ``stage`` (one wording for every stage)."""
    return RateLimitedLog(logger, logging.ERROR, f"event(s) dead-lettered at stage '{stage}'", interval, clock)
