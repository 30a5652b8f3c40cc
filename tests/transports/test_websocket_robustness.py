"""WebSocket connections that go bad: stuck sends, lost acks, silent peers, oversized frames."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from aiohttp import web

from raccoon_beam.errors import FailureKind
from raccoon_beam._proto import raccoon_pb2
from raccoon_beam.emulator import Outcome, RaccoonEmulator
from raccoon_beam.retry import Verdict
from raccoon_beam.transports.websocket import MAX_OVERDUE_WAITS
from raccoon_beam.wire import Wire, decode_request, encode_request, encode_response

from tests.transports.helpers import (
    UNPACED,
    FAST_POLICY,
    NO_RETRY,
    RawServer,
    client_sockets,
    eventually,
    make_request,
)

pytestmark = pytest.mark.timeout(60)


def _ack(guid: str) -> bytes:
    response = raccoon_pb2.SendEventResponse(
        status=raccoon_pb2.STATUS_SUCCESS, code=raccoon_pb2.CODE_OK, sent_time=1
    )
    response.data["req_guid"] = guid
    return encode_response(response, Wire.PROTOBUF)


def _big_request(size: int):
    return encode_request([("click", b"x" * size)], wire=Wire.PROTOBUF)


def test_send_to_a_server_that_stops_reading_times_out_and_retires_the_connection(make_client):
    """H1: without a deadline on the send itself, finish_bundle never returned."""
    accepted = []

    async def handler(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        accepted.append(request)
        request.transport.pause_reading()  # the server stops reading: socket buffers fill up
        await asyncio.sleep(3600)
        return ws

    with RawServer([("GET", "/api/v1/events", handler)]) as server:
        client = make_client(f"ws://{server.base_url}", policy=NO_RETRY, timeout=0.5)
        started = time.monotonic()
        # Far more than the socket buffers of both sides hold.
        outcome = client.submit(_big_request(32 * 1024 * 1024)).result(20)
        assert time.monotonic() - started < 15
        assert (outcome.failure.kind is FailureKind.TIMEOUT) and outcome.verdict is Verdict.RETRY, outcome.failure
        assert "could not be sent" in outcome.failure.message
        # Retired: its socket is closed without waiting for client.close().
        assert eventually(lambda: client_sockets([server.port]) == [])
        # The next request opens a fresh connection, with a fresh id.
        first_id = accepted[0].headers["X-User-ID"]
        client.submit(make_request(Wire.PROTOBUF))
        assert eventually(lambda: len(accepted) == 2)
        assert accepted[1].headers["X-User-ID"] != first_id
        client.close()


def test_an_ack_timeout_keeps_the_connection_and_its_id(emulator, make_client):
    """A late ack is no broken connection: the other requests on it go on."""
    client = make_client(emulator.ws_endpoint, policy=NO_RETRY, timeout=1.0, max_in_flight=2)
    emulator.faults.fail_next(1, Outcome.no_answer(), transport="websocket")
    first = client.submit(make_request(Wire.PROTOBUF))
    assert eventually(lambda: emulator.counters().received("websocket") >= 1)
    second = client.submit(make_request(Wire.PROTOBUF))  # on the same connection
    timed_out, other = first.result(30), second.result(30)
    assert (timed_out.failure.kind is FailureKind.TIMEOUT) and timed_out.verdict is Verdict.RETRY, timed_out.failure
    assert timed_out.failure.outcome_unknown
    assert other.ok
    assert client.submit(make_request(Wire.PROTOBUF)).result(30).ok
    assert client.transport.connections_opened == 1
    assert len({e.conn_id for e in emulator.events()}) == 1


def test_the_retry_of_a_late_request_waits_for_its_ack_and_publishes_no_duplicate(emulator, make_client):
    """A busy Raccoon answers late: the retry sends nothing and takes the original's ack."""
    client = make_client(emulator.ws_endpoint, policy=FAST_POLICY, timeout=0.6)
    emulator.faults.add_latency(1.0, transport="websocket")
    request = make_request(Wire.PROTOBUF)
    outcome = client.submit(request).result(30)
    assert outcome.ok and outcome.attempts == 2 and outcome.timeouts == 1, outcome.failure
    assert client.transport.connections_opened == 1 and outcome.conn_id == client.transport.conn_id
    assert emulator.counters().received("websocket") == 1  # the frame went out once
    assert [e.req_guid for e in emulator.events()] == [request.req_guid]


def test_a_request_never_acked_is_resent_on_a_fresh_connection_after_its_waits(emulator, make_client):
    client = make_client(emulator.ws_endpoint, policy=FAST_POLICY, timeout=0.5)
    emulator.faults.fail_next(1, Outcome.no_answer(), transport="websocket")
    request = make_request(Wire.PROTOBUF)
    outcome = client.submit(request).result(30)
    timeouts = 1 + MAX_OVERDUE_WAITS
    assert outcome.ok and outcome.attempts == timeouts + 1 and outcome.timeouts == timeouts, outcome.failure
    assert client.transport.connections_opened == 2
    assert [e.req_guid for e in emulator.events()] == [request.req_guid]


def test_heartbeat_replaces_a_connection_whose_server_stopped_answering_pings(make_client):
    """H2: a dead connection is detected while idle, not by the next request's timeout."""
    connections = []

    async def handler(request):
        ws = web.WebSocketResponse(autoping=False)  # acks frames, never answers a ping
        await ws.prepare(request)
        connections.append(ws)
        async for message in ws:
            if message.type == aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(_ack(decode_request(message.data, Wire.PROTOBUF).req_guid))
        return ws

    with RawServer([("GET", "/api/v1/events", handler)]) as server:
        client = make_client(f"ws://{server.base_url}", policy=NO_RETRY, timeout=0.4)
        assert client.submit(make_request(Wire.PROTOBUF)).result(30).ok
        # Idle: a ping goes out after 0.4 s; no pong within 0.2 s drops the connection.
        assert eventually(lambda: client_sockets([server.port]) == [], timeout=10)
        assert client.submit(make_request(Wire.PROTOBUF)).result(30).ok
        assert client.transport.connections_opened == 2
        client.close()


def test_reader_failure_closes_the_connection_and_redacts_its_cause(make_client, monkeypatch):
    """L1: a reader that ends with an exception closes its WebSocket; the cause is redacted."""
    import raccoon_beam.transports.websocket as websocket_module

    def broken_decode(body, wire):
        raise RuntimeError("decoder bug near ws://user:hunter2-secret@example and token tok-abcdef-123")

    async def handler(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            await ws.send_bytes(_ack(decode_request(message.data, Wire.PROTOBUF).req_guid))
        return ws

    monkeypatch.setattr(websocket_module, "decode_response", broken_decode)
    with RawServer([("GET", "/api/v1/events", handler)]) as server:
        client = make_client(
            f"ws://user:hunter2-secret@{server.base_url}",
            policy=NO_RETRY,
            headers={"X-Api-Token": "tok-abcdef-123"},
        )
        outcome = client.submit(make_request(Wire.PROTOBUF)).result(30)
        failure = outcome.failure
        assert (failure.kind is FailureKind.NETWORK) and outcome.verdict is Verdict.RETRY, failure
        assert "RuntimeError" in failure.message
        assert "hunter2" not in failure.message and "tok-abcdef-123" not in failure.message
        # Closed by the transport itself, not left open until client.close().
        assert eventually(lambda: client_sockets([server.port]) == [])
        client.close()


def test_close_1009_message_too_big_is_split_not_retried_whole():
    """M1: a frame over the server's limit is too large, not a network failure.

    The frame fits in the socket buffers: when the server closes while a
    frame much larger than its buffers is still arriving, its kernel resets
    the connection and the close frame is lost (code 1006), which no client
    can tell from any other reset.
    """
    size = 4 * 1024
    from tests.transports.conftest import ClientFactory

    with RaccoonEmulator(max_body_bytes=1024) as emulator:
        factory = ClientFactory()
        try:
            client = factory(emulator.ws_endpoint, policy=FAST_POLICY)
            outcome = client.submit(_big_request(size)).result(30)
            failure = outcome.failure
            assert failure is not None and (failure.kind is FailureKind.TOO_LARGE), failure
            assert outcome.verdict is Verdict.SPLIT and outcome.attempts == 1
            assert "1009" in failure.message
            # Small requests still go through, on a new connection.
            assert client.submit(make_request(Wire.PROTOBUF)).result(30).ok
        finally:
            factory.close_and_check()


def test_close_1009_blames_only_the_largest_pending_request():
    from tests.transports.conftest import ClientFactory

    with RaccoonEmulator(max_body_bytes=1024) as emulator:
        factory = ClientFactory()
        try:
            client = factory(emulator.ws_endpoint, policy=NO_RETRY, max_in_flight=2, timeout=30.0)
            emulator.faults.fail_next(1, Outcome.no_answer(), transport="websocket")
            small = client.submit(make_request(Wire.PROTOBUF))  # read, never acked
            assert eventually(lambda: emulator.counters().received("websocket") >= 1)
            large = client.submit(_big_request(4096))
            small_outcome, large_outcome = small.result(30), large.result(30)
            assert (large_outcome.failure.kind is FailureKind.TOO_LARGE) and large_outcome.verdict is Verdict.SPLIT
            assert (small_outcome.failure.kind is FailureKind.NETWORK) and small_outcome.failure.kind is not FailureKind.TOO_LARGE
            assert small_outcome.verdict is Verdict.RETRY
        finally:
            factory.close_and_check()


def test_concurrent_sends_stuck_on_a_full_socket_each_fail_on_their_own(make_client):
    """aiohttp makes every writer of a connection wait on one shared future: a sender
    giving up must not cancel the others' waits (they would end cancelled, not failed)."""
    import concurrent.futures

    async def handler(request):
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        request.transport.pause_reading()
        await asyncio.sleep(3600)
        return ws

    with RawServer([("GET", "/api/v1/events", handler)]) as server:
        for _ in range(5):
            client = make_client(f"ws://{server.base_url}", policy=NO_RETRY, timeout=0.5, max_in_flight=12, flow=UNPACED)
            futures = [client.submit(_big_request(2_000_000)) for _ in range(12)]
            done, _ = concurrent.futures.wait(futures, timeout=30)
            assert len(done) == len(futures), "a send hung"
            assert not [f for f in futures if f.cancelled()]
            failures = [f.result().failure for f in futures]
            assert all(f is not None and ((f.kind is FailureKind.TIMEOUT) or (f.kind is FailureKind.NETWORK)) for f in failures), failures
            client.close()
