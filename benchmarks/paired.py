"""Paired runs: the ideal sink and one or more checkouts of the sink, round after round.

``python -m benchmarks.paired --sink before=../old-checkout --sink after=. --rounds 8``

Each round runs the ideal sink (:class:`~benchmarks.references.IdealGrpcSinkFn`,
from this checkout) and ``WriteToRaccoon`` from every named checkout, in an
order rotated from round to round, each pipeline in a process of its own
(:mod:`benchmarks.sink_pipeline`, run from its checkout) against a fresh
emulator process of this checkout. The per-round ratio is the ideal sink's
duration over the sink's; the summary gives each one's median duration, the
median CPU per event of its process, the ratios and their median. This is
how two versions of the sink are compared against the reference on a
shared machine: a checkout's own events/s moves by more than the difference.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

from benchmarks.sink_pipeline import DEFAULT_CHUNK
from raccoon_beam.emulator.process import EmulatorProcess

__all__ = ["run_pairs", "main"]

IDEAL = "ideal sink"
_HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_ENDPOINTS = {"grpc": "grpc_endpoint", "rest": "rest_endpoint", "websocket": "ws_endpoint"}


def _run_one(root: str, mode: str, endpoint: str, events: int, timeout: float) -> Dict[str, Any]:
    """One pipeline of ``mode`` from the checkout at ``root``; its JSON result."""
    env = dict(os.environ, PYTHONPATH=root)
    command = [sys.executable, "-m", "benchmarks.sink_pipeline", "--mode", mode, "--endpoint", endpoint]
    command += ["--events", str(events)]
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{mode} from {root} failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(lines[-1])


def run_pairs(
    sinks: Sequence[Tuple[str, str]], rounds: int, events: int, transport: str = "grpc"
) -> Dict[str, List[Dict[str, Any]]]:
    """The results of each run, by name (:data:`IDEAL` and each of ``sinks``' names), in round order.

    Args:
      sinks: (name, checkout directory) of each version of the sink.
      rounds: how many rounds.
      events: events per run (a multiple of the generator's chunk).
      transport: the sink's transport (the ideal sink always uses gRPC).
    """
    entries = [(IDEAL, _HERE, "ideal-sink")] + [(name, root, "sink") for name, root in sinks]
    results: Dict[str, List[Dict[str, Any]]] = {name: [] for name, _, _ in entries}
    timeout = 60 + events / 20_000
    for round_number in range(rounds):
        shift = round_number % len(entries)
        for name, root, mode in entries[shift:] + entries[:shift]:
            with EmulatorProcess() as emulator:
                attribute = "grpc_endpoint" if mode == "ideal-sink" else _ENDPOINTS[transport]
                result = _run_one(root, mode, getattr(emulator, attribute), events, timeout)
            results[name].append(result)
            print(
                f"round {round_number + 1} {name}: {result['seconds']:.3f} s, "
                f"{result['cpu_us_per_event']:.2f} us/event, dead letters {result['dead_letters']}",
                file=sys.stderr,
                flush=True,
            )
    return results


def summary(results: Dict[str, List[Dict[str, Any]]]) -> List[str]:
    """One line per entry: median duration and CPU, per-round ratios to the ideal sink, their median."""
    ideal = [run["seconds"] for run in results[IDEAL]]
    lines = []
    for name, runs in results.items():
        ratios = [reference / run["seconds"] for reference, run in zip(ideal, runs)]
        lines.append(
            f"{name}: median {statistics.median(run['seconds'] for run in runs):.3f} s, "
            f"CPU {statistics.median(run['cpu_us_per_event'] for run in runs):.2f} us/event; "
            f"ratios {' '.join(f'{ratio:.2f}' for ratio in ratios)}; median ratio {statistics.median(ratios):.3f}"
        )
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sink", action="append", metavar="NAME=DIR",
                        help="a checkout of the sink to run (repeatable; default: this one, as 'sink')")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--transport", choices=sorted(_ENDPOINTS), default="grpc")
    args = parser.parse_args(argv)
    if args.events % DEFAULT_CHUNK:
        parser.error(f"--events must be a multiple of {DEFAULT_CHUNK}")
    sinks = []
    for spec in args.sink or [f"sink={_HERE}"]:
        name, separator, root = spec.partition("=")
        if not separator or not name or not os.path.isdir(root):
            parser.error(f"--sink takes NAME=DIR with an existing directory, got {spec!r}")
        sinks.append((name, os.path.abspath(root)))
    results = run_pairs(sinks, args.rounds, args.events, args.transport)
    print("\n".join(summary(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
