"""Clients and leak checks for the emulator's tests (real sockets, no project transports)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Awaitable, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import aiohttp
import grpc
import pytest
import requests

from raccoon_beam._proto import raccoon_pb2
from raccoon_beam.emulator import RaccoonEmulator
from raccoon_beam.wire import CONTENT_TYPES, Wire, encode_request

GRPC_METHOD = "/raystack.raccoon.v1beta1.EventService/SendEvent"
JSON = CONTENT_TYPES[Wire.JSON]
PROTO = CONTENT_TYPES[Wire.PROTOBUF]


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Every test must stop its servers, loops and client threads."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5.0
    while True:
        leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        # grpc.aio's process-wide completion-queue poller: one at most, shared by every loop.
        pollers = [t for t in leaked if "_poll_wrapper" in t.name]
        if len(pollers) <= 1:
            leaked = [t for t in leaked if t not in pollers]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not leaked, f"threads left running: {leaked}"


class Kit:
    """Raw clients for one emulator."""

    def __init__(self, emu: RaccoonEmulator) -> None:
        self.emu = emu

    # ---- REST
    def post(self, body: bytes, content_type: Optional[str] = JSON, headers: Optional[Dict[str, str]] = None,
             timeout: float = 10.0) -> requests.Response:
        all_headers = dict(headers or {})
        if content_type is not None:
            all_headers["Content-Type"] = content_type
        with requests.Session() as session:
            return session.post(self.emu.rest_endpoint, data=body, headers=all_headers, timeout=timeout)

    def ping(self) -> str:
        with requests.Session() as session:
            return session.get(self.emu.http_base_url + "/ping", timeout=10).text

    # ---- gRPC
    def grpc(self, body: bytes, metadata: Optional[Sequence[Tuple[str, str]]] = (("x-user-id", "u-1"),),
             timeout: float = 10.0) -> bytes:
        """Calls SendEvent with raw bytes; raises grpc.RpcError on a failing status."""
        target = self.emu.grpc_endpoint.split("://", 1)[1]
        with grpc.insecure_channel(target) as channel:
            call = channel.unary_unary(GRPC_METHOD)
            return call(body, metadata=metadata, timeout=timeout)

    def grpc_error(self, body: bytes, **kwargs: Any) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as info:
            self.grpc(body, **kwargs)
        return info.value

    # ---- WebSocket
    def run(self, fn: Callable[[aiohttp.ClientSession], Awaitable[Any]]) -> Any:
        """Runs ``fn(session)`` on a fresh asyncio loop with an aiohttp session."""

        async def main() -> Any:
            async with aiohttp.ClientSession() as session:
                return await fn(session)

        return asyncio.run(main())

    def connect(self, session: aiohttp.ClientSession, conn_id: Optional[str] = "u-1",
                headers: Optional[Dict[str, str]] = None, **kwargs: Any):
        all_headers = dict(headers or {})
        if conn_id is not None:
            all_headers["X-User-ID"] = conn_id
        return session.ws_connect(self.emu.ws_endpoint, headers=all_headers, **kwargs)

    @staticmethod
    async def ws_request(ws: aiohttp.ClientWebSocketResponse, body: bytes, wire: Wire,
                         timeout: float = 10.0) -> raccoon_pb2.SendEventResponse:
        """Sends one request frame and decodes the next data frame as its ack."""
        from raccoon_beam.wire import decode_response

        if wire is Wire.PROTOBUF:
            await ws.send_bytes(body)
        else:
            await ws.send_str(body.decode("utf-8"))
        msg = await ws.receive(timeout=timeout)
        expected = aiohttp.WSMsgType.BINARY if wire is Wire.PROTOBUF else aiohttp.WSMsgType.TEXT
        assert msg.type == expected, msg
        return decode_response(msg.data, wire)


    @staticmethod
    def request(events: List[Tuple[str, bytes]], wire: Wire = Wire.PROTOBUF, req_guid: Optional[str] = None):
        return encode_request(events, wire=wire, req_guid=req_guid)


@pytest.fixture
def kit(emulator: RaccoonEmulator) -> Kit:
    return Kit(emulator)
