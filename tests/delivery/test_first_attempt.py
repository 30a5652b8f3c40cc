"""A batch's first attempt begun on the caller's thread (gRPC), and everything that may follow it on the loop.

Over a real emulator: an acknowledged batch never passes through the
sender's loop; a first attempt that fails, is rejected, is cancelled or is
cut off by close() continues exactly as one made on the loop would.
"""

from __future__ import annotations

import concurrent.futures
import time
from typing import List

import pytest

from raccoon_beam.batching import Batch
from raccoon_beam.delivery import Sender
from raccoon_beam.delivery.flow import FlowOptions
from raccoon_beam.emulator import Outcome
from raccoon_beam.retry import RetryPolicy
from raccoon_beam.transports import TransportConfig
from raccoon_beam.wire import Wire

from tests.transports.helpers import RecordingSleep, client_sockets, eventually, live_threads

pytestmark = pytest.mark.timeout(60)

FAST = RetryPolicy(max_attempts=5, initial_backoff=0.01, max_backoff=0.05)


def _batch(n: int, tag: str) -> Batch[str]:
    sources = [f"{tag}-{i}" for i in range(n)]
    return Batch(["click"] * n, [b'{"n":%d}' % i for i in range(n)], sources)


class Paths:
    """Counts the sends begun off the loop and the coroutines handed to it (the sender's own methods, wrapped)."""

    def __init__(self, sender: Sender) -> None:
        self.loop = 0
        self.begun = 0
        submit, begin = sender._submit, sender.transport.begin

        def counting_submit(coro):
            self.loop += 1
            return submit(coro)

        def counting_begin(request):
            started = begin(request)
            self.begun += started is not None
            return started

        sender._submit = counting_submit  # type: ignore[method-assign]
        sender.transport.begin = counting_begin  # type: ignore[method-assign]


@pytest.fixture
def grpc_sender(emulator, make_client):
    def make(**config) -> Sender:
        config.setdefault("max_in_flight", 4)
        return make_client(emulator.grpc_endpoint, policy=FAST, **config)

    return make


def _warm(sender: Sender) -> None:
    """The first batch goes through the loop: it opens the channel and reads the metadata."""
    assert sender.deliver(_batch(1, "warm")).result(30).acknowledged == 1


def test_acknowledged_batches_never_pass_through_the_loop(emulator, grpc_sender):
    sender = grpc_sender()
    _warm(sender)
    paths = Paths(sender)
    futures = [sender.deliver(_batch(50, f"b{i}")) for i in range(20)]
    reports = [future.result(30) for future in futures]
    assert (paths.begun, paths.loop) == (20, 0)
    assert [(r.events, r.acknowledged, r.requests, r.retries, r.failures) for r in reports] == [(50, 50, 1, 0, [])] * 20
    assert all(len(r.latencies_ms) == 1 and r.bytes_sent > 0 for r in reports)
    assert len(emulator.events()) == 1 + 20 * 50


def _first_attempt_failing(emulator, grpc_sender, times, outcome, batch):
    """The report of ``batch``, whose first attempt (begun off the loop) and ``times - 1`` more fail with ``outcome``."""
    sender = grpc_sender()
    _warm(sender)
    paths = Paths(sender)
    emulator.faults.fail_next(times, outcome, transport="grpc")
    report = sender.deliver(batch).result(30)
    assert (paths.begun, paths.loop) == (1, 1)  # begun off the loop, continued on it
    return report


def test_a_first_attempt_that_fails_is_retried_on_the_loop_with_the_same_request(emulator, grpc_sender):
    unavailable = Outcome.grpc("UNAVAILABLE", "try again")
    report = _first_attempt_failing(emulator, grpc_sender, 2, unavailable, _batch(10, "retried"))
    assert (report.acknowledged, report.requests, report.retries, report.failures) == (10, 3, 2, [])
    assert len(report.latencies_ms) == 3
    captured = emulator.events()
    assert len(captured) == 1 + 10 and len({e.req_guid for e in captured[1:]}) == 1
    assert emulator.counters().received("grpc") == 1 + 3  # one request, sent three times


def test_a_request_level_rejection_of_a_first_attempt_costs_three_requests(emulator, grpc_sender):
    rejected = Outcome.raccoon("CODE_BAD_REQUEST", "deserialization failure")
    report = _first_attempt_failing(emulator, grpc_sender, 3, rejected, _batch(40, "rejected"))
    assert report.requests == 3 and report.acknowledged == 0
    assert sum(len(f.sources) for f in report.failures) == 40
    assert all("deserialization failure" in f.reason for f in report.failures)


def test_a_first_attempt_listed_in_the_acknowledgements(emulator, grpc_sender):
    sender = grpc_sender()
    _warm(sender)
    paths = Paths(sender)
    report = sender.deliver(_batch(5, "acked"), acknowledgements=True).result(30)
    assert (paths.begun, paths.loop) == (1, 0)
    assert report.acked is not None
    [acked] = report.acked
    assert (acked.sources, acked.attempts, acked.conn_id) == ([f"acked-{i}" for i in range(5)], 1, sender.transport.conn_id)
    assert {e.req_guid for e in emulator.events()[-5:]} == {acked.req_guid}


def test_a_first_attempt_that_times_out_is_an_unknown_outcome(emulator, grpc_sender):
    sender = grpc_sender(timeout=0.3)
    _warm(sender)
    paths = Paths(sender)
    emulator.faults.fail_next(1, Outcome.no_answer(), transport="grpc")
    report = sender.deliver(_batch(3, "late")).result(30)
    assert (paths.begun, paths.loop) == (1, 1)
    assert (report.acknowledged, report.requests, report.timeouts) == (3, 2, 1)


def test_cancelling_a_first_attempt_frees_its_slot_and_its_place_in_the_limit(emulator, grpc_sender):
    sender = grpc_sender(max_in_flight=1, timeout=30)
    _warm(sender)
    paths = Paths(sender)
    emulator.faults.fail_next(1, Outcome.no_answer(), transport="grpc")
    held = sender.deliver(_batch(2, "held"))
    assert paths.begun == 1
    assert eventually(lambda: emulator.counters().received("grpc") >= 2)
    assert held.cancel()
    # The one slot is free again: the next batch goes out and is acknowledged.
    assert sender.deliver(_batch(2, "next")).result(30).acknowledged == 2
    assert sender.flow.limit is not None and eventually(lambda: sender.flow.limit.in_flight == 0)


def test_close_cancels_first_attempts_in_flight_and_leaves_nothing(emulator):
    threads_before = live_threads()
    sender = Sender(
        TransportConfig(emulator.grpc_endpoint, wire=Wire.PROTOBUF, max_in_flight=4, timeout=30),
        FAST,
        sleep=RecordingSleep(),
    )
    _warm(sender)
    paths = Paths(sender)
    emulator.faults.fail_next(3, Outcome.no_answer(), transport="grpc")
    futures: List[concurrent.futures.Future] = [sender.deliver(_batch(2, f"c{i}")) for i in range(3)]
    assert paths.begun == 3
    assert eventually(lambda: emulator.counters().received("grpc") >= 4)
    sender.close()
    assert all(future.cancelled() for future in futures)
    assert client_sockets([emulator.grpc_port]) == []
    assert eventually(lambda: not {t for t in live_threads() - threads_before if t.is_alive()}, timeout=5)


def test_nothing_begins_off_the_loop_while_flow_control_may_hold_it(emulator, make_client):
    sender = make_client(emulator.grpc_endpoint, policy=FAST, flow=FlowOptions(max_events_per_second=1e6))
    _warm(sender)
    paths = Paths(sender)
    assert sender.deliver(_batch(5, "paced")).result(30).acknowledged == 5
    assert (paths.begun, paths.loop) == (0, 1)  # a rate limit's waits belong to the loop


def _slow_answers(sender: Sender, seconds: float) -> None:
    """Delays the handling of each first attempt's answer on grpcio's thread (the sender's own method, wrapped)."""
    settle = sender._settle_at_once

    def slow(*args):
        time.sleep(seconds)
        settle(*args)

    sender._settle_at_once = slow  # type: ignore[method-assign]


def test_close_returns_once_every_first_attempt_is_settled(emulator):
    sender = Sender(TransportConfig(emulator.grpc_endpoint, max_in_flight=4, timeout=30), FAST, sleep=RecordingSleep())
    _warm(sender)
    _slow_answers(sender, 0.3)
    emulator.faults.fail_next(3, Outcome.no_answer(), transport="grpc")
    futures = [sender.deliver(_batch(2, f"s{i}")) for i in range(3)]
    assert eventually(lambda: emulator.counters().received("grpc") >= 4)
    sender.close()
    assert all(future.cancelled() for future in futures)


def test_an_acknowledgement_handled_while_the_sender_closes_still_counts(emulator):
    sender = Sender(TransportConfig(emulator.grpc_endpoint, max_in_flight=4), FAST, sleep=RecordingSleep())
    _warm(sender)
    _slow_answers(sender, 0.5)
    future = sender.deliver(_batch(4, "late-ack"))
    assert eventually(lambda: len(emulator.events()) == 1 + 4)  # acknowledged by the server ...
    sender.close()  # ... and closed before the sink handled the answer
    report = future.result(0)
    assert (report.acknowledged, report.failures) == (4, [])
