"""Soak: 2,000,000 events over WebSocket with 5% injected faults.

Every event is accounted for, and memory stays flat:

* the emulator keeps only per-type digests (``capture="digest"``: a count, a
  byte total and an order-independent hash of every event), and the test
  computes the digests of what it sent minus what was dead-lettered: equal
  digests mean nothing lost, nothing duplicated, nothing altered;
* the elements are generated on the worker, chunk by chunk, so nothing of
  the run's size is held in memory by the test itself;
* a thread samples the process's resident set size (the sink and the
  emulator run in this process) every second; the average of the last third
  of the run must stay within 1.1x the average of the first third (after a
  short warm-up), plus 16 MiB of slack for allocator noise.

``RACCOON_SOAK_EVENTS`` overrides the event count (e.g. for a quick local
run); the test's bound is 900 s.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import threading
import time
from typing import List

import pytest

from raccoon_beam import RetryPolicy
from raccoon_beam._proto import raccoon_pb2
from raccoon_beam.emulator import Outcome, RaccoonEmulator, expected_digest

from tests.reliability.conftest import EVENT_TYPES, record_row, run_generated_pipeline
from tests.ports import closed_port

SOAK_EVENTS = int(os.environ.get("RACCOON_SOAK_EVENTS", "2000000"))
BOUND = 900.0
FAULT_FRACTION = 0.05
WARM_UP_SAMPLES = 4  # 2 s
_PAGE = os.sysconf("SC_PAGE_SIZE")


def soak_event(i: int):
    return {"id": i, "event_name": EVENT_TYPES[i % len(EVENT_TYPES)], "user": f"u-{i % 1013}", "page": f"/p/{i % 7919}"}


def soak_type(element) -> str:
    return element["event_name"]


def soak_bytes(i: int) -> bytes:
    # What the "json" serializer produces for soak_event(i): compact, keys in order.
    return json.dumps(soak_event(i), separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * _PAGE


class RssSampler:
    """Samples this process's RSS every ``interval`` seconds on a thread."""

    def __init__(self, interval: float = 1.0) -> None:
        self.samples: List[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), name="reliability-rss", daemon=True)

    def _run(self, interval: float) -> None:
        while True:
            self.samples.append(rss_bytes())
            if self._stop.wait(interval):
                return

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.mark.slow
@pytest.mark.timeout(BOUND + 120)
def test_soak_two_million_events_over_websocket_with_faults(tmp_path):
    letters_path = str(tmp_path / "soak-dead.jsonl")
    gc.collect()  # what earlier tests left behind must not be freed during the sampling
    with RaccoonEmulator(capture="digest") as emulator:
        # 3% publish-style errors answered in an ack, 2% of frames make the
        # server close the connection (1011), which fails every request
        # pending on it and forces a reconnect.
        emulator.faults.fail_fraction(0.03, Outcome.raccoon(raccoon_pb2.CODE_INTERNAL_ERROR), seed=1)
        emulator.faults.fail_fraction(0.02 / 0.97, Outcome.http(503), seed=2)
        started = time.monotonic()
        with RssSampler(interval=0.5) as sampler:
            letters = run_generated_pipeline(
                SOAK_EVENTS,
                soak_event,
                letters_path,
                endpoint=emulator.ws_endpoint,
                event_type=soak_type,
                retry=RetryPolicy(max_attempts=1000, initial_backoff=0.001, max_backoff=0.05, deadline=120.0),
            )
        seconds = time.monotonic() - started
        counters = emulator.counters()
        digest = emulator.digest()

    dead = {letter["id"] for letter in letters}
    expected = expected_digest(
        (EVENT_TYPES[i % len(EVENT_TYPES)], soak_bytes(i)) for i in range(SOAK_EVENTS) if i not in dead
    )
    captured = sum(d.count for d in digest.values())
    injected = counters.injected("raccoon") + counters.injected("http")
    samples = sampler.samples[WARM_UP_SAMPLES:] or sampler.samples
    third = max(1, len(samples) // 3)
    first, last = statistics.mean(samples[:third]), statistics.mean(samples[-third:])
    row = {
        "events_in": SOAK_EVENTS,
        "captured": captured,
        "dead_lettered": len(dead),
        "lost": SOAK_EVENTS - captured - len(dead),
        "seconds": round(seconds, 1),
        "events_per_second": round(SOAK_EVENTS / seconds),
        "requests_received": counters.received(),
        "faults_injected": injected,
        "rss_first_third_mib": round(first / 2**20, 1),
        "rss_last_third_mib": round(last / 2**20, 1),
        "rss_max_mib": round(max(sampler.samples) / 2**20, 1),
        "rss_samples": len(sampler.samples),
    }
    record_row({"soak": row})
    print("soak:", row)

    assert injected > 0.03 * counters.received(), row
    assert digest == expected, f"digests differ (lost, duplicated or altered events): {row}"
    assert row["lost"] == 0 and captured + len(dead) == SOAK_EVENTS, row
    assert seconds < BOUND, row
    if len(samples) >= 9:  # a short override run has too few samples to judge
        assert last <= 1.1 * first + 16 * 2**20, f"memory grew: {row}"


HELD_EVENTS = int(os.environ.get("RACCOON_HELD_EVENTS", "300000"))


@pytest.mark.slow
def test_dead_letters_are_not_held_until_the_end_of_the_bundle(tmp_path):
    """Nothing listens: every event is dead-lettered, and memory stays flat meanwhile."""
    port = closed_port()  # a port nobody listens on
    gc.collect()
    started = time.monotonic()
    letters_path = tmp_path / "held-dead.jsonl"
    with RssSampler(interval=0.25) as sampler:
        run_generated_pipeline(
            HELD_EVENTS,
            soak_event,
            str(letters_path),
            read_letters=False,  # reading 300,000 records back is not the sink's memory
            endpoint=f"ws://127.0.0.1:{port}/api/v1/events",
            event_type=soak_type,
            retry=RetryPolicy(max_attempts=1),
        )
    assert time.monotonic() - started < BOUND
    with open(letters_path, encoding="utf-8") as handle:
        assert sum(1 for _ in handle) == HELD_EVENTS
    samples = sampler.samples[2:] or sampler.samples
    third = max(1, len(samples) // 3)
    first, last = statistics.mean(samples[:third]), statistics.mean(samples[-third:])
    assert last <= 1.1 * first + 32 * 2**20, (
        f"memory grew from {first / 2**20:.0f} MiB to {last / 2**20:.0f} MiB "
        f"(max {max(sampler.samples) / 2**20:.0f} MiB) while dead-lettering {HELD_EVENTS:,} events"
    )
