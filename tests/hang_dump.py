"""Shows what a test that is about to time out is waiting for.

pytest-timeout reports only the main thread's stack, and a hung sink's main
thread just waits for a slot or a future: the answer is on the sender's
event loop. Shortly before a test's timeout (:data:`MARGIN` seconds, or a
fifth of a short timeout) this plugin writes to stderr, once, the stack of
every thread, the tasks of every running :class:`~raccoon_beam._loop.EventLoopThread`
with their stacks, and the state of every flow-control part
(:class:`~raccoon_beam.delivery.concurrency.ConcurrencyLimit`,
:class:`~raccoon_beam.delivery.outage.OutageGate`,
:class:`~raccoon_beam.delivery.flow.FlowControl`). pytest shows it with the
test's failure. A test that ends in time costs nothing but a clock reading.
"""

from __future__ import annotations

import asyncio
import gc
import io
import sys
import threading
import time
import traceback
from typing import Any, Optional

import pytest

__all__ = ["MARGIN"]

# Seconds before the timeout at which the state is written.
MARGIN = 20.0


class _Watch:
    """The running test's name and when to dump, read by the watcher thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.test: Optional[str] = None
        self.dump_at = float("inf")


_WATCH = _Watch()


def pytest_configure(config: pytest.Config) -> None:
    threading.Thread(target=_watch, name="hang-dump-watch", daemon=True).start()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    timeout = _timeout_of(item)
    with _WATCH.lock:
        _WATCH.test = item.nodeid
        _WATCH.dump_at = time.monotonic() + timeout - min(MARGIN, timeout / 5) if timeout > 0 else float("inf")


def pytest_runtest_logfinish(nodeid: str, location: Any) -> None:
    with _WATCH.lock:
        _WATCH.test, _WATCH.dump_at = None, float("inf")


def _timeout_of(item: pytest.Item) -> float:
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    try:
        return float(item.config.getini("timeout") or 0)
    except (ValueError, TypeError):
        return 0.0


def _watch() -> None:
    while True:
        time.sleep(1.0)
        with _WATCH.lock:
            due = time.monotonic() >= _WATCH.dump_at
            test = _WATCH.test
            if due:
                _WATCH.dump_at = float("inf")  # once per test
        if due:
            try:
                sys.stderr.write(_state(test))
                sys.stderr.flush()
            except Exception as exc:  # a diagnostic must never break the run
                sys.stderr.write(f"hang dump failed: {exc!r}\n")


def _state(test: Optional[str]) -> str:
    """Every thread's stack, every sender loop's tasks and every flow-control part's fields."""
    from raccoon_beam._loop import EventLoopThread
    from raccoon_beam.delivery.concurrency import ConcurrencyLimit
    from raccoon_beam.delivery.flow import FlowControl
    from raccoon_beam.delivery.outage import OutageGate

    out = io.StringIO()
    out.write(f"\n===== hang dump: {test} is about to time out (monotonic clock {time.monotonic():.3f}) =====\n")
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        if ident != threading.get_ident():  # not this watcher
            out.write(f"--- thread {names.get(ident, ident)}\n")
            out.write("".join(traceback.format_stack(frame, limit=15)))  # the innermost frames
    for obj in gc.get_objects():
        if isinstance(obj, EventLoopThread) and obj.running:
            out.write(f"--- tasks of {obj._name}\n")
            try:
                tasks = asyncio.all_tasks(obj.loop)
            except RuntimeError as exc:  # the set changed while read from this thread
                out.write(f"(not read: {exc})\n")
                continue
            for task in tasks:
                task.print_stack(limit=12, file=out)
        elif isinstance(obj, (ConcurrencyLimit, OutageGate, FlowControl)):
            fields = {name: value for name, value in vars(obj).items() if not callable(value)}
            out.write(f"--- {type(obj).__name__} {fields!r:.2000}\n")
    return out.getvalue()
