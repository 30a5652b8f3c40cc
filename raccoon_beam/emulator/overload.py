"""Overload as Raccoon has it: a bounded buffer, a worker pool, a publisher with a capacity.

Raccoon does not refuse work when it is overloaded. Each handler pushes its
request into one buffered channel (``WORKER_BUFFER_CHANNEL_SIZE`` requests)
and *blocks* while the channel is full; ``WORKER_POOL_SIZE`` workers drain it
at the pace of the Kafka producer. With ``EVENT_ACK=1`` the answer also waits
for the publish. So overload shows up as latency that grows with everything
all clients keep in flight, then as client timeouts; and a request whose
client gave up is still published when its turn comes (its retry is a
duplicate).

:class:`Overload` is that model. With ``capacity_events_per_second`` set, a
request goes through the buffer and a worker, and the workers publish at most
that many events per second between them; unset (the default), a request is
published at once, as before. The capacity and the gateway can be changed
while the emulator runs (:meth:`Overload.configure`, the control route
``/_emulator/overload``, the console); the buffer and the pool are sized at
start, as Raccoon's are.

The optional *gateway* stands for a proxy in front of Raccoon that sheds load
(Envoy's circuit breaker, a rate-limiting ingress): once
``gateway_queue_depth`` requests wait for the publisher, it answers new REST
and gRPC requests ``gateway_status`` (429 or 503, gRPC ``UNAVAILABLE``) with
``Retry-After``, and refuses new WebSocket upgrades the same way. Frames on a
WebSocket that is already open pass a gateway untouched, so they block as
Raccoon's handler does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from typing import Any, Callable, Dict, Optional, Set

from raccoon_beam.emulator.config import EmulatorConfig, check_overload_settings

__all__ = ["Overload", "OverloadSettings", "GATEWAY", "STOPPED"]

# The fault kind under which gateway refusals are counted (and listed by the console).
GATEWAY = "gateway"
_log = logging.getLogger(__name__)


class _Stopped:
    """What a request waiting in the buffer gets when the emulator stops: its connection is dropped."""

    def __repr__(self) -> str:
        return "STOPPED"


STOPPED: Any = _Stopped()


@dataclasses.dataclass(frozen=True)
class OverloadSettings:
    """The overload settings that can change while the emulator runs.

    Attributes:
      capacity_events_per_second: events per second the publisher takes; None: unlimited.
      gateway_queue_depth: requests waiting for the publisher beyond which the
        gateway refuses new ones; None: no gateway.
      gateway_status: the HTTP status the gateway answers (429 or 503).
      gateway_retry_after: the ``Retry-After`` it sends, in seconds.
    """

    capacity_events_per_second: Optional[float] = None
    gateway_queue_depth: Optional[int] = None
    gateway_status: int = 503
    gateway_retry_after: float = 1.0

    def __post_init__(self) -> None:
        check_overload_settings(
            self.capacity_events_per_second, self.gateway_queue_depth, self.gateway_status, self.gateway_retry_after
        )

    @classmethod
    def of(cls, config: EmulatorConfig) -> "OverloadSettings":
        return cls(*(getattr(config, field.name) for field in dataclasses.fields(cls)))


class _Job:
    __slots__ = ("events", "publish", "done")

    def __init__(self, events: int, publish: Callable[[], Any], done: "asyncio.Future[Any]") -> None:
        self.events = events
        self.publish = publish
        self.done = done


class Overload:
    """Raccoon's buffer, worker pool and paced publisher; used on the emulator's loop.

    Args:
      config: the emulator's settings (buffer and pool sizes, the initial
        capacity and gateway).
    """

    def __init__(self, config: EmulatorConfig) -> None:
        self.settings = OverloadSettings.of(config)
        self.buffer_size = config.worker_buffer_size
        self.pool_size = config.worker_pool_size
        self._queue: Optional["asyncio.Queue[_Job]"] = None
        self._workers: Set["asyncio.Task[None]"] = set()
        self._putting: Set["asyncio.Task[None]"] = set()
        self._pending = 0  # submitted, not yet published: blocked, buffered or publishing
        self._publishing = 0
        self._free_at = 0.0  # loop time at which the publisher is free again

    # ------------------------------------------------------------ settings

    @property
    def active(self) -> bool:
        """Whether requests go through the buffer (a capacity is set)."""
        return self.settings.capacity_events_per_second is not None

    def configure(self, **changes: Any) -> OverloadSettings:
        """Changes some settings at once; returns the new ones.

        Args:
          **changes: fields of :class:`OverloadSettings`.

        Raises:
          TypeError: an unknown setting.
          ValueError: a bad value (the settings stay as they were).
        """
        names = {field.name for field in dataclasses.fields(OverloadSettings)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise TypeError(f"not overload settings: {', '.join(unknown)}; settings: {', '.join(sorted(names))}")
        self.settings = dataclasses.replace(self.settings, **changes)
        return self.settings

    def describe(self) -> Dict[str, Any]:
        """The settings and the state of the buffer, JSON-friendly (console, control route)."""
        queued = self._queue.qsize() if self._queue is not None else 0
        return {
            **dataclasses.asdict(self.settings),
            "worker_buffer_size": self.buffer_size,
            "worker_pool_size": self.pool_size,
            "waiting": self._pending,
            "buffered": queued,
            "blocked": max(0, self._pending - queued - self._publishing),
            "publishing": self._publishing,
        }

    # ------------------------------------------------------------ requests

    def gateway_refuses(self) -> bool:
        """Whether the gateway refuses a new request now (so many wait for the publisher)."""
        depth = self.settings.gateway_queue_depth
        return depth is not None and self.active and self._pending >= depth

    @property
    def waiting(self) -> int:
        """Requests submitted and not yet published (blocked, buffered or publishing)."""
        return self._pending

    async def submit(self, events: int, publish: Callable[[], Any], wait: bool) -> Any:
        """Pushes a request into the buffer, blocking while it is full, as Raccoon's handler does.

        The push and the publish go on when the caller is cancelled (its
        client went away): the request is published when its turn comes.

        Args:
          events: how many events the request carries (what the publisher paces).
          publish: called by a worker when the publisher takes the request; its
            result is what a waiting caller gets.
          wait: wait for the publish (sync acks) and return its result; False
            returns None once the request is in the buffer (async acks).

        Returns:
          ``publish()``'s result, None (``wait=False``), or :data:`STOPPED` when
          the emulator stopped first.
        """
        loop = asyncio.get_running_loop()
        queue = self._start(loop)
        job = _Job(events, publish, loop.create_future())
        self._pending += 1
        put = loop.create_task(queue.put(job))
        self._putting.add(put)
        put.add_done_callback(self._putting.discard)
        try:
            await asyncio.shield(put)
        except asyncio.CancelledError:
            if not put.cancelled():
                raise  # the caller was cancelled; the push goes on without it
            return STOPPED
        if not wait:
            return None
        return await asyncio.shield(job.done)

    def _start(self, loop: asyncio.AbstractEventLoop) -> "asyncio.Queue[_Job]":
        if self._queue is None:
            self._queue = asyncio.Queue(maxsize=self.buffer_size)
            for _ in range(self.pool_size):
                worker = loop.create_task(self._work(self._queue))
                self._workers.add(worker)
        return self._queue

    async def _work(self, queue: "asyncio.Queue[_Job]") -> None:
        while True:
            job = await queue.get()
            self._publishing += 1
            try:
                await self._pace(job.events)
                result = job.publish()
            except asyncio.CancelledError:
                self._publishing -= 1
                self._pending -= 1
                _resolve(job, STOPPED)
                raise
            except Exception:  # a bug in publishing must not stop a worker for good
                _log.exception("the emulator's publisher failed")
                result = STOPPED
            self._publishing -= 1
            self._pending -= 1
            _resolve(job, result)

    async def _pace(self, events: int) -> None:
        """Waits for the publisher's turn: ``capacity`` events per second between all workers.

        One shared clock, as one Kafka producer serves Raccoon's workers: a
        request takes ``events / capacity`` seconds of it, after the requests
        before it. Idle time is not saved up (no burst after a lull).
        """
        capacity = self.settings.capacity_events_per_second
        if capacity is None or math.isinf(capacity):
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._free_at = max(now, self._free_at) + events / capacity
        await asyncio.sleep(self._free_at - now)

    async def stop(self) -> None:
        """Stops the workers; requests still blocked or buffered get :data:`STOPPED`."""
        for task in list(self._putting) + list(self._workers):
            task.cancel()
        await asyncio.gather(*self._putting, *self._workers, return_exceptions=True)
        self._workers.clear()
        queue, self._queue = self._queue, None
        while queue is not None and not queue.empty():
            _resolve(queue.get_nowait(), STOPPED)
        self._pending = self._publishing = 0
        self._free_at = 0.0


def _resolve(job: _Job, result: Any) -> None:
    if not job.done.done():
        job.done.set_result(result)

