"""One throughput run: a batch pipeline on the DirectRunner, in a process of its own.

``python -m benchmarks.sink_pipeline --mode sink --endpoint URL ...`` runs

    Create(chunk numbers) | FlatMap(generate events) | <the DoFn or sink under test>

and prints one JSON line: the events, the seconds from the first generated
event to the end of the pipeline, events/s, dead letters, CPU per event,
the peak RSS of the process and the garbage collector's collections (per
generation: how many, and their seconds, over the whole pipeline). :mod:`benchmarks.run` starts one such process
per configuration, so that each run starts cold and its RSS is its own.

Modes (see :mod:`benchmarks.references`):

- ``noop``: :class:`~benchmarks.references.NoOpFn`, the runner and the
  generator alone.
- ``ideal``: :class:`~benchmarks.references.IdealEncodeFn`, the ideal sink
  minus its I/O.
- ``noop-windowed``, ``ideal-windowed``: the same two taking each element's
  ``WindowedValueParam``, as the sink must to keep dead letters in their
  windows (:class:`~benchmarks.references.WindowedNoOpFn`,
  :class:`~benchmarks.references.WindowedIdealEncodeFn`).
- ``ideal-sink``: :class:`~benchmarks.references.IdealGrpcSinkFn` to the
  gRPC endpoint: the ideal sink, the sink's performance reference.
- ``handwritten``: :class:`~benchmarks.references.HandWrittenRaccoonFn` to
  the REST endpoint.
- ``sink``: ``WriteToRaccoon`` to the endpoint.

``--serializer`` picks the generator as well: dicts for ``json`` and
``avro``, ``bench.ClickEvent`` messages for ``protobuf`` (so ``--mode noop
--serializer protobuf`` is the no-op pipeline over the same messages).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from benchmarks import references, workload

__all__ = ["MODES", "run"]

MODES = ("noop", "ideal", "noop-windowed", "ideal-windowed", "ideal-sink", "handwritten", "sink")
# Events per input element: the generator's FlatMap yields this many per
# chunk number, so the input is a few integers and reading is not measured.
DEFAULT_CHUNK = 10_000


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


class _CollectionTimer:
    """Counts and times the garbage collector's collections per generation (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self._started = 0.0

    def __call__(self, phase: str, info: Dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            generation = info["generation"]
            self.collections[generation] += 1
            self.seconds[generation] += time.perf_counter() - self._started

    def __enter__(self) -> "_CollectionTimer":
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        gc.callbacks.remove(self)


def _timed(generate: Callable[[int], Iterator[Any]]) -> Callable[[int], Iterator[Any]]:
    def events_of_chunk(chunk: int) -> Iterator[Any]:
        _Clock.mark()
        return generate(chunk)

    return events_of_chunk


def _count_dead_letter(letter: Any) -> None:
    _Tally.dead_letters += 1
    if _Tally.dead_letters <= 3:
        print(f"dead letter: {letter!r:.300}", file=sys.stderr)


def _apply_sink(
    generated: Any, endpoint: str, wire: str, serializer: str, max_in_flight: Optional[int], adaptive_throttling: bool
) -> None:
    from raccoon_beam import WriteToRaccoon  # only the sink's runs import the package

    extra: Dict[str, Any] = {}
    if serializer == "avro":
        extra["avro_schema"] = workload.AVRO_SCHEMA
    if max_in_flight is not None:
        extra["max_in_flight"] = max_in_flight
    if not adaptive_throttling:
        extra["adaptive_throttling"] = False
    result = generated | "WriteToRaccoon" >> WriteToRaccoon(
        endpoint, event_type=workload.event_type_of(serializer), serializer=serializer, wire=wire, **extra
    )
    result.failed | "CountDeadLetters" >> beam.Map(_count_dead_letter)


def _sink_counters(result: Any) -> Dict[str, float]:
    """The sink's Beam counters of a finished pipeline, by name (committed values)."""
    from apache_beam.metrics.metric import MetricsFilter

    from raccoon_beam.io import METRICS_NAMESPACE

    found = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))["counters"]
    return {counter.key.metric.name: counter.committed for counter in found}


def run(
    mode: str,
    endpoint: str,
    *,
    events: int,
    wire: str = "protobuf",
    serializer: str = "json",
    chunk: int = DEFAULT_CHUNK,
    max_in_flight: Optional[int] = None,
    adaptive_throttling: bool = True,
) -> Dict[str, Any]:
    """Runs one pipeline; returns its measurements.

    Args:
      mode: one of :data:`MODES`.
      endpoint: where ``sink``, ``ideal-sink`` and ``handwritten`` send.
      events: how many events; a multiple of ``chunk``.
      wire: the sink's wire.
      serializer: the sink's serializer, and which generator (dicts or messages).
      chunk: events generated per input element.
      max_in_flight: the sink's ``max_in_flight``, when not its default.
      adaptive_throttling: the sink's ``adaptive_throttling`` (what it costs per request when off).
    """
    if events % chunk:
        raise ValueError(f"events ({events}) must be a multiple of the chunk ({chunk})")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}")
    if mode in ("ideal", "ideal-windowed", "ideal-sink", "handwritten") and serializer != "json":
        raise ValueError(f"mode {mode!r} takes the dict events (serializer json)")

    options = PipelineOptions(["--runner=DirectRunner", "--direct_num_workers=1"])
    started = time.perf_counter()
    with _CollectionTimer() as collections, beam.Pipeline(options=options) as pipeline:
        generated = (
            pipeline
            | "Chunks" >> beam.Create(range(events // chunk))
            | "Generate" >> beam.FlatMap(_timed(workload.generate(serializer, chunk)))
        )
        if mode == "noop":
            generated | "NoOp" >> beam.ParDo(references.NoOpFn())
        elif mode == "ideal":
            generated | "IdealEncode" >> beam.ParDo(references.IdealEncodeFn())
        elif mode == "noop-windowed":
            generated | "WindowedNoOp" >> beam.ParDo(references.WindowedNoOpFn())
        elif mode == "ideal-windowed":
            generated | "WindowedIdealEncode" >> beam.ParDo(references.WindowedIdealEncodeFn())
        elif mode == "ideal-sink":
            generated | "IdealSink" >> beam.ParDo(references.IdealGrpcSinkFn(endpoint))
        elif mode == "handwritten":
            generated | "HandWritten" >> beam.ParDo(references.HandWrittenRaccoonFn(endpoint))
        else:
            _apply_sink(generated, endpoint, wire, serializer, max_in_flight, adaptive_throttling)
    finished = time.perf_counter()
    cpu = time.process_time() - _Clock.first_event_cpu
    counters = _sink_counters(pipeline.result) if mode == "sink" else {}
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
        "gc_collections": collections.collections,
        "gc_seconds": [round(seconds, 4) for seconds in collections.seconds],
        # The sink's counters (retries, cumulativeThrottlingSeconds, ...):
        # a throughput run must never be throttled, nor retry.
        "sink_counters": counters,
    }


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=MODES, default="sink")
    parser.add_argument("--endpoint", default="http://127.0.0.1:1/api/v1/events",
                        help="where sink, ideal-sink (gRPC) and handwritten (REST) send")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--wire", default="protobuf")
    parser.add_argument("--serializer", default="json", choices=("json", "protobuf", "avro"))
    parser.add_argument("--chunk", type=int, default=DEFAULT_CHUNK)
    parser.add_argument("--max-in-flight", type=int)
    parser.add_argument("--no-adaptive-throttling", action="store_true", help="the sink without adaptive throttling")
    args = parser.parse_args(argv)
    result = run(
        args.mode,
        args.endpoint,
        events=args.events,
        wire=args.wire,
        serializer=args.serializer,
        chunk=args.chunk,
        max_in_flight=args.max_in_flight,
        adaptive_throttling=not args.no_adaptive_throttling,
    )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
