"""Sample pipeline: write one partition to Raccoon, then start the next step once all of it is acknowledged.

A backfill writes a partition (a JSONL file of events) and the next step of
the workflow must start only when Raccoon acknowledged every event of it.
With ``acknowledgements=True`` the sink outputs one record per acknowledged
request (``result.acknowledged``); this sample sums their event counts over
the whole partition and compares the sum with the partition's event count.
The next step here is a ``_DONE`` marker file with the counts (what an
orchestrator such as Airflow waits for); it runs after the write has
finished, because it reads the totals as side inputs, and is taken only when
every event was acknowledged (none dead-lettered)::

    python pipelines/partition_done.py --input events.jsonl --done /tmp/events._DONE
    python pipelines/partition_done.py --input events.jsonl --endpoint grpc://raccoon:8081

With no ``--endpoint`` it writes to an embedded Raccoon emulator. Lines that
are not JSON objects with an ``event_name`` are counted, not sent. Exit
status: 0 when the marker was written, 1 when events were dead-lettered (no
marker), 2 for a usage error.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Dict, Iterator, Optional, Sequence

import _cli
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pvalue import AsSingleton, PCollection

from raccoon_beam import RaccoonAck, WriteToRaccoon

__all__ = ["run", "build", "parse_event", "next_step", "DEFAULT_INPUT"]

DEFAULT_INPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "clickstream.jsonl")


def parse_event(line: str) -> Iterator[Dict[str, Any]]:
    """The event of one line: a JSON object with an ``event_name``; nothing for another line."""
    try:
        event = json.loads(line)
    except ValueError:
        return
    if isinstance(event, dict) and isinstance(event.get("event_name"), str):
        yield event


def next_step(_: Any, done: str, *, lines: int, events: int, acknowledged: int, dead_letters: int) -> bool:
    """The step after the write: writes the ``_DONE`` marker if every event was acknowledged.

    Returns:
      Whether it did.
    """
    if acknowledged != events or dead_letters:
        return False
    counts = {"lines": lines, "events": events, "acknowledged": acknowledged}
    with beam.io.filesystems.FileSystems.create(done) as marker:
        marker.write(json.dumps(counts).encode("utf-8") + b"\n")
    return True


def _total(pcoll: PCollection, label: str) -> PCollection:
    """The number of elements of ``pcoll`` (0 when empty), as a one-element PCollection."""
    return pcoll | label >> beam.combiners.Count.Globally()


def build(pipeline: beam.Pipeline, input_path: str, endpoint: str, done: str) -> None:
    """Adds the write and the gated next step to ``pipeline``."""
    lines = pipeline | "Read" >> beam.io.ReadFromText(input_path)
    events = lines | "Parse" >> beam.FlatMap(parse_event)
    result = events | "Write" >> WriteToRaccoon(
        endpoint, event_type=lambda event: event["event_name"], acknowledgements=True
    )
    acknowledged = (
        result.acknowledged
        | "EventsPerAck" >> beam.Map(lambda ack: ack.events).with_input_types(RaccoonAck)
        | "SumAcknowledged" >> beam.CombineGlobally(sum)
    )
    totals = {
        "lines": AsSingleton(_total(lines, "CountLines")),
        "events": AsSingleton(_total(events, "CountEvents")),
        "acknowledged": AsSingleton(acknowledged),
        "dead_letters": AsSingleton(_total(result.failed, "CountDeadLetters")),
    }
    _ = pipeline | "Start" >> beam.Create([None]) | "NextStep" >> beam.Map(next_step, done, **totals)


def run(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the sample; returns its exit status."""
    parser = _cli.SampleParser(
        prog="partition_done.py", description=__doc__.split("\n\n")[0] + " Any Beam pipeline option is accepted too."
    )
    parser.add_argument("--input", default=DEFAULT_INPUT, help="the partition: a JSONL file (a path or glob)")
    parser.add_argument("--done", default="partition._DONE", help="the marker file the next step writes")
    parser.add_argument("--endpoint", default=None, help="a Raccoon endpoint; default: an embedded emulator")
    args, beam_args = _cli.parse_args(parser, argv)
    _cli.check_input(parser, args.input)
    options = _cli.check(parser, "pipeline options", lambda: PipelineOptions(beam_args))
    if os.path.exists(args.done):
        os.remove(args.done)  # a marker of an earlier run must not pass for this one's
    with _cli.raccoon_endpoint(args.endpoint) as (endpoint, _):
        with beam.Pipeline(options=options) as pipeline:
            build(pipeline, args.input, endpoint, args.done)
    if not os.path.exists(args.done):
        print(f"not every event was acknowledged: no {args.done}", file=sys.stderr)
        return _cli.EXIT_DEAD_LETTERS
    print(f"{args.done}: {open(args.done, encoding='utf-8').read().strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(run())
