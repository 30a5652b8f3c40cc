"""Streaming latency: from an element's creation to its capture by the emulator.

``python -m benchmarks.streaming_latency --endpoint grpc://... --duration 20 --rate 500``
runs, in a process of its own,

    PeriodicImpulse(rate) | Map(make an event stamped with time.time())
        | WriteToRaccoon(..., max_buffering_duration=0.5)

on the FnApiRunner (the DirectRunner hands pipelines with processing-time
timers to its legacy runner, which cannot run PeriodicImpulse; see
``pipelines/clickstream_streaming.py``). The emulator, in its own process,
writes every captured event with its capture time (``captured_at``) to a
JSONL file (``--output``); :func:`latencies_ms` pairs the two clocks of the
same machine. The pipeline process prints one JSON line.
"""

from __future__ import annotations

import argparse
import base64
import json
import resource
import sys
import time
from typing import Any, Dict, List, Optional

import apache_beam as beam
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.transforms.periodicsequence import PeriodicImpulse

from benchmarks import workload

__all__ = ["run", "latencies_ms", "percentile"]

DEFAULT_BUFFERING = 0.5


class _Tally:
    """Dead letters seen by this process's pipeline.

    A module-level counter, not a list in a closure: Beam pickles a closure's
    list with the DoFn, so appends would go to a copy.
    """

    dead_letters = 0


def _count_dead_letter(letter: Any) -> None:
    _Tally.dead_letters += 1


def _make_event(fired_at: Any) -> Dict[str, Any]:
    event = workload.make_event(int(float(fired_at) * 1000))
    event["created"] = time.time()
    return event


def run(endpoint: str, *, duration: float, rate: float, buffering: float = DEFAULT_BUFFERING) -> Dict[str, Any]:
    """Runs the streaming pipeline for ``duration`` seconds at ``rate`` events/s."""
    from raccoon_beam import WriteToRaccoon

    start = time.time() + 1.0  # leave the runner a second to start
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        failed = (
            pipeline
            | "Tick" >> PeriodicImpulse(start_timestamp=start, stop_timestamp=start + duration, fire_interval=1 / rate)
            | "MakeEvent" >> beam.Map(_make_event)
            | "WriteToRaccoon"
            >> WriteToRaccoon(endpoint, event_type=workload.event_type_of("json"), max_buffering_duration=buffering)
        ).failed
        failed | "CountDeadLetters" >> beam.Map(_count_dead_letter)
    return {
        "duration": duration,
        "rate": rate,
        "buffering": buffering,
        "dead_letters": _Tally.dead_letters,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def latencies_ms(jsonl_path: str) -> List[float]:
    """Creation -> capture latency of every event in the emulator's JSONL output, sorted."""
    latencies = []
    with open(jsonl_path, encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            event = json.loads(base64.b64decode(record["event_bytes"]))
            latencies.append((record["captured_at"] - event["created"]) * 1000)
    latencies.sort()
    return latencies


def percentile(sorted_values: List[float], fraction: float) -> float:
    """The nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, int(round(fraction * len(sorted_values) + 0.5)) - 1))
    return sorted_values[rank]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--buffering", type=float, default=DEFAULT_BUFFERING)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.endpoint, duration=args.duration, rate=args.rate, buffering=args.buffering)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
