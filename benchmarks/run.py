"""The one benchmark command: ``python -m benchmarks.run`` (``make bench``).

Runs, in one go and on one machine, so that the ratios compare like with like:

1. throughput on the DirectRunner (1,000,000 events by default) of the
   references (:mod:`benchmarks.references`: the ideal sink over gRPC, the
   performance reference; the no-op pipeline and the ideal encode-only DoFn,
   floors; the hand-written sink) and of ``WriteToRaccoon`` on
   every transport and wire with the json serializer, and with the protobuf
   and Avro serializers over gRPC (with the no-op pipeline over the same
   generator of messages); every sending run goes to an emulator running in
   a process of its own, in digest mode, and its digest is checked;
2. peak RSS of the pipeline process at 1x and 5x the event count;
3. streaming latency with ``max_buffering_duration=0.5`` (p50, p99);
4. the wire micro-benchmark (microseconds per event to encode a 500-event
   request);
5. where a target is missed, a py-spy profile of the gRPC run
   (:mod:`benchmarks.profile_sink`), when py-spy is installed.

Each pipeline runs in a fresh process (``benchmarks.sink_pipeline``), so
runs do not share warm caches or memory. Configurations run round-robin,
``--repeat`` rounds; the best run of each is kept, every ratio is between
two configurations of this run, and the targets are judged on the medians
of the per-round ratios. The table is printed; a full run also
rewrites the results section of ``benchmarks/README.md``,
``benchmarks/results.json`` and ``benchmarks/throughput.png`` (or those in
``--output-dir``). ``--quick`` runs 100,000 events, once each, and writes
nothing unless ``--output-dir`` is given.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence

from benchmarks import profile_sink, report, streaming_latency, wire_encode, workload

__all__ = ["Config", "CONFIGS", "main"]

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# Seconds one pipeline may take: generous (a run takes ~10 s per million
# events), but a run against a server that went away must not hang the rest.
RUN_TIMEOUT_BASE = 120
RUN_TIMEOUT_PER_MILLION = 120


@dataclasses.dataclass(frozen=True)
class Config:
    """One throughput configuration."""

    name: str
    mode: str  # one of sink_pipeline.MODES
    transport: str  # grpc | rest | websocket | none
    wire: str = "protobuf"
    serializer: str = "json"

    @property
    def sends(self) -> bool:
        return self.mode in ("sink", "ideal-sink", "handwritten")


# The names are the report's keys (report.NOOP, report.TARGETS, ...).
CONFIGS: Sequence[Config] = (
    Config(report.NOOP, "noop", "none"),
    Config(report.IDEAL, "ideal", "none"),
    Config(report.NOOP_WINDOWED, "noop-windowed", "none"),
    Config(report.IDEAL_WINDOWED, "ideal-windowed", "none"),
    Config(report.IDEAL_SINK, "ideal-sink", "grpc"),
    Config(report.HAND_WRITTEN, "handwritten", "rest"),
    Config(report.GRPC, "sink", "grpc"),
    Config(report.REST, "sink", "rest"),
    Config(report.WEBSOCKET, "sink", "websocket"),
    Config(report.REST_JSON, "sink", "rest", wire="json"),
    Config(report.WEBSOCKET_JSON, "sink", "websocket", wire="json"),
    Config(report.NOOP_MESSAGES, "noop", "none", serializer="protobuf"),
    Config(report.GRPC_PROTOBUF, "sink", "grpc", serializer="protobuf"),
    Config(report.GRPC_AVRO, "sink", "grpc", serializer="avro"),
)
MEMORY_CONFIG = next(config for config in CONFIGS if config.name == report.GRPC)  # protobuf wire, json serializer


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _endpoint(emu: Any, transport: str) -> str:
    return {"grpc": emu.grpc_endpoint, "rest": emu.rest_endpoint, "websocket": emu.ws_endpoint}[transport]


def _child_env() -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    return env


class RunFailed(RuntimeError):
    """A benchmark process failed or timed out."""


def _run_child(module: str, args: List[str], timeout: float) -> Dict[str, Any]:
    command = [sys.executable, "-m", module, *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=_child_env(), cwd=ROOT)
    except subprocess.TimeoutExpired as exc:
        raise RunFailed(f"{' '.join(command)} did not finish within {timeout:.0f} s") from exc
    if done.returncode != 0:
        raise RunFailed(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _timeout(events: int) -> float:
    return RUN_TIMEOUT_BASE + RUN_TIMEOUT_PER_MILLION * events / 1e6


def _emulator_cpu_seconds(emu: Any) -> Optional[float]:
    """User + system CPU seconds of the emulator process so far (Linux), or None."""
    process = getattr(emu, "_proc", None)
    try:
        with open(f"/proc/{process.pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (AttributeError, OSError, ValueError, IndexError):
        return None


class _Digests:
    """Expected digests per serializer and event count, each computed once."""

    def __init__(self, counts_by_serializer: Dict[str, List[int]]) -> None:
        self._wanted = counts_by_serializer
        self._cache: Dict[str, Dict[int, workload.Digest]] = {}

    def get(self, serializer: str, count: int) -> workload.Digest:
        if serializer not in self._cache:
            started = time.perf_counter()
            self._cache[serializer] = workload.expected_digests(serializer, self._wanted[serializer])
            _log(f"  expected digests ({serializer}) computed in {time.perf_counter() - started:.1f} s")
        return self._cache[serializer][count]


def _run_config(config: Config, events: int, chunk: int, digests: _Digests) -> Dict[str, Any]:
    """One run of ``config``, with an emulator process of its own when it sends."""
    from raccoon_beam.emulator.process import EmulatorProcess

    args = ["--mode", config.mode, "--events", str(events), "--wire", config.wire,
            "--serializer", config.serializer, "--chunk", str(chunk)]
    try:
        if not config.sends:
            result = _run_child("benchmarks.sink_pipeline", args, _timeout(events))
            result["digest_ok"] = None  # nothing was sent
            return result
        # A fresh emulator for every run: no state carried over from the
        # previous one, and a server lost mid-run fails one run, not the rest.
        with EmulatorProcess() as emu:
            cpu_before = _emulator_cpu_seconds(emu)
            result = _run_child(
                "benchmarks.sink_pipeline", args + ["--endpoint", _endpoint(emu, config.transport)], _timeout(events)
            )
            cpu_after = _emulator_cpu_seconds(emu)
            captured = {t: tuple(d) for t, d in emu.digest().items()}
    except (RunFailed, OSError) as exc:
        _log(f"  {config.name}: FAILED: {exc}")
        return {"mode": config.mode, "events": events, "wire": config.wire, "serializer": config.serializer,
                "seconds": float("nan"), "pipeline_seconds": float("nan"), "events_per_second": 0.0,
                "cpu_us_per_event": float("nan"), "peak_rss_mb": float("nan"), "dead_letters": 0,
                "digest_ok": False, "error": str(exc)[-2000:]}
    result["digest_ok"] = captured == digests.get(config.serializer, events)
    if cpu_before is not None and cpu_after is not None:
        result["emulator_cpu_share"] = (cpu_after - cpu_before) / result["pipeline_seconds"]
    return result


def _throughput(configs: Sequence[Config], events: int, chunk: int, repeat: int, digests: _Digests) -> List[Dict[str, Any]]:
    """Runs every configuration ``repeat`` times, round-robin, and keeps the best run of each.

    Round-robin rather than back to back: on a shared machine a burst of
    load then slows one run of every configuration, not every run of one.
    """
    runs: Dict[str, List[Dict[str, Any]]] = {config.name: [] for config in configs}
    for round_number in range(repeat):
        for config in configs:
            result = _run_config(config, events, chunk, digests)
            runs[config.name].append(result)
            _log(f"  {config.name:38s} {result['events_per_second']:>10,.0f} events/s  "
                 f"cpu {result['cpu_us_per_event']:.2f} us/event  rss {result['peak_rss_mb']:.0f} MB  "
                 f"digest {report.digest_label(result['digest_ok'])}  (round {round_number + 1}/{repeat})")
    rows = []
    for config in configs:
        done = runs[config.name]
        best = max(done, key=lambda r: r["events_per_second"])
        rows.append({
            **dataclasses.asdict(config),
            **best,
            "runs_events_per_second": [r["events_per_second"] for r in done],
            "cpu_us_per_event": min(r["cpu_us_per_event"] for r in done),
            # The smallest peak: the memory ratio then errs against the sink.
            "peak_rss_mb": min(r["peak_rss_mb"] for r in done),
            "digest_ok": None if not config.sends else all(r["digest_ok"] for r in done),
            "dead_letters": max(r["dead_letters"] for r in done),
            # What held the sink back in any round (none on a healthy server).
            "flow": _flow_counters(done) if config.mode == "sink" else None,
        })
    return rows


# The sink's counters that say it was held back, retried or timed out.
FLOW_COUNTERS = ("cumulativeThrottlingSeconds", "throttled_requests", "retries", "requests_timed_out")


def _flow_counters(runs: List[Dict[str, Any]]) -> Dict[str, float]:
    """The sum over ``runs`` of each of :data:`FLOW_COUNTERS` (a counter never incremented is 0)."""
    return {name: sum(r.get("sink_counters", {}).get(name, 0) for r in runs) for name in FLOW_COUNTERS}


def _memory(events: int, chunk: int, digests: _Digests) -> Dict[str, Any]:
    result = _run_config(MEMORY_CONFIG, events, chunk, digests)
    _log(f"  {MEMORY_CONFIG.name} x {events:,}: peak RSS {result['peak_rss_mb']:.0f} MB, "
         f"{result['events_per_second']:,.0f} events/s, digest {report.digest_label(result['digest_ok'])}")
    return result


def _streaming(duration: float, rate: float, buffering: float) -> Dict[str, Any]:
    from raccoon_beam.emulator.process import EmulatorProcess

    with tempfile.TemporaryDirectory(prefix="raccoon-bench-") as folder:
        output = os.path.join(folder, "captured.jsonl")
        with EmulatorProcess(["--output", output]) as emu:
            result = _run_child(
                "benchmarks.streaming_latency",
                ["--endpoint", emu.grpc_endpoint, "--duration", str(duration), "--rate", str(rate),
                 "--buffering", str(buffering)],
                RUN_TIMEOUT_BASE + 2 * duration,
            )
            counters = emu.counters()
            captured = counters.total_events_accepted
            requests = counters.accepted()
        latencies = streaming_latency.latencies_ms(output)
    result.update({
        "expected_events": int(round(duration * rate)),
        "captured_events": captured,
        "requests": requests,
        "p50_ms": streaming_latency.percentile(latencies, 0.50),
        "p99_ms": streaming_latency.percentile(latencies, 0.99),
        "max_ms": latencies[-1] if latencies else float("nan"),
    })
    _log(f"  streaming: {captured} events captured in {requests} requests, p50 {result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms")
    return result


def _profile(results: Dict[str, Any], events: int) -> None:
    """Adds the py-spy profile (GIL holder) of the gRPC run, the main configuration, to ``results``, when py-spy is here."""
    if profile_sink.py_spy() is None:
        _log("a target was missed; no profile: py-spy is not installed (pip install -e '.[bench]')")
        return
    _log(f"a target was missed: profiling {MEMORY_CONFIG.name}, {events:,} events")
    try:
        results["profile"] = profile_sink.profile(
            transport=MEMORY_CONFIG.transport, wire=MEMORY_CONFIG.wire, serializer=MEMORY_CONFIG.serializer,
            events=events,
            # The thread holding the GIL: the sink is CPU-bound on the bundle's
            # thread, and without --gil py-spy also counts threads blocked in
            # native calls (epoll, gRPC's poller), which hides where CPU goes.
            gil=True,
        )
    except (RuntimeError, OSError) as exc:
        _log(f"  profile failed: {exc}")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 events, one run each; writes nothing by default")
    parser.add_argument("--events", type=int, help="events per throughput run (default 1,000,000; quick 100,000)")
    parser.add_argument("--memory-factor", type=int, default=5, help="the memory run has this many times --events")
    parser.add_argument("--repeat", type=int, help="rounds: runs per configuration, the best kept (default 3; quick 1)")
    parser.add_argument("--chunk", type=int, default=10_000, help="events generated per input element")
    parser.add_argument("--only", help="comma-separated substrings of configuration names to run")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory run")
    parser.add_argument("--no-streaming", action="store_true", help="skip the streaming latency run")
    parser.add_argument("--streaming-duration", type=float, help="seconds (default 30; quick 10)")
    parser.add_argument("--streaming-rate", type=float, default=500.0, help="events per second")
    parser.add_argument("--no-profile", action="store_true", help="no py-spy profile of the gRPC run when a target is missed")
    parser.add_argument("--profile-events", type=int, default=profile_sink.DEFAULT_EVENTS,
                        help="events of the profiled run")
    parser.add_argument("--output-dir", help="where README.md, results.json and throughput.png are written")
    args = parser.parse_args(argv)
    if args.events is None:
        args.events = 100_000 if args.quick else 1_000_000
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.streaming_duration is None:
        args.streaming_duration = 10.0 if args.quick else 30.0
    args.chunk = min(args.chunk, args.events)
    if args.events % args.chunk:
        parser.error(f"--events must be a multiple of --chunk ({args.chunk})")
    if args.output_dir is None and not args.quick:
        args.output_dir = HERE
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    configs = list(CONFIGS)
    if args.only:
        wanted = [part.strip() for part in args.only.split(",") if part.strip()]
        configs = [c for c in configs if any(w in c.name for w in wanted)]
    memory_events = args.events * args.memory_factor
    counts: Dict[str, List[int]] = {}
    for config in configs:
        if config.sends:
            counts.setdefault(config.serializer, []).append(args.events)
    if not args.no_memory:
        counts.setdefault(MEMORY_CONFIG.serializer, []).extend([args.events, memory_events])
    digests = _Digests(counts)

    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    results: Dict[str, Any] = {"machine": report.machine(), "events": args.events, "repeat": args.repeat}
    _log(f"wire micro-benchmark ({wire_encode.BATCH}-event requests)")
    results["wire"] = wire_encode.measure()
    _log(f"throughput, {args.events:,} events, best of {args.repeat}")
    results["throughput"] = _throughput(configs, args.events, args.chunk, args.repeat, digests)
    if not args.no_memory:
        _log(f"memory, {memory_events:,} events")
        results["memory"] = _memory(memory_events, args.chunk, digests)
    if not args.no_streaming:
        _log(f"streaming latency, {args.streaming_duration:g} s at {args.streaming_rate:g} events/s")
        results["streaming"] = _streaming(args.streaming_duration, args.streaming_rate, 0.5)
    if not args.no_profile and report.missed(results):
        _profile(results, args.profile_events)
    results["seconds"] = time.perf_counter() - started
    results["load"] = [load_before, os.getloadavg()[0]]

    tables = report.render(results)
    print(tables)
    if args.output_dir:
        report.write(results, args.output_dir)
        _log(f"results written to {args.output_dir}")
    return 0 if report.all_verified(results) else 1


if __name__ == "__main__":
    sys.exit(main())
