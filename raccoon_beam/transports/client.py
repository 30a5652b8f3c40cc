"""RaccoonClient: the synchronous face of a transport, for the DoFns.

The client owns an :class:`~raccoon_beam._loop.EventLoopThread` and one
transport, opened lazily on that loop. :meth:`RaccoonClient.submit` hands a
request to :func:`~raccoon_beam.retry.send_with_retry` and returns a
``concurrent.futures.Future`` of its :class:`~raccoon_beam.retry.SendOutcome`,
blocking the caller while ``max_in_flight`` requests are pending: that is the
sink's back-pressure. The client never knows which protocol it speaks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from typing import Any, Awaitable, Callable, Coroutine, Optional, Set, TypeVar

from raccoon_beam._loop import EventLoopThread
from raccoon_beam._proto import raccoon_pb2
from raccoon_beam.errors import SendFailure
from raccoon_beam.retry import RetryPolicy, SendOutcome, send_with_retry
from raccoon_beam.transports.base import KIND_GRPC, KIND_REST, KIND_WEBSOCKET, Transport, TransportConfig
from raccoon_beam.wire import EncodedRequest

__all__ = ["RaccoonClient", "open_transport", "DEFAULT_CLOSE_TIMEOUT"]

# How long close() waits for the transport to shut down.
DEFAULT_CLOSE_TIMEOUT = 30.0

T = TypeVar("T")


def open_transport(config: TransportConfig) -> Transport:
    """The transport for ``config``'s endpoint scheme.

    The transport opens no connection yet: it does so on the loop of its
    first :meth:`~Transport.send`.
    """
    kind = config.kind
    if kind == KIND_GRPC:
        from raccoon_beam.transports.grpc import GrpcTransport

        return GrpcTransport(config)
    if kind == KIND_REST:
        from raccoon_beam.transports.rest import RestTransport

        return RestTransport(config)
    if kind == KIND_WEBSOCKET:
        from raccoon_beam.transports.websocket import WebSocketTransport

        return WebSocketTransport(config)
    raise ValueError(f"no transport for endpoint kind {kind!r}")  # parse_endpoint prevents this


class _Bounded(Transport):
    """Lets at most ``limit`` sends of the wrapped transport run at once.

    ``submit`` already bounds what callers queue; this also bounds what
    coroutines given to ``run`` send, and it holds only during an attempt,
    not during the backoff between attempts.
    """

    def __init__(self, inner: Transport, limit: int) -> None:
        super().__init__(inner.config)
        self.inner = inner
        self._slots = asyncio.Semaphore(limit)

    async def send(self, request: EncodedRequest) -> raccoon_pb2.SendEventResponse:
        async with self._slots:
            return await self.inner.send(request)

    async def close(self) -> None:
        await self.inner.close()


class RaccoonClient:
    """Sends encoded requests to one endpoint, with retries, from any thread.

    Args:
      config: the transport configuration.
      policy: the retry policy (default: ``RetryPolicy()``).
      sleep: the coroutine function that waits between attempts (tests).
      clock: the monotonic clock of the retry deadline (tests).
      on_retry: called on the client's loop with each retried failure and
        the wait before the next attempt (metrics).
      transport_factory: builds the transport (tests may wrap it).
    """

    def __init__(
        self,
        config: TransportConfig,
        policy: Optional[RetryPolicy] = None,
        *,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        on_retry: Optional[Callable[[SendFailure, float], None]] = None,
        transport_factory: Callable[[TransportConfig], Transport] = open_transport,
    ) -> None:
        self.config = config
        self.policy = policy if policy is not None else RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self._on_retry = on_retry
        self._transport_factory = transport_factory
        self._slots = threading.BoundedSemaphore(config.max_in_flight)
        self._loop = EventLoopThread(name=f"raccoon-beam-{config.kind}-client")
        self._transport: Optional[_Bounded] = None
        self._active: Set["asyncio.Task[Any]"] = set()
        self._closed = False
        self._close_lock = threading.Lock()
        self._loop.start()

    @property
    def transport(self) -> Optional[Transport]:
        """The transport, once the first request has opened it."""
        return self._transport.inner if self._transport is not None else None

    @property
    def closed(self) -> bool:
        return self._closed

    def submit(self, request: EncodedRequest) -> "concurrent.futures.Future[SendOutcome]":
        """Sends ``request`` (with retries) on the client's loop.

        Blocks while ``max_in_flight`` submitted requests are pending.

        Returns:
          A future of the request's outcome; it never holds a SendFailure
          exception (failures are in the outcome). It is cancelled if the
          client is closed first.

        Raises:
          RuntimeError: the client is closed.
        """
        self._check_open()
        self._slots.acquire()
        try:
            self._check_open()
            future = self._loop.submit(self.send(request))
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _: self._slots.release())
        return future

    async def send(self, request: EncodedRequest) -> SendOutcome:
        """Sends ``request`` with retries; call on the client's loop (e.g. inside ``run``)."""
        return await self._tracked(
            send_with_retry(
                self._get_transport(),
                request,
                self.policy,
                sleep=self._sleep,
                clock=self._clock,
                on_retry=self._on_retry,
            )
        )

    def run(self, coro: Coroutine[Any, Any, T]) -> "concurrent.futures.Future[T]":
        """Runs ``coro`` on the client's loop (e.g. a split-and-resend orchestration).

        Raises:
          RuntimeError: the client is closed.
        """
        self._check_open()
        return self._loop.submit(self._tracked(coro))

    def close(self, timeout: float = DEFAULT_CLOSE_TIMEOUT) -> None:
        """Cancels what is pending, closes the transport and stops the loop.

        Afterwards no thread or socket of the client remains. Idempotent.
        """
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            if self._loop.running:
                self._loop.run(self._aclose(), timeout)
        finally:
            self._loop.stop()

    def __enter__(self) -> "RaccoonClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"RaccoonClient({self.config.parsed_endpoint.redacted}, {state})"

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")

    def _get_transport(self) -> Transport:
        if self._transport is None:
            self._transport = _Bounded(self._transport_factory(self.config), self.config.max_in_flight)
        return self._transport

    async def _tracked(self, coro: Awaitable[T]) -> T:
        # Remember the task so that close() can cancel it: a request still
        # retrying at close would otherwise retry against a closed transport.
        task = asyncio.current_task()
        if task is None or task in self._active:  # nested (send inside run): tracked already
            return await coro
        self._active.add(task)
        try:
            return await coro
        finally:
            self._active.discard(task)

    async def _aclose(self) -> None:
        active = [task for task in self._active if task is not asyncio.current_task()]
        for task in active:
            task.cancel()
        await asyncio.gather(*active, return_exceptions=True)
        transport, self._transport = self._transport, None
        if transport is not None:
            await transport.close()
        # aiohttp resolves host names in the loop's default executor: join its
        # threads, or they would outlive the client.
        await asyncio.get_running_loop().shutdown_default_executor()
