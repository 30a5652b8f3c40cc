"""Sample pipeline: a clickstream JSONL file -> Raccoon, dead letters -> JSONL.

Reads ``pipelines/data/clickstream.jsonl`` (a few thousand events of several
types, and a few malformed lines), parses each line, routes each event by its
``event_name``, writes the events to Raccoon with ``WriteToRaccoon`` and
writes every record that was not delivered (unparseable lines included) to a
dead-letter JSONL file. At the end it prints a summary.

With no ``--endpoint`` it starts an embedded Raccoon emulator and writes to
it; with ``--endpoint`` it writes to a real Raccoon::

    python pipelines/clickstream.py                                  # embedded emulator, gRPC
    python pipelines/clickstream.py --transport websocket --wire json
    python pipelines/clickstream.py --endpoint grpc://raccoon.internal:8081

Every other flag is a Beam pipeline option (``--runner``, ``--direct_num_workers``, ...).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import pathlib
import sys
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from raccoon_beam import RaccoonDeadLetter, WriteToRaccoon
from raccoon_beam.emulator import RaccoonEmulator

DATA_FILE = pathlib.Path(__file__).resolve().parent / "data" / "clickstream.jsonl"
TRANSPORTS = ("grpc", "rest", "websocket")
METRICS_NAMESPACE = "clickstream"


def parse_args(argv: Optional[Sequence[str]] = None) -> tuple:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", default=str(DATA_FILE), help="clickstream JSONL file")
    parser.add_argument(
        "--endpoint",
        default=None,
        help="a Raccoon endpoint (grpc://, grpcs://, http(s)://, ws(s)://); default: an embedded emulator",
    )
    parser.add_argument("--transport", choices=TRANSPORTS, default="grpc", help="with the embedded emulator")
    parser.add_argument("--wire", choices=("protobuf", "json"), default="protobuf")
    parser.add_argument("--serializer", choices=("json", "bytes"), default="json")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--dead-letters", default="clickstream_dead_letters.jsonl", help="output JSONL file")
    return parser.parse_known_args(argv)


class ParseClick(beam.DoFn):
    """Parses one JSONL line into an event dict; unparseable lines go to ``malformed``."""

    MALFORMED = "malformed"

    def process(self, line: str) -> Iterator[Any]:
        if not line.strip():
            yield beam.pvalue.TaggedOutput(self.MALFORMED, (line, "blank line"))
            return
        try:
            event = json.loads(line)
        except json.JSONDecodeError as exc:
            yield beam.pvalue.TaggedOutput(self.MALFORMED, (line, f"not JSON: {exc}"))
            return
        if not isinstance(event, dict):
            yield beam.pvalue.TaggedOutput(self.MALFORMED, (line, f"not a JSON object: {type(event).__name__}"))
            return
        yield event


def event_name(event: Dict[str, Any]) -> str:
    """Routes an event by its name; the sink dead-letters events where this raises."""
    name = event["event_name"]
    if not isinstance(name, str):
        raise TypeError(f"event_name is {type(name).__name__}, expected a string")
    return name


def dead_letter_json(letter: RaccoonDeadLetter) -> str:
    return json.dumps(
        {
            "stage": letter.stage,
            "error": letter.error,
            "code": letter.code,
            "event_type": letter.event_type,
            "attempts": letter.attempts,
            "req_guid": letter.req_guid,
            "element": letter.element,
        },
        default=repr,
        sort_keys=True,
    )


def malformed_json(malformed: tuple) -> str:
    line, reason = malformed
    return json.dumps({"stage": "parse", "error": reason, "element": line}, sort_keys=True)


def count(label: str) -> beam.Map:
    counter = beam.metrics.Metrics.counter(METRICS_NAMESPACE, label)

    def inc(value: Any) -> Any:
        counter.inc()
        return value

    return beam.Map(inc)


def build(pipeline: beam.Pipeline, args: argparse.Namespace, endpoint: str) -> None:
    lines = pipeline | "Read" >> beam.io.ReadFromText(args.input)
    parsed = lines | "Parse" >> beam.ParDo(ParseClick()).with_outputs(ParseClick.MALFORMED, main="events")
    serializer: Any = args.serializer
    if args.serializer == "bytes":
        serializer = lambda event: json.dumps(event, sort_keys=True).encode("utf-8")  # noqa: E731
    result = parsed["events"] | "CountParsed" >> count("parsed") | "WriteToRaccoon" >> WriteToRaccoon(
        endpoint,
        event_type=event_name,
        serializer=serializer,
        wire=args.wire,
        max_batch_size=args.batch_size,
    )
    dead = (
        result.failed | "DeadLetterJson" >> beam.Map(dead_letter_json),
        parsed[ParseClick.MALFORMED] | "MalformedJson" >> beam.Map(malformed_json),
    )
    (
        dead
        | "AllDeadLetters" >> beam.Flatten()
        | "CountDead" >> count("dead_lettered")
        | "WriteDeadLetters" >> beam.io.WriteToText(args.dead_letters, num_shards=1, shard_name_template="")
    )


def _counter(result: beam.runners.runner.PipelineResult, namespace: str, name: str) -> int:
    query = result.metrics().query(MetricsFilter().with_namespace(namespace).with_name(name))
    return sum(c.committed or c.attempted or 0 for c in query["counters"])


def summarise(
    result: beam.runners.runner.PipelineResult, seconds: float, topics: Optional[Dict[str, int]]
) -> List[str]:
    sent = _counter(result, "raccoon", "events_sent")
    acknowledged = _counter(result, "raccoon", "events_acknowledged")
    dead = _counter(result, METRICS_NAMESPACE, "dead_lettered")
    lines = [
        "clickstream summary",
        f"  parsed events      {_counter(result, METRICS_NAMESPACE, 'parsed')}",
        f"  sent               {sent}",
        f"  acknowledged       {acknowledged}",
        f"  dead-lettered      {dead}",
        f"  events/s           {acknowledged / seconds:,.0f} ({seconds:.2f} s)",
    ]
    if topics is not None:
        lines.append("  events per topic (captured by the emulator)")
        lines.extend(f"    {topic:<32} {n}" for topic, n in sorted(topics.items()))
    return lines


@contextlib.contextmanager
def raccoon_endpoint(args: argparse.Namespace) -> Iterator[tuple]:
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
    args, beam_args = parse_args(argv)
    if args.transport == "grpc" and args.wire == "json" and not args.endpoint:
        raise SystemExit("--wire json needs --transport rest or websocket (gRPC is always protobuf)")
    with raccoon_endpoint(args) as (endpoint, emulator):
        print(f"writing {args.input} to {endpoint} ({args.wire} wire, {args.serializer} events)")
        started = time.monotonic()
        pipeline = beam.Pipeline(options=PipelineOptions(beam_args))
        build(pipeline, args, endpoint)
        result = pipeline.run()
        result.wait_until_finish()
        seconds = time.monotonic() - started
        topics = None
        if emulator is not None:
            topics = dict(collections.Counter(event.topic for event in emulator.events()))
        print("\n".join(summarise(result, seconds, topics)))
    print(f"dead letters written to {args.dead_letters}")
    return 0


if __name__ == "__main__":
    sys.exit(run())
