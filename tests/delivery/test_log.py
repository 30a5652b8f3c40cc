"""RateLimitedLog: the first line at once, then at most one per interval, with the count."""

from __future__ import annotations

import logging

from raccoon_beam.delivery.log import RateLimitedLog

from tests.transports.helpers import FakeClock


def test_first_line_at_once_then_one_per_interval_with_the_count(caplog):
    clock = FakeClock(0.0)
    log = RateLimitedLog(logging.getLogger("raccoon_beam.test"), logging.WARNING, "thing(s) failed", 10.0, clock)
    with caplog.at_level(logging.WARNING, logger="raccoon_beam"):
        log.record(1, "first")
        for second in range(1, 10):
            clock.now = float(second)
            log.record(2, f"reason {second}")
        clock.now = 10.0
        log.record(1, "last")
    lines = [record.getMessage() for record in caplog.records]
    assert lines == ["1 thing(s) failed; latest: first", "19 thing(s) failed; latest: last"]
