"""Where a throughput run spends its time: py-spy samples, by function and by component.

``python -m benchmarks.profile_sink [--mode sink] [--transport grpc] [--events 300000] [--top 15]``
starts the emulator in its own process, runs one ``benchmarks.sink_pipeline``
under ``py-spy record`` (``pip install -e '.[bench]'``) and prints, as
Markdown tables:

- the top functions by *self* samples (the function was the innermost frame),
  and the top functions of raccoon-beam and of the benchmark by *total*
  samples (anywhere on the stack), as shares of the samples of the pipeline
  process past its start-up (imports are counted apart; py-spy leaves idle
  threads out);
- the share per component: each sample goes to the innermost frame that
  belongs to raccoon-beam, the references or the generator, else to the
  Beam runner, else to waiting or to the interpreter.

The raw collapsed stacks are kept (``--raw``) for a flame graph.
:mod:`benchmarks.run` calls :func:`profile` when a target is missed and puts
its text in the README.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Counter, Dict, List, Optional, Tuple

__all__ = ["DEFAULT_EVENTS", "categorize", "function_of", "summarize", "render", "py_spy", "profile", "main"]

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# Enough events for a few seconds of steady state past the start-up, at the
# sink's speed, while the whole profile stays well under a minute.
DEFAULT_EVENTS = 300_000
# py-spy's default rate; the pipeline runs for seconds, so thousands of samples.
DEFAULT_RATE = 100
DEFAULT_TOP = 15

# (component, pattern on a frame "function (path:line)"), innermost match wins.
_OWN = [
    ("sink: serializer (serializers)", r"raccoon_beam/serializers"),
    ("sink: event building and checks (events)", r"raccoon_beam/events"),
    ("sink: batching", r"raccoon_beam/batching"),
    ("sink: request encoding (wire)", r"raccoon_beam/wire"),
    ("sink: retry wrapper (retry, tenacity)", r"raccoon_beam/retry|tenacity/"),
    ("sink: transport (transports, grpc, aiohttp)", r"raccoon_beam/transports/|/grpc/|aiohttp/"),
    ("sink: delivery, dispatch, event loop (delivery, _loop)", r"raccoon_beam/(delivery|_loop)"),
    ("sink: DoFn (io)", r"raccoon_beam/io"),
    ("hand-written sink (json_format, requests)", r"HandWrittenRaccoonFn|google/protobuf/json_format|/requests/|/urllib3/"),
    ("ideal encode-only DoFn", r"IdealEncodeFn"),
    ("input generator (benchmarks/workload.py)", r"benchmarks/workload\.py"),
]
_WAITING = re.compile(r"\b(select|wait|acquire|_worker|poll|sleep|join)\b.*\((selectors|threading|concurrent|asyncio|queue)")
_BEAM = re.compile(r"apache_beam/")
_COMPILED = [(name, re.compile(pattern)) for name, pattern in _OWN]
_LINE = re.compile(r":\d+\)$")
_START_UP = "start-up: imports"
# Functions listed by total time: ours, not the runner's call chain above them.
_OURS = re.compile(r"\((raccoon_beam/|benchmarks/(workload|references)\.py)")
_SITE = re.compile(r"\(.*?/(site-packages|lib/python3\.\d+)/")


def categorize(frames: List[str]) -> str:
    """The component of one sampled stack (root first)."""
    leaf = frames[-1] if frames else ""
    if any("_find_and_load" in frame for frame in frames):
        return _START_UP
    if _WAITING.search(leaf):
        return "waiting (idle threads, locks, selectors)"
    if leaf.startswith(("Thread.run ", "_serve ")):
        return "native code on other threads (gRPC polling, Beam's control server)"
    for frame in reversed(frames):
        for name, pattern in _COMPILED:
            if pattern.search(frame):
                return name
    if any(_BEAM.search(frame) for frame in frames):
        return "Beam runner (DoFn invocation, bundle processing)"
    return "other (interpreter, threads start-up)"


def function_of(frame: str) -> str:
    """``"name (path)"`` of a py-spy frame, without the line and the site-packages prefix."""
    frame = _LINE.sub(")", frame)
    frame = _SITE.sub("(", frame)
    frame = frame.replace(f"({ROOT}/", "(")
    return frame if not frame.startswith(" (") and frame else f"(native or unknown){frame}"


def summarize(raw_path: str) -> Tuple[int, Counter, Counter, Counter]:
    """``(samples, per component, self per function, total per function)`` of a py-spy raw file."""
    components: Counter = collections.Counter()
    own: Counter = collections.Counter()
    inclusive: Counter = collections.Counter()
    total = 0
    with open(raw_path, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            stack, _, number = line.rpartition(" ")
            samples = int(number)
            frames = stack.split(";")
            total += samples
            component = categorize(frames)
            components[component] += samples
            if component == _START_UP:
                continue
            functions = [function_of(frame) for frame in frames]
            own[functions[-1]] += samples
            for function in set(functions):  # once per stack, however deep the recursion
                inclusive[function] += samples
    return total, components, own, inclusive


def render(total: int, components: Counter, own: Counter, inclusive: Counter, top: int = DEFAULT_TOP) -> str:
    """The three tables, as Markdown."""
    start_up = components.get(_START_UP, 0)
    steady = total - start_up
    if not steady:
        return "no samples"

    def share(samples: int, of: int = steady) -> str:
        return f"{100 * samples / of:.1f} %"

    ours = collections.Counter({name: n for name, n in inclusive.items() if _OURS.search(name)})
    out = [f"{total:,} samples of the pipeline process; {share(start_up, total)} start-up (imports), left out of "
           "the function tables, whose shares are of the other samples.", "",
           f"Top {top} functions by self time:", "", "| function | self | total |", "| --- | ---: | ---: |"]
    out += [f"| `{name}` | {share(n)} | {share(inclusive[name])} |" for name, n in own.most_common(top)]
    out += ["", f"Top {top} functions of raccoon-beam and the benchmark by total time (self + callees):", "",
            "| function | total | self |", "| --- | ---: | ---: |"]
    out += [f"| `{name}` | {share(n)} | {share(own[name])} |" for name, n in ours.most_common(top)]
    out += ["", "By component (the innermost frame that belongs to one), of all samples:", "",
            "| component | share |", "| --- | ---: |"]
    out += [f"| {name} | {share(n, total)} |" for name, n in components.most_common()]
    return "\n".join(out)


def py_spy() -> Optional[str]:
    """The py-spy executable (of this environment first), or None."""
    local = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return local if os.path.exists(local) else shutil.which("py-spy")


def profile(
    *,
    mode: str = "sink",
    transport: str = "grpc",
    wire: str = "protobuf",
    serializer: str = "json",
    events: int = DEFAULT_EVENTS,
    rate: int = DEFAULT_RATE,
    top: int = DEFAULT_TOP,
    raw: Optional[str] = None,
    gil: bool = False,
) -> Dict[str, str]:
    """Profiles one run; returns ``{"title", "command", "text"}``. Raises RuntimeError without py-spy.

    Args:
      mode: ``benchmarks.sink_pipeline``'s mode.
      transport: where a sending mode sends (``grpc``, ``rest``, ``websocket``).
      wire: the sink's wire.
      serializer: the sink's serializer (and generator).
      events: events of the run.
      rate: py-spy samples per second.
      top: functions per table.
      raw: keep py-spy's collapsed stacks in this file.
      gil: sample only the thread holding the GIL (py-spy ``--gil``): where
        the interpreter's time goes, without the threads waiting for it.
    """
    executable = py_spy()
    if executable is None:
        raise RuntimeError("py-spy is not installed: pip install -e '.[bench]'")
    from raccoon_beam.emulator.process import EmulatorProcess

    raw = raw or os.path.join(tempfile.mkdtemp(prefix="raccoon-profile-"), "stacks.txt")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    with EmulatorProcess() as emu:
        endpoint = {"grpc": emu.grpc_endpoint, "rest": emu.rest_endpoint, "websocket": emu.ws_endpoint}[transport]
        pipeline = ["-m", "benchmarks.sink_pipeline", "--mode", mode, "--endpoint", endpoint,
                    "--events", str(events), "--wire", wire, "--serializer", serializer]
        command = [executable, "record", "--rate", str(rate), "--format", "raw", "--output", raw,
                   *(["--gil"] if gil else []), "--", sys.executable, *pipeline]
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"py-spy failed ({done.returncode}): {done.stderr[-2000:]}")
    text = render(*summarize(raw), top=top)
    flags = f"--mode {mode} --transport {transport} --wire {wire} --serializer {serializer} --events {events}"
    flags += " --gil" if gil else ""
    return {
        "title": f"{mode}, {transport} / {wire} wire, {serializer} serializer, {events:,} events"
        + (", GIL holder only" if gil else ""),
        "command": f"python -m benchmarks.profile_sink {flags}",
        "text": text,
        "raw": raw,
    }


def main(argv: Optional[List[str]] = None) -> int:
    from benchmarks.sink_pipeline import MODES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", default="sink", choices=MODES)
    parser.add_argument("--transport", default="grpc", choices=("grpc", "rest", "websocket"))
    parser.add_argument("--wire", default="protobuf", choices=("protobuf", "json"))
    parser.add_argument("--serializer", default="json", choices=("json", "protobuf", "avro"))
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS)
    parser.add_argument("--rate", type=int, default=DEFAULT_RATE, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=DEFAULT_TOP, help="functions per table")
    parser.add_argument("--raw", help="keep py-spy's collapsed stacks in this file")
    parser.add_argument("--gil", action="store_true", help="sample only the thread holding the GIL")
    args = parser.parse_args(argv)
    try:
        result = profile(mode=args.mode, transport=args.transport, wire=args.wire, serializer=args.serializer,
                         events=args.events, rate=args.rate, top=args.top, raw=args.raw, gil=args.gil)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"{result['title']}\n\n{result['text']}")
    print(f"\nraw stacks: {result['raw']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
