"""Outage benchmark: how long until every event written to a closed port is dead-lettered.

``python -m benchmarks.closed_port`` writes 20,000 events (``--events``) to a
port where nothing listens, with ``WriteToRaccoon``'s default retry policy,
once per transport (``--transports``), and prints the seconds until the
pipeline ends with every event in ``result.failed``. The sink holds every
request behind one backoff of the policy for the endpoint, so this is about
the policy's length once (10 attempts, full-jitter waits of at most 0.5, 1,
2, ... 30 s: 60 s on average, at most about 2 minutes), whatever the number
of events. Target: under 180 s.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from typing import Dict, Optional, Sequence

import apache_beam as beam
from apache_beam.testing.util import assert_that

from raccoon_beam import WriteToRaccoon

__all__ = ["measure", "main"]

SCHEMES = {"grpc": "grpc", "rest": "http", "websocket": "ws"}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def measure(transport: str, events: int) -> float:
    """Seconds until ``events`` events written to a closed port are all dead-lettered."""
    url = f"{SCHEMES[transport]}://127.0.0.1:{_closed_port()}"

    def all_failed(letters):
        if len(letters) != events:
            raise AssertionError(f"{len(letters)} dead letters for {events} events")

    started = time.monotonic()
    with beam.Pipeline() as pipeline:
        elements = pipeline | beam.Create([{"id": i} for i in range(events)], reshuffle=False)
        assert_that((elements | WriteToRaccoon(url, event_type="click")).failed, all_failed)
    return time.monotonic() - started


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--transports", default=",".join(SCHEMES))
    args = parser.parse_args(argv)
    results: Dict[str, float] = {}
    for transport in args.transports.split(","):
        results[transport] = round(measure(transport, args.events), 1)
        print(f"{transport:10s} {results[transport]:6.1f} s for {args.events:,} events", flush=True)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
