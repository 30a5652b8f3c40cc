"""One throughput run: a batch pipeline on the DirectRunner, in a process of its own.

``python -m benchmarks.sink_pipeline --mode sink --endpoint URL ...`` runs

    Create(chunk numbers) | FlatMap(generate events) | <the sink under test>

and prints one JSON line: the events, the seconds from the first generated
event to the end of the pipeline, events/s, dead letters, and the peak RSS
of the process. :mod:`benchmarks.run` starts one such process per
configuration, so that each run starts cold and its RSS is its own.

Modes:

- ``sink``: ``WriteToRaccoon`` to the endpoint.
- ``ceiling``: ``WriteToRaccoon`` whose transport acknowledges every request
  at once without sending it (:class:`NullTransport`): the serializer,
  batcher, encoder, dispatcher, retry wrapper and client loop all run as in
  ``sink``; only the socket is missing.
- ``baseline``: :class:`HandWrittenRaccoonFn`, the sink a user would write
  without this package.
- ``floor``: no sink; a DoFn that only JSON-serializes each event (the work
  no sink can skip) and drops it: the cost of the runner, the generator and
  the serializer alone, an upper bound for any sink on this pipeline.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import functools
import json
import resource
import sys
import threading
import time
import uuid
from typing import Any, Dict, Iterator, List, Optional

import apache_beam as beam
import requests
from apache_beam.options.pipeline_options import PipelineOptions
from google.protobuf import json_format

from benchmarks import workload
from raccoon_beam import WriteToRaccoon
from raccoon_beam import io as sink_io
from raccoon_beam._proto import raccoon_pb2
from raccoon_beam.serializers import resolve_serializer
from raccoon_beam.transports import Transport, check_response
from raccoon_beam.delivery import Sender
from raccoon_beam.wire import EncodedRequest

__all__ = ["NullTransport", "HandWrittenRaccoonFn", "run"]

DEFAULT_CHUNK = 10_000


# ------------------------------------------------------------------ the ceiling


class NullTransport(Transport):
    """Acknowledges every request at once, as a server would, without any I/O."""

    async def send(self, request: EncodedRequest) -> raccoon_pb2.SendEventResponse:
        response = raccoon_pb2.SendEventResponse(
            status=raccoon_pb2.STATUS_SUCCESS,
            code=raccoon_pb2.CODE_OK,
            sent_time=int(time.time()),
            data={"req_guid": request.req_guid},
        )
        return check_response(response, request)

    async def close(self) -> None:
        pass


def _install_null_transport() -> None:
    """Makes every ``WriteToRaccoon`` of this process send to a :class:`NullTransport`."""
    sink_io.Sender = functools.partial(Sender, transport_factory=NullTransport)


# ------------------------------------------------------------------ the baseline


class HandWrittenRaccoonFn(beam.DoFn):
    """What a user would write without this package.

    Buffers up to 500 elements per bundle, builds each request with
    protobuf's ``json_format`` helpers, and POSTs it (protobuf wire) with
    ``requests``, one request at a time, on one keep-alive session. Any
    failure fails the bundle: no retry, no dead letters.
    """

    BATCH = 500

    def __init__(self, url: str, event_type_field: str = "event_name") -> None:
        self._url = url
        self._type_field = event_type_field
        self._session = None
        self._buffer: List[Dict[str, Any]] = []

    def setup(self) -> None:
        self._session = requests.Session()
        self._session.headers.update({"Content-Type": "application/proto", "X-User-ID": f"baseline-{uuid.uuid4()}"})

    def start_bundle(self) -> None:
        self._buffer = []

    def process(self, element: Dict[str, Any]) -> None:
        self._buffer.append(element)
        if len(self._buffer) >= self.BATCH:
            self._send()

    def finish_bundle(self) -> None:
        if self._buffer:
            self._send()

    def _send(self) -> None:
        document = {
            "req_guid": str(uuid.uuid4()),
            "sent_time": datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z"),
            "events": [
                {
                    "event_bytes": base64.b64encode(
                        json.dumps(element, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
                    ).decode("ascii"),
                    "type": element[self._type_field],
                }
                for element in self._buffer
            ],
        }
        request = json_format.ParseDict(document, raccoon_pb2.SendEventRequest())
        answer = self._session.post(self._url, data=request.SerializeToString(), timeout=30)
        response = raccoon_pb2.SendEventResponse.FromString(answer.content)
        if answer.status_code != 200 or response.status != raccoon_pb2.STATUS_SUCCESS:
            raise RuntimeError(f"Raccoon answered HTTP {answer.status_code}: {json_format.MessageToJson(response)}")
        self._buffer = []

    def teardown(self) -> None:
        if self._session is not None:
            self._session.close()


# ------------------------------------------------------------------ the floor


class _SerializeOnlyFn(beam.DoFn):
    """Serializes each element as the sink's json serializer does, then drops it."""

    def setup(self) -> None:
        self._serialize = resolve_serializer("json")

    def process(self, element: Any) -> None:
        self._serialize(element)


# ------------------------------------------------------------------ the pipeline


class _Clock:
    """When the first event was generated (the pipeline's set-up is not timed)."""

    lock = threading.Lock()
    first_event: Optional[float] = None
    first_event_cpu: float = 0.0

    @classmethod
    def mark(cls) -> None:
        if cls.first_event is None:
            with cls.lock:
                if cls.first_event is None:
                    cls.first_event_cpu = time.process_time()
                    cls.first_event = time.perf_counter()


class _Tally:
    dead_letters = 0


def _timed(generate):
    def events_of_chunk(chunk: int) -> Iterator[Any]:
        _Clock.mark()
        return generate(chunk)

    return events_of_chunk


def _count_dead_letter(letter: Any) -> None:
    _Tally.dead_letters += 1
    if _Tally.dead_letters <= 3:
        print(f"dead letter: {letter!r:.300}", file=sys.stderr)


def run(
    mode: str,
    endpoint: str,
    *,
    events: int,
    wire: str = "protobuf",
    serializer: str = "json",
    chunk: int = DEFAULT_CHUNK,
    max_in_flight: Optional[int] = None,
) -> Dict[str, Any]:
    """Runs one pipeline; returns its measurements."""
    if events % chunk:
        raise ValueError(f"events ({events}) must be a multiple of the chunk ({chunk})")
    if mode == "ceiling":
        _install_null_transport()

    options = PipelineOptions(["--runner=DirectRunner", "--direct_num_workers=1"])
    started = time.perf_counter()
    with beam.Pipeline(options=options) as pipeline:
        generated = (
            pipeline
            | "Chunks" >> beam.Create(range(events // chunk))
            | "Generate" >> beam.FlatMap(_timed(workload.generate(serializer, chunk)))
        )
        if mode == "baseline":
            generated | "HandWritten" >> beam.ParDo(HandWrittenRaccoonFn(endpoint))
        elif mode == "floor":
            generated | "SerializeOnly" >> beam.ParDo(_SerializeOnlyFn())
        else:
            extra: Dict[str, Any] = {}
            if serializer == "avro":
                extra["avro_schema"] = workload.AVRO_SCHEMA
            if max_in_flight is not None:
                extra["max_in_flight"] = max_in_flight
            result = generated | "WriteToRaccoon" >> WriteToRaccoon(
                endpoint,
                event_type=workload.event_type_of(serializer),
                serializer=serializer,
                wire=wire,
                **extra,
            )
            result.failed | "CountDeadLetters" >> beam.Map(_count_dead_letter)
    finished = time.perf_counter()
    cpu = time.process_time() - _Clock.first_event_cpu
    assert _Clock.first_event is not None
    seconds = finished - _Clock.first_event
    return {
        "mode": mode,
        "events": events,
        "wire": wire,
        "serializer": serializer,
        "seconds": seconds,
        "pipeline_seconds": finished - started,
        "events_per_second": events / seconds,
        "dead_letters": _Tally.dead_letters,
        # CPU of the whole process (every thread) over the same span.
        "cpu_us_per_event": cpu / events * 1e6,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("sink", "ceiling", "baseline", "floor"), default="sink")
    parser.add_argument("--endpoint", default="http://127.0.0.1:1/api/v1/events", help="unused by ceiling and floor")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--wire", default="protobuf")
    parser.add_argument("--serializer", default="json", choices=("json", "protobuf", "avro"))
    parser.add_argument("--chunk", type=int, default=DEFAULT_CHUNK)
    parser.add_argument("--max-in-flight", type=int)
    args = parser.parse_args(argv)
    result = run(
        args.mode,
        args.endpoint,
        events=args.events,
        wire=args.wire,
        serializer=args.serializer,
        chunk=args.chunk,
        max_in_flight=args.max_in_flight,
    )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
