"""gRPC transport: ``SendEvent`` calls on one grpcio channel.

The request body is already protobuf bytes (``wire.encode_request``), so the
call is made without a request serializer: each request is encoded exactly
once, however often it is retried. Calls are grpcio futures, answered on
grpcio's own thread (one per channel while calls are out, not one per
request), each with its own deadline; one can start on the caller's thread (:meth:`GrpcTransport.begin`), with no
hand-over to the sender's loop, once the channel is open. Every gRPC error
becomes a :class:`~raccoon_beam.errors.SendFailure` that carries the status
name and details; none is swallowed.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, List, Optional, Sequence, Tuple

import grpc

from raccoon_beam import protocol
from raccoon_beam._proto import raccoon_pb2
from raccoon_beam.errors import FailureKind, SendFailure, WireFormatError
from raccoon_beam.transports import (
    StartedSend,
    Transport,
    TransportConfig,
    check_response,
    closed_failure,
    redact,
    tls_files_failure,
)
from raccoon_beam.transports.mismatch import (
    GRPC_HTTP1_MARKERS,
    GRPC_NO_H2_MARKER,
    WRONG_VERSION_MARKER,
    PortCheck,
    http1_answer,
    no_http2_over_tls,
    plain_text_answer,
)
from raccoon_beam.wire import EncodedRequest, Wire, decode_response

__all__ = ["GrpcTransport", "SEND_EVENT_METHOD", "DEFAULT_CHANNEL_OPTIONS"]

SEND_EVENT_METHOD = protocol.SEND_EVENT_METHOD

DEFAULT_CHANNEL_OPTIONS: Tuple[Tuple[str, Any], ...] = (
    # gRPC's own reconnect backoff grows to 120 s by default, during which
    # every call fails at once; our retry policy already spaces attempts, so
    # keep the channel's backoff short to reconnect soon after a restart.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    # No keepalive pings: grpc-go servers (Raccoon) refuse pings more often
    # than every 5 minutes with GOAWAY "too_many_pings", which would fail the
    # calls in flight. The client's send limit is unlimited by default, so
    # the server's 4 MiB limit answers (RESOURCE_EXHAUSTED) for itself.
)

# gRPC reports every TLS problem as UNAVAILABLE; these texts (OpenSSL's and
# gRPC's own) tell them apart from a connection that failed. An untrusted or
# misnamed certificate and a handshake TLS itself refused (SSL_ERROR_SSL:
# ``grpcs://`` to a plain-text port, no common version) cannot pass on a
# retry: fail at once. A handshake cut off (SSL_ERROR_SYSCALL) is transient.
_TLS_MARKERS = (
    "CERTIFICATE_VERIFY_FAILED",
    "certificate verify failed",
    "Hostname Verification Check failed",
    "not in peer certificate",
    "SSL_ERROR_SSL",
    "WRONG_VERSION_NUMBER",
)
# What gRPC says when a server hung up during the HTTP/2 handshake; plain
# text to a TLS port looks like this, so the port is asked (once) whether it speaks TLS.
_HUNG_UP_MARKER = "socket closed"

# gRPC's texts (lower case) for a call that found no connection to go out
# on: refused, the name did not resolve. Nothing was written.
_UNREACHABLE_MARKERS = ("failed to connect to all addresses", "errors resolving", "dns resolution failed")


def _proxy_options(config: TransportConfig) -> List[Tuple[str, Any]]:
    """The channel options of ``config.proxy``.

    gRPC alone reads ``http_proxy``/``https_proxy``/``grpc_proxy`` from the
    environment; REST and WebSocket do not (``trust_env=False``). So that
    the three agree, and nothing relays the metadata through a proxy nobody
    asked for, only an explicit ``proxy`` is used.
    """
    if config.proxy is None:
        return [("grpc.enable_http_proxy", 0)]
    return [("grpc.enable_http_proxy", 1), ("grpc.http_proxy", config.proxy)]


Metadata = Tuple[Tuple[str, str], ...]


class GrpcTransport(Transport):
    """Sends requests with unary ``SendEvent`` calls on one channel.

    Args:
      config: the transport configuration (protobuf wire only).
    """

    def __init__(self, config: TransportConfig, *, options: Sequence[Tuple[str, Any]] = ()) -> None:
        super().__init__(config)
        self.conn_id = config.new_conn_id()
        # (credentials generation, metadata): built on first send and again
        # after the credentials' refresh; one tuple, so that begin() on
        # another thread reads a consistent pair.
        self._metadata: Optional[Tuple[int, Metadata]] = None
        self._options: List[Tuple[str, Any]] = list(DEFAULT_CHANNEL_OPTIONS) + _proxy_options(config) + list(options)
        self._channel: Optional[grpc.Channel] = None
        self._call: Optional[grpc.UnaryUnaryMultiCallable] = None
        self._closed = False
        self._port_check = PortCheck(config)

    def _callable(self) -> grpc.UnaryUnaryMultiCallable:
        if self._closed:
            raise closed_failure(self.endpoint)
        if self._call is None:
            self._channel = self._open_channel()
            self._call = self._channel.unary_unary(
                SEND_EVENT_METHOD,
                request_serializer=None,  # bytes go out as they are
                # Decoded by us: gRPC would log a parse error and return None.
                response_deserializer=None,
            )
        return self._call

    def _open_channel(self) -> grpc.Channel:
        options = list(self._options)
        target = self.endpoint.authority
        if not self.endpoint.tls:
            return grpc.insecure_channel(target, options=options)
        tls = self.config.tls
        failure: Optional[SendFailure] = None
        try:
            root, key, chain = tls.read_pem()
        except OSError as exc:
            failure = tls_files_failure(self.config, exc)
        if failure is not None:
            raise failure
        if tls.server_hostname:
            options.append(("grpc.ssl_target_name_override", tls.server_hostname))
        credentials = grpc.ssl_channel_credentials(
            root_certificates=root, private_key=key, certificate_chain=chain
        )
        return grpc.secure_channel(target, credentials, options=options)

    async def _current_metadata(self) -> Tuple[int, Metadata]:
        """``(credentials generation, metadata)``, built again after the credentials' refresh."""
        current = self._metadata
        generation = self.credentials.generation
        if current is not None and current[0] == generation:
            return current
        headers = await self.request_headers(self.conn_id)
        # gRPC metadata keys must be lower case (the server reads "x-user-id").
        current = self._metadata = (generation, tuple((name.lower(), value) for name, value in headers.items()))
        return current

    def _ready(self) -> Optional[Tuple[grpc.UnaryUnaryMultiCallable, Tuple[int, Metadata]]]:
        """The open channel's callable and the current metadata, when a call can start without the loop."""
        current, call = self._metadata, self._call
        if current is None or call is None or current[0] != self.credentials.generation:
            return None
        return call, current

    @property
    def can_begin(self) -> bool:
        return self._ready() is not None

    def begin(self, request: EncodedRequest) -> Optional[StartedSend]:
        """Starts the call on this thread once the channel is open and the metadata current."""
        ready = self._ready()
        return None if ready is None else self._start(ready[0], request, ready[1])

    async def send(self, request: EncodedRequest) -> raccoon_pb2.SendEventResponse:
        call = self._callable()
        started = self._start(call, request, await self._current_metadata())
        if started is None:  # closed during the metadata's await
            raise closed_failure(self.endpoint)
        return await started.settle()

    def _start(
        self, call: grpc.UnaryUnaryMultiCallable, request: EncodedRequest, current: Tuple[int, Metadata]
    ) -> Optional["_GrpcSend"]:
        """Starts the call with ``current`` (generation, metadata); None if the channel is closed."""
        try:
            future = call.future(request.body, timeout=self.config.timeout, metadata=current[1])
        except ValueError:  # "Cannot invoke RPC on closed channel!"
            return None
        return _GrpcSend(self, request, future, current[0])

    async def _answer(self, future: grpc.Future, request: EncodedRequest) -> raccoon_pb2.SendEventResponse:
        """The response of a finished call; raises its SendFailure."""
        # The failure is raised outside any except clause: chained to the
        # RpcError, it would keep gRPC's call, hence its connection, alive
        # for as long as the failure lives (e.g. in a dead letter).
        failure: Optional[SendFailure] = None
        error = None if future.cancelled() else future.exception()
        if future.cancelled() or (self._closed and error is not None and error.code() == grpc.StatusCode.CANCELLED):
            failure = closed_failure(self.endpoint)  # close() during the call
        elif error is not None:
            failure = self._failure(error)
        del error
        if failure is not None and self._port_check.worth_asking(
            failure.failure.kind in (FailureKind.NETWORK, FailureKind.UNREACHABLE)
            and _HUNG_UP_MARKER in failure.failure.message.lower()
        ):
            failure = await self._port_check.failure() or failure  # another protocol on the port?
        if failure is not None:
            raise failure
        return self._response(future.result(), request)

    def _response(self, body: bytes, request: EncodedRequest) -> raccoon_pb2.SendEventResponse:
        """The successful response in ``body``; raises a SendFailure for anything else."""
        failure: Optional[SendFailure] = None
        try:
            decoded = decode_response(body, Wire.PROTOBUF)
        except WireFormatError as exc:
            failure = SendFailure(
                FailureKind.MALFORMED,
                f"gRPC OK from {self.endpoint.redacted} with a body that is not a response: {exc}",
            )
        if failure is not None:
            raise failure
        return check_response(decoded, request, config=self.config)

    def _failure(self, exc: grpc.RpcError) -> SendFailure:
        code = exc.code()
        details = redact(exc.details() or "", self.config)
        if code == grpc.StatusCode.UNAVAILABLE:
            lowered = details.lower()
            if any(marker in lowered for marker in GRPC_HTTP1_MARKERS):
                return http1_answer(self.endpoint)  # grpc:// to a REST/WebSocket port
            if GRPC_NO_H2_MARKER in lowered:
                return no_http2_over_tls(self.endpoint)  # grpcs:// to an HTTPS port
            if any(marker.lower() in lowered for marker in _TLS_MARKERS):
                kind = FailureKind.TLS
                if WRONG_VERSION_MARKER in lowered:  # grpcs:// to a plain-text port
                    details = plain_text_answer(self.endpoint, details)
            elif any(marker in lowered for marker in _UNREACHABLE_MARKERS):
                kind = FailureKind.UNREACHABLE
            else:
                kind = FailureKind.NETWORK
        elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
            kind = FailureKind.TIMEOUT
        else:
            kind = FailureKind.REFUSED
        return SendFailure(kind, f"gRPC {code.name} from {self.endpoint.redacted}: {details}", grpc_status=code.name)

    async def close(self) -> None:
        self._closed = True
        await self._port_check.close()
        channel, self._channel, self._call = self._channel, None, None
        if channel is not None:
            # Cancels calls still in flight; they fail as closed_failure.
            channel.close()


class _GrpcSend(StartedSend):
    """One call under way: a grpcio future, answered on grpcio's thread (the channel's one thread while calls
    are out; grpcio starts it again for the first call after the channel was idle)."""

    def __init__(self, transport: GrpcTransport, request: EncodedRequest, future: grpc.Future, generation: int) -> None:
        self._transport = transport
        self._request = request
        self._future = future
        self.generation = generation

    def add_done_callback(self, callback: Callable[[], None]) -> None:
        self._future.add_done_callback(lambda _: callback())

    def response(self) -> Optional[raccoon_pb2.SendEventResponse]:
        future = self._future
        if future.cancelled() or future.exception() is not None:
            return None
        try:
            return self._transport._response(future.result(), self._request)
        except Exception:  # noqa: BLE001 - settle() raises it again, on the loop, where failures are reported
            return None

    async def settle(self) -> raccoon_pb2.SendEventResponse:
        future = self._future
        if not future.done():
            loop = asyncio.get_running_loop()
            answered = loop.create_future()

            def wake(_: grpc.Future) -> None:
                try:
                    loop.call_soon_threadsafe(_set_done, answered)
                except RuntimeError:  # the loop is closed: nobody waits any more
                    pass

            future.add_done_callback(wake)
            cancelled = False
            try:
                await answered
            except asyncio.CancelledError:
                cancelled = True
            if cancelled:
                # Raised afresh: a traceback through this frame would hold the call.
                future.cancel()
                raise asyncio.CancelledError()
        return await self._transport._answer(future, self._request)

    def cancel(self) -> None:
        self._future.cancel()


def _set_done(answered: "asyncio.Future[None]") -> None:
    if not answered.done():
        answered.set_result(None)
