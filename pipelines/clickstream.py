"""Sample pipeline: a clickstream JSONL file -> Raccoon, dead letters -> JSONL.

Reads ``pipelines/data/clickstream.jsonl`` (3,000 lines: events of several
types, and a few malformed lines), parses each line, routes each event by its
``event_name``, writes the events to Raccoon with ``WriteToRaccoon`` and
writes every record that was not delivered (unparseable lines included) to a
dead-letter JSONL file. At the end it prints a summary read from the
pipeline's Beam metrics, or, on a runner that reports none (Dask), from the
pipeline's own outputs: the dead-letter file and a file of line counts beside
it. Either way it is what the workers did, on any runner.

It uses only transforms that every runner translates, Beam's Dask runner
(2.77) included: the input files are read in a ``FlatMap`` (that runner has
no ``Read``), no ParDo has more than one output (that runner sends every
output to each consumer), and the outputs are written by one ParDo each
after a ``GroupByKey`` (``WriteToText`` reads side inputs, which that runner
computes again, sink included).

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
import json
import pathlib
import sys
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import _cli
import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineResult

from raccoon_beam import WriteToRaccoon
from raccoon_beam.jsonlines import PARSE_STAGE, WriteToOneFile, dead_letter_record, parse_json_object

__all__ = [
    "run",
    "build",
    "summarise",
    "metric_counts",
    "output_counts",
    "ParseClick",
    "PARSED",
    "MALFORMED",
    "WriteToOneFile",
    "read_lines",
    "counts_path",
    "STAGES",
    "METRICS_NAMESPACE",
    "COUNTS_SUFFIX",
]

DATA_FILE = pathlib.Path(__file__).resolve().parent / "data" / "clickstream.jsonl"
TRANSPORTS = ("grpc", "rest", "websocket")
METRICS_NAMESPACE = "clickstream"
# Where a record can be dead-lettered: the sample's own parse stage, then the sink's.
STAGES = ("parse", "serialize", "validate", "send")
DEFAULT_DEAD_LETTERS = "clickstream_dead_letters.jsonl"
# How a line parsed: the first of each ParseClick output, and what the counts file counts.
PARSED = "parsed"
MALFORMED = "malformed"
# The pipeline's count of lines by how they parsed, beside the dead letters:
# where the workers can write and this process can read, on any file system.
COUNTS_SUFFIX = ".counts.jsonl"
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
    parser.add_argument(
        "--max-events-per-second",
        type=_cli.positive_float,
        default=None,
        help="rate limit per worker process, as for a backfill (default: none)",
    )
    parser.add_argument(
        "--dead-letters",
        default=DEFAULT_DEAD_LETTERS,
        help=f"output JSONL file; beside it FILE{COUNTS_SUFFIX}, the lines read by how they parsed",
    )
    return parser


def read_lines(path: str) -> Iterator[str]:
    """The lines of one file, without their line ends (as ``ReadFromText`` reads them), on any file system."""
    with FileSystems.open(path) as handle:
        for raw in handle:
            yield raw.decode("utf-8").removesuffix("\n").removesuffix("\r")


class ParseClick(beam.DoFn):
    """Parses one JSONL line into ``(PARSED, event)`` or ``(MALFORMED, dead-letter record)``.

    One output of plain values: a class of the sample's ``__main__`` could
    not be decoded by workers in other processes, and Beam's Dask runner
    (2.77) would send a second output to every consumer of the first.

    Counts every line it reads and how it ended (Beam counters ``lines_read``,
    ``parsed``, ``malformed``), so that the summary is the pipeline's own count.
    """

    def __init__(self) -> None:
        self._read = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "lines_read")
        self._parsed = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "parsed")
        self._malformed = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "malformed")

    def process(self, line: str) -> Iterator[Tuple[str, Dict[str, Any]]]:
        self._read.inc()
        event, reason = parse_json_object(line)
        if event is None:
            self._malformed.inc()
            yield MALFORMED, {"stage": PARSE_STAGE, "error": reason, "element": line}
            return
        self._parsed.inc()
        yield PARSED, event


def event_name(event: Dict[str, Any]) -> str:
    """Routes an event by its name; the sink dead-letters events where this raises."""
    name = event["event_name"]
    if not isinstance(name, str):
        raise TypeError(f"event_name is {type(name).__name__}, expected a string")
    return name


def only(parsed: Tuple[str, Dict[str, Any]], outcome: str) -> Iterator[Dict[str, Any]]:
    """The value of a :class:`ParseClick` output if it has ``outcome``: one branch of the parse."""
    if parsed[0] == outcome:
        yield parsed[1]


class CountByStage(beam.DoFn):
    """Counts dead letters by stage (Beam counters ``dead_letters_<stage>``) and writes them as JSON."""

    def __init__(self) -> None:
        self._counters = {
            stage: beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"dead_letters_{stage}") for stage in STAGES
        }

    def process(self, record: Dict[str, Any]) -> Iterator[str]:
        self._counters[record["stage"]].inc()
        yield json.dumps(record, default=repr, sort_keys=True)


def counts_path(dead_letters: str) -> str:
    """Where the pipeline writes its line counts: beside ``dead_letters``."""
    return dead_letters + COUNTS_SUFFIX


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
        max_events_per_second=args.max_events_per_second,
    )


def build(pipeline: beam.Pipeline, args: argparse.Namespace, sink: WriteToRaccoon, files: Sequence[str]) -> None:
    """Reads ``files``, writes their events to ``sink``, the dead letters and the line counts to files."""
    parsed = (
        pipeline
        | "Files" >> beam.Create(list(files))
        | "Read" >> beam.FlatMap(read_lines)
        | "Parse" >> beam.ParDo(ParseClick())
    )
    result = parsed | "Events" >> beam.FlatMap(only, PARSED) | "WriteToRaccoon" >> sink
    dead = (
        result.failed | "DeadLetterRecord" >> beam.Map(dead_letter_record),
        parsed | "Malformed" >> beam.FlatMap(only, MALFORMED),
    )
    dead_letters = (
        dead
        | "AllDeadLetters" >> beam.Flatten()
        | "CountByStage" >> beam.ParDo(CountByStage())
        | "WriteDeadLetters" >> WriteToOneFile(args.dead_letters)
    )
    counts = (
        parsed
        | "Outcome" >> beam.MapTuple(lambda outcome, _value: outcome)
        | "CountOutcomes" >> beam.combiners.Count.PerElement()
        | "CountRecord" >> beam.MapTuple(lambda name, n: json.dumps({"outcome": name, "lines": n}))
        | "WriteCounts" >> WriteToOneFile(counts_path(args.dead_letters))
    )
    # Beam's Dask runner (2.77) runs only the last transform of the pipeline
    # and what it reads: both outputs end in it.
    _ = (dead_letters, counts) | "Written" >> beam.Flatten()


def metric_counts(result: PipelineResult) -> Dict[str, int]:
    """The summary's counts from the pipeline's Beam metrics."""

    def mine(name: str) -> int:
        return _cli.counter(result, METRICS_NAMESPACE, name)

    def sink(name: str) -> int:
        return _cli.counter(result, _cli.SINK_NAMESPACE, name)

    return {
        "lines_read": mine("lines_read"),
        "parsed": mine("parsed"),
        "malformed": mine("malformed"),
        "acknowledged": sink("events_acknowledged"),
        "sink_dead_lettered": sink("events_dead_lettered"),
        "sent": sink("events_sent"),
        "requests": sink("requests"),
        **{f"dead_letters_{stage}": mine(f"dead_letters_{stage}") for stage in STAGES},
        **_cli.delivery_metrics(result),
    }


def output_counts(dead_letter_file: str) -> Dict[str, int]:
    """The summary's counts from the pipeline's outputs: its dead letters and its line counts.

    The sink acknowledges or dead-letters every event it is given, so the
    events acknowledged are those into the sink less its dead letters. How
    many requests carried them is known from the metrics only (no ``sent``,
    no ``requests``).
    """
    outcomes = collections.Counter(
        {record["outcome"]: record["lines"] for record in _cli.read_jsonl(counts_path(dead_letter_file))}
    )
    stages = collections.Counter(record["stage"] for record in _cli.read_jsonl(dead_letter_file))
    sink_dead_lettered = sum(stages[stage] for stage in STAGES[1:])
    return {
        "lines_read": outcomes[PARSED] + outcomes[MALFORMED],
        "parsed": outcomes[PARSED],
        "malformed": outcomes[MALFORMED],
        "acknowledged": outcomes[PARSED] - sink_dead_lettered,
        "sink_dead_lettered": sink_dead_lettered,
        **{f"dead_letters_{stage}": stages[stage] for stage in STAGES},
    }


def summarise(
    result: PipelineResult, seconds: float, dead_letter_file: str, topics: Optional[Dict[str, int]] = None
) -> Tuple[List[str], Dict[str, int]]:
    """The summary lines, and the counts they show, all from the pipeline's metrics or outputs.

    From the Beam metrics where the runner reports them, else from the
    pipeline's outputs (:func:`output_counts`); the first line says which.

    Args:
      result: the finished pipeline's result.
      seconds: how long the run took.
      dead_letter_file: the dead-letter output, whose lines are counted.
      topics: events per topic captured by the embedded emulator, if any.
    """
    if _cli.has_metrics(result):
        source, counts = "Beam metrics", metric_counts(result)
    else:
        source = f"this runner reports no metrics: counted from {dead_letter_file} and {counts_path(dead_letter_file)}"
        counts = output_counts(dead_letter_file)
    counts["dead_letter_lines"] = _cli.count_lines(dead_letter_file)
    stages = {stage: counts[f"dead_letters_{stage}"] for stage in STAGES}
    sink_stages = sum(stages[stage] for stage in STAGES[1:])
    sent, requests = counts.get("sent"), counts.get("requests")
    per_request = f"{sent / requests:,.1f} events per request" if sent is not None and requests else ""
    width = max(len(f"{n:,}") for n in counts.values())

    def row(label: str, value: Optional[int], note: str = "") -> str:
        shown = f"{value:>{width},}" if value is not None else f"{'-':>{width}}"
        return f"  {label:<26} {shown}{'  ' + note if note else ''}"

    lines = [
        f"clickstream summary ({source})",
        row("lines read", counts["lines_read"]),
        row("  parsed", counts["parsed"]),
        row("  malformed (stage parse)", counts["malformed"]),
        row("events into the sink", counts["parsed"]),
        row("  acknowledged", counts["acknowledged"]),
        row("  dead-lettered", counts["sink_dead_lettered"]),
        *(row(f"    stage {stage}", stages[stage]) for stage in STAGES[1:]),
        row("dead letters", sum(stages.values()), f"{counts['dead_letter_lines']:,} lines in {dead_letter_file}"),
        row("requests", requests, per_request),
        # How the delivery went, when there is something to tell (retries, throttling, timeouts).
        *(row(f"  {label}", counts[key], note) for key, label, note in _cli.DELIVERY_ROWS if counts.get(key)),
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


def run(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the sample; returns its exit status."""
    parser = make_parser()
    args, beam_args = _cli.parse_args(parser, argv)
    if args.transport == "grpc" and args.wire == "json" and not args.endpoint:
        parser.error("--wire json needs --transport rest or websocket (gRPC is always protobuf)")
    files = _cli.check_input(parser, args.input)
    options = _cli.check(parser, "pipeline options", lambda: PipelineOptions(beam_args))
    if args.endpoint:
        _cli.check(parser, "--endpoint", lambda: make_sink(args, args.endpoint))
    pipeline = _cli.check(parser, "pipeline options", lambda: beam.Pipeline(options=options))
    with _cli.raccoon_endpoint(args.endpoint, args.transport) as (endpoint, emulator):
        print(f"writing {args.input} to {endpoint} ({args.wire} wire, {args.serializer} events)", flush=True)
        sink = make_sink(args, endpoint)
        build(pipeline, args, sink, files)
        # The pipeline writes an output only if it has lines for it: both start
        # empty, so that no file of an earlier run is read as this run's.
        for output in (args.dead_letters, counts_path(args.dead_letters)):
            _cli.create_empty(output)
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
