"""Tables, targets, chart and README section of a benchmark run.

``python -m benchmarks.report [results.json] [--output-dir DIR]`` renders
them again from a run's ``results.json`` (after a change to this module,
without running the benchmark again).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import subprocess
from typing import Any, Dict, List, Optional, Tuple

__all__ = [
    "Target",
    "TARGETS",
    "FLOOR_TARGETS",
    "machine",
    "render",
    "write",
    "with_section",
    "all_verified",
    "digest_label",
    "targets",
    "floor_targets",
    "missed",
]

BEGIN = "<!-- BEGIN GENERATED RESULTS (python -m benchmarks.run) -->"
END = "<!-- END GENERATED RESULTS -->"
CHART = "throughput.png"
RESULTS = "results.json"

# Configuration names, shared with run.CONFIGS.
NOOP = "no-op pipeline"
IDEAL = "ideal encode-only DoFn"
NOOP_WINDOWED = "no-op DoFn + WindowedValueParam"
IDEAL_WINDOWED = "ideal encode-only DoFn + WindowedValueParam"
IDEAL_SINK = "ideal sink (gRPC, WindowedValueParam)"
HAND_WRITTEN = "hand-written sink (REST)"
GRPC = "grpc / protobuf wire"
REST = "rest / protobuf wire"
WEBSOCKET = "websocket / protobuf wire"
REST_JSON = "rest / json wire"
WEBSOCKET_JSON = "websocket / json wire"
NOOP_MESSAGES = "no-op pipeline (messages)"
GRPC_PROTOBUF = "grpc, protobuf serializer"
GRPC_AVRO = "grpc, avro serializer"
# The configurations that send nothing (floors: no sink can be faster).
REFERENCES = (NOOP, IDEAL, NOOP_WINDOWED, IDEAL_WINDOWED, NOOP_MESSAGES)


@dataclasses.dataclass(frozen=True)
class Target:
    """A throughput target: ``config`` at least ``factor`` x ``reference``'s events/s.

    Judged on the median of the per-round ratios (both ran once per round,
    round-robin), which a burst of load on a shared machine moves less than
    the ratio of two best runs.
    """

    label: str
    config: str
    reference: str
    factor: float


# The performance reference is the ideal sink: the same work as any sink of
# this protocol, hand-tuned, with real I/O to the same emulator. Over gRPC the
# sink does what it does; REST and WebSocket pay for HTTP framing and an
# event loop on top (the emulator's aiohttp side, too), hence the lower bar.
TARGETS: Tuple[Target, ...] = (
    Target("gRPC / protobuf wire / json serializer", GRPC, IDEAL_SINK, 0.9),
    Target("REST / protobuf wire / json serializer", REST, IDEAL_SINK, 0.8),
    Target("WebSocket / protobuf wire / json serializer", WEBSOCKET, IDEAL_SINK, 0.8),
)
# Ratios to the floors (the references without I/O), shown for information:
# the targets of earlier runs, no longer pass/fail.
FLOOR_TARGETS: Tuple[Target, ...] = (
    Target("gRPC / protobuf wire / json serializer", GRPC, IDEAL, 0.75),
    Target("gRPC / protobuf wire / json serializer", GRPC, IDEAL_WINDOWED, 0.75),
    Target("gRPC / protobuf wire / json serializer", GRPC, NOOP, 0.4),
    Target("gRPC / protobuf wire / json serializer", GRPC, NOOP_WINDOWED, 0.4),
    Target("REST / protobuf wire", REST, NOOP, 0.35),
    Target("WebSocket / protobuf wire", WEBSOCKET, NOOP, 0.35),
    Target("REST / JSON wire", REST_JSON, NOOP, 0.3),
    Target("WebSocket / JSON wire", WEBSOCKET_JSON, NOOP, 0.3),
    Target("gRPC, protobuf serializer", GRPC_PROTOBUF, NOOP_MESSAGES, 0.4),
)
RSS_LIMIT = 1.1  # peak RSS at 5x the events <= 1.1 x at 1x
STREAMING_P99_MS = 1500.0  # the streaming target: p99 creation -> capture latency


def machine() -> Dict[str, str]:
    """Where the numbers come from: CPUs, CPU model, Python, Beam, commit."""
    import apache_beam

    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, cwd=root, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no", "--", "raccoon_beam", "benchmarks"):
        commit += " (with uncommitted changes)"
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "apache_beam": apache_beam.__version__,
        "platform": platform.platform(),
        "commit": commit,
    }


def digest_label(ok: Optional[bool]) -> str:
    return "n/a (nothing sent)" if ok is None else ("verified" if ok else "MISMATCH")


def _rows_by_name(results: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    return {row["name"]: row for row in results.get("throughput", [])}


def _rate(rows: Dict[str, Dict[str, Any]], name: str) -> Optional[float]:
    row = rows.get(name)
    return row["events_per_second"] if row else None


def _ratio(value: Optional[float], reference: Optional[float]) -> Optional[float]:
    return value / reference if value is not None and reference else None


def _round_ratios(row: Dict[str, Any], reference: Dict[str, Any]) -> List[float]:
    """The ratio of ``row`` to ``reference`` in each round (both ran once per round, round-robin)."""
    return [
        value / ref
        for value, ref in zip(row.get("runs_events_per_second", []), reference.get("runs_events_per_second", []))
        if value and ref
    ]


def targets(results: Dict[str, Any]) -> List[Tuple[str, str, Optional[bool]]]:
    """``(target, measured, met)`` for each target that this run measured.

    A throughput target is judged on the median of the per-round ratios of
    the configuration to its reference, both from this run.
    """
    found = _throughput_targets(results, TARGETS)
    rss = _rss_ratio(results)
    if rss is not None:
        found.append((f"peak RSS at {results['memory']['events']:,} events <= {RSS_LIMIT:g} x at {results['events']:,}",
                      f"{rss:.2f} x", rss <= RSS_LIMIT))
    streaming = results.get("streaming")
    if streaming:
        found.append(("streaming p99 <= 1.5 s (max_buffering_duration=0.5)", f"{streaming['p99_ms'] / 1000:.2f} s",
                      streaming["p99_ms"] <= STREAMING_P99_MS))
    return found


def floor_targets(results: Dict[str, Any]) -> List[Tuple[str, str, Optional[bool]]]:
    """The earlier targets, against the references without I/O (informational)."""
    return _throughput_targets(results, FLOOR_TARGETS)


def _throughput_targets(results: Dict[str, Any], wanted: Tuple[Target, ...]) -> List[Tuple[str, str, Optional[bool]]]:
    rows = _rows_by_name(results)
    found: List[Tuple[str, str, Optional[bool]]] = []
    for target in wanted:
        reference, row = rows.get(target.reference), rows.get(target.config)
        if not reference or not reference["events_per_second"] or not row:
            continue
        best = row["events_per_second"] / reference["events_per_second"]
        # A run older than the per-round record has its best runs only.
        rounds = _round_ratios(row, reference) or [best]
        median = statistics.median(rounds)
        text = f"{median:.2f} x (rounds {min(rounds):.2f}-{max(rounds):.2f}; best runs {best:.2f} x)"
        found.append((f"{target.label} >= {target.factor:g} x {target.reference}", text, median >= target.factor))
    return found


def missed(results: Dict[str, Any]) -> List[str]:
    """The targets this run missed."""
    return [name for name, _, met in targets(results) if met is False]


def _rss_ratio(results: Dict[str, Any]) -> Optional[float]:
    memory = results.get("memory")
    small = _rows_by_name(results).get(GRPC)
    if not memory or not small:
        return None
    return memory["peak_rss_mb"] / small["peak_rss_mb"]


def all_verified(results: Dict[str, Any]) -> bool:
    """Whether every run that sent events was captured exactly, with no dead letter."""
    runs = list(results.get("throughput", []))
    if results.get("memory"):
        runs.append(results["memory"])
    ok = all(row["digest_ok"] is not False and row["dead_letters"] == 0 for row in runs)
    streaming = results.get("streaming")
    if streaming:
        ok = ok and streaming["dead_letters"] == 0 and streaming["captured_events"] == streaming["expected_events"]
    return ok


def _fmt(value: Optional[float], spec: str, suffix: str = "") -> str:
    return "" if value is None else f"{value:{spec}}{suffix}"


def render(results: Dict[str, Any]) -> str:
    """The results as Markdown: machine, throughput, targets, memory, latency, wire."""
    m = results["machine"]
    rows = _rows_by_name(results)
    noop, ideal, hand = _rate(rows, NOOP), _rate(rows, IDEAL), _rate(rows, HAND_WRITTEN)
    ideal_sink, noop_messages = _rate(rows, IDEAL_SINK), _rate(rows, NOOP_MESSAGES)
    out = [
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), Python {m['python']}, apache-beam {m['apache_beam']}, "
        f"{m['platform']}; commit {m['commit']}. Whole run: {results.get('seconds', 0) / 60:.1f} min."
        + (f" Load average (1 min) before / after: {results['load'][0]:.2f} / {results['load'][1]:.2f}."
           if results.get("load") else ""),
        "",
    ]
    if rows:
        out += [
            f"### Throughput: {results['events']:,} events, DirectRunner, best of {results['repeat']}",
            "",
            "| configuration | events/s | x ideal sink | x no-op | x ideal encode-only | x hand-written "
            "| client CPU us/event | emulator CPU | peak RSS | digest |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for row in results["throughput"]:
            rate = row["events_per_second"]
            # A sink over messages is compared with the no-op pipeline over the same messages.
            own_noop = noop_messages if row["serializer"] == "protobuf" and noop_messages else noop
            emulator = row.get("emulator_cpu_share")
            out.append(
                f"| {row['name']} | {rate:,.0f} | {_fmt(_ratio(rate, ideal_sink), '.2f')} "
                f"| {_fmt(_ratio(rate, own_noop), '.2f')} "
                f"| {_fmt(_ratio(rate, ideal), '.2f')} | {_fmt(_ratio(rate, hand), '.2f')} "
                f"| {row['cpu_us_per_event']:.2f} | {_fmt(None if emulator is None else emulator * 100, '.0f', ' %')} "
                f"| {row['peak_rss_mb']:.0f} MB | {digest_label(row['digest_ok'])} |"
            )
        out += [
            "",
            "events/s: events / seconds from the first generated event to the end of the pipeline (the best "
            "run); the ratios here are of best runs (the targets below take the median of the per-round "
            "ratios). x no-op: over the no-op pipeline of the same generator (the messages one for the protobuf "
            "serializer). Client CPU: CPU time of the pipeline process (all threads) per event over the same "
            "span (the lowest of the runs). Emulator CPU: the emulator process's CPU time over the pipeline's "
            "run, as a share of one core. Digest: the emulator's per-type count, bytes and multiset hash equal "
            "those computed here from the same generator, in every run.",
            "",
        ]
        flows = [row for row in results["throughput"] if row["mode"] == "sink" and row.get("flow")]
        if flows:
            held = {name: sum(row["flow"][name] for row in flows) for name in flows[0]["flow"]}
            out += [
                "The sink's flow control over all its runs (adaptive throttling on, as by default; it must never "
                "engage against a healthy server): " + ", ".join(f"{name} {value:g}" for name, value in held.items())
                + ".",
                "",
            ]
    found = targets(results)
    if found:
        out += [
            "### Targets",
            "",
            f"Throughput against the ideal sink ({IDEAL_SINK}), by the median of the per-round ratios "
            "(the range of the rounds and the ratio of the best runs beside it).",
            "",
            "| target | measured | met |",
            "| --- | --- | --- |",
        ]
        out += [f"| {name} | {measured} | {'yes' if met else '**no**'} |" for name, measured, met in found]
        out.append("")
    floors = floor_targets(results)
    if floors:
        out += [
            "### Against the floors (informational)",
            "",
            "The references without I/O, and the targets earlier runs were held to against them; no longer "
            "pass/fail. The \"+ WindowedValueParam\" references pay what the sink and the ideal sink pay to keep "
            "dead letters in their elements' windows (Beam's per-window invoker).",
            "",
            "| earlier target | measured | reached |",
            "| --- | --- | --- |",
        ]
        out += [f"| {name} | {measured} | {'yes' if met else 'no'} |" for name, measured, met in floors]
        out.append("")
    memory = results.get("memory")
    if memory:
        small = rows.get(GRPC)
        out += [
            "### Memory (gRPC / protobuf wire, json serializer)",
            "",
            "| events | peak RSS of the pipeline process | events/s | digest |",
            "| ---: | ---: | ---: | --- |",
        ]
        if small:
            out.append(f"| {results['events']:,} | {small['peak_rss_mb']:.0f} MB | {small['events_per_second']:,.0f} "
                       f"| {digest_label(small['digest_ok'])} |")
        out.append(f"| {memory['events']:,} | {memory['peak_rss_mb']:.0f} MB | {memory['events_per_second']:,.0f} "
                   f"| {digest_label(memory['digest_ok'])} |")
        out.append("")
    streaming = results.get("streaming")
    if streaming:
        out += [
            "### Streaming latency",
            "",
            f"PeriodicImpulse at {streaming['rate']:g} events/s for {streaming['duration']:g} s on the FnApiRunner, "
            f"gRPC, `max_buffering_duration={streaming['buffering']:g}`; latency from the event's creation "
            "(`time.time()` in the pipeline) to its capture (the emulator's `captured_at`).",
            "",
            "| events captured / sent | requests | p50 | p99 | max |",
            "| ---: | ---: | ---: | ---: | ---: |",
            f"| {streaming['captured_events']:,} / {streaming['expected_events']:,} | {streaming.get('requests', '')} "
            f"| {streaming['p50_ms']:.0f} ms | {streaming['p99_ms']:.0f} ms | {streaming['max_ms']:.0f} ms |",
            "",
        ]
    wire = results.get("wire")
    if wire:
        out += ["### Wire encoding (500-event request)", "", "| encoder | us/event |", "| --- | ---: |"]
        out += [f"| {name} | {micros:.3f} |" for name, micros in wire.items()]
        out.append("")
    profile = results.get("profile")
    if profile:
        out += [f"### Profile: {profile['title']}", "",
                f"Recorded because a target was missed: `{profile['command']}`.", "", profile["text"], ""]
    return "\n".join(out)


def chart(results: Dict[str, Any], path: str) -> bool:
    """Draws a horizontal bar chart of events/s with the target lines; False without matplotlib."""
    try:
        import matplotlib
    except ImportError:  # the `bench` extra is not installed
        return False

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    rows = list(results["throughput"])
    by_name = _rows_by_name(results)
    ideal_sink = _rate(by_name, IDEAL_SINK)
    colors = {"sink": "#2b6cb0", "noop": "#718096", "ideal": "#a0aec0", "noop-windowed": "#718096",
              "ideal-windowed": "#a0aec0", "ideal-sink": "#2f855a", "handwritten": "#c05621"}
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.6))
    names = [row["name"] for row in rows][::-1]
    rates = [row["events_per_second"] for row in rows][::-1]
    ax.barh(names, rates, color=[colors.get(row["mode"], "#2b6cb0") for row in rows][::-1])
    for y, rate in enumerate(rates):
        ax.text(rate, y, f" {rate / 1000:,.0f}k", va="center", fontsize=8)
    lines = []
    if ideal_sink:
        lines += [(0.9 * ideal_sink, "0.9 x ideal sink (gRPC)", "#2f855a"),
                  (0.8 * ideal_sink, "0.8 x ideal sink (REST, WebSocket)", "#d69e2e")]
    for x, label, color in lines:
        ax.axvline(x, linestyle="--", color=color, linewidth=1, label=label)
    if lines:
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xlabel("events/s (higher is better)")
    ax.set_title(f"WriteToRaccoon, {results['events']:,} events, DirectRunner, {results['machine']['nproc']} CPUs\n"
                 f"commit {results['machine']['commit']}", fontsize=9)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x / 1000:,.0f}k"))
    ax.set_xlim(0, max(rates + [x for x, _, _ in lines]) * 1.15)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


_README_TEMPLATE = """# Benchmarks

{begin}
{end}
"""


def write(results: Dict[str, Any], folder: str) -> None:
    """Writes results.json, the chart and the README's generated section in ``folder``."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, RESULTS), "w", encoding="utf-8") as out:
        json.dump(results, out, indent=2)
        out.write("\n")
    section = render(results)
    if results.get("throughput") and chart(results, os.path.join(folder, CHART)):
        section += f"\n![events/s per configuration]({CHART})\n"
    readme = os.path.join(folder, "README.md")
    try:
        with open(readme, encoding="utf-8") as existing:
            text = existing.read()
    except FileNotFoundError:
        text = _README_TEMPLATE.format(begin=BEGIN, end=END)
    with open(readme, "w", encoding="utf-8") as out:
        out.write(with_section(text, BEGIN, END, f"{BEGIN}\n{section}\n{END}"))


def with_section(text: str, begin: str, end: str, section: str) -> str:
    """``text`` with its generated section (``begin`` to ``end``, markers included) replaced by ``section``.

    ``section`` holds the markers itself; without them in ``text`` it is
    appended. Every benchmark that writes a section of a page uses this.
    """
    if begin in text and end in text:
        start, stop = text.index(begin), text.index(end) + len(end)
        return text[:start] + section + text[stop:]
    return text.rstrip("\n") + "\n\n" + section + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    import argparse

    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="?", default=os.path.join(here, RESULTS))
    parser.add_argument("--output-dir", default=here, help="where README.md, results.json and the chart are written")
    args = parser.parse_args(argv)
    with open(args.results, encoding="utf-8") as source:
        results = json.load(source)
    print(render(results))
    write(results, args.output_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
