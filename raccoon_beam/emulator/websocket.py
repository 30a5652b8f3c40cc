"""WebSocket: ``GET /api/v1/events`` with an upgrade, as Raccoon's gorilla handler behaves.

Text frames carry the JSON wire, binary frames the protobuf wire; every
request gets one ack in the same frame type. The connection table refuses a
second (id, group) and connections over the limit after the upgrade, with
one protobuf response and close 1008. The server pings every
``ping_interval`` and, like gorilla's read deadline, drops (no close frame) a
connection that sent no pong for ``pong_timeout``.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import Dict, Optional, Set, Tuple

from aiohttp import WSCloseCode, WSMsgType, web

from raccoon_beam._proto import raccoon_pb2
from raccoon_beam.emulator.config import EmulatorConfig
from raccoon_beam.emulator.ingest import Ingest, Answer, error_response
from raccoon_beam.emulator.outcomes import Outcome
from raccoon_beam.emulator.rest import outcome_response
from raccoon_beam.errors import WireFormatError
from raccoon_beam.protocol import CLOSE_MESSAGE_TOO_BIG, CLOSE_POLICY_VIOLATION, REASON_CANNOT_DESERIALIZE
from raccoon_beam.wire import Wire, decode_request, encode_response

__all__ = ["WebSocketHandler", "CLOSE_POLICY_VIOLATION", "CLOSE_MESSAGE_TOO_BIG", "CLOSE_INTERNAL_ERROR"]

CLOSE_INTERNAL_ERROR = 1011  # injected http/grpc outcomes: the server gave up on the connection


def _has_token(value: str, token: str) -> bool:
    return any(part.strip().lower() == token for part in value.split(","))


def _plain(status: int, text: str) -> web.Response:
    # gorilla answers handshake errors with Go's http.Error: the status text.
    return web.Response(status=status, text=text + "\n", headers={"Sec-WebSocket-Version": "13"})


class _Connection:
    __slots__ = ("ws", "transport", "seen", "last_pong", "tasks")

    def __init__(self, ws: web.WebSocketResponse, transport: Optional[asyncio.Transport], dedup: bool) -> None:
        self.ws = ws
        self.transport = transport
        self.seen: Optional[Set[str]] = set() if dedup else None
        self.last_pong = asyncio.get_running_loop().time()
        self.tasks: Set[asyncio.Task] = set()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class WebSocketHandler:
    """The aiohttp handler of ``GET /api/v1/events``.

    Args:
      config: the emulator's settings.
      ingest: where decoded requests go.
    """

    def __init__(self, config: EmulatorConfig, ingest: Ingest) -> None:
        self._config = config
        self._ingest = ingest
        self._table: Dict[Tuple[str, str], _Connection] = {}

    # ------------------------------------------------------------ handshake

    def _handshake_error(self, request: web.Request) -> Optional[web.Response]:
        """gorilla's Upgrader checks, in its order."""
        headers = request.headers
        if not _has_token(headers.get("Connection", ""), "upgrade") or not _has_token(
            headers.get("Upgrade", ""), "websocket"
        ):
            return _plain(400, "Bad Request")
        if headers.get("Sec-WebSocket-Version") != "13":
            return _plain(400, "Bad Request")
        if self._config.check_origin and not _same_origin(headers.get("Origin"), request.host):
            return _plain(403, "Forbidden")
        if not headers.get("Sec-WebSocket-Key"):
            return _plain(400, "Bad Request")
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        refusal = self._handshake_error(request)
        if refusal is not None:
            return refusal
        config = self._config
        conn_id = request.headers.get(config.conn_id_header, "")
        required = self._ingest.required_header
        if required is not None and not self._ingest.authenticate(
            "websocket", request.headers.get(required.name), conn_id
        ):
            return _plain(401, "Unauthorized")  # the gateway refuses the upgrade
        group = request.headers.get(config.group_header, "") or config.default_group
        # A gateway in front sheds load where it can: at the upgrade (it cannot
        # answer single frames of an open connection).
        shed = self._ingest.gateway_refusal("websocket", conn_id, upgrade=True)
        if shed is not None:
            return outcome_response(shed, {"Content-Type": "text/plain"})
        ws = web.WebSocketResponse(autoping=False, max_msg_size=config.max_body_bytes)
        transport = request.transport
        await ws.prepare(request)
        key = (conn_id, group)
        if len(self._table) >= config.max_connections:
            return await self._refuse(
                ws, raccoon_pb2.CODE_MAX_CONNECTION_LIMIT_REACHED, "max connection reached", "Max connection reached"
            )
        if key in self._table:
            return await self._refuse(
                ws,
                raccoon_pb2.CODE_MAX_USER_LIMIT_REACHED,
                f"duplicated connection: [{group}] {conn_id},",
                f"duplicate connection: {conn_id}",
            )
        connection = _Connection(ws, transport, config.dedup)
        self._table[key] = connection
        self._ingest.counters.connections_open += 1
        keepalive = asyncio.create_task(self._keepalive(connection))
        try:
            await self._read_loop(connection, conn_id, group)
        finally:
            keepalive.cancel()
            for task in list(connection.tasks):
                task.cancel()
            del self._table[key]
            self._ingest.counters.connections_open -= 1
            if not ws.closed:
                await ws.close()
        return ws

    async def _refuse(self, ws: web.WebSocketResponse, code: int, reason: str, close_reason: str) -> web.WebSocketResponse:
        self._ingest.counters.refused()
        await ws.send_bytes(encode_response(error_response(code, reason), Wire.PROTOBUF))
        await ws.close(code=CLOSE_POLICY_VIOLATION, message=close_reason.encode("utf-8"))
        return ws

    async def close_all(self) -> None:
        """Closes every open connection (server shutdown)."""
        for connection in list(self._table.values()):
            if not connection.ws.closed:
                try:
                    await asyncio.wait_for(connection.ws.close(code=WSCloseCode.GOING_AWAY), 1.0)
                except (asyncio.TimeoutError, ConnectionError, RuntimeError):
                    connection.abort()

    # ------------------------------------------------------------ frames

    async def _keepalive(self, connection: _Connection) -> None:
        loop = asyncio.get_running_loop()
        interval, timeout = self._config.ping_interval, self._config.pong_timeout
        next_ping = loop.time() + interval
        while True:
            deadline = connection.last_pong + timeout
            await asyncio.sleep(max(0.0, min(next_ping, deadline) - loop.time()))
            now = loop.time()
            if now >= connection.last_pong + timeout:
                connection.abort()  # gorilla's read deadline: no close frame
                return
            if now >= next_ping:
                next_ping = now + interval
                try:
                    await connection.ws.ping()
                except (ConnectionError, RuntimeError):
                    return

    async def _read_loop(self, connection: _Connection, conn_id: str, group: str) -> None:
        ws = connection.ws
        sync_ack = self._config.sync_ack
        loop = asyncio.get_running_loop()
        while True:
            msg = await ws.receive()
            kind = msg.type
            if kind is WSMsgType.BINARY or kind is WSMsgType.TEXT:
                wire = Wire.PROTOBUF if kind is WSMsgType.BINARY else Wire.JSON
                if sync_ack:
                    # Acks wait for publishing, so they may overtake each other.
                    task = asyncio.create_task(self._frame(connection, msg.data, wire, conn_id, group))
                    connection.tasks.add(task)
                    task.add_done_callback(connection.tasks.discard)
                else:
                    await self._frame(connection, msg.data, wire, conn_id, group)
            elif kind is WSMsgType.PING:
                await ws.pong(msg.data)
            elif kind is WSMsgType.PONG:
                connection.last_pong = loop.time()
            else:  # CLOSE, CLOSING, CLOSED, ERROR
                # (ws.close_code is the client's closing reply by now; the
                # error carries the code the server closed with.)
                if kind is WSMsgType.ERROR and getattr(msg.data, "code", None) == CLOSE_MESSAGE_TOO_BIG:
                    # A frame over max_body_bytes: aiohttp closed with 1009
                    # (as a proxy in front of Raccoon would). It was a
                    # request, refused: count it like any other.
                    self._ingest.bad_request("websocket", "message too big (close 1009)", conn_id)
                return

    async def _frame(self, connection: _Connection, data, wire: Wire, conn_id: str, group: str) -> None:
        ingest = self._ingest
        try:
            request = decode_request(data, wire)
        except WireFormatError as exc:
            ingest.bad_request("websocket", f"{REASON_CANNOT_DESERIALIZE}: {exc}", conn_id)
            detail = "proto: cannot parse invalid wire-format data" if wire is Wire.PROTOBUF else str(exc)
            response = error_response(raccoon_pb2.CODE_BAD_REQUEST, f"{REASON_CANNOT_DESERIALIZE}: {detail}", "")
            await _send(connection.ws, encode_response(response, wire), wire)
            return
        answer = await ingest.handle(request, conn_id, group, "websocket", connection.seen)
        await self._render(connection, answer, wire)

    async def _render(self, connection: _Connection, answer: Answer, wire: Wire) -> None:
        if answer.response is not None:
            await _send(connection.ws, encode_response(answer.response, wire), wire)
            return
        if answer.drop:
            connection.abort()
            return
        outcome: Outcome = answer.outcome  # type: ignore[assignment]
        if outcome.kind == "no_answer":
            return
        if outcome.kind == "garbage":
            await _send(connection.ws, outcome.body, wire)
            return
        if outcome.kind == "http":
            message = f"HTTP {outcome.status}"
        else:
            message = f"gRPC {outcome.grpc_status.name if outcome.grpc_status else 'UNKNOWN'}"
        await connection.ws.close(code=CLOSE_INTERNAL_ERROR, message=message.encode("utf-8"))


async def _send(ws: web.WebSocketResponse, body: bytes, wire: Wire) -> None:
    if ws.closed:
        return
    try:
        if wire is Wire.PROTOBUF:
            await ws.send_bytes(body)
        else:
            await ws.send_str(body.decode("utf-8", "replace"))
    except (ConnectionError, RuntimeError):
        pass  # the peer went away; nothing to ack


def _same_origin(origin: Optional[str], host: str) -> bool:
    """gorilla's checkSameOrigin: no Origin passes; else its host must equal Host."""
    if not origin:
        return True
    try:
        parsed = urllib.parse.urlsplit(origin)
    except ValueError:
        return False
    return parsed.netloc.lower() == host.lower()
