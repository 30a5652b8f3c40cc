"""``python -m raccoon_beam.emulator`` / ``raccoon-emulator``: the emulator as a server.

On start it prints one ``name=value`` line per endpoint, then ``ready``; while
running, one line of accepted events and batches per second (rewritten in
place on a terminal); on SIGTERM or Ctrl-C it stops cleanly, prints a final
``total`` line and exits 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from typing import List, Optional, Sequence, TextIO

from raccoon_beam.emulator.capture import CAPTURE_MODES, DEFAULT_TOPIC_PATTERN
from raccoon_beam.emulator.config import (
    ACK_MODES,
    DEFAULT_CONN_ID_HEADER,
    DEFAULT_GROUP,
    DEFAULT_GROUP_HEADER,
    DEFAULT_HOST,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PONG_TIMEOUT,
)
from raccoon_beam.emulator.control import CONTROL_PREFIX
from raccoon_beam.emulator.faults import TRANSPORTS
from raccoon_beam.emulator.outcomes import Outcome
from raccoon_beam.emulator.payloads import PayloadDecoders
from raccoon_beam.emulator.server import RaccoonEmulator

__all__ = ["main", "build_parser", "DEFAULT_GRPC_PORT", "DEFAULT_HTTP_PORT", "DEFAULT_STATS_INTERVAL"]

DEFAULT_GRPC_PORT = 8081  # Raccoon's defaults
DEFAULT_HTTP_PORT = 8080
DEFAULT_STATS_INTERVAL = 1.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raccoon-emulator",
        description="A Raccoon-compatible server (gRPC, REST, WebSocket) with capture and fault injection.",
    )
    server = parser.add_argument_group("server")
    server.add_argument("--host", default=DEFAULT_HOST)
    server.add_argument("--grpc-port", type=int, default=DEFAULT_GRPC_PORT, help="0 picks a free port")
    server.add_argument("--http-port", type=int, default=DEFAULT_HTTP_PORT, help="0 picks a free port")
    server.add_argument("--conn-id-header", default=DEFAULT_CONN_ID_HEADER)
    server.add_argument("--group-header", default=DEFAULT_GROUP_HEADER)
    server.add_argument("--default-group", default=DEFAULT_GROUP)
    server.add_argument("--ack", choices=ACK_MODES, default="async")
    server.add_argument("--dedup", action="store_true", help="WebSocket per-connection req_guid dedup")
    server.add_argument("--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS)
    server.add_argument("--no-check-origin", action="store_true")
    server.add_argument("--ping-interval", type=float, default=DEFAULT_PING_INTERVAL)
    server.add_argument("--pong-timeout", type=float, default=DEFAULT_PONG_TIMEOUT)
    server.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    server.add_argument("--tls-cert", help="PEM certificate: serve grpcs/https/wss")
    server.add_argument("--tls-key", help="PEM private key of --tls-cert")
    capture = parser.add_argument_group("capture")
    capture.add_argument(
        "--capture", choices=CAPTURE_MODES, default="digest", help="digest (default) keeps constant memory"
    )
    capture.add_argument("--output", help="JSONL file receiving every captured event")
    capture.add_argument("--topic-pattern", default=DEFAULT_TOPIC_PATTERN)
    faults = parser.add_argument_group("faults")
    faults.add_argument("--fail-fraction", type=float, default=0.0, help="fail this fraction of requests")
    faults.add_argument("--fail-next", type=int, default=0, help="fail the first N requests")
    how = faults.add_mutually_exclusive_group()
    how.add_argument("--fail-status", type=int, help="HTTP status of failed requests (default 503)")
    how.add_argument("--fail-code", help="Raccoon code of failed requests, e.g. CODE_INTERNAL_ERROR")
    how.add_argument("--fail-grpc", help="gRPC status of failed requests, e.g. UNAVAILABLE")
    faults.add_argument("--retry-after", type=float, help="Retry-After seconds with --fail-status")
    faults.add_argument("--fail-transport", choices=TRANSPORTS, help="fail only this transport")
    faults.add_argument("--seed", type=int, default=0)
    faults.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    faults.add_argument("--reject-event-type", action="append", default=[], metavar="TYPE")
    faults.add_argument("--fail-publish-fraction", type=float, default=0.0)
    console = parser.add_argument_group("console")
    console.add_argument(
        "--console-token", help="token for /_emulator/* (console, control); default: generated unless on loopback"
    )
    console.add_argument(
        "--decode", action="append", default=[], metavar="TYPE=SPEC",
        help="how the console shows a type's (or topic's) payloads: json, hex, proto:<message>, avro:<schema file>",
    )
    console.add_argument("--descriptor-set", help="FileDescriptorSet file for proto: decoders")
    output = parser.add_argument_group("output")
    output.add_argument(
        "--stats-interval", type=float, default=DEFAULT_STATS_INTERVAL, help="seconds between count lines; 0: none"
    )
    return parser


def _outcome(args: argparse.Namespace) -> Outcome:
    if args.fail_code:
        return Outcome.raccoon(args.fail_code)
    if args.fail_grpc:
        return Outcome.grpc(args.fail_grpc)
    return Outcome.http(args.fail_status or 503, retry_after=args.retry_after)


def _configure_faults(emu: RaccoonEmulator, args: argparse.Namespace) -> None:
    faults = emu.faults
    if args.fail_next:
        faults.fail_next(args.fail_next, _outcome(args), transport=args.fail_transport)
    if args.fail_fraction:
        faults.fail_fraction(args.fail_fraction, _outcome(args), seed=args.seed, transport=args.fail_transport)
    if args.latency:
        faults.add_latency(args.latency, transport=args.fail_transport)
    for event_type in args.reject_event_type:
        faults.reject_event_type(event_type)
    if args.fail_publish_fraction:
        faults.fail_publish(fraction=args.fail_publish_fraction, seed=args.seed)


def _stats_line(emu: RaccoonEmulator, elapsed: float, last: List[int]) -> str:
    counters = emu.counters()
    events, batches = counters.total_events_accepted, counters.accepted()
    rate_events = (events - last[0]) / elapsed if elapsed > 0 else 0.0
    rate_batches = (batches - last[1]) / elapsed if elapsed > 0 else 0.0
    last[0], last[1] = events, batches
    return (
        f"accepted {events} events ({rate_events:,.0f}/s) in {batches} batches ({rate_batches:,.1f}/s); "
        f"rejected {counters.rejected()}; faults {counters.injected()}; "
        f"websockets {counters.connections_open}"
    )


def main(argv: Optional[Sequence[str]] = None, stdout: TextIO = sys.stdout) -> int:
    """Runs the emulator until SIGTERM or SIGINT; returns the exit status."""
    args = build_parser().parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        print("--tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    decoders = dict(spec.split("=", 1) for spec in args.decode if "=" in spec)
    try:
        if len(decoders) != len(args.decode):
            raise ValueError("--decode takes TYPE=SPEC, e.g. click=proto:shop.Click")
        PayloadDecoders(decoders, args.descriptor_set)
    except ValueError as exc:
        print(f"raccoon-emulator: {exc}", file=sys.stderr)
        return 2
    emu = RaccoonEmulator(
        host=args.host,
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        conn_id_header=args.conn_id_header,
        group_header=args.group_header,
        default_group=args.default_group,
        ack=args.ack,
        dedup=args.dedup,
        max_connections=args.max_connections,
        capture=args.capture,
        output=args.output,
        topic_pattern=args.topic_pattern,
        check_origin=not args.no_check_origin,
        ping_interval=args.ping_interval,
        pong_timeout=args.pong_timeout,
        tls=(args.tls_cert, args.tls_key) if args.tls_cert else None,
        max_body_bytes=args.max_body_bytes,
        console_token=args.console_token,
        decoders=decoders,
        descriptor_set=args.descriptor_set,
    )
    _configure_faults(emu, args)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    emu.start()
    try:
        print(f"grpc_endpoint={emu.grpc_endpoint}", file=stdout)
        print(f"rest_endpoint={emu.rest_endpoint}", file=stdout)
        print(f"ws_endpoint={emu.ws_endpoint}", file=stdout)
        print(f"control_url={emu.http_base_url}{CONTROL_PREFIX}", file=stdout)
        print(f"console_url={emu.console_url}", file=stdout)
        if emu.console_token:
            print(f"console_token={emu.console_token}", file=stdout)
        print("ready", file=stdout, flush=True)
        interactive = stdout.isatty()
        last = [0, 0]
        previous = time.monotonic()
        interval = args.stats_interval if args.stats_interval > 0 else None
        while not stop.wait(interval):
            now = time.monotonic()
            line = _stats_line(emu, now - previous, last)
            previous = now
            if interactive:
                print("\r\x1b[K" + line, end="", file=stdout, flush=True)
            else:
                print(line, file=stdout, flush=True)
    finally:
        emu.stop()
    counters = emu.counters()
    if args.stats_interval > 0 and stdout.isatty():
        print(file=stdout)
    print(
        f"total events={counters.total_events_accepted} batches={counters.accepted()} "
        f"rejected={counters.rejected()}",
        file=stdout,
        flush=True,
    )
    return 0
