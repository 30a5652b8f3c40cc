"""Where the bundle's thread spends its CPU: the sink against the ideal sink, part by part.

``python -m benchmarks.bundle_thread`` calls both DoFns directly (no
runner): ``process`` for each of 200,000 prebuilt elements, then
``finish_bundle``, against an emulator process over gRPC, and prints the
CPU time of the calling thread per event. Both sinks are CPU-bound on this
thread in a pipeline, so this is where a gap between them comes from.

- In all: ``--passes`` passes of each, in alternating order, nothing
  wrapped.
- By part: as many passes again with the methods of :data:`SINK_PARTS` and
  :data:`IDEAL_PARTS` wrapped to time each call (none of them calls
  another), less the cost of reading the clock once per call; ``other`` is
  what the parts leave of the total (``process`` itself, chunking,
  dispatch, the ideal sink's grpcio call).

Like :mod:`benchmarks.sink_micro`, it reaches into the package's
internals: a breakdown, not a reference.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import time
import timeit
from typing import Any, Dict, List, Optional, Sequence, Tuple

from benchmarks import references, workload

__all__ = ["SINK_PARTS", "IDEAL_PARTS", "measure", "main"]

SINK, IDEAL = "sink", "ideal sink"
# (label, module, class that defines the method, method) of the parts timed; no part calls another.
SINK_PARTS: List[Tuple[str, str, str, str]] = [
    ("events built: serializer, event_type, checks", "raccoon_beam.events", "EventBuilder", "build_many"),
    ("window check", "raccoon_beam.io", "_WriteEventsFn", "_share_windowing"),
    ("a batch encoded, its call begun", "raccoon_beam.delivery.sender", "Sender", "deliver"),
    ("finished batches handed out, metrics", "raccoon_beam.io", "_SendingFn", "_ready_dead_letters"),
]
IDEAL_PARTS: List[Tuple[str, str, str, str]] = [
    ("the request built", "benchmarks.references", "IdealEncodeFn", "_request"),
    ("an answer awaited and checked", "benchmarks.references", "IdealGrpcSinkFn", "_wait_oldest"),
]


class _Timed:
    """Thread CPU and calls of one wrapped method."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0


def _wrapped(stack: contextlib.ExitStack, module: str, cls: str, method: str) -> _Timed:
    """Wraps ``module.cls.method`` to time its calls, until ``stack`` closes."""
    owner = getattr(importlib.import_module(module), cls)
    if method not in vars(owner):
        raise ValueError(f"{module}.{cls} does not define {method}: name the class that does")
    original = vars(owner)[method]
    timed = _Timed()
    clock = time.thread_time

    def timing(*args: Any, **kwargs: Any) -> Any:
        started = clock()
        try:
            return original(*args, **kwargs)
        finally:
            timed.seconds += clock() - started
            timed.calls += 1

    setattr(owner, method, timing)
    stack.callback(setattr, owner, method, original)
    return timed


def _clock_cost() -> float:
    """Seconds one ``time.thread_time()`` call adds to an interval it ends."""
    return min(timeit.repeat(time.thread_time, number=10_000, repeat=5)) / 10_000


def _run_passes(fns: Dict[str, Any], elements: List[Any], passes: int) -> Dict[str, float]:
    """Thread CPU seconds of ``passes`` bundles of ``elements`` through each DoFn, in alternating order."""
    spent = {name: 0.0 for name in fns}
    order = list(fns)
    for number in range(passes):
        for name in order if number % 2 == 0 else order[::-1]:
            fn = fns[name]
            fn.start_bundle()
            started = time.thread_time()
            for windowed in elements:
                fn.process(windowed.value, windowed)
            list(fn.finish_bundle() or ())
            spent[name] += time.thread_time() - started
    return spent


def measure(events: int = 200_000, passes: int = 6) -> Dict[str, Dict[str, float]]:
    """Nanoseconds of the calling thread's CPU per event, per DoFn: ``total``, each part, and ``other``."""
    from apache_beam.transforms.window import GlobalWindow
    from apache_beam.utils.timestamp import MIN_TIMESTAMP
    from apache_beam.utils.windowed_value import WindowedValue

    from raccoon_beam import WriteToRaccoon
    from raccoon_beam import io as sink_io
    from raccoon_beam.emulator.process import EmulatorProcess

    windows = (GlobalWindow(),)
    elements = [WindowedValue(e, MIN_TIMESTAMP, windows) for e in workload.generate("json", events)(0)]
    per_event = 1e9 / (events * passes)
    with EmulatorProcess() as emulator, contextlib.ExitStack() as teardown:
        endpoint = emulator.grpc_endpoint
        options = WriteToRaccoon(endpoint, event_type=workload.event_type_of("json"), serializer="json").options
        fns: Dict[str, Any] = {SINK: sink_io._WriteEventsFn(options), IDEAL: references.IdealGrpcSinkFn(endpoint)}
        for fn in fns.values():
            fn.setup()
            teardown.callback(fn.teardown)
        totals = _run_passes(fns, elements, passes)
        with contextlib.ExitStack() as wrapping:
            parts = {
                name: {label: _wrapped(wrapping, *where) for label, *where in table}
                for name, table in ((SINK, SINK_PARTS), (IDEAL, IDEAL_PARTS))
            }
            _run_passes(fns, elements, passes)
    cost = _clock_cost()
    result: Dict[str, Dict[str, float]] = {}
    for name, timed_parts in parts.items():
        row = {"total": totals[name] * per_event}
        for label, timed in timed_parts.items():
            row[label] = max(0.0, timed.seconds - timed.calls * cost) * per_event
        row["other"] = row["total"] - sum(value for label, value in row.items() if label != "total")
        result[name] = row
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--passes", type=int, default=6)
    args = parser.parse_args(argv)
    if args.events <= 0 or args.passes <= 0:
        parser.error("--events and --passes must be positive")
    for name, row in measure(args.events, args.passes).items():
        for label, nanoseconds in row.items():
            print(f"{name + ': ' + label:55s} {nanoseconds:7.0f} ns/event")
    return 0


if __name__ == "__main__":
    sys.exit(main())
