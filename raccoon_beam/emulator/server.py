"""RaccoonEmulator: the servers on one event-loop thread, with capture and faults."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from typing import Any, Dict, List, Optional

from raccoon_beam._loop import EventLoopThread
from raccoon_beam.emulator.access import TOKEN_FRAGMENT, with_console_token
from raccoon_beam.emulator.capture import Capture, CapturedEvent, TypeDigest
from raccoon_beam.emulator.config import EmulatorConfig
from raccoon_beam.emulator.console import CONSOLE_PATH
from raccoon_beam.emulator.counters import Counters, CountersSnapshot
from raccoon_beam.emulator.credential import RequiredHeader
from raccoon_beam.emulator.faults import Faults
from raccoon_beam.emulator.grpc_server import GrpcServer
from raccoon_beam.emulator.http_server import EVENTS_PATH, HttpServer
from raccoon_beam.emulator.ingest import Ingest
from raccoon_beam.emulator.overload import Overload, OverloadSettings

__all__ = ["RaccoonEmulator", "ListenError"]


class ListenError(OSError):
    """A port the emulator was given cannot be listened on (most often: it is in use).

    Attributes:
      setting: the EmulatorConfig field of the port, ``"grpc_port"`` or ``"http_port"``.
    """

    def __init__(self, setting: str, host: str, port: int, cause: BaseException) -> None:
        code = getattr(cause, "errno", None)
        reason = os.strerror(code) if isinstance(code, int) else str(cause)
        super().__init__(f"cannot listen on {host}:{port} ({setting}): {reason}")
        self.errno = code if isinstance(code, int) else errno.EADDRINUSE
        self.setting = setting


def _check_free(setting: str, host: str, port: int) -> None:
    """Raises ListenError when ``host:port`` has a listener already.

    grpc reports a busy port as a bare RuntimeError after logging its own
    lines to stderr; binding a probe first gives one clear error instead.
    SO_REUSEADDR, as both servers use it: a port in TIME_WAIT is free.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ListenError(setting, host, port, exc) from exc


class RaccoonEmulator:
    """A Raccoon-compatible server (gRPC, REST, WebSocket) for tests and local runs.

    Constructed with no arguments it behaves like a stock Raccoon with
    ``X-User-ID`` as the connection-id header and async acks, on ephemeral
    loopback ports. Use it as a context manager, or call :meth:`start` and
    :meth:`stop`; after a stop, :meth:`start` listens on the same ports again
    (a "server restarted" test) and keeps what was captured.

    Args:
      config: the settings (default: ``EmulatorConfig()``).
      **overrides: fields of :class:`~raccoon_beam.emulator.config.EmulatorConfig`
        replacing those of ``config``, e.g. ``ack="sync"``, ``dedup=True``,
        ``tls=(certfile, keyfile)``, ``decoders={"click": "json"}``,
        ``capacity_events_per_second=5000`` (overload as Raccoon has it); each field
        documents itself and the Raccoon setting it mirrors. An unknown name is a
        ``TypeError``. Listening beyond loopback without a ``console_token``, the
        emulator generates one (see :attr:`console_token`); an empty one there
        is a ``ValueError``.
    """

    def __init__(self, config: Optional[EmulatorConfig] = None, **overrides: Any) -> None:
        self.config = with_console_token(EmulatorConfig.build(config, overrides))
        self.faults = Faults()
        self._capture = Capture(self.config.capture, self.config.topic_pattern, self.config.output)
        self._counters = Counters()
        self.overload = Overload(self.config)
        self._ingest = Ingest(self.config, self._capture, self.faults, self._counters, self.overload)
        self._grpc_port = self.config.grpc_port
        self._http_port = self.config.http_port
        self._loop: Optional[EventLoopThread] = None
        self._grpc: Optional[GrpcServer] = None
        self._http: Optional[HttpServer] = None
        self._stopping: Optional[asyncio.Event] = None

    # ------------------------------------------------------------ lifecycle

    @property
    def running(self) -> bool:
        return self._loop is not None

    def start(self) -> "RaccoonEmulator":
        """Starts both servers; returns once they accept connections."""
        if self._loop is not None:
            return self
        loop = EventLoopThread(name="raccoon-emulator").start()
        try:
            loop.run(self._start_servers(), timeout=30)
        except BaseException:
            loop.run(self._stop_servers(), timeout=30)
            loop.stop()
            raise
        self._loop = loop
        self._capture.open()
        return self

    async def _start_servers(self) -> None:
        host, http_host = self.config.host, self.config.http_address
        for setting, address, port in (("grpc_port", host, self._grpc_port), ("http_port", http_host, self._http_port)):
            if port:
                _check_free(setting, address, port)
        self._stopping = asyncio.Event()
        self._grpc = GrpcServer(self.config, self._ingest, self._stopping)
        try:
            self._grpc_port = await self._grpc.start(self._grpc_port)
        except RuntimeError as exc:  # grpc's "Failed to bind to address"
            raise ListenError("grpc_port", host, self._grpc_port, exc) from exc
        self._http = HttpServer(self.config, self._ingest, self._stopping, self.reset)
        try:
            self._http_port = await self._http.start(self._http_port)
        except OSError as exc:
            raise ListenError("http_port", http_host, self._http_port, exc) from exc

    async def _stop_servers(self) -> None:
        if self._stopping is not None:
            self._stopping.set()  # releases requests that are never answered
        await self.overload.stop()  # releases requests blocked on or waiting in the buffer
        if self._http is not None:
            await self._http.stop()
            self._http = None
        if self._grpc is not None:
            await self._grpc.stop()
            self._grpc = None

    def stop(self) -> None:
        """Stops both servers and the loop thread; idempotent."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        try:
            loop.run(self._stop_servers(), timeout=30)
        finally:
            loop.stop()
            self._capture.close()

    def __enter__(self) -> "RaccoonEmulator":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------ endpoints

    def _require_running(self) -> None:
        if self._loop is None:
            raise RuntimeError("the emulator is not running")

    @property
    def grpc_port(self) -> int:
        return self._grpc_port

    @property
    def http_port(self) -> int:
        return self._http_port

    @property
    def _url_host(self) -> str:
        return _url_host(self.config.host)

    @property
    def _http_url_host(self) -> str:
        return _url_host(self.config.http_address)

    @property
    def grpc_endpoint(self) -> str:
        """``grpc://host:port`` (``grpcs://`` with TLS)."""
        self._require_running()
        scheme = "grpcs" if self.config.tls else "grpc"
        return f"{scheme}://{self._url_host}:{self._grpc_port}"

    @property
    def rest_endpoint(self) -> str:
        """``http://host:port/api/v1/events`` (``https://`` with TLS)."""
        self._require_running()
        scheme = "https" if self.config.tls else "http"
        return f"{scheme}://{self._http_url_host}:{self._http_port}{EVENTS_PATH}"

    @property
    def ws_endpoint(self) -> str:
        """``ws://host:port/api/v1/events`` (``wss://`` with TLS)."""
        self._require_running()
        scheme = "wss" if self.config.tls else "ws"
        return f"{scheme}://{self._http_url_host}:{self._http_port}{EVENTS_PATH}"

    @property
    def http_base_url(self) -> str:
        """``http://host:port``: where ``/ping`` and ``/_emulator/...`` live."""
        self._require_running()
        scheme = "https" if self.config.tls else "http"
        return f"{scheme}://{self._http_url_host}:{self._http_port}"

    @property
    def console_token(self) -> Optional[str]:
        """The token ``/_emulator/*`` requires (``None``: none required, on loopback)."""
        return self.config.console_token

    @property
    def console_url(self) -> str:
        """The console page; with the token in its fragment (``#token=``) when one is required.

        A fragment never leaves the browser: the page reads it and trades it
        for a cookie, so that the token is in no request line or log.
        """
        url = f"{self.http_base_url}{CONSOLE_PATH}"
        token = self.config.console_token
        return f"{url}#{TOKEN_FRAGMENT}={token}" if token else url

    # ------------------------------------------------------------ credential

    @property
    def required_header_value(self) -> str:
        """The value ``require_header`` accepts now (it changes with ``rotate_header_every``).

        Raises:
          RuntimeError: the emulator was made without ``require_header``.
        """
        return self._required_header().value

    def rotate_required_header(self) -> str:
        """Draws a new value of the required header now (the old one gets 401); returns it."""
        return self._required_header().rotate()

    def _required_header(self) -> RequiredHeader:
        required = self._ingest.required_header
        if required is None:
            raise RuntimeError("the emulator requires no header (see require_header)")
        return required

    # ------------------------------------------------------------ results

    def events(self) -> List[CapturedEvent]:
        """The captured events, in capture order (empty with ``capture="digest"``)."""
        return self._capture.events()

    def digest(self) -> Dict[str, TypeDigest]:
        """Per event type: count, total bytes and order-independent digest (both capture modes)."""
        return self._capture.digest()

    def counters(self) -> CountersSnapshot:
        """A snapshot of the request, event, connection and fault counters."""
        return self._counters.snapshot()

    def wait_for_events(self, n: int, timeout: Optional[float] = None) -> bool:
        """Blocks until at least ``n`` events are captured; False on timeout."""
        return self._capture.wait_for_events(n, timeout)

    def set_overload(self, **changes: Any) -> OverloadSettings:
        """Changes the capacity or the gateway while running (also before :meth:`start`).

        Args:
          **changes: ``capacity_events_per_second``, ``gateway_queue_depth``,
            ``gateway_status``, ``gateway_retry_after`` (see EmulatorConfig).

        Raises:
          TypeError: an unknown setting.
          ValueError: a bad value; nothing changes.
        """
        return self.overload.configure(**changes)

    def reset(self) -> None:
        """Clears captures, counters and faults."""
        self.faults.clear()
        self._capture.reset()
        self._counters.reset()


def _url_host(host: str) -> str:
    """``host`` as it stands in a URL (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host else host
