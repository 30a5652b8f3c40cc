"""Overload benchmark: a writer that keeps far more in flight than Raccoon drains.

The emulator runs in a process of its own as an overloaded Raccoon does:
sync acks (``EVENT_ACK=1``) and a publisher capacity of C events/s, behind
Raccoon's bounded buffer of 100 requests (``capacity_events_per_second``,
see ``docs/emulator.md``). A request waits for its publish; past C, latency
grows with what is in flight, and a request whose client timed out is still
published when its turn comes, so its retry is a duplicate.

Scenarios (each a batch pipeline on the DirectRunner, in this process,
``Create(chunks) | FlatMap(workload.generate) | WriteToRaccoon``, json
serializer, 500 events per request):

- ``throttled``: ``max_in_flight=64``, ``timeout=2`` (32,000 events in
  flight: seconds of the publisher's time at C, far beyond the timeout),
  every other option at its default (adaptive throttling on);
- ``unthrottled``: the same with ``adaptive_throttling=False``;
- ``rate_limited``: ``max_events_per_second=R`` (R below C), defaults
  otherwise.

What is reported, per scenario, from the emulator's counters (polled every
0.1 s) and the pipeline's dead letters: dead letters, duplicates (events
published again under a req_guid published before, in % of the events),
goodput (unique events published per second, from the first published event
to the last unique one) and goodput / C; for ``rate_limited`` the delivered
rate against R. Targets: throttled: 0 dead letters, duplicates <= 5 %,
goodput >= 0.7 x C; rate limited: within 10 % of R.

``python -m benchmarks.overload`` writes ``benchmarks/overload.json``,
``benchmarks/overload.png`` and the generated section of
``benchmarks/README.md``; ``--quick`` runs a small version and writes
nothing (unless ``--output-dir`` is given). An option the installed
``WriteToRaccoon`` does not have yet (``adaptive_throttling``,
``max_events_per_second``) makes its scenario report "not available".
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import json
import os
import pathlib
import sys
import threading
import time
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Set, Tuple

import apache_beam as beam

from benchmarks import report, workload
from raccoon_beam import WriteToRaccoon
from raccoon_beam.emulator.process import EmulatorProcess

__all__ = ["Scenario", "scenarios", "run_scenario", "targets", "main"]

ROOT = pathlib.Path(__file__).resolve().parents[1]
HERE = ROOT / "benchmarks"
BEGIN = "<!-- BEGIN GENERATED OVERLOAD (python -m benchmarks.overload) -->"
END = "<!-- END GENERATED OVERLOAD -->"
SERIALIZER = "json"
# 10,000 events/s: the publisher pace at which the sink's retry storm was
# first measured (against Raccoon's own handler code), and far below what
# the sink and the emulator sustain on 2 shared cores, so the capacity is
# the only bottleneck.
DEFAULT_CAPACITY = 10_000.0
# 20 s of the publisher's time: long enough that the first wave (32,000
# events in flight before any feedback) is a small share of the run.
DEFAULT_EVENTS = 200_000
# The rate limit at half the capacity, for 10 s.
DEFAULT_RATE_FRACTION = 0.5
DEFAULT_RATE_EVENTS = 50_000
# "Far more in flight than C drains within the timeout": 64 x 500 events is
# 3.2 s of the publisher at 10,000 events/s, against a 2 s timeout.
MAX_IN_FLIGHT = 64
TIMEOUT = 2.0
CHUNK = 10_000
POLL_SECONDS = 0.1
# After the pipeline, requests still queued at the emulator (copies of
# timed-out ones) keep being published, one every 500 / C seconds: a second
# without a publish means the queue is empty.
SETTLE_SECONDS = 1.0
# --quick: a capacity the writer barely loads, so the small run is quick
# and steady (a smoke run of the harness, not a measurement).
QUICK = {"capacity": 20_000.0, "events": 10_000, "rate_events": 10_000}
# Targets.
MAX_DUPLICATES = 0.05
MIN_GOODPUT = 0.7
RATE_TOLERANCE = 0.10


class Scenario(NamedTuple):
    """One run: its name, the WriteToRaccoon options beyond the defaults, and its events."""

    name: str
    options: Dict[str, Any]
    events: int


def _supported() -> Set[str]:
    return set(inspect.signature(WriteToRaccoon).parameters)


def scenarios(events: int, rate: float, rate_events: int) -> List[Scenario]:
    """The three scenarios, with the options the installed WriteToRaccoon has."""
    overload = {"max_in_flight": MAX_IN_FLIGHT, "timeout": TIMEOUT}
    return [
        Scenario("throttled", dict(overload), events),
        Scenario("unthrottled", {**overload, "adaptive_throttling": False}, events),
        Scenario("rate_limited", {"max_events_per_second": rate}, rate_events),
    ]


class _Timeline:
    """Polls the emulator's counters: (seconds, events published, of them duplicates)."""

    def __init__(self, emulator: EmulatorProcess) -> None:
        self._emulator = emulator
        self._stop = threading.Event()
        self.samples: List[Tuple[float, int, int]] = []
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="overload-timeline", daemon=True)

    def __enter__(self) -> "_Timeline":
        self._thread.start()
        return self

    def sample(self) -> Tuple[float, int, int]:
        counters = self._emulator.counters()
        return time.monotonic() - self._started, counters.total_events_accepted, counters.events_duplicated

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.sample())
            self._stop.wait(POLL_SECONDS)

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


def _settle(timeline: _Timeline, seconds: float) -> None:
    """Waits until the emulator's count has not moved for ``seconds`` (requests still queued get published)."""
    last = timeline.sample()
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < seconds:
        time.sleep(POLL_SECONDS)
        now = timeline.sample()
        if now[1] != last[1]:
            quiet_since = time.monotonic()
        last = now
        timeline.samples.append(now)


def _run_pipeline(endpoint: str, events: int, options: Dict[str, Any]) -> Tuple[int, float]:
    """Writes ``events`` events; returns (dead letters, seconds)."""
    dead = beam.metrics.Metrics.counter("overload", "dead_letters")

    def count(_: Any) -> None:
        dead.inc()

    started = time.monotonic()
    pipeline = beam.Pipeline()
    result = (
        pipeline
        | "Chunks" >> beam.Create(list(range(events // CHUNK)))
        | "Generate" >> beam.FlatMap(workload.generate(SERIALIZER, CHUNK))
        | "Write" >> WriteToRaccoon(endpoint, event_type=workload.event_type_of(SERIALIZER), **options)
    )
    _ = result.failed | "CountDeadLetters" >> beam.Map(count)
    outcome = pipeline.run()
    outcome.wait_until_finish()
    seconds = time.monotonic() - started
    query = outcome.metrics().query(beam.metrics.MetricsFilter().with_name("dead_letters"))
    letters = sum(c.committed or c.attempted or 0 for c in query["counters"])
    return letters, seconds


def run_scenario(scenario: Scenario, capacity: float, expected: Dict[str, Any]) -> Dict[str, Any]:
    """One scenario against a fresh emulator process; its figures."""
    row: Dict[str, Any] = {"name": scenario.name, "events": scenario.events, "options": scenario.options}
    missing = sorted(set(scenario.options) - _supported())
    if missing:
        row["available"] = False
        row["missing"] = missing
        return row
    row["available"] = True
    with EmulatorProcess(ack="sync", capacity_events_per_second=capacity) as emulator:
        with _Timeline(emulator) as timeline:
            letters, seconds = _run_pipeline(emulator.grpc_endpoint, scenario.events, scenario.options)
            _settle(timeline, SETTLE_SECONDS)
        counters = emulator.counters()
        digest = {t: tuple(d) for t, d in emulator.digest().items()}
    published = counters.total_events_accepted
    duplicates = counters.events_duplicated
    unique = published - duplicates
    samples = timeline.samples
    # From the last sample before the first publish: the first batch's publishing time counts.
    first = next((samples[max(0, i - 1)][0] for i, (_, n, _) in enumerate(samples) if n > 0), None)
    last_unique = next((t for t, n, d in samples if n - d >= unique), None)
    span = (last_unique - first) if first is not None and last_unique is not None and last_unique > first else None
    goodput = unique / span if span else None
    row.update(
        {
            "dead_letters": letters,
            "pipeline_seconds": round(seconds, 2),
            "published": published,
            "duplicates": duplicates,
            "duplicates_percent": round(100.0 * duplicates / scenario.events, 2),
            "unique": unique,
            "lost": max(0, scenario.events - unique - letters),
            "span_seconds": round(span, 2) if span else None,
            "goodput": round(goodput) if goodput else None,
            "goodput_over_capacity": round(goodput / capacity, 3) if goodput else None,
            # Exactly the events sent, once each: nothing lost, nothing twice.
            "digest_ok": digest == expected,
            "requests_received": counters.received(),
            "requests_duplicated": sum(counters.requests_duplicated.values()),
            "timeline": [(round(t, 2), n, d) for t, n, d in samples],
        }
    )
    rate = scenario.options.get("max_events_per_second")
    if rate:
        row["rate_limit"] = rate
        row["rate_over_limit"] = round(goodput / rate, 3) if goodput else None
    return row


def targets(rows: Sequence[Dict[str, Any]], capacity: float) -> List[Tuple[str, str, Optional[bool]]]:
    """(target, measured, met) per target; met None when its scenario did not run."""
    by_name = {row["name"]: row for row in rows}
    result: List[Tuple[str, str, Optional[bool]]] = []
    throttled = by_name.get("throttled", {})
    if throttled.get("available"):
        result += [
            ("throttled: 0 dead letters", f"{throttled['dead_letters']:,}", throttled["dead_letters"] == 0),
            (
                f"throttled: duplicates <= {MAX_DUPLICATES:.0%} of the events",
                f"{throttled['duplicates_percent']:.2f} %",
                throttled["duplicates_percent"] <= 100 * MAX_DUPLICATES,
            ),
            (
                f"throttled: goodput >= {MIN_GOODPUT:g} x C",
                _ratio(throttled.get("goodput_over_capacity")),
                (throttled.get("goodput_over_capacity") or 0) >= MIN_GOODPUT,
            ),
        ]
    elif throttled:
        result.append(("throttled", f"not available ({', '.join(throttled['missing'])})", None))
    else:
        result.append(("throttled", "not run", None))
    limited = by_name.get("rate_limited", {})
    if limited.get("available"):
        ratio = limited.get("rate_over_limit")
        met = ratio is not None and abs(ratio - 1) <= RATE_TOLERANCE
        result.append((f"rate limited: within {RATE_TOLERANCE:.0%} of R", _ratio(ratio, "R"), met))
    elif limited:
        result.append(("rate limited", f"not available ({', '.join(limited['missing'])})", None))
    else:
        result.append(("rate limited", "not run", None))
    return result


def _ratio(value: Optional[float], unit: str = "C") -> str:
    return f"{value:.2f} x {unit}" if value is not None else "n/a"


def _table(rows: Sequence[Dict[str, Any]]) -> str:
    lines = [
        "| scenario | options | events | dead letters | duplicates | goodput (unique events/s) | goodput / C "
        "| pipeline s | requests | digest |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        options = ", ".join(f"{k}={v}" for k, v in row["options"].items())
        if not row.get("available"):
            lines.append(
                f"| {row['name']} | {options} | {row['events']:,} | not available: WriteToRaccoon has no "
                f"{', '.join(row['missing'])} yet | | | | | | |"
            )
            continue
        goodput = f"{row['goodput']:,}" if row["goodput"] else "n/a"
        lines.append(
            f"| {row['name']} | {options} | {row['events']:,} | {row['dead_letters']:,} | "
            f"{row['duplicates']:,} ({row['duplicates_percent']:.1f} %) | {goodput} | "
            f"{_ratio(row['goodput_over_capacity'])} | {row['pipeline_seconds']:.1f} | {row['requests_received']:,} | "
            f"{'verified' if row['digest_ok'] else 'differs (duplicates or losses)'} |"
        )
    return "\n".join(lines)


def _targets_table(rows: Sequence[Dict[str, Any]], capacity: float) -> str:
    lines = ["| target | measured | met |", "| --- | --- | --- |"]
    for name, measured, met in targets(rows, capacity):
        lines.append(f"| {name} | {measured} | {'yes' if met else ('**no**' if met is False else 'n/a')} |")
    return "\n".join(lines)


def _chart(rows: Sequence[Dict[str, Any]], capacity: float, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [row for row in rows if row.get("available") and row.get("timeline")]
    limited = [row for row in shown if row["name"] == "rate_limited"]
    overloaded = [row for row in shown if row["name"] != "rate_limited"]
    panels = [p for p in (("overload", overloaded), ("rate", limited)) if p[1]]
    figure, axes_list = plt.subplots(1, len(panels), figsize=(max(7.0, 5.5 * len(panels)), 4.2), squeeze=False)
    colours = {"throttled": "tab:blue", "unthrottled": "tab:red", "rate_limited": "tab:green"}
    for axes, (panel, panel_rows) in zip(axes_list[0], panels):
        horizon = 0.0
        for row in panel_rows:
            timeline = row["timeline"]
            start = next((t for t, n, _ in timeline if n > 0), timeline[0][0])
            times = [t - start for t, _, _ in timeline]
            horizon = max(horizon, times[-1])
            colour = colours[row["name"]]
            axes.plot(times, [n - d for _, n, d in timeline], color=colour, label=f"{row['name']}: unique events")
            if row["duplicates"]:
                axes.plot(times, [n for _, n, _ in timeline], color=colour, linestyle="--",
                          label=f"{row['name']}: with duplicates")
        if panel == "overload":
            slope, title = capacity, "64 in flight, timeout 2 s: capacity C"
            label = f"C = {capacity:,.0f}/s"
        else:
            slope = panel_rows[0]["rate_limit"]
            title, label = "max_events_per_second = R", f"R = {slope:,.0f}/s"
        top = max(max(r["published"] for r in panel_rows), max(r["events"] for r in panel_rows)) * 1.05
        axes.plot([0, min(horizon, top / slope)], [0, min(slope * horizon, top)], color="grey", linestyle=":",
                  label=label)
        axes.set_ylim(0, top)
        axes.set_title(title)
        axes.set_xlabel("seconds since the first published event")
        axes.set_ylabel("events published")
        axes.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
        axes.legend(loc="lower right", fontsize=8)
    figure.suptitle("WriteToRaccoon against an overloaded Raccoon (emulator, sync acks)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _machine() -> str:
    """The machine line of the section: report.machine()'s facts and the load before the run."""
    facts = report.machine()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{facts['nproc']} CPUs ({facts['cpu']}), Python {facts['python']}, apache-beam {facts['apache_beam']}, "
        f"commit {facts['commit']}, load average before the run {load}"
    )


def _section(rows: Sequence[Dict[str, Any]], capacity: float, machine: str, minutes: float) -> str:
    return "\n".join(
        [
            BEGIN,
            f"Machine: {machine}. Whole run: {minutes:.1f} min. Emulator: sync acks, capacity C = "
            f"{capacity:,.0f} events/s, buffer 100 requests, 5 workers; gRPC, json serializer, 500 events per request.",
            "",
            _table(rows),
            "",
            _targets_table(rows, capacity),
            "",
            "![events published over time, throttled and unthrottled, and under a rate limit](overload.png)",
            END,
        ]
    )


def _write_readme(path: pathlib.Path, section: str) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    path.write_text(report.with_section(text, BEGIN, END, section), encoding="utf-8")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--capacity", type=float, help=f"C, events/s the emulator publishes (default: {DEFAULT_CAPACITY:,.0f})")
    parser.add_argument("--events", type=int, help=f"events of the overload runs, x 10,000 (default: {DEFAULT_EVENTS:,})")
    parser.add_argument("--rate-fraction", type=float, default=DEFAULT_RATE_FRACTION, help="R as a share of C")
    parser.add_argument("--rate-events", type=int, help=f"events of the rate-limited run (default: {DEFAULT_RATE_EVENTS:,})")
    parser.add_argument("--only", action="append", choices=("throttled", "unthrottled", "rate_limited"),
                        help="run only this scenario; repeatable")
    parser.add_argument("--quick", action="store_true",
                        help="a small, unloaded run of the harness (about 20 s); writes nothing by default")
    parser.add_argument("--output-dir", help="write overload.json, overload.png and README.md here")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else {
        "capacity": DEFAULT_CAPACITY, "events": DEFAULT_EVENTS, "rate_events": DEFAULT_RATE_EVENTS
    }
    for name, value in defaults.items():  # a flag given wins over --quick
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name in ("events", "rate_events"):
        if getattr(args, name) % CHUNK or getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be a positive multiple of {CHUNK:,}")
    rate = args.capacity * args.rate_fraction
    chosen = [s for s in scenarios(args.events, rate, args.rate_events) if not args.only or s.name in args.only]
    machine = _machine()
    started = time.monotonic()
    expected_by_count = workload.expected_digests(SERIALIZER, {s.events for s in chosen})
    rows = []
    for scenario in chosen:
        expected = {t: tuple(d) for t, d in expected_by_count[scenario.events].items()}
        row = run_scenario(scenario, args.capacity, expected)
        summary = {k: v for k, v in row.items() if k != "timeline"}
        print(json.dumps(summary), flush=True)
        rows.append(row)
    minutes = (time.monotonic() - started) / 60
    output = pathlib.Path(args.output_dir) if args.output_dir else (None if args.quick else HERE)
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        saved = {
            "machine": machine,
            "date": datetime.date.today().isoformat(),
            "minutes": round(minutes, 1),
            "capacity": args.capacity,
            "rows": rows,
        }
        (output / "overload.json").write_text(json.dumps(saved, indent=1) + "\n", encoding="utf-8")
        try:
            _chart(rows, args.capacity, output / "overload.png")
        except ImportError:
            print("matplotlib is not installed (the bench extra): no chart", file=sys.stderr)
        readme = output / "README.md"
        if output == HERE or readme.exists() or args.output_dir:
            _write_readme(readme, _section(rows, args.capacity, machine, minutes))
    print(_table(rows))
    print(_targets_table(rows, args.capacity))
    return 0


if __name__ == "__main__":
    sys.exit(main())
