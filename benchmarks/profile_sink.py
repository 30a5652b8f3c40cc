"""Where a throughput run spends its CPU: py-spy samples, grouped by component.

``python -m benchmarks.profile_sink [--mode sink|ceiling|baseline|floor] [--transport grpc] [--events 500000]``
starts the emulator in its own process, runs one ``benchmarks.sink_pipeline``
under ``py-spy record`` (``pip install py-spy``), and prints the share of the
pipeline process's samples per component: each sample goes to the innermost
frame that belongs to raccoon-beam or to the benchmark's generator, else to
the Beam runner, else to waiting or to the interpreter. The raw collapsed
stacks are kept (``--raw``) for a flame graph.
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
from typing import Counter, List, Optional, Tuple

__all__ = ["categorize", "summarize", "main"]

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# (component, pattern on a frame "function (path:line)"), innermost match wins.
_OWN = [
    ("sink: serializer (serializers.py, json/fastavro/protobuf)", r"raccoon_beam/serializers\.py"),
    ("sink: event building and checks (events.py)", r"raccoon_beam/events\.py"),
    ("sink: batching (batching.py)", r"raccoon_beam/batching\.py"),
    ("sink: request encoding (wire.py)", r"raccoon_beam/wire\.py"),
    ("sink: delivery, dispatch (delivery.py, _loop.py)", r"raccoon_beam/(delivery|_loop)\.py"),
    ("sink: retry wrapper (retry.py, tenacity)", r"raccoon_beam/retry\.py|tenacity/"),
    ("sink: transport (transports/, grpc, aiohttp)", r"raccoon_beam/transports/|/grpc/|aiohttp/|null_transport|NullTransport"),
    ("sink: DoFn (io.py)", r"raccoon_beam/io\.py"),
    ("baseline DoFn (json_format, requests)", r"HandWrittenRaccoonFn|google/protobuf/json_format|/requests/|/urllib3/"),
    ("floor DoFn (serialize only)", r"_SerializeOnlyFn"),
    ("input generator (benchmarks/workload.py)", r"benchmarks/workload\.py"),
]
_WAITING = re.compile(r"\b(select|wait|acquire|_worker|poll|sleep|join)\b.*\((selectors|threading|concurrent|asyncio|queue)")
_BEAM = re.compile(r"apache_beam/")
_COMPILED = [(name, re.compile(pattern)) for name, pattern in _OWN]


def categorize(frames: List[str]) -> str:
    """The component of one sampled stack (root first)."""
    leaf = frames[-1] if frames else ""
    if any("_find_and_load" in frame for frame in frames):
        return "start-up: imports"
    if _WAITING.search(leaf):
        return "waiting (idle threads, locks, selectors)"
    if leaf.startswith(("Thread.run ", "_serve ")):
        return "native code on other threads (gRPC polling, Beam's control server)"
    if leaf.startswith("_DoFnParam.__eq__ "):
        return "Beam runner: matching DoFn parameters (WindowedValueParam)"
    for frame in reversed(frames):
        for name, pattern in _COMPILED:
            if pattern.search(frame):
                return name
    if any(_BEAM.search(frame) for frame in frames):
        return "Beam runner (DoFn invocation, bundle processing)"
    return "other (interpreter, threads start-up)"


def summarize(raw_path: str) -> Tuple[int, Counter]:
    """``(total samples, samples per component)`` of a py-spy ``--format raw`` file."""
    counts: Counter = collections.Counter()
    total = 0
    with open(raw_path, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            stack, _, number = line.rpartition(" ")
            samples = int(number)
            total += samples
            counts[categorize(stack.split(";"))] += samples
    return total, counts


def render(total: int, counts: Counter, title: str) -> str:
    out = [f"{title}: {total} samples", "", "| component | share of samples |", "| --- | ---: |"]
    for name, samples in counts.most_common():
        out.append(f"| {name} | {100 * samples / total:.1f} % |")
    return "\n".join(out)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", default="sink", choices=("sink", "ceiling", "baseline", "floor"))
    parser.add_argument("--transport", default="grpc", choices=("grpc", "rest", "websocket"))
    parser.add_argument("--wire", default="protobuf")
    parser.add_argument("--serializer", default="json")
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--raw", help="keep py-spy's collapsed stacks in this file")
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(py_spy):
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return 2
    from raccoon_beam.emulator.process import EmulatorProcess

    raw = args.raw or os.path.join(tempfile.mkdtemp(prefix="raccoon-profile-"), "stacks.txt")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    with EmulatorProcess() as emu:
        endpoint = {"grpc": emu.grpc_endpoint, "rest": emu.rest_endpoint, "websocket": emu.ws_endpoint}[args.transport]
        command = [
            py_spy, "record", "--rate", str(args.rate), "--format", "raw", "--output", raw, "--",
            sys.executable, "-m", "benchmarks.sink_pipeline", "--mode", args.mode, "--endpoint", endpoint,
            "--events", str(args.events), "--wire", args.wire, "--serializer", args.serializer,
        ]
        subprocess.run(command, check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    total, counts = summarize(raw)
    title = f"{args.mode}, {args.transport} / {args.wire}, {args.serializer} serializer, {args.events:,} events"
    print(render(total, counts, title))
    print(f"\nraw stacks: {raw}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
