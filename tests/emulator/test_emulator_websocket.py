"""WebSocket behaviour, as Raccoon's own code serves it (docs/protocol.md), over real sockets."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from raccoon_beam._proto import raccoon_pb2
from raccoon_beam.wire import Wire, decode_response

UPGRADE_HEADERS = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


def test_binary_is_protobuf_text_is_json_acked_in_the_same_frame_type(kit, emulator):
    async def scenario(session):
        async with kit.connect(session, "u-1", headers={"X-User-Group": "web"}) as ws:
            proto = kit.request([("click", b"a")], Wire.PROTOBUF, req_guid="p-1")
            ack = await kit.ws_request(ws, proto.body, Wire.PROTOBUF)
            assert (ack.code, ack.data["req_guid"]) == (raccoon_pb2.CODE_OK, "p-1")
            js = kit.request([("view", b"b")], Wire.JSON, req_guid="j-1")
            ack = await kit.ws_request(ws, js.body, Wire.JSON)
            assert (ack.status, ack.data["req_guid"]) == (raccoon_pb2.STATUS_SUCCESS, "j-1")

    kit.run(scenario)
    assert [(e.type, e.req_guid, e.conn_id, e.group, e.transport) for e in emulator.events()] == [
        ("click", "p-1", "u-1", "web", "websocket"),
        ("view", "j-1", "u-1", "web", "websocket"),
    ]


@pytest.mark.parametrize("wire,frame", [(Wire.JSON, "{oops"), (Wire.PROTOBUF, b"\x0a\xff\xff")])
def test_bad_frame_is_bad_request_with_empty_req_guid_and_connection_kept(kit, emulator, wire, frame):
    async def scenario(session):
        async with kit.connect(session) as ws:
            if isinstance(frame, str):
                await ws.send_str(frame)
            else:
                await ws.send_bytes(frame)
            msg = await ws.receive(timeout=10)
            assert msg.type == (aiohttp.WSMsgType.TEXT if wire is Wire.JSON else aiohttp.WSMsgType.BINARY)
            ack = decode_response(msg.data, wire)
            assert (ack.status, ack.code) == (raccoon_pb2.STATUS_ERROR, raccoon_pb2.CODE_BAD_REQUEST)
            assert ack.reason.startswith("cannot deserialize request: ")
            assert ack.data["req_guid"] == ""
            # Still open: the next request succeeds.
            ack = await kit.ws_request(ws, kit.request([("click", b"x")], wire, "r-2").body, wire)
            assert ack.data["req_guid"] == "r-2"

    kit.run(scenario)
    assert len(emulator.events()) == 1


def test_duplicate_id_and_group_gets_max_user_code_and_close_1008(kit, emulator):
    async def scenario(session):
        async with kit.connect(session, "dup") as first:
            async with kit.connect(session, "dup", headers={"X-User-Group": "other"}) as other_group:
                await kit.ws_request(other_group, kit.request([("c", b"x")]).body, Wire.PROTOBUF)
            async with kit.connect(session, "dup") as second:
                msg = await second.receive(timeout=10)
                assert msg.type == aiohttp.WSMsgType.BINARY
                resp = raccoon_pb2.SendEventResponse.FromString(msg.data)
                assert (resp.status, resp.code) == (raccoon_pb2.STATUS_ERROR, raccoon_pb2.CODE_MAX_USER_LIMIT_REACHED)
                assert resp.reason.startswith("duplicated connection: ")
                msg = await second.receive(timeout=10)
                assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1008
            # The first connection is unaffected.
            ack = await kit.ws_request(first, kit.request([("c", b"y")]).body, Wire.PROTOBUF)
            assert ack.code == raccoon_pb2.CODE_OK

    kit.run(scenario)
    assert emulator.counters().connections_refused == 1


def test_id_is_free_again_after_close(kit):
    async def scenario(session):
        for _ in range(2):
            async with kit.connect(session, "again") as ws:
                assert (await kit.ws_request(ws, kit.request([("c", b"x")]).body, Wire.PROTOBUF)).code == 1

    kit.run(scenario)


@pytest.mark.emulator(max_connections=2)
def test_over_max_connections_gets_max_connection_code_and_close_1008(kit, emulator):
    async def scenario(session):
        async with kit.connect(session, "a"), kit.connect(session, "b"):
            async with kit.connect(session, "c") as third:
                msg = await third.receive(timeout=10)
                resp = raccoon_pb2.SendEventResponse.FromString(msg.data)
                assert resp.code == raccoon_pb2.CODE_MAX_CONNECTION_LIMIT_REACHED
                assert resp.status == raccoon_pb2.STATUS_ERROR
                msg = await third.receive(timeout=10)
                assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1008
            assert emulator.counters().connections_open == 2

    kit.run(scenario)


def test_origin_must_match_host(kit, emulator):
    host = emulator.ws_endpoint.split("//", 1)[1].split("/", 1)[0]

    async def scenario(session):
        async with session.get(emulator.rest_endpoint, headers={**UPGRADE_HEADERS, "Origin": "http://evil.example"}) as r:
            assert r.status == 403
        async with kit.connect(session, "o", origin=f"http://{host}") as ws:  # same origin passes
            assert (await kit.ws_request(ws, kit.request([("c", b"x")]).body, Wire.PROTOBUF)).code == 1

    kit.run(scenario)


@pytest.mark.emulator(check_origin=False)
def test_origin_check_can_be_disabled(kit):
    async def scenario(session):
        async with kit.connect(session, "o", origin="http://evil.example") as ws:
            assert (await kit.ws_request(ws, kit.request([("c", b"x")]).body, Wire.PROTOBUF)).code == 1

    kit.run(scenario)


@pytest.mark.emulator(ping_interval=0.1, pong_timeout=5.0)
def test_server_pings_and_keeps_a_connection_that_answers(kit):
    async def scenario(session):
        async with kit.connect(session, "p", autoping=False) as ws:
            pings = 0
            while pings < 3:
                msg = await ws.receive(timeout=10)
                assert msg.type == aiohttp.WSMsgType.PING
                pings += 1
                await ws.pong(msg.data)
            assert not ws.closed
            assert (await kit.ws_request(ws, kit.request([("c", b"x")]).body, Wire.PROTOBUF, )).code == 1

    kit.run(scenario)


@pytest.mark.emulator(ping_interval=0.1, pong_timeout=0.3)
def test_server_drops_a_connection_that_never_pongs(kit, emulator):
    async def scenario(session):
        async with kit.connect(session, "silent", autoping=False) as ws:
            while True:
                msg = await ws.receive(timeout=10)
                if msg.type != aiohttp.WSMsgType.PING:
                    break
            assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE)

    kit.run(scenario)
    assert kit.ping() == "pong"


def test_client_pings_are_answered(kit):
    async def scenario(session):
        async with kit.connect(session, "cp", autoping=False) as ws:
            await ws.ping(b"hello")
            msg = await ws.receive(timeout=10)
            assert msg.type == aiohttp.WSMsgType.PONG and msg.data == b"hello"

    kit.run(scenario)


@pytest.mark.emulator(dedup=True)
def test_dedup_acks_a_repeated_req_guid_without_capturing_it_again(kit, emulator):
    req = kit.request([("click", b"x"), ("click", b"y")], req_guid="same")

    async def scenario(session):
        async with kit.connect(session, "d") as ws:
            for _ in range(3):
                ack = await kit.ws_request(ws, req.body, Wire.PROTOBUF)
                assert (ack.code, ack.data["req_guid"]) == (raccoon_pb2.CODE_OK, "same")
        async with kit.connect(session, "d") as ws:  # dedup does not survive a reconnect
            assert (await kit.ws_request(ws, req.body, Wire.PROTOBUF)).code == raccoon_pb2.CODE_OK

    kit.run(scenario)
    assert len(emulator.events()) == 4
    counters = emulator.counters()
    assert counters.duplicates_dropped == 2 and counters.events_deduplicated == 4
    # REST and gRPC never dedup.
    kit.post(req.body, "application/proto")
    kit.post(req.body, "application/proto")
    kit.grpc(req.body)
    assert len(emulator.events()) == 10


def test_dedup_is_off_by_default(kit, emulator):
    req = kit.request([("click", b"x")], req_guid="same")

    async def scenario(session):
        async with kit.connect(session) as ws:
            for _ in range(2):
                await kit.ws_request(ws, req.body, Wire.PROTOBUF)

    kit.run(scenario)
    assert len(emulator.events()) == 2


def test_abrupt_client_disconnect_is_harmless(kit, emulator):
    async def scenario(session):
        ws = await kit.connect(session, "abrupt")
        await ws.send_bytes(kit.request([("c", b"x")]).body)
        ws._response.connection.transport.abort()  # no close frame
        await asyncio.sleep(0.1)

    kit.run(scenario)
    assert kit.ping() == "pong"

    async def again(session):
        async with kit.connect(session, "abrupt") as ws:  # the id was released
            assert (await kit.ws_request(ws, kit.request([("c", b"y")]).body, Wire.PROTOBUF)).code == 1

    kit.run(again)


def test_stop_closes_open_connections(emulator, kit):
    async def scenario(session):
        async with kit.connect(session, "s") as ws:
            await kit.ws_request(ws, kit.request([("c", b"x")]).body, Wire.PROTOBUF)
            await asyncio.get_running_loop().run_in_executor(None, emulator.stop)
            msg = await ws.receive(timeout=10)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)

    kit.run(scenario)


@pytest.mark.emulator(max_body_bytes=1024)
@pytest.mark.parametrize("wire", [Wire.PROTOBUF, Wire.JSON])
def test_oversized_frame_is_closed_1009_and_counted(kit, emulator, wire):
    """E2: the refused frame is a request received and rejected, like an oversized REST body."""

    async def scenario(session):
        async with kit.connect(session, "u-1") as ws:
            body = kit.request([("click", b"x" * 4096)], wire).body
            if wire is Wire.PROTOBUF:
                await ws.send_bytes(body)
            else:
                await ws.send_str(body.decode("utf-8"))
            msg = await ws.receive(timeout=10)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg
            return ws.close_code

    assert kit.run(scenario) == 1009
    deadline = time.monotonic() + 10  # the server counts once its closing handshake ends
    while emulator.counters().received("websocket") == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    counters = emulator.counters()
    assert counters.received("websocket") == 1 and counters.rejected("websocket") == 1
    assert counters.accepted("websocket") == 0 and emulator.events() == []
