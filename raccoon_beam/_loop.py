"""An asyncio event loop running on a daemon thread of its own.

The Beam DoFn API is synchronous, while the transports and the emulator are
asyncio code: both hand coroutines to one of these loops and wait on the
``concurrent.futures.Future`` they get back.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any, Awaitable, Coroutine, Optional, TypeVar

__all__ = ["EventLoopThread"]

T = TypeVar("T")


class EventLoopThread:
    """Owns an event loop and the thread that runs it.

    Args:
      name: the thread's name, shown in thread dumps and leak checks.
    """

    def __init__(self, name: str = "raccoon-beam-loop") -> None:
        self._name = name
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError(f"{self._name} is not running")
        return self._loop

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> "EventLoopThread":
        """Starts the thread; returns once its loop is running."""
        if self.running:
            return self
        loop = asyncio.new_event_loop()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(started.set)
            try:
                loop.run_forever()
            finally:
                _cancel_remaining_tasks(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name=self._name, daemon=True)
        self._thread.start()
        started.wait()
        return self

    def submit(self, coro: Coroutine[Any, Any, T]) -> "concurrent.futures.Future[T]":
        """Schedules ``coro`` on the loop; thread-safe."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Awaitable[T], timeout: Optional[float] = None) -> T:
        """Runs ``coro`` on the loop and waits for its result (never call from the loop)."""
        return self.submit(_as_coroutine(coro)).result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Stops the loop, cancels what is left on it and joins the thread."""
        if self._thread is None or self._loop is None:
            return
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
        self._thread = None
        self._loop = None

    def __enter__(self) -> "EventLoopThread":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


async def _as_coroutine(awaitable: Awaitable[T]) -> T:
    return await awaitable


def _cancel_remaining_tasks(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
