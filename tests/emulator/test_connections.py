"""Every connection the emulator accepts is bounded in time, and their number is capped.

Slow clients (slowloris: partial headers, a declared body that never comes,
a handshake never finished) are closed after ``read_timeout``; at the cap a
new connection closes the quietest one or is answered 503, and the emulator
keeps serving real clients. The last test runs the emulator in a process of
its own with 256 file descriptors, against 300 slow connections that
reconnect when dropped, while a real client sends 1,000 events on each
transport.
"""

from __future__ import annotations

import asyncio
import json
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Dict, Iterator, List

import pytest

from raccoon_beam.delivery import Sender
from raccoon_beam.emulator import RaccoonEmulator
from raccoon_beam.emulator.config import DEFAULT_READ_TIMEOUT
from raccoon_beam.emulator.connections import AT_CAPACITY_RESPONSE, MIN_QUIET_SECONDS
from raccoon_beam.retry import RetryPolicy
from raccoon_beam.transports import TransportConfig
from raccoon_beam.wire import Wire, encode_request

SHORT = 0.5  # read_timeout of the timeout tests
BOUND = 15.0  # a bound (loaded machine), not a speed assertion


def _closed_within(sock: socket.socket, bound: float = BOUND) -> bytes:
    """Reads until the server closes ``sock``; what it sent (fails if it stays open past ``bound``)."""
    sock.settimeout(bound)
    received = b""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return received
        if not chunk:
            return received
        received += chunk
    raise AssertionError(f"still open after {bound} s; got {received[:200]!r}")


@pytest.fixture(scope="module")
def emu() -> Iterator[RaccoonEmulator]:
    with RaccoonEmulator(read_timeout=SHORT) as emulator:
        yield emulator


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=BOUND)


@pytest.mark.parametrize(
    "sent",
    [
        b"",  # connected, nothing sent
        b"POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty",  # partial headers
        b"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",  # handshake
    ],
    ids=["silent", "partial-headers", "partial-websocket-handshake"],
)
def test_a_request_whose_headers_do_not_arrive_is_closed(emu: RaccoonEmulator, sent: bytes) -> None:
    with _connect(emu.http_port) as sock:
        sock.sendall(sent)
        started = time.monotonic()
        _closed_within(sock)
        assert time.monotonic() - started >= SHORT * 0.5  # closed by the timeout, not at once


def test_a_declared_body_that_never_comes_is_answered_408_and_closed(emu: RaccoonEmulator) -> None:
    with _connect(emu.http_port) as sock:
        sock.sendall(b"POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/proto\r\n"
                     b"Content-Length: 1000\r\nX-User-ID: slow\r\n\r\nabc")
        answer = _closed_within(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]


def test_an_idle_keep_alive_connection_is_closed(emu: RaccoonEmulator) -> None:
    with _connect(emu.http_port) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = _closed_within(sock)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"pong")


def test_a_grpc_connection_that_never_handshakes_is_closed(emu: RaccoonEmulator) -> None:
    with _connect(emu.grpc_port) as sock:
        _closed_within(sock)


def _ping_kept_alive(port: int) -> socket.socket:
    """A connection that made progress (one request answered) and stays open."""
    sock = _connect(port)
    sock.sendall(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    received = b""
    while not received.endswith(b"pong"):
        chunk = sock.recv(65536)
        assert chunk, received
        received += chunk
    return sock


def _gate(emulator: RaccoonEmulator):
    assert emulator._http is not None and emulator._http.gate is not None
    return emulator._http.gate


def test_at_the_cap_a_connection_that_never_made_progress_gives_way_at_once() -> None:
    with RaccoonEmulator(max_http_connections=4) as emulator:
        held = [_connect(emulator.http_port) for _ in range(4)]
        try:
            # Just opened, but none has made progress: the oldest gives way, the newcomer is served.
            with _connect(emulator.http_port) as newcomer:
                newcomer.sendall(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                assert _closed_within(newcomer).endswith(b"pong")
            assert (_gate(emulator).evicted, _gate(emulator).refused) == (1, 0)
            assert _closed_within(held[0]) == b""  # the oldest one was closed
        finally:
            for sock in held:
                sock.close()


def test_at_the_cap_a_client_that_made_progress_keeps_its_place_until_quiet() -> None:
    with RaccoonEmulator(max_http_connections=4) as emulator:
        held = [_ping_kept_alive(emulator.http_port) for _ in range(4)]
        try:
            # All four were just answered: none may give way yet.
            with _connect(emulator.http_port) as newcomer:
                assert _closed_within(newcomer) == AT_CAPACITY_RESPONSE
            time.sleep(MIN_QUIET_SECONDS + 0.2)
            # Now they are quiet: the quietest gives way, the newcomer is served.
            with _connect(emulator.http_port) as newcomer:
                newcomer.sendall(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                assert _closed_within(newcomer).endswith(b"pong")
            assert (_gate(emulator).evicted, _gate(emulator).refused) == (1, 1)
            assert _closed_within(held[0]) == b""  # the quietest (first answered) one was closed
        finally:
            for sock in held:
                sock.close()


# ------------------------------------------------------------------ slowloris against a real client


FD_LIMIT = 256
SLOW_CONNECTIONS = 300
EVENTS = 1000


class Slowloris:
    """``n`` connections that send headers a few bytes at a time, reconnecting a second after being dropped."""

    def __init__(self, port: int, n: int) -> None:
        self.port = port
        self.n = n
        self.connects = 0
        self.open = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="slowloris", daemon=True)

    async def _one(self, index: int) -> None:
        head = b"POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/proto\r\n"
        if index % 2:  # half declare a body that never comes
            head += b"Content-Length: 100000\r\n\r\n"
        while not self._stop.is_set():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(1.0)
                continue
            self.connects += 1
            self.open += 1
            try:
                for i in range(0, len(head), 4):
                    writer.write(head[i : i + 4])
                    await writer.drain()
                    if await _closed(reader, 2.0) or self._stop.is_set():
                        break
                while not self._stop.is_set() and not await _closed(reader, 2.0):
                    writer.write(b"X")  # a body byte, or a header byte, every 2 s
                    await writer.drain()
            except OSError:
                pass
            finally:
                self.open -= 1
                writer.close()
            await asyncio.sleep(1.0)  # dropped (timeout, cap): back a second later

    async def _run(self) -> None:
        tasks = [asyncio.create_task(self._one(i)) for i in range(self.n)]
        while not self._stop.is_set():
            await asyncio.sleep(0.1)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __enter__(self) -> "Slowloris":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(30)


async def _closed(reader: asyncio.StreamReader, wait: float) -> bool:
    try:
        data = await asyncio.wait_for(reader.read(65536), wait)
    except asyncio.TimeoutError:
        return False
    except OSError:
        return True
    return not data


def _start_limited_emulator(stderr) -> subprocess.Popen:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))

    return subprocess.Popen(
        [sys.executable, "-m", "raccoon_beam.emulator", "--grpc-port", "0", "--http-port", "0",
         "--capture", "digest", "--stats-interval", "0"],
        stdout=subprocess.PIPE, stderr=stderr, text=True, preexec_fn=limit,
    )


def _endpoints(proc: subprocess.Popen) -> Dict[str, str]:
    endpoints = {}
    assert proc.stdout is not None
    for line in proc.stdout:
        name, _, value = line.strip().partition("=")
        if name == "ready":
            return endpoints
        endpoints[name] = value
    raise AssertionError("the emulator did not start")


def _send(endpoint: str) -> float:
    """Sends EVENTS events in 10 requests of 100; returns the seconds it took (all must be acknowledged)."""
    policy = RetryPolicy(max_attempts=20, initial_backoff=0.05, max_backoff=1.0, deadline=120.0)
    sender = Sender(TransportConfig(endpoint, timeout=10.0), policy)
    started = time.monotonic()
    try:
        futures = [
            sender.submit(encode_request([("click", b'{"i":%d}' % (r * 100 + i)) for i in range(100)], wire=Wire.PROTOBUF))
            for r in range(EVENTS // 100)
        ]
        outcomes = [f.result(120) for f in futures]
    finally:
        sender.close()
    assert all(o.ok for o in outcomes), [o.failure for o in outcomes if not o.ok][:3]
    return time.monotonic() - started


def _read_counters(control_url: str) -> Dict[str, Any]:
    """The counters, retried on 503 as the Retry-After of the connection cap asks (a client would)."""
    for _ in range(30):
        try:
            with urllib.request.urlopen(control_url + "/counters", timeout=30) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            if exc.code != 503:
                raise
            time.sleep(float(exc.headers.get("Retry-After", "1")))
    raise AssertionError("the counters were never served")


def test_300_slow_connections_do_not_stop_a_real_client(tmp_path) -> None:
    errors = open(tmp_path / "stderr", "w+")
    proc = _start_limited_emulator(errors)
    try:
        endpoints = _endpoints(proc)
        port = int(endpoints["rest_endpoint"].rsplit(":", 1)[1].split("/")[0])
        quiet: List[float] = [_send(endpoints[name]) for name in ("rest_endpoint", "ws_endpoint", "grpc_endpoint")]
        with Slowloris(port, SLOW_CONNECTIONS) as slow:
            deadline = time.monotonic() + 30
            while slow.connects < SLOW_CONNECTIONS and time.monotonic() < deadline:
                time.sleep(0.1)
            assert slow.connects >= SLOW_CONNECTIONS
            time.sleep(MIN_QUIET_SECONDS + 1)  # they hold their places and went quiet
            loaded = [_send(endpoints[name]) for name in ("rest_endpoint", "ws_endpoint", "grpc_endpoint")]
            counters = _read_counters(endpoints["control_url"])
            attacking, refused_or_dropped = slow.connects, slow.connects - slow.open
        print(f"\n1,000 events per transport (rest, ws, grpc), seconds: quiet {['%.2f' % t for t in quiet]}, "
              f"with {SLOW_CONNECTIONS} slow connections {['%.2f' % t for t in loaded]}; "
              f"slow connections made {attacking} ({refused_or_dropped} of them refused or closed)")
        accepted = sum(counters["events_accepted"].values())
        assert accepted == 6 * EVENTS
        assert proc.poll() is None  # still running
        # Served as usual, not after the slow ones timed out (read_timeout, 30 s): a bound, not a speed.
        assert max(loaded) < DEFAULT_READ_TIMEOUT / 3, loaded
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        errors.seek(0)
        logged = errors.read()
        errors.close()
    assert proc.returncode == 0, out
    assert "Too many open files" not in logged, logged[-2000:]
