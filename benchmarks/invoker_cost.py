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
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Callable, Dict, List

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


def measure(make_fn: Callable[[], beam.DoFn], events: int) -> float:
    """events/s of ``generator | ParDo(make_fn())`` on the DirectRunner with one worker."""
    options = PipelineOptions(["--runner=DirectRunner", "--direct_num_workers=1"])
    started = time.perf_counter()
    with beam.Pipeline(options=options) as pipeline:
        (
            pipeline
            | beam.Create(list(range(events // _CHUNK)))
            | beam.FlatMap(workload.generate("json", _CHUNK))
            | beam.ParDo(make_fn())
        )
    return events / (time.perf_counter() - started)


def main(argv: Any = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS)
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    args = parser.parse_args(argv)
    best: Dict[str, float] = {}
    rounds: List[Dict[str, float]] = []
    for _ in range(args.rounds):
        rate = {name: measure(make, args.events) for name, make in CONFIGS.items()}
        rounds.append(rate)
        for name, value in rate.items():
            best[name] = max(best.get(name, 0.0), value)
    noop, ideal = best["no-op DoFn"], best["ideal encode-only DoFn"]
    print(f"| DoFn ({args.events:,} events, best of {args.rounds}) | events/s | x no-op | x ideal | us/event |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, value in best.items():
        print(f"| {name} | {value:,.0f} | {value / noop:.2f} | {value / ideal:.2f} | {1e6 / value:.2f} |")
    per_round = sorted(r["no-op DoFn + WindowedValueParam"] / r["ideal encode-only DoFn"] for r in rounds)
    print(f"windowed no-op / ideal per round: {', '.join(f'{x:.2f}' for x in per_round)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
