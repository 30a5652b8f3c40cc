"""The gRPC port: ``raystack.raccoon.v1beta1.EventService/SendEvent`` on grpc.aio.

The method is registered as a generic handler taking and returning raw
bytes, so that decoding goes through :mod:`raccoon_beam.wire` (upb) once and
injected garbage responses can be returned as they are.
"""

from __future__ import annotations

import asyncio
from typing import Optional, Tuple

import grpc
from grpc import aio

from raccoon_beam.emulator.config import EmulatorConfig
from raccoon_beam.emulator.ingest import Ingest
from raccoon_beam.emulator.outcomes import Outcome, http_to_grpc_status
from raccoon_beam.errors import WireFormatError
from raccoon_beam.protocol import CONN_ID_MISSING, GRPC_MAX_RECEIVE_BYTES, METHOD_NAME, SERVICE_NAME
from raccoon_beam.wire import Wire, decode_request, encode_response

__all__ = ["GrpcServer", "SERVICE_NAME", "METHOD_NAME"]

# What grpc-go answers when the request bytes do not unmarshal.
_UNMARSHAL_ERROR = "grpc: error unmarshalling request: proto: cannot parse invalid wire-format data"


# See GrpcServer.start: well above a client's max_in_flight (4 by default).
_MAX_CONCURRENT_STREAMS = 1000

class GrpcServer:
    """Serves SendEvent on ``host:port`` until stopped.

    Args:
      config: the emulator's settings.
      ingest: where decoded requests go.
      stopping: set when the emulator stops (releases never-answered calls).
    """

    def __init__(self, config: EmulatorConfig, ingest: Ingest, stopping: asyncio.Event) -> None:
        self._config = config
        self._ingest = ingest
        self._stopping = stopping
        self._id_key = config.conn_id_header.lower()
        self._group_key = config.group_header.lower()
        self._server: Optional[aio.Server] = None

    async def start(self, port: int) -> int:
        """Starts listening; returns the bound port."""
        server = aio.server(
            options=[
                ("grpc.max_receive_message_length", GRPC_MAX_RECEIVE_BYTES),
                ("grpc.max_send_message_length", -1),
                # A port must belong to one emulator only (tests run many).
                ("grpc.so_reuseport", 0),
                # A connection that never finishes its HTTP/2 handshake (a slow
                # or stalled client) gives its socket back, as on the HTTP port.
                ("grpc.server_handshake_timeout_ms", int(self._config.read_timeout * 1000)),
                # Calls at once per connection: far above any client's max_in_flight,
                # and a bound on what one connection can make the emulator hold.
                ("grpc.max_concurrent_streams", _MAX_CONCURRENT_STREAMS),
            ]
        )
        handler = grpc.method_handlers_generic_handler(
            SERVICE_NAME,
            {METHOD_NAME: grpc.unary_unary_rpc_method_handler(self._send_event)},
        )
        server.add_generic_rpc_handlers((handler,))
        address = f"{self._config.host}:{port}"
        if self._config.tls is not None:
            bound = server.add_secure_port(address, _server_credentials(self._config.tls))
        else:
            bound = server.add_insecure_port(address)
        await server.start()
        self._server = server
        return bound

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=0.2)
            self._server = None

    def _metadata(self, context: aio.ServicerContext) -> Tuple[Optional[str], Optional[str]]:
        conn_id = group = None
        for key, value in context.invocation_metadata() or ():
            if key == self._id_key and conn_id is None:
                conn_id = value
            elif key == self._group_key and group is None:
                group = value
        return conn_id, group

    async def _send_event(self, body: bytes, context: aio.ServicerContext) -> bytes:
        ingest = self._ingest
        required = ingest.required_header
        if required is not None:
            given = next((v for k, v in context.invocation_metadata() or () if k == required.key), None)
            if not ingest.authenticate("grpc", given, self._metadata(context)[0] or ""):
                # A gateway's answer, before Raccoon sees the call.
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or stale credential")
        try:
            request = decode_request(body, Wire.PROTOBUF)
        except WireFormatError as exc:
            ingest.bad_request("grpc", f"{_UNMARSHAL_ERROR}: {exc}", self._metadata(context)[0] or "")
            await context.abort(grpc.StatusCode.INTERNAL, _UNMARSHAL_ERROR)
        conn_id, group = self._metadata(context)
        if conn_id is None:
            ingest.bad_request("grpc", CONN_ID_MISSING)
            # Raccoon returns a plain Go error, which grpc-go sends as UNKNOWN.
            await context.abort(grpc.StatusCode.UNKNOWN, CONN_ID_MISSING)
        # grpc-go's metadata.Get returns an empty group as it is, unlike REST.
        group = self._config.default_group if group is None else group
        answer = await ingest.handle(request, conn_id, group, "grpc")  # type: ignore[arg-type]
        if answer.response is not None:
            return encode_response(answer.response, Wire.PROTOBUF)
        if answer.drop:
            # grpc.aio cannot reset the TCP connection from a handler; a client
            # sees a dropped connection as UNAVAILABLE, so that is what it gets.
            await context.abort(grpc.StatusCode.UNAVAILABLE, "connection dropped (emulated)")
        assert answer.outcome is not None
        return await self._render(answer.outcome, context)

    async def _render(self, outcome: Outcome, context: aio.ServicerContext) -> bytes:
        if outcome.kind == "garbage":
            return outcome.body
        if outcome.kind == "no_answer":
            await self._stopping.wait()
            await context.abort(grpc.StatusCode.UNAVAILABLE, "server stopped")
        if outcome.kind == "http":
            details = outcome.body.decode("utf-8", "replace") or f"HTTP {outcome.status}"
            await context.abort(http_to_grpc_status(outcome.status), details)
        assert outcome.grpc_status is not None
        await context.abort(outcome.grpc_status, outcome.details)
        raise AssertionError("unreachable")


def _server_credentials(tls: Tuple[str, str]) -> grpc.ServerCredentials:
    certfile, keyfile = tls
    with open(certfile, "rb") as cert, open(keyfile, "rb") as key:
        return grpc.ssl_server_credentials([(key.read(), cert.read())])
