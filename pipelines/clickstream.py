"""Sample pipeline: a clickstream JSONL file -> Raccoon, dead letters -> JSONL.

Reads ``pipelines/data/clickstream.jsonl`` (3,000 lines: events of several
types, and a few malformed lines), parses each line, routes each event by its
``event_name``, writes the events to Raccoon with ``WriteToRaccoon`` and
writes every record that was not delivered (unparseable lines included) to a
dead-letter JSONL file. At the end it prints a summary read from the
pipeline's Beam metrics, so that it is right on any runner.

With no ``--endpoint`` it starts an embedded Raccoon emulator and writes to
it; with ``--endpoint`` it writes to a real Raccoon::

    python pipelines/clickstream.py                                  # embedded emulator, gRPC
    python pipelines/clickstream.py --transport websocket --wire json
    python pipelines/clickstream.py --endpoint grpc://raccoon.internal:8081

Every other flag must be a Beam pipeline option (``--runner``,
``--direct_num_workers``, ...). Exit status: 0 when every event that parsed
was acknowledged or dead-lettered before sending (serialize, validate), 1
when events were dead-lettered at stage ``send`` (the server did not take
them), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import pathlib
import sys
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import _cli
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineResult

from raccoon_beam import RaccoonDeadLetter, WriteToRaccoon
from raccoon_beam.emulator import RaccoonEmulator

__all__ = ["run", "build", "summarise", "ParseClick", "STAGES", "METRICS_NAMESPACE"]

DATA_FILE = pathlib.Path(__file__).resolve().parent / "data" / "clickstream.jsonl"
TRANSPORTS = ("grpc", "rest", "websocket")
METRICS_NAMESPACE = "clickstream"
# Where a record can be dead-lettered: the sample's own parse stage, then the sink's.
STAGES = ("parse", "serialize", "validate", "send")
DEFAULT_DEAD_LETTERS = "clickstream_dead_letters.jsonl"
# Batch runs are short; a line every few seconds says a slow one is alive.
PROGRESS_INTERVAL = 5.0


def make_parser() -> _cli.SampleParser:
    parser = _cli.SampleParser(
        prog="clickstream.py",
        description=__doc__.split("\n\n")[0] + " Any Beam pipeline option is accepted too.",
    )
    parser.add_argument("--input", default=str(DATA_FILE), help="clickstream JSONL file (a path or glob)")
    parser.add_argument(
        "--endpoint",
        default=None,
        help="a Raccoon endpoint (grpc://, grpcs://, http(s)://, ws(s)://); default: an embedded emulator",
    )
    parser.add_argument("--transport", choices=TRANSPORTS, default="grpc", help="with the embedded emulator")
    parser.add_argument("--wire", choices=("protobuf", "json"), default="protobuf")
    parser.add_argument("--serializer", choices=("json", "bytes"), default="json")
    parser.add_argument("--batch-size", type=_cli.positive_int, default=_cli.DEFAULT_MAX_BATCH_SIZE, help="events per request")
    parser.add_argument(
        "--max-event-bytes", type=_cli.positive_int, default=None, help="larger events are dead-lettered (validate)"
    )
    parser.add_argument("--dead-letters", default=DEFAULT_DEAD_LETTERS, help="output JSONL file")
    return parser


class ParseClick(beam.DoFn):
    """Parses one JSONL line into an event dict; unparseable lines go to ``malformed``.

    Counts every line it reads and how it ended (Beam counters ``lines_read``,
    ``parsed``, ``malformed``), so that the summary is the pipeline's own count.
    """

    MALFORMED = "malformed"

    def __init__(self) -> None:
        self._read = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "lines_read")
        self._parsed = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "parsed")
        self._malformed = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "malformed")

    def process(self, line: str) -> Iterator[Any]:
        self._read.inc()
        reason = None
        event: Any = None
        if not line.strip():
            reason = "blank line"
        else:
            try:
                event = json.loads(line)
            except json.JSONDecodeError as exc:
                reason = f"not JSON: {exc}"
            else:
                if not isinstance(event, dict):
                    reason = f"not a JSON object: {type(event).__name__}"
        if reason is not None:
            self._malformed.inc()
            yield beam.pvalue.TaggedOutput(self.MALFORMED, (line, reason))
            return
        self._parsed.inc()
        yield event


def event_name(event: Dict[str, Any]) -> str:
    """Routes an event by its name; the sink dead-letters events where this raises."""
    name = event["event_name"]
    if not isinstance(name, str):
        raise TypeError(f"event_name is {type(name).__name__}, expected a string")
    return name


def dead_letter_record(letter: RaccoonDeadLetter) -> Dict[str, Any]:
    return {
        "stage": letter.stage,
        "error": letter.error,
        "code": letter.code,
        "event_type": letter.event_type,
        "attempts": letter.attempts,
        "req_guid": letter.req_guid,
        "element": letter.element,
    }


def malformed_record(malformed: Tuple[str, str]) -> Dict[str, Any]:
    line, reason = malformed
    return {"stage": "parse", "error": reason, "element": line}


class CountByStage(beam.DoFn):
    """Counts dead letters by stage (Beam counters ``dead_letters_<stage>``) and writes them as JSON."""

    def __init__(self) -> None:
        self._counters = {
            stage: beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"dead_letters_{stage}") for stage in STAGES
        }

    def process(self, record: Dict[str, Any]) -> Iterator[str]:
        self._counters[record["stage"]].inc()
        yield json.dumps(record, default=repr, sort_keys=True)


def make_sink(args: argparse.Namespace, endpoint: str) -> WriteToRaccoon:
    serializer: Any = args.serializer
    if args.serializer == "bytes":
        serializer = lambda event: json.dumps(event, sort_keys=True).encode("utf-8")  # noqa: E731
    return WriteToRaccoon(
        endpoint,
        event_type=event_name,
        serializer=serializer,
        wire=args.wire,
        max_batch_size=args.batch_size,
        max_event_bytes=args.max_event_bytes,
    )


def build(pipeline: beam.Pipeline, args: argparse.Namespace, sink: WriteToRaccoon) -> None:
    lines = pipeline | "Read" >> beam.io.ReadFromText(args.input)
    parsed = lines | "Parse" >> beam.ParDo(ParseClick()).with_outputs(ParseClick.MALFORMED, main="events")
    result = parsed["events"] | "WriteToRaccoon" >> sink
    dead = (
        result.failed | "DeadLetterRecord" >> beam.Map(dead_letter_record),
        parsed[ParseClick.MALFORMED] | "MalformedRecord" >> beam.Map(malformed_record),
    )
    (
        dead
        | "AllDeadLetters" >> beam.Flatten()
        | "CountByStage" >> beam.ParDo(CountByStage())
        | "WriteDeadLetters" >> beam.io.WriteToText(args.dead_letters, num_shards=1, shard_name_template="")
    )


def summarise(
    result: PipelineResult, seconds: float, dead_letter_file: str, topics: Optional[Dict[str, int]] = None
) -> Tuple[List[str], Dict[str, int]]:
    """The summary lines, and the counts they show, all from the pipeline's metrics and outputs.

    Args:
      result: the finished pipeline's result.
      seconds: how long the run took.
      dead_letter_file: the dead-letter output, whose lines are counted.
      topics: events per topic captured by the embedded emulator, if any.
    """

    def mine(name: str) -> int:
        return _cli.counter(result, METRICS_NAMESPACE, name)

    def sink(name: str) -> int:
        return _cli.counter(result, _cli.SINK_NAMESPACE, name)

    stages = {stage: mine(f"dead_letters_{stage}") for stage in STAGES}
    counts = {
        "lines_read": mine("lines_read"),
        "parsed": mine("parsed"),
        "malformed": mine("malformed"),
        "acknowledged": sink("events_acknowledged"),
        "sink_dead_lettered": sink("events_dead_lettered"),
        "sent": sink("events_sent"),
        "requests": sink("requests"),
        "dead_letter_lines": _cli.count_lines(dead_letter_file),
        **{f"dead_letters_{stage}": n for stage, n in stages.items()},
    }
    sink_stages = sum(stages[stage] for stage in STAGES[1:])
    per_request = f"{counts['sent'] / counts['requests']:,.1f}" if counts["requests"] else "-"
    width = max(len(f"{n:,}") for n in counts.values())

    def row(label: str, value: int, note: str = "") -> str:
        return f"  {label:<26} {value:>{width},}{'  ' + note if note else ''}"

    lines = [
        "clickstream summary (Beam metrics)",
        row("lines read", counts["lines_read"]),
        row("  parsed", counts["parsed"]),
        row("  malformed (stage parse)", counts["malformed"]),
        row("events into the sink", counts["parsed"]),
        row("  acknowledged", counts["acknowledged"]),
        row("  dead-lettered", counts["sink_dead_lettered"]),
        *(row(f"    stage {stage}", stages[stage]) for stage in STAGES[1:]),
        row("dead letters", sum(stages.values()), f"{counts['dead_letter_lines']:,} lines in {dead_letter_file}"),
        row("requests", counts["requests"], f"{per_request} events per request"),
        f"  {'events/s':<26} {counts['acknowledged'] / seconds:>{width},.0f}  ({seconds:.2f} s)",
    ]
    # The totals must agree; if a runner lost a metric update, say so rather than print numbers that do not add up.
    checks = [
        (counts["parsed"] + counts["malformed"] == counts["lines_read"], "parsed + malformed != lines read"),
        (
            counts["acknowledged"] + sink_stages == counts["parsed"],
            "acknowledged + dead-lettered != events into the sink",
        ),
        (sink_stages == counts["sink_dead_lettered"], "dead letters by stage != the sink's dead-letter count"),
        (counts["malformed"] == stages["parse"], "malformed lines != dead letters of stage parse"),
        (counts["dead_letter_lines"] == sum(stages.values()), "dead-letter file lines != dead letters counted"),
    ]
    lines.extend(f"  WARNING: {message}" for ok, message in checks if not ok)
    if topics is not None:
        lines.append("  events per topic (captured by the emulator)")
        lines.extend(f"    {topic:<32} {n:,}" for topic, n in sorted(topics.items()))
    return lines, counts


@contextlib.contextmanager
def raccoon_endpoint(args: argparse.Namespace) -> Iterator[Tuple[str, Optional[RaccoonEmulator]]]:
    """Yields ``(endpoint, emulator or None)``: the given endpoint, or an embedded emulator's."""
    if args.endpoint:
        yield args.endpoint, None
        return
    with RaccoonEmulator() as emulator:
        endpoints = {
            "grpc": emulator.grpc_endpoint,
            "rest": emulator.rest_endpoint,
            "websocket": emulator.ws_endpoint,
        }
        yield endpoints[args.transport], emulator


def run(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the sample; returns its exit status."""
    parser = make_parser()
    args, beam_args = _cli.parse_args(parser, argv)
    if args.transport == "grpc" and args.wire == "json" and not args.endpoint:
        parser.error("--wire json needs --transport rest or websocket (gRPC is always protobuf)")
    _cli.check_input(parser, args.input)
    options = _cli.check(parser, "pipeline options", lambda: PipelineOptions(beam_args))
    if args.endpoint:
        _cli.check(parser, "--endpoint", lambda: make_sink(args, args.endpoint))
    pipeline = _cli.check(parser, "pipeline options", lambda: beam.Pipeline(options=options))
    with raccoon_endpoint(args) as (endpoint, emulator):
        print(f"writing {args.input} to {endpoint} ({args.wire} wire, {args.serializer} events)", flush=True)
        sink = make_sink(args, endpoint)
        build(pipeline, args, sink)
        accepted = (lambda: emulator.counters().total_events_accepted) if emulator is not None else None
        started = time.monotonic()
        with _cli.Progress(accepted, label="events accepted by the emulator", interval=PROGRESS_INTERVAL) as progress:
            result = pipeline.run()
            progress.watch(result)
            result.wait_until_finish()
        seconds = time.monotonic() - started
        topics = None
        if emulator is not None:
            topics = dict(collections.Counter(event.topic for event in emulator.events()))
        lines, counts = summarise(result, seconds, args.dead_letters, topics)
        print("\n".join(lines))
    return _cli.EXIT_DEAD_LETTERS if counts["dead_letters_send"] else 0


if __name__ == "__main__":
    sys.exit(run())
