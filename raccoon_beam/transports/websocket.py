"""WebSocket transport: many requests in flight on one connection.

Raccoon answers each frame with exactly one SendEventResponse carrying the
request's ``data.req_guid``, in any order when acks wait for publishing. A
reader task therefore owns the receiving side and resolves the pending
request whose guid the ack names (an ack for an unknown guid resolves
nothing); it keeps reading at all times so that aiohttp answers the server's
pings. When the connection ends, every request pending on it fails at once
as a retryable network failure, and the next send reconnects: connections
are opened only by send attempts, so the retry policy's backoff spaces the
reconnects. After a duplicate-id rejection (code 5, close 1008) the next
connection uses a fresh id.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any, Dict, Optional

import aiohttp

from raccoon_beam._proto import raccoon_pb2
from raccoon_beam.errors import SendFailure, WireFormatError
from raccoon_beam.transports._http import client_error_failure, new_session, request_options
from raccoon_beam.transports.base import Transport, TransportConfig, check_response, closed_failure
from raccoon_beam.wire import EncodedRequest, Wire, decode_response

__all__ = ["WebSocketTransport", "DEFAULT_CLOSE_TIMEOUT", "CLOSE_POLICY_VIOLATION"]

# How long close() waits for the server's closing handshake.
DEFAULT_CLOSE_TIMEOUT = 5.0
# Raccoon closes a rejected connection (duplicate id, server full) with 1008.
CLOSE_POLICY_VIOLATION = 1008

_REJECTIONS = (raccoon_pb2.CODE_MAX_USER_LIMIT_REACHED, raccoon_pb2.CODE_MAX_CONNECTION_LIMIT_REACHED)

_log = logging.getLogger(__name__)


class _Connection:
    """One WebSocket connection, its reader and the requests pending on it."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, conn_id: str) -> None:
        self.ws = ws
        self.conn_id = conn_id
        self.pending: Dict[str, "asyncio.Future[raccoon_pb2.SendEventResponse]"] = {}
        self.reader: Optional["asyncio.Task[None]"] = None
        # Set once the connection is gone; sends must not register on it then.
        self.lost: Optional[SendFailure] = None


class WebSocketTransport(Transport):
    """Sends requests as frames on one WebSocket connection.

    Args:
      config: the transport configuration; ``timeout`` bounds connecting and
        each request's wait for its ack.
    """

    def __init__(self, config: TransportConfig) -> None:
        super().__init__(config)
        self.conn_id = config.new_conn_id()
        self._session: Optional[aiohttp.ClientSession] = None
        self._connection: Optional[_Connection] = None
        self._connecting: Optional["asyncio.Task[_Connection]"] = None
        self._closed = False
        self.connections_opened = 0

    async def send(self, request: EncodedRequest) -> raccoon_pb2.SendEventResponse:
        connection = await self._connect()
        if connection.lost is not None:
            raise _copy(connection.lost)
        guid = request.req_guid
        if guid in connection.pending:
            raise RuntimeError(f"request {guid!r} is already in flight")
        future: "asyncio.Future[raccoon_pb2.SendEventResponse]" = asyncio.get_running_loop().create_future()
        connection.pending[guid] = future
        # Failures are raised outside except clauses so that they do not
        # keep the library's exception (and its connection) alive.
        failure: Optional[SendFailure] = None
        try:
            try:
                if request.wire is Wire.JSON:
                    await connection.ws.send_str(request.body.decode("ascii"))  # JSON wire: a text frame
                else:
                    await connection.ws.send_bytes(request.body)
            except (aiohttp.ClientError, ConnectionError, OSError, RuntimeError) as exc:
                failure = client_error_failure(exc, self.config)
            if failure is not None:
                raise failure
            try:
                response = await asyncio.wait_for(future, self.config.timeout)
            except asyncio.TimeoutError:
                failure = SendFailure(
                    f"no ack for request {guid!r} from {self.endpoint.redacted} "
                    f"within {self.config.timeout:g} s",
                    timeout=True,
                )
            if failure is not None:
                raise failure
        finally:
            if connection.pending.get(guid) is future:
                del connection.pending[guid]
        return check_response(response, request)

    async def _connect(self) -> _Connection:
        """The open connection, opening one if needed (one attempt shared by all senders)."""
        if self._closed:
            raise closed_failure(self.endpoint)
        if self._connection is not None and self._connection.lost is None:
            return self._connection
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
        connecting = self._connecting
        try:
            # Shielded: one sender giving up (cancelled) must not abort the
            # attempt the others are waiting for.
            return await asyncio.shield(connecting)
        finally:
            if connecting.done() and self._connecting is connecting:
                self._connecting = None

    async def _open(self) -> _Connection:
        if self._session is None:
            self._session = new_session(self.config, limit=1, total_timeout=False)
        conn_id = self.conn_id
        try:
            ws = await asyncio.wait_for(
                self._session.ws_connect(
                    self.endpoint.url,
                    headers=self.config.request_headers(conn_id),
                    autoping=True,  # pongs go out while the reader reads
                    autoclose=True,
                    timeout=aiohttp.ClientWSTimeout(ws_close=min(self.config.timeout, DEFAULT_CLOSE_TIMEOUT)),
                    **request_options(self.config),
                    # origin left unset: Raccoon's Origin check refuses a
                    # mismatched Origin, and non-browser clients send none.
                ),
                self.config.timeout,
            )
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            failure: Optional[SendFailure] = client_error_failure(exc, self.config)
        else:
            failure = None
        if failure is not None:
            raise failure
        connection = _Connection(ws, conn_id)
        if self._closed:  # close() ran while the handshake was in progress
            await ws.close()
            raise closed_failure(self.endpoint)
        connection.reader = asyncio.create_task(self._read(connection), name=f"raccoon-ws-reader-{conn_id}")
        self._connection = connection
        self.connections_opened += 1
        return connection

    async def _read(self, connection: _Connection) -> None:
        rejection: Optional[raccoon_pb2.SendEventResponse] = None
        error: Optional[BaseException] = None
        try:
            async for message in connection.ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    wire = Wire.JSON
                elif message.type == aiohttp.WSMsgType.BINARY:
                    wire = Wire.PROTOBUF
                elif message.type == aiohttp.WSMsgType.ERROR:
                    error = connection.ws.exception()
                    break
                else:
                    continue
                try:
                    response = decode_response(message.data, wire)
                except WireFormatError as exc:
                    _log.warning("ignoring a frame from %s that is not a response: %s", self.endpoint, exc)
                    continue
                guid = response.data.get("req_guid", "")
                future = connection.pending.pop(guid, None) if guid else None
                if future is not None:
                    if not future.done():
                        future.set_result(response)
                elif response.code in _REJECTIONS:
                    rejection = response  # the close follows
                else:
                    # A late ack for a request that timed out, or a frame the
                    # server could not decode (no guid): it belongs to no
                    # pending request and must not resolve one.
                    _log.debug("ignoring a response for unknown request %r from %s", guid, self.endpoint)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the reader must end by failing the pending requests
            error = exc
        finally:
            self._lost(connection, rejection, error)

    def _lost(
        self,
        connection: _Connection,
        rejection: Optional[raccoon_pb2.SendEventResponse],
        error: Optional[BaseException],
    ) -> None:
        """Marks ``connection`` gone and fails every request pending on it."""
        if connection.lost is not None:
            return
        close_code = connection.ws.close_code
        if rejection is not None or close_code == CLOSE_POLICY_VIOLATION:
            code = rejection.code if rejection is not None else None
            reason = f": {rejection.reason}" if rejection is not None and rejection.reason else ""
            name = raccoon_pb2.Code.Name(code) if code is not None else "rejected"
            failure = SendFailure(
                f"{self.endpoint.redacted} refused connection {connection.conn_id!r} "
                f"({name}{reason}, close {close_code})",
                raccoon_code=code,
                network=True,
                reconnect=True,
            )
            if code != raccoon_pb2.CODE_MAX_CONNECTION_LIMIT_REACHED and connection.conn_id == self.conn_id:
                # The id is taken (or assumed so): the next connection uses a fresh one.
                self.conn_id = self._fresh_conn_id()
        elif self._closed:
            failure = closed_failure(self.endpoint)
        else:
            cause = f": {type(error).__name__}: {error}" if error is not None else ""
            failure = SendFailure(
                f"connection to {self.endpoint.redacted} closed (code {close_code}){cause}",
                network=True,
                reconnect=True,
            )
        connection.lost = failure
        if self._connection is connection:
            self._connection = None
        pending, connection.pending = connection.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(_copy(failure))

    def _fresh_conn_id(self) -> str:
        if self.config.conn_id is not None:
            return f"{self.config.conn_id}-{uuid.uuid4().hex[:12]}"
        return self.config.new_conn_id()

    async def close(self) -> None:
        self._closed = True
        connecting, self._connecting = self._connecting, None
        if connecting is not None and not connecting.done():
            connecting.cancel()
            await asyncio.gather(connecting, return_exceptions=True)
        connection, self._connection = self._connection, None
        if connection is not None:
            sock = connection.ws.get_extra_info("socket")
            await _close_quietly(connection.ws)
            await _wait_closed(sock, min(self.config.timeout, DEFAULT_CLOSE_TIMEOUT))
            if connection.reader is not None:
                connection.reader.cancel()
                await asyncio.gather(connection.reader, return_exceptions=True)
            self._lost(connection, None, None)
        session, self._session = self._session, None
        if session is not None:
            await session.close()


async def _close_quietly(ws: aiohttp.ClientWebSocketResponse) -> None:
    try:
        await ws.close()
    except (aiohttp.ClientError, ConnectionError, OSError, asyncio.TimeoutError) as exc:
        _log.debug("closing a WebSocket failed: %s", exc)


async def _wait_closed(sock: Any, timeout: float) -> None:
    """Waits (boundedly) until ``sock`` is closed.

    A TLS connection finishes closing asynchronously (close_notify), after
    ``ws.close()`` returns; without this wait the loop may stop first and
    leave the socket open.
    """
    if sock is None:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while sock.fileno() != -1 and loop.time() < deadline:
        await asyncio.sleep(0.005)


def _copy(failure: SendFailure) -> SendFailure:
    """A new SendFailure with the same facts (each waiter gets its own exception)."""
    copy = SendFailure.__new__(SendFailure)
    copy.__dict__.update(failure.__dict__)
    copy.args = failure.args
    return copy
