"""A misbehaving server: every answer that is not Raccoon's is classified, bounded in time,
and ends in dead letters (or a delivery, once the server behaves) -- never a crash, never a hang.

The emulator produces most misbehaviours (``Outcome.garbage``,
``wrong_req_guid``, ``no_answer``, an HTML ``http`` page); a tiny hand-made
server does the rest (a TCP peer that never answers or speaks no HTTP, a
truncated chunked body, a WebSocket that closes at once).

Bounds: each run must end within ``BOUND`` seconds; with a 0.5 s request
timeout and 3 attempts it takes a few seconds.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Dict, List

import pytest

from raccoon_beam import RetryPolicy
from raccoon_beam._proto import raccoon_pb2
from raccoon_beam.emulator import Outcome
from raccoon_beam.emulator.ingest import success_response
from raccoon_beam.wire import Wire, encode_response

from tests.reliability.conftest import TRANSPORTS, TinyServer, endpoint_of, run_pipeline

ATTEMPTS = 3
RETRY = RetryPolicy(max_attempts=ATTEMPTS, initial_backoff=0.001, max_backoff=0.01, deadline=60.0)
TIMEOUT = 0.5
BOUND = 60.0
ELEMENTS = [{"id": i, "event_name": "click"} for i in range(40)]

_SUCCESS = encode_response(success_response("some-guid"), Wire.PROTOBUF)
_TRUNCATED = _SUCCESS[:-3]


def _run(endpoint: str, letters_path: str, **kwargs: Any) -> List[Dict[str, Any]]:
    started = time.monotonic()
    letters = run_pipeline(
        ELEMENTS,
        letters_path,
        endpoint=endpoint,
        event_type="click",
        max_batch_size=10,
        retry=RETRY,
        timeout=TIMEOUT,
        **kwargs,
    )
    elapsed = time.monotonic() - started
    assert elapsed < BOUND, f"took {elapsed:.1f} s"
    return letters


def _all_retried_then_dead(letters: List[Dict[str, Any]], fragments: tuple) -> None:
    """Every element dead-lettered under a RETRY verdict, on one schedule for the endpoint, with a readable reason.

    The sender keeps one retry schedule per endpoint: after a run of failed
    attempts it holds every request behind one backoff, one request probes,
    and once the policy's attempts are spent what still waits is
    dead-lettered without being sent again. So a letter's request was sent
    at most ``ATTEMPTS`` times, and one sent fewer times says that the
    endpoint was given up on.
    """
    assert sorted(letter["id"] for letter in letters) == list(range(len(ELEMENTS)))
    for letter in letters:
        assert letter["stage"] == "send", letter
        assert 0 <= letter["attempts"] <= ATTEMPTS, letter
        assert f"gave up after {letter['attempts']} attempt(s)" in letter["error"], letter
        if letter["attempts"] < ATTEMPTS:
            assert "past the retry policy" in letter["error"], letter
        assert any(f in letter["error"] for f in fragments), letter
        assert "Traceback" not in letter["error"] and len(letter["error"]) < 2000, letter


# (outcome, {transport: fragments expected in the error})
EMULATED = {
    "garbage": (
        Outcome.garbage(),
        {"grpc": ("not a response",), "rest": ("not a Raccoon response",), "websocket": ("no ack",)},
    ),
    "wrong-content-type": (
        Outcome.garbage(body=_SUCCESS, content_type="text/plain; charset=utf-8"),
        {"grpc": ("not a response", "req_guid", "acknowledgement"), "rest": ("Content-Type",), "websocket": ("acknowledgement", "no ack")},
    ),
    "truncated-protobuf": (
        Outcome.garbage(body=_TRUNCATED),
        {"grpc": ("not a response",), "rest": ("not a Raccoon response",), "websocket": ("no ack",)},
    ),
    "html-error-page": (
        Outcome.http(502, body=b"<html><body><h1>502 Bad Gateway</h1></body></html>", content_type="text/html"),
        {"grpc": ("UNAVAILABLE",), "rest": ("HTTP 502",), "websocket": ("closed",)},
    ),
    "wrong-req-guid": (
        Outcome.wrong_req_guid(),
        {"grpc": ("acknowledgement for request",), "rest": ("acknowledgement for request",), "websocket": ("no ack",)},
    ),
    "never-answers": (
        Outcome.no_answer(),
        {"grpc": ("DEADLINE_EXCEEDED",), "rest": ("no answer",), "websocket": ("no ack",)},
    ),
}


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("name", list(EMULATED))
def test_emulated_misbehaviour_is_retried_bounded_and_dead_lettered(emulator, letters_path, name, transport):
    outcome, fragments = EMULATED[name]
    emulator.faults.fail_next(10**6, outcome)
    letters = _run(endpoint_of(emulator, transport), letters_path)
    _all_retried_then_dead(letters, fragments[transport])
    assert emulator.events() == []


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_misbehaviour_that_stops_is_recovered_from(emulator, letters_path, transport):
    """A few bad answers, then a healthy server: everything delivered, nothing dead."""
    for outcome in (Outcome.garbage(), Outcome.wrong_req_guid(), Outcome.garbage(body=_TRUNCATED)):
        emulator.faults.fail_next(1, outcome)
    letters = run_pipeline(
        ELEMENTS,
        letters_path,
        endpoint=endpoint_of(emulator, transport),
        event_type="click",
        max_batch_size=10,
        retry=RetryPolicy(max_attempts=6, initial_backoff=0.001, max_backoff=0.01),
        timeout=TIMEOUT,
    )
    assert letters == []
    ids = [json.loads(e.event_bytes)["id"] for e in emulator.events()]
    assert sorted(set(ids)) == list(range(len(ELEMENTS)))
    # gRPC/REST: a garbled answer means the batch was not captured. WebSocket:
    # an unanswered frame is retried on the same connection, and not captured either.
    assert len(ids) == len(ELEMENTS)


# ------------------------------------------------------------------ hand-made servers


async def _never_answer(reader, writer):
    await asyncio.sleep(3600)


async def _speak_nonsense(reader, writer):
    await reader.read(1024)
    writer.write(b"SSH-2.0-OpenSSH_9.6\r\nthis is not HTTP\r\n\r\n")
    await writer.drain()


async def _truncated_chunked_body(reader, writer):
    await reader.readuntil(b"\r\n\r\n")
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/proto\r\nContent-Length: 500\r\n\r\n" + _SUCCESS[:5]
    )
    await writer.drain()


async def _trickle(reader, writer):
    """Answers 200 headers, then one byte every 0.1 s, forever (a slowloris answer)."""
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/proto\r\nTransfer-Encoding: chunked\r\n\r\n")
    while True:
        writer.write(b"1\r\n\x00\r\n")
        await writer.drain()
        await asyncio.sleep(0.1)


RAW = {
    # name: (on_connect, {scheme: fragments})
    "tcp-never-answers": (
        _never_answer,
        {"grpc": ("DEADLINE_EXCEEDED", "UNAVAILABLE"), "http": ("no answer",), "ws": ("no answer",)},
    ),
    "truncated-body": (_truncated_chunked_body, {"http": ("truncated", "connection to", "not a Raccoon")}),
    "trickling-body": (_trickle, {"http": ("no answer",)}),
}


@pytest.mark.parametrize(
    "name, scheme",
    [(name, scheme) for name, (_, schemes) in RAW.items() for scheme in schemes],
)
def test_raw_misbehaving_server_is_bounded_and_dead_lettered(letters_path, name, scheme):
    on_connect, fragments = RAW[name]
    with TinyServer(on_connect=on_connect) as server:
        path = "" if scheme == "grpc" else "/api/v1/events"
        letters = _run(f"{scheme}://127.0.0.1:{server.port}{path}", letters_path)
    _all_retried_then_dead(letters, fragments[scheme])


def test_grpc_port_that_does_not_speak_http2_fails_at_once(letters_path):
    """A grpc:// endpoint whose peer answers with something that is not HTTP/2 (here an SSH banner):
    no gRPC server ever does that, so it is a misconfiguration, dead-lettered after one attempt."""
    with TinyServer(on_connect=_speak_nonsense) as server:
        letters = _run(f"grpc://127.0.0.1:{server.port}", letters_path)
    assert sorted(letter["id"] for letter in letters) == list(range(len(ELEMENTS)))
    for letter in letters:
        assert letter["stage"] == "send" and letter["attempts"] == 1, letter
        assert letter["error"].startswith("not retryable: ") and "not a gRPC port" in letter["error"], letter
        assert f"127.0.0.1:{server.port}" in letter["error"], letter


@pytest.mark.parametrize("scheme", ["http", "ws"])
def test_peer_that_does_not_speak_http_is_retried_not_bisected(letters_path, scheme):
    with TinyServer(on_connect=_speak_nonsense) as server:
        letters = _run(f"{scheme}://127.0.0.1:{server.port}/api/v1/events", letters_path)
    assert len(letters) == len(ELEMENTS)
    assert not any("rejected by the server" in letter["error"] for letter in letters), letters[0]
    _all_retried_then_dead(letters, ("connection to", "not a Raccoon response", "malformed", "Bad status line"))


def _tiny_http(handler):
    from aiohttp import web

    async def ws_or_post(request: web.Request):
        return await handler(request)

    return TinyServer(routes={("POST", "/api/v1/events"): ws_or_post, ("GET", "/api/v1/events"): ws_or_post})


@pytest.mark.parametrize(
    "name, status, body, content_type, fragment",
    [
        ("empty-200", 200, b"", "application/proto", "empty body"),
        ("json-for-proto", 200, b'{"status":1,"code":1}', "application/json", "Content-Type"),
        ("json-array", 200, b"[1,2,3]", "application/proto", "not a Raccoon response"),
        ("status-unspecified", 200, encode_response(raccoon_pb2.SendEventResponse(), Wire.PROTOBUF), "application/proto", ""),
        ("success-with-500", 500, _SUCCESS, "application/proto", ""),
        ("redirect", 302, b"", "text/plain", ""),
    ],
)
def test_rest_answers_that_are_not_raccoon_are_classified(letters_path, name, status, body, content_type, fragment):
    from aiohttp import web

    async def handler(request):
        await request.read()
        headers = {"Content-Type": content_type}
        if status == 302:
            headers["Location"] = "/elsewhere"
        return web.Response(status=status, body=body, headers=headers)

    with _tiny_http(handler) as server:
        letters = _run(f"http://127.0.0.1:{server.port}/api/v1/events", letters_path)
    assert len(letters) == len(ELEMENTS)
    for letter in letters:
        assert letter["stage"] == "send" and fragment in letter["error"], letter
        assert 1 <= letter["attempts"] <= ATTEMPTS, letter


def test_websocket_that_closes_at_once_is_retried_and_bounded(letters_path):
    from aiohttp import web

    async def handler(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.close(code=1000, message=b"bye")
        return ws

    with _tiny_http(handler) as server:
        letters = _run(f"ws://127.0.0.1:{server.port}/api/v1/events", letters_path)
    _all_retried_then_dead(letters, ("closed", "connection"))


def test_websocket_that_acks_someone_else_forever_times_out(letters_path):
    """A server acking every frame with a req_guid of its own: no request is resolved by it."""
    from aiohttp import web

    async def handler(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for _ in ws:
            await ws.send_bytes(encode_response(success_response("not-yours"), Wire.PROTOBUF))
        return ws

    with _tiny_http(handler) as server:
        letters = _run(f"ws://127.0.0.1:{server.port}/api/v1/events", letters_path)
    _all_retried_then_dead(letters, ("no ack",))


# ------------------------------------------------------------------ a peer that stops reading


async def _ws_upgrade_then_stop_reading(reader, writer):
    """Completes the WebSocket handshake, then never reads again (TCP window fills up)."""
    import base64
    import hashlib

    head = await reader.readuntil(b"\r\n\r\n")
    key = next(
        line.split(b":", 1)[1].strip() for line in head.split(b"\r\n") if line.lower().startswith(b"sec-websocket-key")
    )
    accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    writer.write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    await writer.drain()
    await asyncio.sleep(3600)


async def _http_headers_then_stop_reading(reader, writer):
    await reader.readuntil(b"\r\n\r\n")
    await asyncio.sleep(3600)


STOPS_READING_BOUND = 25.0


@pytest.mark.parametrize(
    "scheme, on_connect",
    [
        ("ws", _ws_upgrade_then_stop_reading),
        ("http", _http_headers_then_stop_reading),
    ],
)
def test_server_that_stops_reading_does_not_hang_the_sink(letters_path, scheme, on_connect):
    """Two 10 MB requests to a peer that stops reading: the run must end within the bound.

    The pipeline runs on a thread; if it is still running after the bound, the
    server is closed (which releases it) and the test fails.
    """
    import threading

    elements = [{"id": i, "event_name": "click", "blob": "x" * 20_000} for i in range(1000)]
    outcome: Dict[str, Any] = {}
    with TinyServer(on_connect=on_connect) as server:

        def run() -> None:
            try:
                outcome["letters"] = run_pipeline(
                    elements,
                    letters_path,
                    endpoint=f"{scheme}://127.0.0.1:{server.port}/api/v1/events",
                    event_type="click",
                    # 10 MB requests, one at a time: a single frame is more
                    # than the socket buffers hold, so the send itself blocks.
                    # (Concurrent blocked sends: see the test below.)
                    max_batch_size=500,
                    max_batch_bytes=16 * 1024 * 1024,
                    max_in_flight=1,
                    retry=RetryPolicy(max_attempts=2, initial_backoff=0.001, max_backoff=0.01),
                    timeout=1.0,
                )
            except BaseException as exc:  # reported below
                outcome["error"] = exc

        runner = threading.Thread(target=run, name="reliability-stops-reading", daemon=True)
        started = time.monotonic()
        runner.start()
        runner.join(STOPS_READING_BOUND)
        finished = not runner.is_alive()
        elapsed = time.monotonic() - started
    runner.join(120)  # closing the server released a hung sink
    assert not runner.is_alive(), "the pipeline still hangs after the server closed"
    assert finished, f"the sink hung: still running after {elapsed:.0f} s (bound {STOPS_READING_BOUND:.0f} s)"
    assert "error" not in outcome, outcome.get("error")
    assert len(outcome["letters"]) == len(elements)


def test_grpc_answer_over_the_receive_limit_is_not_taken_for_a_request_too_large(emulator, letters_path):
    emulator.faults.fail_next(10**6, Outcome.garbage(body=b"\x0a" + b"x" * (17 * 1024 * 1024)), transport="grpc")
    letters = _run(emulator.grpc_endpoint, letters_path)
    assert len(letters) == len(ELEMENTS)
    assert not any("rejected by the server" in letter["error"] for letter in letters), letters[0]
    # One request per batch and attempt, no bisection: 4 batches x 3 attempts.
    assert emulator.counters().received() <= 4 * ATTEMPTS, emulator.counters().received()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_retry_after_beyond_the_deadline_is_not_waited_for(emulator, letters_path, transport):
    """429 with Retry-After: 3600 and a 20 s deadline: give up at once, never sleep an hour."""
    emulator.faults.fail_next(10**6, Outcome.http(429, retry_after=3600))
    started = time.monotonic()
    letters = run_pipeline(
        ELEMENTS,
        letters_path,
        endpoint=endpoint_of(emulator, transport),
        event_type="click",
        max_batch_size=10,
        retry=RetryPolicy(max_attempts=5, initial_backoff=0.001, max_backoff=0.01, deadline=20.0),
    )
    assert time.monotonic() - started < BOUND
    assert len(letters) == len(ELEMENTS)
    assert all(letter["stage"] == "send" and "gave up" in letter["error"] for letter in letters), letters[0]


def test_retry_after_beyond_the_deadline_does_not_hold_the_next_batches(emulator, letters_path):
    """One request at a time: each batch starts after the previous one got Retry-After: 3600 and gave
    up. The sender-wide hold must not make them wait an hour either: they are dead-lettered, unsent."""
    emulator.faults.fail_next(10**6, Outcome.http(429, retry_after=3600))
    started = time.monotonic()
    letters = run_pipeline(
        ELEMENTS,
        letters_path,
        endpoint=emulator.rest_endpoint,
        event_type="click",
        max_batch_size=10,
        max_in_flight=1,
        retry=RetryPolicy(max_attempts=5, initial_backoff=0.001, max_backoff=0.01, deadline=20.0),
    )
    assert time.monotonic() - started < BOUND
    assert sorted(letter["id"] for letter in letters) == list(range(len(ELEMENTS)))
    unsent = [letter for letter in letters if letter["attempts"] == 0]
    assert len(unsent) == len(ELEMENTS) - 10, letters  # the first batch alone was sent
    assert all("Retry-After" in letter["error"] and letter["code"] == "http:429" for letter in unsent), unsent[0]
    assert emulator.counters().received() == 1


def test_concurrent_sends_to_a_peer_that_stops_reading_fail_cleanly():
    """16 concurrent 2 MB requests on one blocked WebSocket: each ends in a SendFailure outcome.

    Repeated 20 times: the race needs two sends waiting on the full socket when
    the first one times out (about one trial in two hits it today).
    """
    import concurrent.futures

    from raccoon_beam.delivery import Sender
    from raccoon_beam.delivery.flow import FlowOptions
    from raccoon_beam.transports import TransportConfig
    from raccoon_beam.wire import encode_request

    for _ in range(20):
        with TinyServer(on_connect=_ws_upgrade_then_stop_reading) as server:
            config = TransportConfig(f"ws://127.0.0.1:{server.port}/api/v1/events", timeout=0.5, max_in_flight=16)
            # All 16 out at once, as the race needs (the adaptive limit would send them few at a time).
            client = Sender(config, RetryPolicy(max_attempts=1), FlowOptions(adaptive_throttling=False))
            try:
                futures = [
                    client.submit(encode_request([("click", b"x" * 2_000_000)], wire=Wire.PROTOBUF))
                    for _ in range(16)
                ]
                done, _ = concurrent.futures.wait(futures, timeout=BOUND)
            finally:
                client.close()
        assert len(done) == len(futures), "a send hung"
        cancelled = [f for f in futures if f.cancelled()]
        assert not cancelled, f"{len(cancelled)} of {len(futures)} deliveries ended cancelled, not failed"
        assert all(f.result().failure is not None for f in futures)
