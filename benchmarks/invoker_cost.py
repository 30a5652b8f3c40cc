"""What Beam charges a DoFn that needs its elements' windows: ``python -m benchmarks.invoker_cost``.

A sink with dead letters must put each undelivered element back in its own
window with its own timestamp, so its ``process`` takes
``beam.DoFn.WindowedValueParam``. Any DoFn parameter moves Beam from its
simple invoker to the per-window one, which costs per element whatever the
DoFn does. This measures, in one process and one run (round-robin, best of
``--rounds``), on the same generator as :mod:`benchmarks.run`:

- the no-op DoFn and the ideal encode-only DoFn of :mod:`benchmarks.references`;
- the same two DoFns taking ``WindowedValueParam`` (and ignoring it).

The ratio of the windowed no-op DoFn to the plain ideal one is the most any
sink that keeps its elements' windows can reach against that reference.

With ``--sink`` it also runs, to gRPC on the emulator in its own process:

- ``WriteToRaccoon`` as it is;
- an experiment, never shipped: the sink's own DoFn with a ``process`` that
  takes no parameter, so that Beam runs it through the simple invoker. It
  puts every element in the global window at the minimum timestamp (so its
  dead letters would lose their windows: the contract it breaks) and
  otherwise runs the sink's code unchanged (one WindowedValue copied per
  element, 0.1 us, is its only cost beyond the shipped sink's). The
  difference between the two is what the window contract costs the sink,
  measured rather than estimated.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any, Callable, Dict, List, Optional

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from benchmarks import workload
from benchmarks.references import IdealEncodeFn, NoOpFn, WindowedIdealEncodeFn, WindowedNoOpFn

__all__ = ["CONFIGS", "measure", "main"]

DEFAULT_EVENTS = 1_000_000
DEFAULT_ROUNDS = 3
_CHUNK = 10_000


CONFIGS: Dict[str, Callable[[], beam.DoFn]] = {
    "no-op DoFn": NoOpFn,
    "no-op DoFn + WindowedValueParam": WindowedNoOpFn,
    "ideal encode-only DoFn": IdealEncodeFn,
    "ideal encode-only DoFn + WindowedValueParam": WindowedIdealEncodeFn,
}


SINK = "WriteToRaccoon (gRPC)"
UNWINDOWED_SINK = "WriteToRaccoon's DoFn without WindowedValueParam (experiment)"


def measure(make_fn: Callable[[], beam.DoFn], events: int) -> float:
    """events/s of ``generator | ParDo(make_fn())`` on the DirectRunner with one worker."""
    return _measure(lambda generated: generated | beam.ParDo(make_fn()), events)


def _measure(apply: Callable[[Any], Any], events: int) -> float:
    options = PipelineOptions(["--runner=DirectRunner", "--direct_num_workers=1"])
    started = time.perf_counter()
    with beam.Pipeline(options=options) as pipeline:
        apply(
            pipeline
            | beam.Create(list(range(events // _CHUNK)))
            | beam.FlatMap(workload.generate("json", _CHUNK))
        )
    return events / (time.perf_counter() - started)


def _sink_configs(endpoint: str) -> Dict[str, Callable[[Any], Any]]:
    """The sink, and the sink's DoFn run through Beam's simple invoker (see the module's docstring)."""
    from apache_beam.transforms.window import GlobalWindow
    from apache_beam.utils.timestamp import MIN_TIMESTAMP
    from apache_beam.utils.windowed_value import WindowedValue

    from raccoon_beam import WriteToRaccoon
    from raccoon_beam import io as sink_io

    def transform() -> WriteToRaccoon:
        return WriteToRaccoon(endpoint, event_type=workload.event_type_of("json"))

    # with_value: building a WindowedValue from a Timestamp costs 0.6 us, copying one 0.1 us.
    in_global_window = WindowedValue(None, MIN_TIMESTAMP, (GlobalWindow(),)).with_value

    class UnwindowedWriteEventsFn(sink_io._WriteEventsFn):
        # _WriteEventsFn.process but for where the WindowedValue comes from.
        def process(self, element: Any) -> Any:  # type: ignore[override]  # no parameter: the simple invoker
            chunk = self._chunk
            chunk.append(in_global_window(element))
            if len(chunk) >= self._chunk_limit:
                return self._add_full_chunk(chunk[-1])
            return None

    def unwindowed(generated: Any) -> Any:
        options = transform().options.for_element_type(generated.element_type)
        return generated | beam.ParDo(UnwindowedWriteEventsFn(options)).with_outputs(
            sink_io.FAILED_TAG, main="unused"
        )

    return {SINK: lambda generated: generated | transform(), UNWINDOWED_SINK: unwindowed}


def main(argv: Any = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS)
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--sink", action="store_true", help="also the sink, with and without its window parameter")
    args = parser.parse_args(argv)
    if args.sink:
        from raccoon_beam.emulator.process import EmulatorProcess

        with EmulatorProcess() as emulator:
            return _report(args.events, args.rounds, _sink_configs(emulator.grpc_endpoint))
    return _report(args.events, args.rounds, None)


def _report(events: int, rounds_count: int, sinks: Optional[Dict[str, Callable[[Any], Any]]]) -> int:
    configs: Dict[str, Callable[[], float]] = {
        name: (lambda make=make: measure(make, events)) for name, make in CONFIGS.items()
    }
    for name, apply in (sinks or {}).items():
        configs[name] = lambda apply=apply: _measure(apply, events)
    best: Dict[str, float] = {}
    rounds: List[Dict[str, float]] = []
    for _ in range(rounds_count):
        rate = {name: run() for name, run in configs.items()}
        rounds.append(rate)
        for name, value in rate.items():
            best[name] = max(best.get(name, 0.0), value)
    noop, ideal = best["no-op DoFn"], best["ideal encode-only DoFn"]
    print(f"| DoFn ({events:,} events, best of {rounds_count}) | events/s | x no-op | x ideal | us/event |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, value in best.items():
        print(f"| {name} | {value:,.0f} | {value / noop:.2f} | {value / ideal:.2f} | {1e6 / value:.2f} |")
    per_round = sorted(r["no-op DoFn + WindowedValueParam"] / r["ideal encode-only DoFn"] for r in rounds)
    print(f"windowed no-op / ideal per round: {', '.join(f'{x:.2f}' for x in per_round)}")
    for name in sinks or {}:
        for reference in ("no-op DoFn", "ideal encode-only DoFn"):
            ratios = [r[name] / r[reference] for r in rounds]
            print(f"{name} / {reference}: median {statistics.median(ratios):.2f} of {', '.join(f'{x:.2f}' for x in ratios)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
