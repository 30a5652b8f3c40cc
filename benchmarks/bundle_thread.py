"""Where the bundle's thread spends its CPU: the sink against the ideal sink, part by part.

``python -m benchmarks.bundle_thread`` calls both DoFns directly (no
runner), ``process`` for each of 200,000 prebuilt elements and then
``finish_bundle``, alternately for ``--passes`` passes each, against an
emulator process over gRPC, and prints the CPU time of the calling thread
per event: in all, and in the parts named in :data:`SINK_PARTS` and
:data:`IDEAL_PARTS` (each part timed by wrapping its method; the parts
nest, so they do not add up). Both sinks are CPU-bound on this thread in a
pipeline, so this is where a gap between them comes from. Like
:mod:`benchmarks.sink_micro`, it reaches into the package's internals: a
breakdown, not a reference.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from benchmarks import references, workload

__all__ = ["SINK_PARTS", "IDEAL_PARTS", "measure", "main"]

# (label, module, class, method) of the parts timed.
SINK_PARTS: List[Tuple[str, str, str, str]] = [
    ("sink: a chunk built, batched and sent", "raccoon_beam.io", "_WriteEventsFn", "_add_chunk"),
    ("sink:   events built (serializer, type, checks)", "raccoon_beam.events", "EventBuilder", "build_many"),
    ("sink:   window check", "raccoon_beam.io", "_WriteEventsFn", "_share_windowing"),
    ("sink:   a batch encoded and sent", "raccoon_beam.delivery.bundle", "BundleWriter", "_start"),
    ("sink: finished batches handed out", "raccoon_beam.io", "_SendingFn", "_ready_dead_letters"),
]
IDEAL_PARTS: List[Tuple[str, str, str, str]] = [
    ("ideal: a batch encoded and sent", "benchmarks.references", "IdealGrpcSinkFn", "_encode"),
    ("ideal:   the request built", "benchmarks.references", "IdealEncodeFn", "_request"),
]


def _wrap(owner: Any, name: str, totals: Dict[str, float], label: str) -> Callable[[], None]:
    """Adds the thread CPU of every call of ``owner.name`` to ``totals[label]``; returns the undo."""
    original = owner.__dict__[name]
    clock = time.thread_time

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = clock()
        try:
            return original(*args, **kwargs)
        finally:
            totals[label] += clock() - started

    setattr(owner, name, timed)
    return lambda: setattr(owner, name, original)


def measure(events: int = 200_000, passes: int = 6) -> Dict[str, float]:
    """Nanoseconds of the calling thread's CPU per event, in all (``ideal sink``, ``sink``) and per part."""
    import importlib

    from apache_beam.transforms.window import GlobalWindow
    from apache_beam.utils.timestamp import MIN_TIMESTAMP
    from apache_beam.utils.windowed_value import WindowedValue

    from raccoon_beam import WriteToRaccoon
    from raccoon_beam import io as sink_io
    from raccoon_beam.emulator.process import EmulatorProcess

    totals: Dict[str, float] = {"ideal sink": 0.0, "sink": 0.0}
    undo = []
    for label, module, cls, method in SINK_PARTS + IDEAL_PARTS:
        totals[label] = 0.0
        undo.append(_wrap(getattr(importlib.import_module(module), cls), method, totals, label))
    windows = (GlobalWindow(),)
    elements = [WindowedValue(e, MIN_TIMESTAMP, windows) for e in workload.generate("json", events)(0)]
    try:
        with EmulatorProcess() as emulator:
            endpoint = emulator.grpc_endpoint
            sink = sink_io._WriteEventsFn(
                WriteToRaccoon(endpoint, event_type=workload.event_type_of("json"), serializer="json").options
            )
            ideal = references.IdealGrpcSinkFn(endpoint)
            sink.setup()
            ideal.setup()
            try:
                for _ in range(passes):
                    for name, fn in (("ideal sink", ideal), ("sink", sink)):
                        fn.start_bundle()
                        started = time.thread_time()
                        for windowed in elements:
                            fn.process(windowed.value, windowed)
                        list(fn.finish_bundle() or ())
                        totals[name] += time.thread_time() - started
            finally:
                sink.teardown()
                ideal.teardown()
    finally:
        for restore in undo:
            restore()
    return {label: seconds / (events * passes) * 1e9 for label, seconds in totals.items()}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--passes", type=int, default=6)
    args = parser.parse_args(argv)
    for label, nanoseconds in measure(args.events, args.passes).items():
        print(f"{label:50s} {nanoseconds:7.0f} ns/event")
    return 0


if __name__ == "__main__":
    sys.exit(main())
