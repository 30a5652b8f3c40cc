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

Frames go out through one writer task per connection, which alone waits
for room in a full socket: aiohttp makes every writer of a connection wait
on one shared future, so a sender that gave up (its wait cancelled) would
cancel the wait of all the others. A sender waits only on futures of its
own. One deadline (the configured timeout) covers a request's send and its
ack. When a frame could not be written in time, the connection is retired:
closed at once, its other pending requests failed as retryable network
failures, and the next send opens a fresh connection with a fresh id. When
the frame went out but its ack is late (a busy Raccoon with sync acks
answers late, never not at all), the connection, its id and the request's
place are kept: the request's retry sends nothing and waits for that very
ack, so no duplicate is published (and no dedup success can stand in for a
publish that then fails). Only after :data:`MAX_OVERDUE_WAITS` more
timeouts is the connection retired.
Heartbeat pings detect a dead connection while idle. A close 1009 (message too big) fails the largest
pending request(s) as ``too_large`` (it is certainly over the limit, since
the frame that hit it was no larger) and the others as network failures.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import uuid
from typing import Any, Dict, List, NamedTuple, Optional

import aiohttp

from raccoon_beam._proto import raccoon_pb2
from raccoon_beam.errors import FailureKind, SendFailure, WireFormatError
from raccoon_beam.protocol import CLOSE_MESSAGE_TOO_BIG, CLOSE_POLICY_VIOLATION
from raccoon_beam.transports._http import client_error_failure, new_session, request_options
from raccoon_beam.transports.mismatch import PortCheck
from raccoon_beam.transports import Transport, TransportConfig, check_response, closed_failure, redact
from raccoon_beam.wire import EncodedRequest, Wire, decode_response

__all__ = [
    "WebSocketTransport",
    "DEFAULT_CLOSE_TIMEOUT",
    "MAX_HEARTBEAT",
    "MAX_OVERDUE_WAITS",
    "CLOSE_POLICY_VIOLATION",
    "CLOSE_MESSAGE_TOO_BIG",
]

# How many times the retry of a request whose ack is late waits for it on
# the same connection (a timeout each) before the connection is taken for
# stuck and the request sent again on a fresh one: a busy Raccoon with sync
# acks answers late, never not at all.
MAX_OVERDUE_WAITS = 2
# How long close() waits for the server's closing handshake.
DEFAULT_CLOSE_TIMEOUT = 5.0
# The client pings after this long without a frame (or after twice the
# timeout, when shorter) and drops the connection if no pong follows within
# half of it. Raccoon pings every 30 s itself, but only drops after 60 s, and
# a half-open connection would otherwise go unnoticed until a send times out.
# Twice the timeout: a busy Raccoon answers no ping while its handler waits
# for room in its buffer, and a pong may take as long as a request does.
MAX_HEARTBEAT = 30.0

# Close codes of a connection the server did not close itself: none, or
# 1006 (abnormal closure: a missed pong, a reset).
_UNANNOUNCED = (None, 1006)

_REJECTIONS = (raccoon_pb2.CODE_MAX_USER_LIMIT_REACHED, raccoon_pb2.CODE_MAX_CONNECTION_LIMIT_REACHED)
# Acks whose connection id no sender asked for that are remembered at most:
# the sender asks right after each ack, so this bounds only direct callers of send().
_MAX_ACKED_ON = 10_000

_log = logging.getLogger(__name__)


class _Pending(NamedTuple):
    """A request waiting for its ack: the future the reader resolves, and its size."""

    future: "asyncio.Future[raccoon_pb2.SendEventResponse]"
    size: int


class _Overdue(NamedTuple):
    """A request whose ack is late: the future the reader resolves, and how often a retry waited for it."""

    future: "asyncio.Future[raccoon_pb2.SendEventResponse]"
    waits: int


class _Outgoing(NamedTuple):
    """A frame for the writer task, and the future it resolves once the frame is written."""

    request: EncodedRequest
    written: "asyncio.Future[None]"


class _Connection:
    """One WebSocket connection, its reader, its writer and the requests pending on it."""

    def __init__(self, ws: "aiohttp.ClientWebSocketResponse[Any]", conn_id: str) -> None:
        self.ws = ws
        self.conn_id = conn_id
        self.pending: Dict[str, _Pending] = {}
        # Requests whose ack did not come in time, by guid: their retry waits
        # for that ack (the future the reader resolves) rather than send the
        # frame again.
        self.overdue: Dict[str, _Overdue] = {}
        self.reader: Optional["asyncio.Task[None]"] = None
        self.writer: Optional["asyncio.Task[None]"] = None
        # Frames to write; None wakes the writer to notice the connection is lost.
        self.outbox: "asyncio.Queue[Optional[_Outgoing]]" = asyncio.Queue()
        self.writing = False  # the writer is inside a write (maybe waiting for room)
        self.stopping = False  # close() is cancelling the writer
        # Set once the connection is gone; sends must not register on it then.
        self.lost: Optional[SendFailure] = None
        # The socket, kept so that close() can wait for it even once aiohttp
        # has let go of the connection.
        self.sock: Any = ws.get_extra_info("socket")


class WebSocketTransport(Transport):
    """Sends requests as frames on one WebSocket connection.

    Args:
      config: the transport configuration; ``timeout`` bounds connecting,
        and each request's send and ack together; twice it is the heartbeat
        interval (at most :data:`MAX_HEARTBEAT`).
    """

    def __init__(self, config: TransportConfig) -> None:
        super().__init__(config)
        self.conn_id = config.new_conn_id()
        self._session: Optional[aiohttp.ClientSession] = None
        self._connection: Optional[_Connection] = None
        self._connecting: Optional["asyncio.Task[_Connection]"] = None
        # Connections retired (or lost) whose socket close() must still wait for.
        self._retired: List[_Connection] = []
        self._closed = False
        self._port_check = PortCheck(config)
        self.connections_opened = 0
        # The id of the connection each request was acknowledged on, by guid,
        # until its sender asks (acknowledged_on); bounded for callers that never do.
        self._acked_on: Dict[str, str] = {}

    async def send(self, request: EncodedRequest) -> raccoon_pb2.SendEventResponse:
        connection = await self._connect()
        if connection.lost is not None:
            raise _copy(connection.lost)
        guid = request.req_guid
        if guid in connection.overdue:
            return await self._await_overdue(connection, request)
        if guid in connection.pending:
            raise RuntimeError(f"request {guid!r} is already in flight")
        loop = asyncio.get_running_loop()
        timeout = self.config.timeout
        deadline = loop.time() + timeout
        future: "asyncio.Future[raccoon_pb2.SendEventResponse]" = loop.create_future()
        connection.pending[guid] = _Pending(future, len(request.body))
        # Failures are raised outside except clauses so that they do not
        # keep the library's exception (and its connection) alive.
        failure: Optional[SendFailure] = None
        kept = False
        written: "asyncio.Future[None]" = loop.create_future()
        try:
            connection.outbox.put_nowait(_Outgoing(request, written))
            try:
                # Bounded: a server that stops reading fills the socket
                # buffers, and the write would wait for room forever. The
                # future is this sender's own: giving up on it disturbs no
                # other sender (the writer skips or finishes the frame).
                await asyncio.wait_for(written, timeout)
            except asyncio.TimeoutError:
                failure = SendFailure(
                    FailureKind.TIMEOUT,
                    f"request {guid!r} could not be sent to {self.endpoint.redacted} within {timeout:g} s",
                )
            except SendFailure as exc:  # set by the writer
                failure = exc
            if failure is not None:
                if failure.failure.kind is FailureKind.TIMEOUT:
                    self._retire(connection, f"request {guid!r} could not be sent within {timeout:g} s")
                else:
                    # The connection broke under the send; the reader may
                    # know why (e.g. close 1009 for this very frame).
                    failure = await self._reason_for(connection, future, deadline) or failure
                raise failure
            try:
                response = await asyncio.wait_for(asyncio.shield(future), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                failure = SendFailure(
                    FailureKind.TIMEOUT,
                    f"no ack for request {guid!r} from {self.endpoint.redacted} within {timeout:g} s",
                )
            if failure is not None:
                # The frame went out whole on a connection that still reads:
                # Raccoon answers every frame once, and a busy one late. Keep
                # the connection, its id and the request's place: its retry
                # waits for this ack instead of sending a duplicate.
                kept = connection.lost is None
                if kept:
                    connection.overdue[guid] = _Overdue(future, 0)
                    future.add_done_callback(_retrieve)
                raise failure
        finally:
            if not kept:
                pending = connection.pending.get(guid)
                if pending is not None and pending.future is future:
                    del connection.pending[guid]
            for own in (written, future):
                if own is future and kept:
                    continue
                if not own.done():
                    own.cancel()  # the writer skips a frame whose sender is gone
                elif not own.cancelled():
                    own.exception()  # retrieved: no "never retrieved" warning
        return self._acknowledged(response, request, connection)

    async def _await_overdue(self, connection: _Connection, request: EncodedRequest) -> raccoon_pb2.SendEventResponse:
        """The retry of a request whose ack is overdue on ``connection``: waits for that ack, sends nothing.

        After :data:`MAX_OVERDUE_WAITS` such waits in vain the connection is
        retired as a stuck one (its pending requests fail as network
        failures, and their retries go out on a fresh connection, with a
        fresh id).
        """
        guid = request.req_guid
        future, waits = connection.overdue[guid]
        connection.overdue[guid] = _Overdue(future, waits + 1)
        timeout = self.config.timeout
        failure: Optional[SendFailure] = None
        try:
            response = await asyncio.wait_for(asyncio.shield(future), timeout)
        except asyncio.TimeoutError:
            failure = SendFailure(
                FailureKind.TIMEOUT,
                f"no ack for request {guid!r} from {self.endpoint.redacted} within {timeout:g} s (waited again)",
            )
        except SendFailure as exc:  # the connection was lost meanwhile
            failure = _copy(exc)
        if failure is not None:
            if failure.failure.kind is not FailureKind.TIMEOUT:
                connection.overdue.pop(guid, None)
            elif waits + 1 >= MAX_OVERDUE_WAITS:
                connection.overdue.pop(guid, None)
                self._retire(connection, f"request {guid!r} got no ack in {waits + 2} timeouts of {timeout:g} s")
            raise failure
        connection.overdue.pop(guid, None)
        return self._acknowledged(response, request, connection)

    def _acknowledged(
        self, response: raccoon_pb2.SendEventResponse, request: EncodedRequest, connection: _Connection
    ) -> raccoon_pb2.SendEventResponse:
        """The checked response; remembers which connection acknowledged the request."""
        checked = check_response(response, request, config=self.config)
        if len(self._acked_on) >= _MAX_ACKED_ON:
            self._acked_on.clear()  # a caller that never asks: forget rather than grow
        self._acked_on[request.req_guid] = connection.conn_id
        return checked

    def acknowledged_on(self, request: EncodedRequest) -> str:
        return self._acked_on.pop(request.req_guid, self.conn_id)

    async def _reason_for(
        self,
        connection: _Connection,
        future: "asyncio.Future[raccoon_pb2.SendEventResponse]",
        deadline: float,
    ) -> Optional[SendFailure]:
        """The failure the reader assigns to a request whose send failed, if it does so in time."""
        reader = connection.reader
        if reader is not None and not future.done():
            loop = asyncio.get_running_loop()
            wait = max(0.0, min(deadline - loop.time(), DEFAULT_CLOSE_TIMEOUT))
            waited: List["asyncio.Future[Any]"] = [future, reader]
            await asyncio.wait(waited, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
        if future.done() and not future.cancelled():
            exc = future.exception()
            if isinstance(exc, SendFailure):
                return _copy(exc)
        return None

    def _retire(self, connection: _Connection, why: str) -> None:
        """Stops using ``connection``: closes it now and fails what is pending on it.

        The pending requests fail as retryable network failures, so they are
        resent on a fresh connection (with a fresh id: the server may not
        have noticed yet that this one is gone).
        """
        failure = SendFailure(FailureKind.NETWORK, f"connection to {self.endpoint.redacted} retired: {why}")
        if connection.lost is None and connection.conn_id == self.conn_id:
            self.conn_id = self._fresh_conn_id()
        self._lost(connection, None, None, failure=failure)

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
        headers = await self.request_headers(conn_id)  # Raccoon reads them at the handshake only
        try:
            ws = await asyncio.wait_for(
                self._session.ws_connect(
                    self.endpoint.url,
                    headers=headers,
                    autoping=True,  # pongs go out while the reader reads
                    autoclose=True,
                    heartbeat=min(2 * self.config.timeout, MAX_HEARTBEAT),
                    timeout=aiohttp.ClientWSTimeout(ws_close=min(self.config.timeout, DEFAULT_CLOSE_TIMEOUT)),
                    **request_options(self.config),
                    # origin left unset: Raccoon's Origin check refuses a
                    # mismatched Origin, and non-browser clients send none.
                ),
                self.config.timeout,
            )
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            failure: Optional[SendFailure] = client_error_failure(exc, self.config)
            disconnected = isinstance(exc, aiohttp.ServerDisconnectedError)
        else:
            failure = None
        if failure is not None and self._port_check.worth_asking(disconnected):
            failure = await self._port_check.failure() or failure  # another protocol on the port?
        if failure is not None:
            raise failure
        connection = _Connection(ws, conn_id)
        if self._closed:  # close() ran while the handshake was in progress
            await ws.close()
            raise closed_failure(self.endpoint)
        connection.reader = asyncio.create_task(self._read(connection), name=f"raccoon-ws-reader-{conn_id}")
        connection.writer = asyncio.create_task(self._write(connection), name=f"raccoon-ws-writer-{conn_id}")
        self._connection = connection
        self.connections_opened += 1
        return connection

    async def _write(self, connection: _Connection) -> None:
        """Writes the queued frames one at a time until the connection is lost."""
        item: Optional[_Outgoing] = None
        try:
            while connection.lost is None:
                item = await connection.outbox.get()
                if item is None or item.written.done():  # a wake-up, or its sender gave up
                    continue
                failure: Optional[SendFailure] = None
                interrupted = False
                connection.writing = True
                try:
                    await _send_frame(connection.ws, item.request)
                except asyncio.CancelledError:
                    if connection.stopping:
                        raise
                    # Not ours: aiohttp's shared wait for room was cancelled
                    # by another writer (its heartbeat ping, a close). The
                    # connection cannot be trusted any more.
                    interrupted = True
                    failure = SendFailure(FailureKind.NETWORK, f"writing to {self.endpoint.redacted} was interrupted")
                except (aiohttp.ClientError, ConnectionError, OSError, RuntimeError) as exc:
                    failure = client_error_failure(exc, self.config)
                finally:
                    connection.writing = False
                if failure is not None:
                    if not item.written.done():
                        item.written.set_exception(failure)
                    if interrupted:
                        self._retire(connection, failure.failure.message)
                elif not item.written.done():
                    item.written.set_result(None)
                item = None
        finally:
            # What is still queued can no longer go out on this connection.
            rest: List[Optional[_Outgoing]] = [item] if item is not None else []
            while not connection.outbox.empty():
                rest.append(connection.outbox.get_nowait())
            lost = connection.lost or closed_failure(self.endpoint)
            for entry in rest:
                if entry is not None and not entry.written.done():
                    entry.written.set_exception(_copy(lost))
                    entry.written.exception()  # its sender may be gone: mark it retrieved

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
                pending = connection.pending.pop(guid, None) if guid else None
                if pending is not None:
                    if not pending.future.done():
                        pending.future.set_result(response)
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
        *,
        failure: Optional[SendFailure] = None,
    ) -> None:
        """Marks ``connection`` gone, closes it and fails every request pending on it.

        Args:
          connection: the connection.
          rejection: the server's refusal (code 4 or 5) read before the close.
          error: what ended the reader, if an exception did.
          failure: the failure of the pending requests, when the caller
            decided it (retirement); otherwise derived from the above.
        """
        if connection.lost is not None:
            return
        close_code = connection.ws.close_code
        too_large: Optional[SendFailure] = None
        if failure is not None:
            pass
        elif rejection is not None or close_code == CLOSE_POLICY_VIOLATION:
            code = rejection.code if rejection is not None else None
            reason = (
                f": {redact(rejection.reason, self.config)}"
                if rejection is not None and rejection.reason
                else ""
            )
            name = raccoon_pb2.Code.Name(code) if code is not None else "rejected"
            failure = SendFailure(
                FailureKind.NETWORK,
                f"{self.endpoint.redacted} refused connection {connection.conn_id!r} "
                f"({name}{reason}, close {close_code})",
                raccoon_code=code,
            )
            if code != raccoon_pb2.CODE_MAX_CONNECTION_LIMIT_REACHED and connection.conn_id == self.conn_id:
                # The id is taken (or assumed so): the next connection uses a fresh one.
                self.conn_id = self._fresh_conn_id()
        elif self._closed:
            failure = closed_failure(self.endpoint)
        else:
            cause = redact(f": {type(error).__name__}: {error}", self.config) if error is not None else ""
            failure = SendFailure(
                FailureKind.NETWORK, f"connection to {self.endpoint.redacted} closed (code {close_code}){cause}"
            )
            if close_code in _UNANNOUNCED and connection.conn_id == self.conn_id:
                # Lost without a close from the server (a missed pong, a reset):
                # the server may hold the id a while yet, and would refuse it
                # as a duplicate.
                self.conn_id = self._fresh_conn_id()
            if close_code == CLOSE_MESSAGE_TOO_BIG:
                too_large = SendFailure(
                    FailureKind.TOO_LARGE,
                    f"{self.endpoint.redacted} closed the connection with {CLOSE_MESSAGE_TOO_BIG} "
                    "(message too big): the request is over the server's message size limit",
                )
        connection.lost = failure
        if self._connection is connection:
            self._connection = None
        connection.outbox.put_nowait(None)  # the writer ends
        # Kept until close() (which waits for their sockets), except those
        # already finished, so that a long-lived transport does not pile them up.
        self._retired = [old for old in self._retired if not _finished(old)]
        self._retired.append(connection)
        if not connection.ws.closed:
            # Nobody else will close it: the reader failed, or the connection
            # is retired (and may be stuck, so no closing handshake).
            _abort(connection)
        pending, connection.pending = connection.pending, {}
        # The frame that hit the limit is among the pending ones, and the
        # largest of them is no smaller: that one is certainly too large.
        largest = max((p.size for p in pending.values()), default=0)
        for entry in pending.values():
            if not entry.future.done():
                chosen = too_large if too_large is not None and entry.size == largest else failure
                entry.future.set_exception(_copy(chosen))

    def _fresh_conn_id(self) -> str:
        if self.config.conn_id is not None:
            return f"{self.config.conn_id}-{uuid.uuid4().hex[:12]}"
        return self.config.new_conn_id()

    async def close(self) -> None:
        self._closed = True
        await self._port_check.close()
        connecting, self._connecting = self._connecting, None
        if connecting is not None and not connecting.done():
            connecting.cancel()
            await asyncio.gather(connecting, return_exceptions=True)
        connection, self._connection = self._connection, None
        bound = min(self.config.timeout, DEFAULT_CLOSE_TIMEOUT)
        if connection is not None:
            if connection.writing:
                _abort(connection)  # a write waits for room: no closing frame would get through
            else:
                await _close_quietly(connection.ws, bound)
            await _wait_closed(connection.sock, bound)
            await _stop_tasks(connection)
            self._lost(connection, None, None)
        retired, self._retired = self._retired, []
        for old in retired:
            await _stop_tasks(old)
            if not old.ws.closed:
                _abort(old)
            await _wait_closed(old.sock, bound)
        session, self._session = self._session, None
        if session is not None:
            await session.close()


async def _stop_tasks(connection: _Connection) -> None:
    """Cancels the reader and the writer of ``connection`` and waits for them."""
    connection.stopping = True
    tasks = [task for task in (connection.reader, connection.writer) if task is not None]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _send_frame(ws: aiohttp.ClientWebSocketResponse, request: EncodedRequest) -> None:
    if request.wire is Wire.JSON:
        await ws.send_str(request.body.decode("ascii"))  # JSON wire: a text frame
    else:
        await ws.send_bytes(request.body)


async def _close_quietly(ws: aiohttp.ClientWebSocketResponse, timeout: float) -> None:
    """Closes ``ws`` with a closing handshake, within ``timeout`` (then drops it)."""
    try:
        await asyncio.wait_for(ws.close(), timeout)
    except (aiohttp.ClientError, ConnectionError, OSError, asyncio.TimeoutError) as exc:
        _log.debug("closing a WebSocket failed: %s", exc)
        sock = ws.get_extra_info("socket")
        if sock is not None:
            _shutdown(sock)


def _abort(connection: _Connection) -> None:
    """Drops ``connection`` at once, without a closing handshake.

    ``ws.close()`` cannot be trusted with a stuck connection: its closing
    frame queues behind unsent data, and the transport's close waits for that
    data to drain. aiohttp has no public abort for a client WebSocket, so the
    socket is shut down; the transport then sees the end of the connection
    and closes it, and the reader ends.
    """
    if connection.sock is not None:
        _shutdown(connection.sock)


def _finished(connection: _Connection) -> bool:
    """Whether ``connection``'s reader and writer have ended and its socket is closed."""
    tasks_done = all(task is None or task.done() for task in (connection.reader, connection.writer))
    return tasks_done and (connection.sock is None or connection.sock.fileno() == -1)


def _shutdown(sock: Any) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed or not connected


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


def _retrieve(future: "asyncio.Future[Any]") -> None:
    """Marks an outcome that nobody may wait for as retrieved (no "never retrieved" warning)."""
    if not future.cancelled():
        future.exception()


def _copy(failure: SendFailure) -> SendFailure:
    """A new SendFailure with the same facts (each waiter gets its own exception)."""
    return SendFailure(**dataclasses.asdict(failure.failure))
