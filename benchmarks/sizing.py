"""Sizing measurements for docs/sizing.md: events/s per SDK worker process and per core.

For each transport (gRPC, REST, WebSocket; protobuf wire, json serializer)
and 1 and 2 SDK workers, runs

    Create(chunk numbers) | FlatMap(workload.generate) | WriteToRaccoon

on the portable runner path: the Fn API runner driving N SDK worker
processes of an external worker pool (``pipelines/engines.py``), the way
Flink and Spark run Python, against the emulator in a process of its own
(digest capture; every run's digest must equal the generator's).

- events/s: the events over the span from the emulator's first accepted
  event to its last (polled every 20 ms), so the SDK workers' start-up is
  not counted;
- CPU: the CPU seconds the SDK worker processes spent over that same span
  (read from the kernel at its two ends); events per CPU-second is the rate
  one core sustains.

``python -m benchmarks.sizing`` writes ``benchmarks/sizing.json``,
``docs/sizing.png`` and the generated section of ``docs/sizing.md``;
``--quick`` runs 20,000 events and writes nothing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from benchmarks import report, workload
from pipelines.engines import WorkerPool
from raccoon_beam import WriteToRaccoon
from raccoon_beam.emulator.process import EmulatorProcess

__all__ = ["measure", "main", "TRANSPORTS", "WORKER_COUNTS"]

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "sizing.json"
CHART = ROOT / "docs" / "sizing.png"
DOC = ROOT / "docs" / "sizing.md"
BEGIN = "<!-- BEGIN GENERATED SIZING (python -m benchmarks.sizing) -->"
END = "<!-- END GENERATED SIZING -->"

TRANSPORTS = ("grpc", "rest", "websocket")
WORKER_COUNTS = (1, 2)
DEFAULT_EVENTS = 300_000
# Events per input element: large enough that per-element overhead vanishes,
# small enough that 2 workers get an even share of the chunks.
CHUNK = 10_000
SERIALIZER = "json"
POLL_SECONDS = 0.02


class _Span:
    """Polls the emulator's accepted-event count: when the first and the last event arrived.

    At both moments it also reads ``cpu()``, the SDK workers' CPU seconds, so
    that the CPU and the rate are of the same span.
    """

    def __init__(self, emulator: EmulatorProcess, total: int, cpu: Callable[[], float]) -> None:
        self._emulator = emulator
        self._total = total
        self._cpu = cpu
        self._stop = threading.Event()
        self.first: Optional[float] = None
        self.last: Optional[float] = None
        self.cpu_first = 0.0
        self.cpu_last = 0.0
        self._thread = threading.Thread(target=self._run, name="sizing-span", daemon=True)

    def __enter__(self) -> "_Span":
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            accepted = self._emulator.counters().total_events_accepted
            now = time.monotonic()
            if accepted and self.first is None:
                self.first, self.cpu_first = now, self._cpu()
            if accepted >= self._total:
                self.last, self.cpu_last = now, self._cpu()
                return
            self._stop.wait(POLL_SECONDS)

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


def _endpoint(emulator: EmulatorProcess, transport: str) -> str:
    return {"grpc": emulator.grpc_endpoint, "rest": emulator.rest_endpoint, "websocket": emulator.ws_endpoint}[transport]


def _run_pipeline(pool: WorkerPool, workers: int, endpoint: str, chunks: int, chunk: int) -> None:
    options = PipelineOptions([f"--direct_num_workers={workers}"])
    with beam.Pipeline(runner=pool.runner(), options=options) as pipeline:
        _ = (
            pipeline
            | "Chunks" >> beam.Create(list(range(chunks)))
            | "Generate" >> beam.FlatMap(workload.generate(SERIALIZER, chunk))
            | "Write" >> WriteToRaccoon(endpoint, event_type=workload.event_type_of(SERIALIZER))
        )


def measure(transport: str, workers: int, events: int, expected: Dict[str, Any]) -> Dict[str, Any]:
    """One run: ``events`` over ``transport`` from ``workers`` SDK workers; its figures."""
    env = {"PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    with EmulatorProcess() as emulator, WorkerPool(env=env) as pool:
        endpoint = _endpoint(emulator, transport)
        with _Span(emulator, events, pool.worker_cpu_seconds) as span:
            started = time.monotonic()
            _run_pipeline(pool, workers, endpoint, chunks=events // CHUNK, chunk=CHUNK)
            wall = time.monotonic() - started
        cpu = span.cpu_last - span.cpu_first
        captured = {t: tuple(d) for t, d in emulator.digest().items()}
    seconds = (span.last - span.first) if span.first is not None and span.last is not None else wall
    return {
        "transport": transport,
        "workers": workers,
        "events": events,
        "seconds": round(seconds, 3),
        "wall_seconds": round(wall, 3),
        "events_per_second": round(events / seconds),
        "events_per_second_per_worker": round(events / seconds / workers),
        "worker_cpu_seconds": round(cpu, 3),
        "events_per_cpu_second": round(events / cpu) if cpu > 0 else None,
        "digest_ok": captured == expected,
    }


def _machine() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, apache-beam {beam.__version__}, "
        f"commit {commit}, load average before the run {load}"
    )


def _table(rows: Sequence[Dict[str, Any]]) -> str:
    lines = [
        "| transport | SDK workers | events/s | events/s per worker process | worker CPU s | events per CPU-second (per core) | digest |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        per_core = f"{row['events_per_cpu_second']:,}" if row["events_per_cpu_second"] else "n/a"
        lines.append(
            f"| {row['transport']} | {row['workers']} | {row['events_per_second']:,} | "
            f"{row['events_per_second_per_worker']:,} | {row['worker_cpu_seconds']:.1f} | {per_core} | "
            f"{'verified' if row['digest_ok'] else '**MISMATCH**'} |"
        )
    return "\n".join(lines)


def _chart(rows: Sequence[Dict[str, Any]], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (rate_axes, core_axes) = plt.subplots(1, 2, figsize=(10, 4))
    width = 0.38
    for offset, workers in zip((-width / 2, width / 2), WORKER_COUNTS):
        chosen = [next(r for r in rows if r["transport"] == t and r["workers"] == workers) for t in TRANSPORTS]
        positions = [i + offset for i in range(len(TRANSPORTS))]
        label = f"{workers} SDK worker{'s' if workers > 1 else ''}"
        rate_axes.bar(positions, [r["events_per_second"] for r in chosen], width, label=label)
        core_axes.bar(positions, [r["events_per_cpu_second"] or 0 for r in chosen], width, label=label)
    for axes, title in ((rate_axes, "events/s (whole job)"), (core_axes, "events per CPU-second of SDK worker")):
        axes.set_xticks(range(len(TRANSPORTS)), TRANSPORTS)
        axes.set_title(title)
        axes.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
        axes.set_ylim(0, axes.get_ylim()[1] * 1.25)  # room for the legend above the bars
        axes.legend(loc="upper center", ncol=2)
    figure.suptitle("WriteToRaccoon on the portable runner path (external worker pool), 2-core machine")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _write_doc(rows: Sequence[Dict[str, Any]], machine: str, minutes: float) -> None:
    section = "\n".join(
        [
            BEGIN,
            f"Machine: {machine}. Whole run: {minutes:.1f} min; "
            f"{rows[0]['events']:,} events per run, json serializer, protobuf wire, default batching "
            "(500 events per request, 4 in flight).",
            "",
            _table(rows),
            "",
            "![events/s and events per CPU-second per transport, 1 and 2 SDK workers](sizing.png)",
            END,
        ]
    )
    DOC.write_text(report.with_section(DOC.read_text(encoding="utf-8"), BEGIN, END, section), encoding="utf-8")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS, help="events per run (a multiple of 10,000)")
    parser.add_argument("--quick", action="store_true", help="20,000 events per run; writes nothing")
    parser.add_argument("--render", action="store_true", help="only redraw the chart and the table from sizing.json")
    args = parser.parse_args(argv)
    if args.render:
        saved = json.loads(RESULTS.read_text(encoding="utf-8"))
        _chart(saved["rows"], CHART)
        _write_doc(saved["rows"], saved["machine"], saved["minutes"])
        return 0
    events = 20_000 if args.quick else args.events
    if events % CHUNK:
        parser.error(f"--events must be a multiple of {CHUNK}")
    machine = _machine()
    started = time.monotonic()
    expected = {t: tuple(d) for t, d in workload.expected_digests(SERIALIZER, [events])[events].items()}
    rows: List[Dict[str, Any]] = []
    for transport in TRANSPORTS:
        for workers in WORKER_COUNTS:
            row = measure(transport, workers, events, expected)
            print(json.dumps(row), flush=True)
            rows.append(row)
    minutes = (time.monotonic() - started) / 60
    if not args.quick:
        RESULTS.write_text(
            json.dumps(
                {"machine": machine, "date": datetime.date.today().isoformat(), "minutes": round(minutes, 1), "rows": rows},
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
        _chart(rows, CHART)
        _write_doc(rows, machine, minutes)
    print(_table(rows))
    return 0 if all(row["digest_ok"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
