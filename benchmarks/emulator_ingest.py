"""Ingest capacity of the Raccoon emulator.

The emulator runs in its own process (``EmulatorProcess``, digest capture);
a load generator runs in another process and sends 500-event protobuf
batches (~150-byte events) with several requests in flight, over gRPC and
over REST, for a few seconds each. The script reports events/s as the
generator saw them acknowledged, and checks through the emulator's digest
that exactly the acknowledged events were captured.

    python benchmarks/emulator_ingest.py [--duration 5] [--in-flight 8] [--batch 500]
    python benchmarks/emulator_ingest.py --console [--rounds 3] [--capture events]

With ``--console`` each transport runs ``--rounds`` times without and with
the console open, alternating (off, on, off, on, ...), in one emulator
process: "open" is a client subscribed to the console's event stream that
parses every update, as the page does (``ConsoleReader``). The script
reports, per transport, the median of the paired ratios (open / closed) of
events/s and of the emulator's CPU per event, and, with nothing sent, the
emulator's CPU with the console closed and open: the console's own cost,
the number least disturbed by other load on a shared machine (the console's
target: an open page may not slow ingest by more than 5 %).

The generator pre-encodes a few distinct batches and cycles through them, so
that it spends its CPU on sending, not encoding; the expected digest is then
the per-batch digest times the number of times each batch was acknowledged.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Dict, List, Optional, Tuple

DEFAULT_DURATION = 5.0
DEFAULT_IN_FLIGHT = 8
DEFAULT_BATCH = 500
DEFAULT_EVENT_BYTES = 150
DISTINCT_BATCHES = 16
EVENT_TYPES = ("click", "page_view")
_MOD = 1 << 128


def _batches(batch: int, event_bytes: int, seed: int = 1) -> List[List[Tuple[str, bytes]]]:
    rng = random.Random(seed)
    return [
        [(EVENT_TYPES[i % 2], rng.randbytes(event_bytes)) for i in range(batch)]
        for _ in range(DISTINCT_BATCHES)
    ]


def _expected(batches, acked: List[int]) -> Dict[str, List]:
    from raccoon_beam.emulator import expected_digest

    totals: Dict[str, List[int]] = {}
    for events, times in zip(batches, acked):
        if not times:
            continue
        for event_type, digest in expected_digest(events).items():
            acc = totals.setdefault(event_type, [0, 0, 0])
            acc[0] += digest.count * times
            acc[1] += digest.total_bytes * times
            acc[2] = (acc[2] + int(digest.digest, 16) * times) % _MOD
    return {t: [c, b, format(d, "032x")] for t, (c, b, d) in totals.items()}


# ---------------------------------------------------------------- generator process


async def _generate(transport: str, endpoint: str, duration: float, in_flight: int, batch: int,
                    event_bytes: int) -> Dict:
    from raccoon_beam.wire import Wire, encode_request

    batches = _batches(batch, event_bytes)
    bodies = [encode_request(events, wire=Wire.PROTOBUF).body for events in batches]
    acked = [0] * len(bodies)
    failed = 0
    deadline = time.monotonic() + duration

    if transport == "grpc":
        from grpc import aio

        channel = aio.insecure_channel(endpoint.split("://", 1)[1])
        call = channel.unary_unary("/raystack.raccoon.v1beta1.EventService/SendEvent")
        metadata = (("x-user-id", "bench"),)

        async def send(index: int) -> bool:
            await call(bodies[index], metadata=metadata, timeout=30)
            return True

        async def close() -> None:
            await channel.close()
    else:
        import aiohttp

        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=in_flight))
        headers = {"Content-Type": "application/proto", "X-User-ID": "bench"}

        async def send(index: int) -> bool:
            async with session.post(endpoint, data=bodies[index], headers=headers) as resp:
                await resp.read()
                return resp.status == 200

        async def close() -> None:
            await session.close()

    async def worker(offset: int) -> None:
        nonlocal failed
        index = offset
        while time.monotonic() < deadline:
            i = index % len(bodies)
            if await send(i):
                acked[i] += 1
            else:
                failed += 1
            index += in_flight

    # Warm up the connection before timing.
    await send(0)
    acked[0] += 1
    start = time.monotonic()
    deadline = start + duration
    await asyncio.gather(*(worker(i) for i in range(in_flight)))
    elapsed = time.monotonic() - start
    await close()
    timed_events = (sum(acked) - 1) * batch
    return {
        "transport": transport,
        "elapsed": elapsed,
        "requests": sum(acked),
        "failed": failed,
        "events_per_second": timed_events / elapsed,
        "expected": _expected(batches, acked),
    }


# ---------------------------------------------------------------- orchestration


def _run_generator(transport: str, endpoint: str, args: argparse.Namespace) -> Dict:
    command = [sys.executable, os.path.abspath(__file__), "--generate", transport, "--endpoint", endpoint,
               "--duration", str(args.duration), "--in-flight", str(args.in_flight), "--batch", str(args.batch),
               "--event-bytes", str(args.event_bytes)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


class ConsoleReader(threading.Thread):
    """A console page's load on the emulator: reads and parses every update of the stream."""

    def __init__(self, url: str) -> None:
        super().__init__(name="console-reader", daemon=True)
        self._url = url
        self._stopping = threading.Event()
        self.updates = 0
        self.bytes = 0
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        try:
            with urllib.request.urlopen(self._url, timeout=30) as stream:  # noqa: S310 (loopback)
                for line in stream:
                    if line.startswith(b"data: "):
                        json.loads(line[6:])
                        self.updates += 1
                        self.bytes += len(line)
                    if self._stopping.is_set():  # updates come every 0.25 s: a prompt check
                        return
        except BaseException as exc:  # reported by the main thread
            self.error = exc

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=10)
        if self.error is not None:
            raise RuntimeError(f"the console stream failed: {self.error!r}")


def _run_once(emu, transport: str, args: argparse.Namespace, console: bool) -> Dict:
    emu.reset()
    endpoint = emu.grpc_endpoint if transport == "grpc" else emu.rest_endpoint
    reader = None
    if console:
        reader = ConsoleReader(emu.console_url.replace("/_emulator/ui", "/_emulator/ui/stream", 1))
        reader.start()
    cpu_before = _cpu_seconds(emu.pid)
    started = time.monotonic()
    result = _run_generator(transport, endpoint, args)
    cpu = _cpu_seconds(emu.pid) - cpu_before
    result["emulator_cpu"] = cpu / result["elapsed"]
    result["emulator_us_per_event"] = cpu * 1e6 / max(1, result["requests"] * args.batch)
    if reader is not None:
        reader.stop()
        result["updates_per_second"] = reader.updates / (time.monotonic() - started)
        result["update_bytes"] = reader.bytes / max(1, reader.updates)
    digest = {t: [d.count, d.total_bytes, d.digest] for t, d in emu.digest().items()}
    result["verified"] = digest == result["expected"] and result["failed"] == 0
    return result


def _idle_cost(emu, seconds: float) -> Tuple[float, float, float]:
    """The emulator's CPU (share of a core) idle with the console closed, then open; and updates/s."""
    emu.reset()
    before = _cpu_seconds(emu.pid)
    time.sleep(seconds)
    closed = (_cpu_seconds(emu.pid) - before) / seconds
    reader = ConsoleReader(emu.console_url.replace("/_emulator/ui", "/_emulator/ui/stream", 1))
    reader.start()
    time.sleep(1.0)  # connected and streaming
    before, updates = _cpu_seconds(emu.pid), reader.updates
    time.sleep(seconds)
    opened = (_cpu_seconds(emu.pid) - before) / seconds
    rate = (reader.updates - updates) / seconds
    reader.stop()
    return closed, opened, rate


def _update_cost(updates: int = 200) -> Tuple[float, int]:
    """Mean microseconds of one console update (sample + encode), with a busy state; and its size.

    An in-process emulator (events capture) with 50 event types, 1,000
    connection ids and 50 recent rejections, and 2,000 new events before
    each update; the latest events (250 decoded payloads) are refreshed every
    ``DEFAULT_EVENTS_INTERVAL / DEFAULT_UPDATE_INTERVAL``-th update, as on a
    live page: an upper bound on what the sampler costs the emulator at any
    ingest rate.
    """
    import orjson

    from raccoon_beam._proto import raccoon_pb2
    from raccoon_beam.emulator import RaccoonEmulator
    from raccoon_beam.emulator.console import DEFAULT_EVENTS_INTERVAL, DEFAULT_UPDATE_INTERVAL

    every = round(DEFAULT_EVENTS_INTERVAL / DEFAULT_UPDATE_INTERVAL)
    with RaccoonEmulator() as emu:
        console = emu._http.console  # the benchmark measures the internals directly
        ingest = emu._ingest
        for i in range(1000):
            ingest.counters.received("rest", f"conn-{i}")
            if i < 50:
                ingest.counters.rejected("rest", "http", "http 503", f"conn-{i}")
        payload = json.dumps({"id": 1, "event_name": "click", "page": "/p/1", "user": "u-1"}).encode()
        batch = raccoon_pb2.SendEventRequest(req_guid="g", events=[
            raccoon_pb2.Event(type=f"type-{i % 50}", event_bytes=payload) for i in range(2000)])

        async def measure() -> Tuple[float, int]:
            size = 0
            spent = 0.0
            for n in range(updates):
                ingest.capture.add(batch, "conn-1", "g", "rest")
                if n % every == 0:
                    console._latest_at = float("-inf")  # as if a second had passed
                start = time.perf_counter()
                size = len(orjson.dumps(console.state()))
                spent += time.perf_counter() - start
            return spent / updates * 1e6, size

        return emu._loop.run(measure(), timeout=300)


def _console_comparison(emu, args: argparse.Namespace) -> bool:
    ok = True
    from raccoon_beam.emulator.console import DEFAULT_UPDATE_INTERVAL

    cost, size = _update_cost()
    print(f"update cost: {cost:,.0f} us per update ({size:,} bytes) with 50 types, 1,000 connections, "
          f"2,000 new events per update; at {1 / DEFAULT_UPDATE_INTERVAL:g} updates/s: "
          f"{cost / DEFAULT_UPDATE_INTERVAL / 1e4:.2f}% of a core")
    closed, opened, rate = _idle_cost(emu, args.duration * 2)
    print(f"idle: emulator CPU {closed:.2%} of a core with the console closed, {opened:.2%} open "
          f"({rate:.1f} updates/s)")
    for transport in args.transports.split(","):
        runs: Dict[bool, List[Dict]] = {False: [], True: []}
        for _ in range(args.rounds):
            for console in (False, True):
                runs[console].append(_run_once(emu, transport, args, console))
        closed = statistics.mean(r["events_per_second"] for r in runs[False])
        opened = statistics.mean(r["events_per_second"] for r in runs[True])
        paired = statistics.median(
            on["events_per_second"] / off["events_per_second"] for off, on in zip(runs[False], runs[True])
        )
        cpu_paired = statistics.median(
            on["emulator_us_per_event"] / off["emulator_us_per_event"] for off, on in zip(runs[False], runs[True])
        )
        us = [statistics.median(r["emulator_us_per_event"] for r in runs[c]) for c in (False, True)]
        verified = all(r["verified"] for rs in runs.values() for r in rs)
        ok = ok and verified
        updates = statistics.mean(r["updates_per_second"] for r in runs[True])
        size = statistics.mean(r["update_bytes"] for r in runs[True])
        cpu = [statistics.mean(r["emulator_cpu"] for r in runs[c]) for c in (False, True)]
        print(f"{transport}: console closed {closed:,.0f} events/s, open {opened:,.0f} events/s (means); "
              f"median paired ratio open/closed: events/s {paired:.3f}, emulator CPU per event {cpu_paired:.3f} "
              f"({us[0]:.2f} / {us[1]:.2f} us/event); {args.rounds} alternating rounds of {args.duration:g} s; "
              f"runs closed {[round(r['events_per_second']) for r in runs[False]]}, "
              f"open {[round(r['events_per_second']) for r in runs[True]]}; "
              f"{updates:.1f} updates/s of {size:,.0f} bytes; emulator CPU {cpu[0]:.0%} / {cpu[1]:.0%} of a core; "
              f"digest {'verified' if verified else 'MISMATCH'}")
    return ok


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _machine() -> Dict[str, str]:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip() or "none"
    except OSError:
        commit = "none"
    return {"nproc": str(os.cpu_count()), "python": platform.python_version(), "commit": commit,
            "platform": platform.platform()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=DEFAULT_DURATION)
    parser.add_argument("--in-flight", type=int, default=DEFAULT_IN_FLIGHT)
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH)
    parser.add_argument("--event-bytes", type=int, default=DEFAULT_EVENT_BYTES)
    parser.add_argument("--transports", default="grpc,rest")
    parser.add_argument("--console", action="store_true", help="compare with and without the console open")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per transport with --console")
    parser.add_argument("--capture", choices=("digest", "events"), default="digest")
    parser.add_argument("--generate", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.generate:
        result = asyncio.run(_generate(args.generate, args.endpoint, args.duration, args.in_flight, args.batch,
                                       args.event_bytes))
        print(json.dumps(result))
        return 0

    from raccoon_beam.emulator.process import EmulatorProcess

    print(json.dumps(_machine()))
    ok = True
    with EmulatorProcess(["--capture", args.capture]) as emu:
        if args.console:
            return 0 if _console_comparison(emu, args) else 1
        for transport in args.transports.split(","):
            emu.reset()
            endpoint = emu.grpc_endpoint if transport == "grpc" else emu.rest_endpoint
            cpu_before = _cpu_seconds(emu.pid)
            result = _run_generator(transport, endpoint, args)
            # Includes the generator's start-up time, when the emulator idles: a lower bound.
            emulator_cpu = (_cpu_seconds(emu.pid) - cpu_before) / result["elapsed"]
            digest = {t: [d.count, d.total_bytes, d.digest] for t, d in emu.digest().items()}
            verified = digest == result["expected"] and result["failed"] == 0
            ok = ok and verified
            print(f"{transport}: {result['events_per_second']:,.0f} events/s "
                  f"({result['requests']} requests of {args.batch} events in {result['elapsed']:.1f} s, "
                  f"{args.in_flight} in flight); emulator CPU {emulator_cpu:.0%} of a core; "
                  f"digest {'verified' if verified else 'MISMATCH'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
