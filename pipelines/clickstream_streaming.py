"""Sample streaming pipeline: an unbounded source -> Raccoon, batched with max_buffering_duration.

``PeriodicImpulse`` ticks every ``--tick`` seconds for ``--duration``
seconds, and each tick emits the click events of that interval (``--rate``
times ``--tick`` of them, the way a consumer's poll returns a block of
records). They are written with ``max_buffering_duration``, which batches
events across bundles with ``GroupIntoBatches`` and sends a batch when it
is full or has waited that long. It prints a progress line every second
and, at the end, a summary from the pipeline's Beam metrics: events
created, acknowledged and dead-lettered, requests and the mean events per
request::

    python pipelines/clickstream_streaming.py --duration 10 --rate 1000

Where the batches come from depends on the runner. On the local runner
(the FnApiRunner, used when no ``--runner`` is given) the buffering timer
fires as soon as a bundle ends, so a request carries what one bundle
brought: one tick's block (``--rate`` x ``--tick`` = 500 events by default,
one full request). On Dataflow and Flink the timer fires after
``max_buffering_duration``, so requests gather up to ``--batch-size``
events from many small bundles. The DirectRunner cannot run it (see
:data:`UNSUPPORTED_RUNNERS`).

With ``--endpoint`` it writes to a real Raccoon instead of the embedded
emulator. Every other flag must be a Beam pipeline option.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import _cli
import apache_beam as beam
import orjson
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.runners.runner import PipelineResult
from apache_beam.transforms.periodicsequence import PeriodicImpulse

from raccoon_beam import WriteToRaccoon
from raccoon_beam.emulator import RaccoonEmulator

__all__ = ["run", "build", "summarise", "UNSUPPORTED_RUNNERS"]

EVENT_NAMES = ("page_view", "click", "search")
METRICS_NAMESPACE = "clickstream_streaming"
DEFAULT_DURATION = 10.0  # seconds: long enough to watch a few progress lines
DEFAULT_RATE = 1000.0  # events/s: a busy site's clickstream, easy for one local worker
# One tick per max_buffering_duration: on a streaming runner a batch fills
# from about one tick's events before its timer fires.
DEFAULT_TICK = 0.5
DEFAULT_MAX_BUFFERING_DURATION = 0.5  # seconds an event may wait for its batch to fill
# The sink's default max_batch_size (500): DEFAULT_RATE x DEFAULT_TICK fills one request.
DEFAULT_BATCH_SIZE = _cli.DEFAULT_MAX_BATCH_SIZE
# The DirectRunner hands pipelines with processing-time timers (GroupIntoBatches'
# buffering timer) to its bundle-based runner, which cannot run PeriodicImpulse's
# splittable DoFn ("OffsetRestrictionTracker is not done").
UNSUPPORTED_RUNNERS = ("directrunner", "bundlebaseddirectrunner", "switchingdirectrunner", "testdirectrunner")


def make_parser() -> _cli.SampleParser:
    parser = _cli.SampleParser(
        prog="clickstream_streaming.py",
        description=__doc__.split("\n\n")[0] + " Any Beam pipeline option is accepted too.",
    )
    parser.add_argument("--endpoint", default=None, help="a Raccoon endpoint; default: an embedded emulator")
    parser.add_argument("--duration", type=_cli.positive_float, default=DEFAULT_DURATION, help="seconds of events")
    parser.add_argument("--rate", type=_cli.positive_float, default=DEFAULT_RATE, help="events per second")
    parser.add_argument("--tick", type=_cli.positive_float, default=DEFAULT_TICK, help="seconds between source ticks")
    parser.add_argument("--batch-size", type=_cli.positive_int, default=DEFAULT_BATCH_SIZE, help="events per request")
    parser.add_argument(
        "--max-buffering-duration",
        type=_cli.positive_float,
        default=DEFAULT_MAX_BUFFERING_DURATION,
        help="seconds an event may wait for its batch",
    )
    return parser


class MakeEvents(beam.DoFn):
    """One tick -> the block of click events of that tick, each stamped with its creation time."""

    def __init__(self, per_tick: int) -> None:
        self._per_tick = per_tick
        self._created = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "events_created")

    def process(self, fired_at: Any) -> Iterator[Dict[str, Any]]:
        created = time.time()
        base = int(float(fired_at) * 1000) * self._per_tick
        self._created.inc(self._per_tick)
        for i in range(self._per_tick):
            sequence = base + i
            yield {"event_name": EVENT_NAMES[sequence % len(EVENT_NAMES)], "seq": sequence, "created": created}


def event_name(event: Dict[str, Any]) -> str:
    return event["event_name"]


def make_sink(args: argparse.Namespace, endpoint: str) -> WriteToRaccoon:
    return WriteToRaccoon(
        endpoint,
        event_type=event_name,
        max_batch_size=args.batch_size,
        max_buffering_duration=args.max_buffering_duration,
    )


def build(pipeline: beam.Pipeline, args: argparse.Namespace, sink: WriteToRaccoon) -> None:
    start = time.time()
    per_tick = max(1, round(args.rate * args.tick))
    failed = (
        pipeline
        | "Tick" >> PeriodicImpulse(start_timestamp=start, stop_timestamp=start + args.duration, fire_interval=args.tick)
        | "MakeEvents" >> beam.ParDo(MakeEvents(per_tick))
        | "WriteToRaccoon" >> sink
    ).failed
    failed | "PrintDeadLetters" >> beam.Map(print)


def latencies_ms(emulator: RaccoonEmulator) -> List[float]:
    """Creation -> capture latency of every captured event, sorted."""
    return sorted((event.captured_at - orjson.loads(event.event_bytes)["created"]) * 1000 for event in emulator.events())


def summarise(result: PipelineResult, seconds: float, batch_size: int) -> Tuple[List[str], Dict[str, float]]:
    """The summary lines, and the counts they show, from the pipeline's Beam metrics."""

    def sink(name: str) -> int:
        return _cli.counter(result, _cli.SINK_NAMESPACE, name)

    sent = sink("events_sent")
    requests = sink("requests")
    batched, batches = _cli.distribution(result, _cli.SINK_NAMESPACE, "batch_size")
    counts: Dict[str, float] = {
        "created": _cli.counter(result, METRICS_NAMESPACE, "events_created"),
        "sent": sent,
        "acknowledged": sink("events_acknowledged"),
        "dead_lettered": sink("events_dead_lettered"),
        "requests": requests,
        "per_request": sent / requests if requests else 0.0,
        "per_batch": batched / batches if batches else 0.0,
    }
    lines = [
        "clickstream_streaming summary (Beam metrics)",
        f"  events created          {counts['created']:,}",
        f"  acknowledged            {counts['acknowledged']:,}",
        f"  dead-lettered           {counts['dead_lettered']:,}",
        f"  requests                {requests:,}",
        f"  mean events per request {counts['per_request']:,.1f} (max_batch_size {batch_size:,};"
        f" batch_size distribution mean {counts['per_batch']:,.1f})",
        f"  events/s                {counts['acknowledged'] / seconds:,.0f} ({seconds:.1f} s)",
    ]
    return lines, counts


def emulator_lines(emulator: RaccoonEmulator) -> List[str]:
    """What the embedded emulator saw: a cross-check of the metrics, and the latency."""
    captured = emulator.events()
    lines = [f"  captured by the emulator {len(captured):,} events in {len({e.req_guid for e in captured}):,} requests"]
    if captured:
        latency = latencies_ms(emulator)
        p99 = latency[min(len(latency) - 1, int(len(latency) * 0.99))]
        lines.append(f"  creation -> capture latency: p50 {statistics.median(latency):.0f} ms, p99 {p99:.0f} ms")
    return lines


def choose_runner(parser: _cli.SampleParser, options: PipelineOptions) -> Optional[FnApiRunner]:
    """The FnApiRunner when no runner is named; a usage error for one that cannot run this pipeline."""
    name = options.view_as(StandardOptions).runner
    if not name:
        return FnApiRunner()
    if isinstance(name, str) and name.lower() in UNSUPPORTED_RUNNERS + tuple(r[: -len("runner")] for r in UNSUPPORTED_RUNNERS):
        parser.error(
            f"--runner {name} cannot run this streaming pipeline (it cannot run PeriodicImpulse with"
            " GroupIntoBatches' buffering timer); leave --runner out to use the FnApiRunner locally,"
            " or use a streaming runner: DataflowRunner, FlinkRunner"
        )
    return None


def run(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the sample; returns its exit status."""
    parser = make_parser()
    args, beam_args = _cli.parse_args(parser, argv)
    options = _cli.check(parser, "pipeline options", lambda: PipelineOptions(beam_args))
    runner = choose_runner(parser, options)
    if args.endpoint:
        _cli.check(parser, "--endpoint", lambda: make_sink(args, args.endpoint))
    pipeline = _cli.check(parser, "pipeline options", lambda: beam.Pipeline(runner=runner, options=options))
    with _cli.raccoon_endpoint(args.endpoint) as (endpoint, emulator):
        runner_name = type(runner).__name__ if runner is not None else options.view_as(StandardOptions).runner
        print(f"streaming {args.rate:,.0f} events/s for {args.duration:g} s to {endpoint} on {runner_name}", flush=True)
        build(pipeline, args, make_sink(args, endpoint))
        accepted = (lambda: emulator.counters().total_events_accepted) if emulator is not None else None
        started = time.monotonic()
        with _cli.Progress(accepted, label="events accepted by the emulator", interval=1.0, delay=1.0) as progress:

            def run_and_summarise() -> Tuple[List[str], Dict[str, float]]:
                result = pipeline.run()
                progress.watch(result)
                result.wait_until_finish()
                return summarise(result, time.monotonic() - started, args.batch_size)

            try:
                lines, counts = _cli.call_with_deep_stack(run_and_summarise)
            except Exception as exc:
                if runner is not None:
                    raise  # the local runner runs this pipeline: a failure here is a bug to see in full
                last = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
                print(
                    f"{parser.prog}: --runner {runner_name} failed to run this streaming pipeline ({last});"
                    " leave --runner out to run it on the FnApiRunner",
                    file=sys.stderr,
                )
                return 1
        if emulator is not None:
            lines.extend(emulator_lines(emulator))
        print("\n".join(lines))
    return _cli.EXIT_DEAD_LETTERS if counts["dead_lettered"] else 0


if __name__ == "__main__":
    sys.exit(run())
