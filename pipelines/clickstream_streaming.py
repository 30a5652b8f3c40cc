"""Sample streaming pipeline: an unbounded source -> Raccoon, batched across bundles.

``PeriodicImpulse`` fires ``--rate`` times a second for ``--duration``
seconds; each firing becomes a click event, written with
``max_buffering_duration`` so that tiny streaming bundles are still sent as
full batches, and no event waits longer than the buffering duration. At the
end it prints how many events the emulator captured and the latency from
each event's creation to its capture::

    python pipelines/clickstream_streaming.py --duration 10 --rate 200

With ``--endpoint`` it writes to a real Raccoon instead of the embedded emulator.
Every other flag is a Beam pipeline option.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any, Dict, Optional, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.transforms.periodicsequence import PeriodicImpulse

from raccoon_beam import WriteToRaccoon
from raccoon_beam.emulator import RaccoonEmulator

EVENT_NAMES = ("page_view", "click", "search")


def parse_args(argv: Optional[Sequence[str]] = None) -> tuple:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", default=None, help="a Raccoon endpoint; default: an embedded emulator")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of events")
    parser.add_argument("--rate", type=float, default=100.0, help="events per second")
    parser.add_argument("--max-buffering-duration", type=float, default=0.5, help="seconds")
    return parser.parse_known_args(argv)


def make_event(fired_at: Any) -> Dict[str, Any]:
    """A click event stamped with its creation time (for the latency report)."""
    created = time.time()
    sequence = int(float(fired_at) * 1000)
    return {
        "event_name": EVENT_NAMES[sequence % len(EVENT_NAMES)],
        "seq": sequence,
        "created": created,
    }


def build(pipeline: beam.Pipeline, args: argparse.Namespace, endpoint: str) -> beam.PCollection:
    start = time.time()
    events = (
        pipeline
        | "Tick"
        >> PeriodicImpulse(start_timestamp=start, stop_timestamp=start + args.duration, fire_interval=1 / args.rate)
        | "MakeEvent" >> beam.Map(make_event)
    )
    result = events | "WriteToRaccoon" >> WriteToRaccoon(
        endpoint,
        event_type=lambda event: event["event_name"],
        max_buffering_duration=args.max_buffering_duration,
    )
    return result.failed


def latencies_ms(emulator: RaccoonEmulator) -> list:
    return sorted(
        (event.captured_at - json.loads(event.event_bytes)["created"]) * 1000 for event in emulator.events()
    )


def local_runner(options: PipelineOptions) -> Optional[FnApiRunner]:
    """The runner to use when none is named.

    The DirectRunner hands pipelines with processing-time timers (the
    buffering timer of GroupIntoBatches) to its legacy bundle-based runner,
    which cannot run PeriodicImpulse's splittable DoFn; the FnApiRunner runs
    both. Real streaming runners (Dataflow, Flink) need no such choice.
    """
    if options.view_as(StandardOptions).runner:
        return None
    return FnApiRunner()


def run(argv: Optional[Sequence[str]] = None) -> int:
    args, beam_args = parse_args(argv)
    options = PipelineOptions(beam_args)
    if args.endpoint:
        with beam.Pipeline(runner=local_runner(options), options=options) as pipeline:
            build(pipeline, args, args.endpoint) | "PrintDeadLetters" >> beam.Map(print)
        return 0
    with RaccoonEmulator() as emulator:
        with beam.Pipeline(runner=local_runner(options), options=options) as pipeline:
            build(pipeline, args, emulator.grpc_endpoint) | "PrintDeadLetters" >> beam.Map(print)
        captured = emulator.events()
        print(f"captured {len(captured)} events in {len({e.req_guid for e in captured})} requests")
        if captured:
            latency = latencies_ms(emulator)
            p50 = statistics.median(latency)
            p99 = latency[min(len(latency) - 1, int(len(latency) * 0.99))]
            print(f"creation -> capture latency: p50 {p50:.0f} ms, p99 {p99:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(run())
