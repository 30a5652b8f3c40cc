"""Paired runs: the ideal sink and one or more checkouts of the sink, round after round.

``python -m benchmarks.paired --sink before=../old-checkout --sink after=. --rounds 8``

Each round runs the ideal sink (:class:`~benchmarks.references.IdealGrpcSinkFn`)
and ``WriteToRaccoon`` from every named checkout, in an order rotated from
round to round, each pipeline in a process of its own against a fresh
emulator process. Every run uses this checkout's harness
(:mod:`benchmarks.sink_pipeline`, the same events): only the
``raccoon_beam`` package comes from the named checkout. The per-round
ratio is the ideal sink's duration over the sink's; the summary gives each
one's median duration, the median CPU per event of its process, the ratios
and their median. This is how two versions of the sink are compared
against the reference on a shared machine, where either one's events/s
moves by more than the difference. A run that dead-letters anything fails.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from typing import Any, Dict, List, Optional, Sequence, Tuple

from benchmarks.sink_pipeline import DEFAULT_CHUNK
from raccoon_beam.emulator.process import EmulatorProcess

__all__ = ["IDEAL", "run_order", "run_pairs", "summary", "main"]

IDEAL = "ideal sink"
_THIS_CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_ENDPOINTS = {"grpc": "grpc_endpoint", "rest": "rest_endpoint", "websocket": "ws_endpoint"}

Results = Dict[str, List[Dict[str, Any]]]


def run_order(names: Sequence[str], round_number: int) -> List[str]:
    """The order of round ``round_number`` (from 0): ``names`` rotated by one more each round."""
    shift = round_number % len(names)
    return list(names[shift:]) + list(names[:shift])


def _harness(checkout: str, folder: str) -> str:
    """A folder in which this checkout's ``benchmarks`` sits beside ``checkout``'s ``raccoon_beam``."""
    os.symlink(os.path.join(_THIS_CHECKOUT, "benchmarks"), os.path.join(folder, "benchmarks"))
    os.symlink(os.path.join(checkout, "raccoon_beam"), os.path.join(folder, "raccoon_beam"))
    return folder


def _run_one(name: str, folder: str, mode: str, endpoint: str, events: int) -> Dict[str, Any]:
    """One pipeline of ``mode`` run from ``folder``; its JSON result."""
    command = [sys.executable, "-m", "benchmarks.sink_pipeline", "--mode", mode, "--endpoint", endpoint]
    command += ["--events", str(events)]
    timeout = 60 + events / 20_000
    try:
        done = subprocess.run(
            command, cwd=folder, env=dict(os.environ, PYTHONPATH=folder), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{name}: no result within {timeout:g} s") from None
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{name} failed (exit {done.returncode}): {done.stderr[-2000:]}")
    result = json.loads(lines[-1])
    if result["dead_letters"]:
        raise RuntimeError(f"{name} dead-lettered {result['dead_letters']} events: not a throughput run")
    return result


def run_pairs(sinks: Sequence[Tuple[str, str]], rounds: int, events: int, transport: str, results: Results) -> None:
    """Runs the rounds, adding each run's result to ``results`` (by name, in round order).

    Args:
      sinks: (name, checkout directory) of each version of the sink.
      rounds: how many rounds.
      events: events per run (a multiple of the generator's chunk).
      transport: the sink's transport (the ideal sink always uses gRPC).
      results: where the results go; filled as the runs end, so that a
        failure keeps what came before it.
    """
    with tempfile.TemporaryDirectory() as scratch:
        folders = {IDEAL: _harness(_THIS_CHECKOUT, tempfile.mkdtemp(dir=scratch))}
        for name, checkout in sinks:
            folders[name] = _harness(checkout, tempfile.mkdtemp(dir=scratch))
        for round_number in range(rounds):
            for name in run_order(list(folders), round_number):
                mode = "ideal-sink" if name == IDEAL else "sink"
                with EmulatorProcess() as emulator:
                    attribute = "grpc_endpoint" if name == IDEAL else _ENDPOINTS[transport]
                    result = _run_one(name, folders[name], mode, getattr(emulator, attribute), events)
                results.setdefault(name, []).append(result)
                print(
                    f"round {round_number + 1} {name}: {result['seconds']:.3f} s, "
                    f"{result['cpu_us_per_event']:.2f} us/event",
                    file=sys.stderr,
                    flush=True,
                )


def summary(results: Results) -> List[str]:
    """One line per entry over the rounds every entry finished: medians, per-round ratios to the ideal sink."""
    rounds = min(len(runs) for runs in results.values())
    if rounds == 0:
        return []
    ideal = [run["seconds"] for run in results[IDEAL][:rounds]]
    lines = []
    for name, runs in results.items():
        runs = runs[:rounds]
        ratios = [reference / run["seconds"] for reference, run in zip(ideal, runs)]
        lines.append(
            f"{name}: median {statistics.median(run['seconds'] for run in runs):.3f} s, "
            f"CPU {statistics.median(run['cpu_us_per_event'] for run in runs):.2f} us/event; "
            f"ratios {' '.join(f'{ratio:.2f}' for ratio in ratios)}; median ratio {statistics.median(ratios):.3f}"
        )
    return lines


def _sinks(parser: argparse.ArgumentParser, specs: Sequence[str]) -> List[Tuple[str, str]]:
    """The ``--sink NAME=DIR`` arguments as (name, absolute directory); a parser error if one is wrong."""
    sinks: List[Tuple[str, str]] = []
    for spec in specs:
        name, separator, checkout = spec.partition("=")
        if not separator or not name or not os.path.isdir(os.path.join(checkout, "raccoon_beam")):
            parser.error(f"--sink takes NAME=DIR, DIR a checkout with a raccoon_beam folder; got {spec!r}")
        if name == IDEAL or name in dict(sinks):
            parser.error(f"--sink names must differ from each other and from {IDEAL!r}; got {name!r} twice")
        sinks.append((name, os.path.abspath(checkout)))
    return sinks


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sink", action="append", metavar="NAME=DIR",
                        help="a checkout of the sink to run (repeatable; default: this one, as 'sink')")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--transport", choices=sorted(_ENDPOINTS), default="grpc")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.events <= 0 or args.events % DEFAULT_CHUNK:
        parser.error(f"--events must be a positive multiple of {DEFAULT_CHUNK}")
    sinks = _sinks(parser, args.sink or [f"sink={_THIS_CHECKOUT}"])
    results: Results = {}
    try:
        run_pairs(sinks, args.rounds, args.events, args.transport, results)
    except RuntimeError as exc:
        print(f"stopped: {exc}", file=sys.stderr)
        if results.get(IDEAL) and len(results) == len(sinks) + 1:
            print("\n".join(summary(results)))
        return 1
    print("\n".join(summary(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
