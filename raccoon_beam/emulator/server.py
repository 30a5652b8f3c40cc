"""RaccoonEmulator: the servers on one event-loop thread, with capture and faults."""

from __future__ import annotations

import asyncio
from typing import Dict, List, Mapping, Optional, Tuple

from raccoon_beam._loop import EventLoopThread
from raccoon_beam.emulator.access import TOKEN_QUERY, with_console_token
from raccoon_beam.emulator.capture import DEFAULT_TOPIC_PATTERN, Capture, CapturedEvent, TypeDigest
from raccoon_beam.emulator.console import CONSOLE_PATH
from raccoon_beam.emulator.config import (
    DEFAULT_CONN_ID_HEADER,
    DEFAULT_GROUP,
    DEFAULT_GROUP_HEADER,
    DEFAULT_HOST,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PONG_TIMEOUT,
    EmulatorConfig,
)
from raccoon_beam.emulator.counters import Counters, CountersSnapshot
from raccoon_beam.emulator.faults import Faults
from raccoon_beam.emulator.grpc_server import GrpcServer
from raccoon_beam.emulator.http_server import EVENTS_PATH, HttpServer
from raccoon_beam.emulator.ingest import Ingest

__all__ = ["RaccoonEmulator"]


class RaccoonEmulator:
    """A Raccoon-compatible server (gRPC, REST, WebSocket) for tests and local runs.

    Constructed with no arguments it behaves like a stock Raccoon with
    ``X-User-ID`` as the connection-id header and async acks, on ephemeral
    loopback ports. Use it as a context manager, or call :meth:`start` and
    :meth:`stop`; after a stop, :meth:`start` listens on the same ports again
    (a "server restarted" test) and keeps what was captured.

    Args:
      host: the address to listen on.
      grpc_port: the gRPC port; 0 picks a free one.
      http_port: the REST/WebSocket port; 0 picks a free one.
      conn_id_header: Raccoon's ``SERVER_WEBSOCKET_CONN_ID_HEADER`` (gRPC: lower-cased metadata key).
      group_header: ``SERVER_WEBSOCKET_CONN_GROUP_HEADER``.
      default_group: ``SERVER_WEBSOCKET_CONN_GROUP_DEFAULT``.
      ack: ``"async"`` (``EVENT_ACK=0``) or ``"sync"`` (``EVENT_ACK=1``).
      dedup: ``SERVER_BATCH_DEDUP_IN_CONNECTION_ENABLED`` (WebSocket only).
      max_connections: ``SERVER_WEBSOCKET_MAX_CONN``.
      capture: ``"events"`` (keep every event) or ``"digest"`` (constant memory).
      output: path of a JSONL file receiving every captured event.
      topic_pattern: ``EVENT_DISTRIBUTION_PUBLISHER_PATTERN``.
      check_origin: ``SERVER_WEBSOCKET_CHECK_ORIGIN``.
      ping_interval: seconds between server pings (``SERVER_WEBSOCKET_PING_INTERVAL_MS``).
      pong_timeout: seconds without a pong before the connection is dropped.
      tls: ``(certfile, keyfile)`` to serve grpcs/https/wss.
      max_body_bytes: the largest REST body or WebSocket message read.
      console_token: the token ``/_emulator/*`` requires; by default none on loopback,
        generated when ``host`` is another address (see :attr:`console_token`).
      decoders: how the console shows payloads, per event type or topic
        (``"json"``, ``"hex"``, ``"proto:<message>"``, ``"avro:<schema>"``).
      descriptor_set: a FileDescriptorSet file for ``proto:`` decoders.
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        grpc_port: int = 0,
        http_port: int = 0,
        *,
        conn_id_header: str = DEFAULT_CONN_ID_HEADER,
        group_header: str = DEFAULT_GROUP_HEADER,
        default_group: str = DEFAULT_GROUP,
        ack: str = "async",
        dedup: bool = False,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        capture: str = "events",
        output: Optional[str] = None,
        topic_pattern: str = DEFAULT_TOPIC_PATTERN,
        check_origin: bool = True,
        ping_interval: float = DEFAULT_PING_INTERVAL,
        pong_timeout: float = DEFAULT_PONG_TIMEOUT,
        tls: Optional[Tuple[str, str]] = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        console_token: Optional[str] = None,
        decoders: Optional[Mapping[str, str]] = None,
        descriptor_set: Optional[str] = None,
    ) -> None:
        self.config = EmulatorConfig(
            host=host,
            grpc_port=grpc_port,
            http_port=http_port,
            conn_id_header=conn_id_header,
            group_header=group_header,
            default_group=default_group,
            ack=ack,
            dedup=dedup,
            max_connections=max_connections,
            capture=capture,
            output=output,
            topic_pattern=topic_pattern,
            check_origin=check_origin,
            ping_interval=ping_interval,
            pong_timeout=pong_timeout,
            tls=tuple(tls) if tls is not None else None,  # type: ignore[arg-type]
            max_body_bytes=max_body_bytes,
            console_token=console_token,
            decoders=dict(decoders or {}),
            descriptor_set=descriptor_set,
        )
        self.config = with_console_token(self.config)
        self.faults = Faults()
        self._capture = Capture(capture, topic_pattern, output)
        self._counters = Counters()
        self._ingest = Ingest(self.config, self._capture, self.faults, self._counters)
        self._grpc_port = grpc_port
        self._http_port = http_port
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
        self._stopping = asyncio.Event()
        self._grpc = GrpcServer(self.config, self._ingest, self._stopping)
        self._grpc_port = await self._grpc.start(self._grpc_port)
        self._http = HttpServer(self.config, self._ingest, self._stopping, self.reset)
        self._http_port = await self._http.start(self._http_port)

    async def _stop_servers(self) -> None:
        if self._stopping is not None:
            self._stopping.set()  # releases requests that are never answered
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
        host = self.config.host
        return f"[{host}]" if ":" in host else host

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
        return f"{scheme}://{self._url_host}:{self._http_port}{EVENTS_PATH}"

    @property
    def ws_endpoint(self) -> str:
        """``ws://host:port/api/v1/events`` (``wss://`` with TLS)."""
        self._require_running()
        scheme = "wss" if self.config.tls else "ws"
        return f"{scheme}://{self._url_host}:{self._http_port}{EVENTS_PATH}"

    @property
    def http_base_url(self) -> str:
        """``http://host:port``: where ``/ping`` and ``/_emulator/...`` live."""
        self._require_running()
        scheme = "https" if self.config.tls else "http"
        return f"{scheme}://{self._url_host}:{self._http_port}"

    @property
    def console_token(self) -> Optional[str]:
        """The token ``/_emulator/*`` requires (``None``: none required, on loopback)."""
        return self.config.console_token

    @property
    def console_url(self) -> str:
        """The console page, with the token in its query when one is required."""
        url = f"{self.http_base_url}{CONSOLE_PATH}"
        token = self.config.console_token
        return f"{url}?{TOKEN_QUERY}={token}" if token else url

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

    def reset(self) -> None:
        """Clears captures, counters and faults."""
        self.faults.clear()
        self._capture.reset()
        self._counters.reset()
