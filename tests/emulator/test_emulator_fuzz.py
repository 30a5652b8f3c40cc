"""Random bytes on every transport: each is answered with a bad-request outcome
(or accepted, when the bytes happen to decode) or a clean close, and the
emulator keeps serving."""

from __future__ import annotations

from typing import Iterator

import aiohttp
import grpc
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raccoon_beam._proto import raccoon_pb2
from raccoon_beam.emulator import RaccoonEmulator
from raccoon_beam.wire import Wire, decode_response

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
OK_OR_BAD = {raccoon_pb2.CODE_OK, raccoon_pb2.CODE_BAD_REQUEST}


@pytest.fixture(scope="module")
def shared() -> Iterator[RaccoonEmulator]:
    # One emulator for all examples: the point is that it survives them all.
    with RaccoonEmulator(capture="digest") as emu:
        yield emu
        with requests.Session() as session:
            assert session.get(emu.http_base_url + "/ping", timeout=10).text == "pong"


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture(scope="module")
def grpc_call(shared) -> Iterator:
    with grpc.insecure_channel(shared.grpc_endpoint.split("://", 1)[1]) as channel:
        yield channel.unary_unary("/raystack.raccoon.v1beta1.EventService/SendEvent")


@pytest.fixture(autouse=True)
def no_leaked_threads():  # the module-scoped emulator outlives each test
    yield


json_like = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10)),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(
            st.sampled_from(["req_guid", "events", "event_bytes", "type", "sent_time", "seconds", "x"]),
            children, max_size=4),
        max_leaves=12,
    ).map(lambda v: __import__("json").dumps(v).encode()),
)


@FUZZ
@given(body=json_like, content_type=st.sampled_from(["application/json", "application/proto"]))
def test_rest_random_bodies(shared, http, body, content_type):
    resp = http.post(shared.rest_endpoint, data=body, headers={"Content-Type": content_type}, timeout=10)
    assert resp.status_code in (200, 400)
    wire = Wire.JSON if content_type == "application/json" else Wire.PROTOBUF
    decoded = decode_response(resp.content, wire)
    assert decoded.code in OK_OR_BAD
    if resp.status_code == 400:
        assert decoded.reason == "deserialization failure"


@FUZZ
@given(body=st.binary(max_size=300))
def test_grpc_random_bytes(shared, grpc_call, body):
    try:
        resp = raccoon_pb2.SendEventResponse.FromString(grpc_call(body, metadata=[("x-user-id", "f")], timeout=10))
        assert resp.code == raccoon_pb2.CODE_OK
    except grpc.RpcError as exc:
        assert exc.code() is grpc.StatusCode.INTERNAL


@FUZZ
@given(frames=st.lists(st.tuples(st.booleans(), json_like), min_size=1, max_size=5))
def test_websocket_random_frames(shared, frames):
    import asyncio

    async def scenario():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(shared.ws_endpoint, headers={"X-User-ID": "fuzz"}) as ws:
                for binary, body in frames:
                    if binary:
                        await ws.send_bytes(body)
                    else:
                        await ws.send_str(body.decode("utf-8", "replace"))
                    msg = await ws.receive(timeout=10)
                    if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                        return  # a clean close is an acceptable answer
                    wire = Wire.PROTOBUF if binary else Wire.JSON
                    assert msg.type == (aiohttp.WSMsgType.BINARY if binary else aiohttp.WSMsgType.TEXT)
                    assert decode_response(msg.data, wire).code in OK_OR_BAD

    asyncio.run(scenario())


@settings(max_examples=30, deadline=None)
@given(chunk=st.binary(min_size=1, max_size=200), declared=st.integers(min_value=1, max_value=10_000))
def test_half_sent_requests_and_raw_garbage(shared, chunk, declared):
    import socket

    port = int(shared.rest_endpoint.split(":")[2].split("/")[0])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = (f"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/proto\r\n"
                f"Content-Length: {declared + len(chunk)}\r\n\r\n").encode()
        sock.sendall(head + chunk)  # then hang up before the body is complete
    gport = int(shared.grpc_endpoint.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", gport), timeout=10) as sock:
        sock.sendall(chunk)  # not even HTTP/2
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(chunk + b"\r\n\r\n")
