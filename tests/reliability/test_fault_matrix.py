"""The fault matrix: every transport under every fault, 20,000 events each, reconciled.

Each cell runs a real pipeline (DirectRunner) against the emulator through
:func:`tests.reliability.conftest.run_case` and checks, with
:func:`check_case`: captured ids together with dead-lettered ids equal the
input exactly (lost = 0), duplicates only where the fault is ambiguous, a
bounded run time, and no thread or socket left after the pipeline.

Bounds: every cell must finish within ``Fault.bound`` seconds (120 s unless
stated), far above the 1-10 s a cell takes on a 2-core machine; they only
prove that nothing hangs.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, List

import pytest

from raccoon_beam import RetryPolicy
from raccoon_beam.emulator import Outcome, RaccoonEmulator

from tests.reliability.conftest import TRANSPORTS, Fault, check_case, run_case

N_EVENTS = 20_000


# ------------------------------------------------------------------ chaos actions


def _wait_for_sink(stop: threading.Event, bound: float = 60.0) -> None:
    """Waits until the sink's client exists (its DoFn was set up), so that
    chaos timers start when the sink starts sending, not when Beam starts
    building the pipeline (which can take seconds on a loaded machine)."""
    deadline = time.monotonic() + bound
    while not stop.is_set() and time.monotonic() < deadline:
        if any(t.name.startswith("raccoon-beam-") for t in threading.enumerate()):
            return
        time.sleep(0.005)


def _up_later(emulator: RaccoonEmulator, stop: threading.Event, notes: Dict[str, Any]) -> None:
    """The server is down when the pipeline starts sending and comes up 2 s later."""
    _wait_for_sink(stop)
    stop.wait(2.0)
    emulator.start()
    notes["injected"] = 1


def _restart_twice(emulator: RaccoonEmulator, stop: threading.Event, notes: Dict[str, Any]) -> None:
    """Stops the server at 25% and 60% of the events, for 1 s each, then starts it on the same ports."""
    restarts = 0
    for fraction in (0.25, 0.60):
        target = int(N_EVENTS * fraction)
        while not stop.is_set() and not emulator.wait_for_events(target, timeout=0.05):
            pass
        if stop.is_set():
            break
        if emulator.counters().total_events_accepted < N_EVENTS:
            restarts += 1  # a restart that happened while the pipeline was still sending
        emulator.stop()
        time.sleep(1.0)
        emulator.start()
    emulator.faults.clear()
    notes["injected"] = restarts


def _clear_after(seconds: float):
    """Clears the faults ``seconds`` after the first request met one."""

    def action(emulator: RaccoonEmulator, stop: threading.Event, notes: Dict[str, Any]) -> None:
        deadline = time.monotonic() + 60.0
        while not stop.is_set() and time.monotonic() < deadline and emulator.counters().injected() == 0:
            time.sleep(0.005)
        stop.wait(seconds)
        emulator.faults.clear()

    return action


def _bursts(make_burst, at=(0.2, 0.4, 0.6, 0.8)):
    """Calls ``make_burst(emulator)`` when the server has captured each fraction ``at`` of the events.

    Tied to progress, not to the clock, so that every burst lands mid-run
    however fast or slow the machine is (the first burst is armed up front).
    """

    def action(emulator: RaccoonEmulator, stop: threading.Event, notes: Dict[str, Any]) -> None:
        for fraction in at:
            target = int(N_EVENTS * fraction)
            while not stop.is_set() and not emulator.wait_for_events(target, timeout=0.05):
                pass
            if stop.is_set():
                break
            make_burst(emulator)
        # Bursts armed near the end may outlive the pipeline: forget them.
        stop.wait(60)
        emulator.faults.clear()

    return action


def _slow_start(emulator: RaccoonEmulator) -> None:
    # Pace the requests a little, so that the chaos thread acts mid-run.
    emulator.faults.add_latency(0.02)


def _random_unavailable(emulator: RaccoonEmulator) -> None:
    # REST: HTTP 503; gRPC: UNAVAILABLE; WebSocket: the server closes the
    # connection (1011 "HTTP 503"), as a proxy in front of it would.
    emulator.faults.fail_fraction(0.3, Outcome.http(503), seed=7, transport="rest")
    emulator.faults.fail_fraction(0.3, Outcome.http(503), seed=7, transport="websocket")
    emulator.faults.fail_fraction(0.3, Outcome.grpc("UNAVAILABLE", "emulated overload"), seed=7, transport="grpc")


def _burst_429(emulator: RaccoonEmulator) -> None:
    emulator.faults.fail_next(8, Outcome.http(429, retry_after=1))


def _slow_server(emulator: RaccoonEmulator) -> None:
    emulator.faults.add_latency(1.0)


def _drop_before(emulator: RaccoonEmulator) -> None:
    emulator.faults.drop_connection(3)


def _drop_after(emulator: RaccoonEmulator) -> None:
    emulator.faults.drop_connection(3, after_capture=True)


def _publish_failures(emulator: RaccoonEmulator) -> None:
    emulator.faults.fail_publish(fraction=0.3, seed=11)


FAULTS: List[Fault] = [
    Fault(
        "down_at_start",
        "server down when the pipeline starts, up 2 s after the sink started sending (same ports)",
        down_at_start=True,
        chaos=_up_later,
    ),
    Fault(
        "restart_mid_run",
        "server stopped for 1 s at 25% and at 60% of the events, restarted on the same ports",
        arm=_slow_start,
        chaos=_restart_twice,
        ambiguous=True,  # a batch captured just before the stop may lose its ack
    ),
    Fault(
        "random_503",
        "30% of requests answered 503 (REST), UNAVAILABLE (gRPC), close 1011 (WebSocket)",
        arm=_random_unavailable,
        injected_kinds=("http", "grpc"),
    ),
    Fault(
        "burst_429",
        "bursts of 8 requests answered 429 Retry-After: 1, at the start and at 20/40/60/80% of the events",
        arm=_burst_429,
        chaos=_bursts(_burst_429),
        injected_kinds=("http",),
    ),
    Fault(
        "slow_server",
        "every answer delayed 1 s (timeout 0.4 s) for 2.5 s from the first request",
        arm=_slow_server,
        chaos=_clear_after(2.5),
        ambiguous=True,  # the server captures what the client timed out on
        write={"timeout": 0.4},
        injected_kinds=("latency",),
    ),
    Fault(
        "slow_server_dedup",
        "as slow_server, with SERVER_BATCH_DEDUP_IN_CONNECTION_ENABLED on the server",
        transports=("websocket",),
        emulator={"dedup": True},
        # The transport keeps a connection whose ack is late and waits for
        # that ack (no resend); what a replaced connection had pending is
        # resent on a fresh one, where the server's dedup cannot see it.
        ambiguous=True,
        arm=_slow_server,
        chaos=_clear_after(2.5),
        write={"timeout": 0.4},
        injected_kinds=("latency",),
    ),
    Fault(
        "drop_before_capture",
        "connection aborted before the batch is captured, 3 requests at the start and at 20/40/60/80%",
        arm=_drop_before,
        chaos=_bursts(_drop_before),
        # WebSocket pipelines requests on one connection: the abort (TCP RST)
        # can destroy the ack of an *earlier* frame that was captured, so
        # that frame is retried and captured twice. REST and gRPC lose only
        # the request that was dropped.
        ambiguous=("websocket",),
        injected_kinds=("drop_before_capture",),
    ),
    Fault(
        "drop_after_capture",
        "connection aborted after the batch is captured (ambiguous), 3 requests at the start and at 20/40/60/80%",
        arm=_drop_after,
        chaos=_bursts(_drop_after),
        ambiguous=True,
        injected_kinds=("drop_after_capture",),
    ),
    Fault(
        "duplicate_conn_id",
        "the sink's first 3 connection ids are held by other connections (code 5, close 1008)",
        transports=("websocket",),
        patch_conn_ids=True,
    ),
    Fault(
        "publish_failures",
        "sync acks; 30% of batches fail to publish (CODE_INTERNAL_ERROR)",
        emulator={"ack": "sync"},
        arm=_publish_failures,
        injected_kinds=("publish_failure",),
    ),
    Fault(
        "down_for_good",
        "nothing listens on the ports; retry deadline 0.5 s",
        down_at_start=True,
        all_dead=True,
        write={"retry": RetryPolicy(max_attempts=1000, initial_backoff=0.001, max_backoff=0.05, deadline=0.5)},
        bound=120.0,
    ),
]

CELLS = [
    pytest.param(fault, transport, id=f"{fault.name}-{transport}")
    for fault in FAULTS
    for transport in TRANSPORTS
    if transport in fault.transports
]


@pytest.mark.slow
@pytest.mark.parametrize("fault, transport", CELLS)
def test_fault_matrix(fault: Fault, transport: str, tmp_path, monkeypatch):
    result = run_case(fault, transport, tmp_path, monkeypatch, n_events=N_EVENTS)
    check_case(result, fault)
    if fault.name != "down_for_good":
        assert result.injected > 0, f"the fault was never injected: {result}"
