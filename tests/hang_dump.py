"""What a test that is about to time out is waiting for.

pytest-timeout fails such a test with the stack of every thread, and the
threads of a hung sink only show that they wait: for a slot, for a future,
in the event loop's ``select``. What they wait for is on the sender's event
loop. Shortly before pytest-timeout's timer fires (:data:`MARGIN` seconds
before, or a fifth of a short timeout), this plugin writes to stderr, once,
the tasks of every running :class:`~raccoon_beam._loop.EventLoopThread`
with the chain of coroutines each one is waiting in, and the fields of
every :class:`~raccoon_beam.delivery.concurrency.ConcurrencyLimit`,
:class:`~raccoon_beam.delivery.outage.OutageGate` and
:class:`~raccoon_beam.delivery.flow.FlowControl`; pytest shows it with the
test's failure. The timeout comes from pytest-timeout's own hooks, so
``--timeout``, ``PYTEST_TIMEOUT``, markers and ``timeout_func_only`` all
count. Registered by ``tests/conftest.py``, so always on; a test that ends
in time costs two hook calls.
"""

from __future__ import annotations

import asyncio
import gc
import io
import sys
import threading
import time
from typing import Any, List, Optional

import pytest
from pytest_timeout import is_debugging

from raccoon_beam._loop import EventLoopThread
from raccoon_beam.delivery.concurrency import ConcurrencyLimit
from raccoon_beam.delivery.flow import FlowControl
from raccoon_beam.delivery.outage import OutageGate

__all__ = ["MARGIN"]

# Seconds before the timeout at which the state is written.
MARGIN = 20.0
_FLOW_PARTS = (ConcurrencyLimit, OutageGate, FlowControl)


class _Watcher:
    """A thread that writes the state once when the running test's time is almost up."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._test: Optional[str] = None
        self._due = float("inf")
        self._stopped = False
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hang-dump-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify()
        if self._thread is not None:
            self._thread.join(5)

    def arm(self, test: str, timeout: float) -> None:
        with self._changed:
            self._test = test
            self._due = time.monotonic() + timeout - min(MARGIN, timeout / 5)
            self._changed.notify()

    def disarm(self) -> None:
        with self._changed:
            self._test, self._due = None, float("inf")
            self._changed.notify()

    def _run(self) -> None:
        with self._changed:
            while not self._stopped:
                wait = self._due - time.monotonic()
                if wait > 0:
                    self._changed.wait(None if wait == float("inf") else wait)
                    continue
                test, self._due = self._test, float("inf")  # once per test
                self._changed.release()
                try:
                    report = None if is_debugging() else _state(test)
                finally:
                    self._changed.acquire()
                if report is not None and self._test == test and not self._stopped:
                    sys.stderr.write(report)
                    sys.stderr.flush()


_WATCHER = _Watcher()


def pytest_configure(config: pytest.Config) -> None:
    _WATCHER.start()


def pytest_unconfigure(config: pytest.Config) -> None:
    _WATCHER.stop()


@pytest.hookimpl(optionalhook=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> None:
    if settings.timeout and settings.timeout > 0:
        _WATCHER.arm(item.nodeid, float(settings.timeout))
    # None: pytest-timeout's own implementation still sets its timer.


@pytest.hookimpl(optionalhook=True)
def pytest_timeout_cancel_timer(item: pytest.Item) -> None:
    _WATCHER.disarm()


def _state(test: Optional[str]) -> str:
    """Every sender loop's tasks (what each awaits) and every flow-control part's fields."""
    out = io.StringIO()
    out.write(f"\n===== hang dump: {test} is about to time out (monotonic clock {time.monotonic():.3f}) =====\n")
    for obj in gc.get_objects():
        kind = type(obj)
        try:
            if issubclass(kind, EventLoopThread) and obj.running:
                out.write(f"--- tasks of {obj._name}\n")
                for task in list(asyncio.all_tasks(obj.loop)):
                    out.write(f"{task!r:.300}\n" + "".join(f"  {line}\n" for line in _awaiting(task)))
            elif issubclass(kind, _FLOW_PARTS):
                fields = {name: value for name, value in dict(vars(obj)).items() if not callable(value)}
                out.write(f"--- {kind.__name__} {fields!r:.2000}\n")
        except Exception as exc:  # changed under us by its own thread: say so, go on with the rest
            out.write(f"--- {kind.__name__}: not read ({type(exc).__name__}: {exc})\n")
    return out.getvalue()


def _awaiting(task: "asyncio.Task[Any]") -> List[str]:
    """Where ``task`` waits: each coroutine it is in, innermost last, then what that one awaits."""
    lines = []
    awaited: Any = task.get_coro()
    while awaited is not None:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is None:  # a future (behind its C iterator), or a coroutine that has finished
            lines.append(f"awaiting {getattr(task, '_fut_waiter', None) or awaited!r:.300}")
            break
        lines.append(f'File "{frame.f_code.co_filename}", line {frame.f_lineno}, in {frame.f_code.co_name}')
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return lines
