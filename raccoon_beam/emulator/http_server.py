"""The HTTP port: REST, WebSocket, ``/ping``, the control endpoints and the console, on aiohttp."""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any, Callable, Optional

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.log import server_logger

from raccoon_beam.emulator.access import access_middleware, add_session_route
from raccoon_beam.emulator.config import EmulatorConfig
from raccoon_beam.emulator.connections import ACCEPT_BACKLOG, ConnectionGate, default_connection_cap
from raccoon_beam.emulator.console import Console
from raccoon_beam.emulator.control import add_control_routes
from raccoon_beam.emulator.ingest import Ingest
from raccoon_beam.emulator.rest import RestHandler
from raccoon_beam.emulator.websocket import WebSocketHandler
from raccoon_beam.protocol import EVENTS_PATH, PING_PATH

__all__ = ["HttpServer", "EVENTS_PATH", "PING_PATH"]


# aiohttp's default: long enough for a client to read a refusal of its body.
_LINGERING_TIME = 10.0


async def _ping(_: web.Request) -> web.Response:
    return web.Response(text="pong")


class _ServerLog(logging.LoggerAdapter):
    """aiohttp's server log, with bytes that are not HTTP/1.1 logged as one debug line.

    An HTTP/2 (gRPC) call, a TLS handshake or garbage sent to the port is
    the client's mistake: aiohttp answers it 400 and closes, as Go's
    net/http does, but logs it with a traceback, which in the emulator's
    output reads as the emulator's own failure.
    """

    def exception(self, msg: Any, *args: Any, exc_info: Any = True, **kwargs: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):
            reason = str(exc_info.message).strip().splitlines()[0] if exc_info.message else ""
            self.debug("%s: not an HTTP/1.1 request (%s)", msg % args, reason)
            return
        super().exception(msg, *args, exc_info=exc_info, **kwargs)


class HttpServer:
    """Serves the HTTP port until stopped.

    Args:
      config: the emulator's settings.
      ingest: where decoded requests go.
      stopping: set when the emulator stops.
      reset: what ``POST /_emulator/reset`` calls.
    """

    def __init__(
        self, config: EmulatorConfig, ingest: Ingest, stopping: asyncio.Event, reset: Callable[[], None]
    ) -> None:
        self._config = config
        self._websockets = WebSocketHandler(config, ingest)
        app = web.Application(
            client_max_size=config.max_body_bytes,
            handler_args={"access_log": None, "logger": _ServerLog(server_logger, {})},
            # Origin, content type, Host and token of /_emulator routes; ingest
            # pays one prefix test.
            middlewares=[access_middleware(config.console_token)],
        )
        # add_route, not add_get: Raccoon's router answers HEAD with 405.
        app.router.add_route("POST", EVENTS_PATH, RestHandler(config, ingest, stopping).handle)
        app.router.add_route("GET", EVENTS_PATH, self._websockets.handle)
        app.router.add_route("GET", PING_PATH, _ping)
        add_control_routes(
            app, ingest.capture, ingest.counters, ingest.faults, reset, ingest.overload, ingest.required_header
        )
        self.console = Console(config, ingest.capture, ingest.counters, ingest.faults, ingest.overload)
        self.console.add_routes(app)
        add_session_route(app)
        app.on_response_prepare.append(self._answered)
        self._app = app
        self._runner: Optional[web.AppRunner] = None
        self._server: Optional[asyncio.AbstractServer] = None
        self.gate: Optional[ConnectionGate] = None

    async def _answered(self, request: web.Request, response: web.StreamResponse) -> None:
        """Every answer is progress on its connection (what the connection cap keeps)."""
        if self.gate is not None:
            self.gate.answered(request.protocol, response.status)

    async def start(self, port: int) -> int:
        """Starts listening; returns the bound port."""
        config = self._config
        # keepalive_timeout: aiohttp arms it at connect and after each answer,
        # and closes a connection still waiting for a request's headers when
        # it fires: the header-read and idle keep-alive timeout in one.
        # lingering_time: how long the rest of an unread body (after a 408 or
        # 413) is drained before closing; aiohttp's 10 s, within read_timeout.
        runner = web.AppRunner(
            self._app, access_log=None, shutdown_timeout=1.0, handle_signals=False,
            keepalive_timeout=config.read_timeout, lingering_time=min(_LINGERING_TIME, config.read_timeout),
        )
        await runner.setup()
        ssl_context = None
        if config.tls is not None:
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_context.load_cert_chain(*config.tls)
        cap = config.max_http_connections or default_connection_cap()
        assert runner.server is not None  # made by setup()
        self.gate = ConnectionGate(runner.server, cap)
        # Our own listener, not a TCPSite: its protocol factory is the gate.
        server = await asyncio.get_running_loop().create_server(
            self.gate, config.http_address, port, ssl=ssl_context, reuse_address=True, backlog=ACCEPT_BACKLOG,
            ssl_handshake_timeout=config.read_timeout if ssl_context is not None else None,
        )
        self._runner = runner
        self._server = server
        self.console.start()
        return server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        await self.console.stop()
        await self._websockets.close_all()
        if self._server is not None:
            self._server.close()  # no new connections; the runner closes the open ones
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
