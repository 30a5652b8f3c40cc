"""WebSocket specifics: ack matching, pings, reconnects, duplicate ids, pending requests."""

from __future__ import annotations

import asyncio
import threading

import aiohttp
import pytest
from aiohttp import web

from raccoon_beam.errors import FailureKind
from raccoon_beam._proto import raccoon_pb2
from raccoon_beam.emulator import Outcome, RaccoonEmulator
from raccoon_beam.retry import Verdict
from raccoon_beam.wire import Wire, decode_request, encode_response

from tests.transports.helpers import FAST_POLICY, NO_RETRY, RawServer, eventually, make_request
from tests.ports import closed_port

pytestmark = pytest.mark.timeout(60)


def _ack(guid: str, code: int = raccoon_pb2.CODE_OK) -> raccoon_pb2.SendEventResponse:
    status = raccoon_pb2.STATUS_SUCCESS if code == raccoon_pb2.CODE_OK else raccoon_pb2.STATUS_ERROR
    response = raccoon_pb2.SendEventResponse(status=status, code=code, sent_time=1)
    if guid:
        response.data["req_guid"] = guid
    return response


def _frame_wire(message) -> Wire:
    return Wire.JSON if message.type == aiohttp.WSMsgType.TEXT else Wire.PROTOBUF


async def _send(ws, response, wire):
    body = encode_response(response, wire)
    if wire is Wire.JSON:
        await ws.send_str(body.decode())
    else:
        await ws.send_bytes(body)


@pytest.mark.parametrize("wire", [Wire.PROTOBUF, Wire.JSON])
def test_acks_matched_by_req_guid_in_any_order(wire, make_client):
    """Three requests acked in reverse order, after noise that must resolve nothing."""
    frames = []
    origins = []

    async def handler(request):
        origins.append(request.headers.get("Origin"))
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            frames.append(message.type)
            guid = decode_request(message.data, _frame_wire(message)).req_guid
            pending = getattr(ws, "guids", [])
            pending.append((guid, _frame_wire(message)))
            ws.guids = pending
            if len(pending) == 3:
                noise_wire = pending[0][1]
                # an ack for an unknown request, a garbled frame, an undecodable-request answer
                await _send(ws, _ack("not-yours"), noise_wire)
                await ws.send_bytes(b"\x0a\xffgarbage")
                await _send(ws, _ack("", raccoon_pb2.CODE_BAD_REQUEST), noise_wire)
                for guid, frame_wire in reversed(pending):
                    await _send(ws, _ack(guid), frame_wire)
        return ws

    with RawServer([("GET", "/api/v1/events", handler)]) as server:
        client = make_client(f"ws://{server.base_url}", wire=wire, policy=NO_RETRY, max_in_flight=3)
        requests = [make_request(wire, n=i + 1) for i in range(3)]
        futures = [client.submit(r) for r in requests]
        outcomes = [f.result(30) for f in futures]
        for request, outcome in zip(requests, outcomes):
            assert outcome.ok, outcome.failure
            assert outcome.response.data["req_guid"] == request.req_guid
        expected = aiohttp.WSMsgType.TEXT if wire is Wire.JSON else aiohttp.WSMsgType.BINARY
        assert frames == [expected] * 3  # the frame type follows the wire
        assert origins == [None]  # no Origin header; one connection
        client.close()


def test_pending_requests_fail_at_once_when_the_connection_drops(emulator, make_client):
    client = make_client(emulator.ws_endpoint, policy=NO_RETRY, timeout=60.0, max_in_flight=4)
    emulator.faults.fail_next(3, Outcome.no_answer(), transport="websocket")
    futures = [client.submit(make_request(Wire.PROTOBUF)) for _ in range(3)]
    assert eventually(lambda: emulator.counters().received("websocket") >= 3)
    emulator.faults.drop_connection(1, transport="websocket")
    futures.append(client.submit(make_request(Wire.PROTOBUF)))
    # Well before the 60 s ack timeout: every pending request fails with the drop.
    outcomes = [f.result(30) for f in futures]
    for outcome in outcomes:
        assert (outcome.failure.kind is FailureKind.NETWORK) and outcome.failure.kind is not FailureKind.TIMEOUT, outcome.failure
        assert outcome.verdict is Verdict.RETRY
    # The next request reconnects.
    assert client.submit(make_request(Wire.PROTOBUF)).result(30).ok
    assert client.transport.connections_opened == 2


def test_close_with_requests_pending_never_hangs(emulator, make_client):
    client = make_client(emulator.ws_endpoint, policy=NO_RETRY, timeout=60.0)
    emulator.faults.fail_next(2, Outcome.no_answer(), transport="websocket")
    futures = [client.submit(make_request(Wire.PROTOBUF)) for _ in range(2)]
    assert eventually(lambda: emulator.counters().received("websocket") >= 2)
    client.close()
    for future in futures:
        assert future.done()
        assert future.cancelled()
    with pytest.raises(RuntimeError):
        client.submit(make_request(Wire.PROTOBUF))


def test_duplicate_id_gets_a_fresh_id(emulator, make_client):
    first = make_client(emulator.ws_endpoint, conn_id="worker-1")
    assert first.submit(make_request(Wire.PROTOBUF)).result(30).ok
    single = make_client(emulator.ws_endpoint, conn_id="worker-1", policy=NO_RETRY)
    outcome = single.submit(make_request(Wire.PROTOBUF)).result(30)
    failure = outcome.failure
    assert failure.raccoon_code == raccoon_pb2.CODE_MAX_USER_LIMIT_REACHED
    assert outcome.verdict is Verdict.RETRY
    assert single.transport.conn_id.startswith("worker-1-")  # the next connection's id
    assert single.submit(make_request(Wire.PROTOBUF)).result(30).ok
    second = make_client(emulator.ws_endpoint, conn_id="worker-1")
    outcome = second.submit(make_request(Wire.PROTOBUF)).result(30)
    assert outcome.ok and outcome.attempts == 2
    conn_ids = {e.conn_id for e in emulator.events()}
    assert len(conn_ids) == 3 and "worker-1" in conn_ids
    assert emulator.counters().connections_refused == 2


def test_generated_ids_are_unique_per_client(emulator, make_client):
    clients = [make_client(emulator.ws_endpoint) for _ in range(3)]
    assert all(c.submit(make_request(Wire.PROTOBUF)).result(30).ok for c in clients)
    assert len({e.conn_id for e in emulator.events()}) == 3
    assert emulator.counters().connections_refused == 0


def test_server_full_is_retried():
    with RaccoonEmulator(max_connections=1) as emulator:
        from tests.transports.conftest import ClientFactory

        factory = ClientFactory()
        try:
            first = factory(emulator.ws_endpoint)
            assert first.submit(make_request(Wire.PROTOBUF)).result(30).ok
            second = factory(emulator.ws_endpoint, policy=NO_RETRY)
            outcome = second.submit(make_request(Wire.PROTOBUF)).result(30)
            assert outcome.failure.raccoon_code == raccoon_pb2.CODE_MAX_CONNECTION_LIMIT_REACHED
            assert outcome.verdict is Verdict.RETRY
            first.close()
            assert eventually(lambda: emulator.counters().connections_open == 0)
            assert second.submit(make_request(Wire.PROTOBUF)).result(30).ok
        finally:
            factory.close_and_check()


def test_pings_are_answered(make_client):
    # The server drops a connection that sends no pong for 0.5 s; pings every 0.1 s.
    with RaccoonEmulator(ping_interval=0.1, pong_timeout=0.5) as emulator:
        from tests.transports.conftest import ClientFactory

        factory = ClientFactory()
        try:
            client = factory(emulator.ws_endpoint)
            assert client.submit(make_request(Wire.PROTOBUF)).result(30).ok
            threading.Event().wait(1.5)  # idle through several ping rounds
            assert client.submit(make_request(Wire.PROTOBUF)).result(30).ok
            assert client.transport.connections_opened == 1
        finally:
            factory.close_and_check()


def test_dedup_on_one_connection_with_the_same_req_guid():
    with RaccoonEmulator(dedup=True) as emulator:
        from tests.transports.conftest import ClientFactory

        factory = ClientFactory()
        try:
            client = factory(emulator.ws_endpoint)
            request = make_request(Wire.PROTOBUF)
            assert client.submit(request).result(30).ok
            assert client.submit(request).result(30).ok  # a retry of the same request
            assert len(emulator.events()) == 1
        finally:
            factory.close_and_check()


def test_handshake_refused_is_classified(make_client):
    async def handler(request):
        return web.Response(status=403, text="Forbidden")

    with RawServer([("GET", "/api/v1/events", handler)]) as server:
        client = make_client(f"ws://{server.base_url}")
        outcome = client.submit(make_request(Wire.PROTOBUF)).result(30)
        assert outcome.failure.http_status == 403 and outcome.verdict is Verdict.PERMANENT
        assert outcome.attempts == 1
        client.close()


def test_connection_refused_is_retried_then_reported(make_client):
    client = make_client(f"ws://127.0.0.1:{closed_port()}")
    outcome = client.submit(make_request(Wire.PROTOBUF)).result(30)
    assert (outcome.failure.kind is FailureKind.UNREACHABLE) and outcome.verdict is Verdict.RETRY
    assert outcome.attempts == FAST_POLICY.max_attempts


def test_an_ack_names_the_connection_that_carried_it_even_once_that_connection_is_replaced(emulator):
    """The sender asks which connection acknowledged a request after the ack: by then a drop may have
    replaced the connection (and its id); the acknowledgement must still name the one that carried it."""
    from raccoon_beam.errors import SendFailure
    from raccoon_beam.transports import TransportConfig
    from raccoon_beam.transports.websocket import WebSocketTransport

    async def scenario():
        transport = WebSocketTransport(TransportConfig(emulator.ws_endpoint, timeout=10.0))
        try:
            first = make_request(Wire.PROTOBUF)
            await transport.send(first)
            carried = transport.conn_id
            emulator.faults.drop_connection(1, transport="websocket")
            with pytest.raises(SendFailure):
                await transport.send(make_request(Wire.PROTOBUF))
            return carried, transport.conn_id, transport.acknowledged_on(first)
        finally:
            await transport.close()

    carried, current, acknowledged_on = asyncio.run(scenario())
    assert current != carried, "the drop did not replace the connection's id"
    assert acknowledged_on == carried
    assert {event.conn_id for event in emulator.events()} == {carried}
