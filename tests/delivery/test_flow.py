"""Flow control parts with injected clocks: held time, rate limit, throttle, adaptive limit, outage gate."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from typing import Awaitable

import pytest

from raccoon_beam.delivery.concurrency import DEFAULT_INITIAL_LIMIT, ConcurrencyLimit
from raccoon_beam.delivery.flow import FlowControl, FlowOptions, Ticket
from raccoon_beam.delivery.held import HeldTime
from raccoon_beam.delivery.outage import DEFAULT_FAILURES_FOR_OUTAGE, OutageGate
from raccoon_beam.delivery.rate import DEFAULT_RAMP_UP_START, RateLimit
from raccoon_beam.delivery.throttle import DEFAULT_MIN_REQUESTS, AcceptRatioThrottle
from raccoon_beam.errors import Failure, FailureKind
from raccoon_beam.retry import RetryPolicy

from tests.transports.helpers import FakeClock

pytestmark = pytest.mark.timeout(60)

REFUSED = Failure(FailureKind.UNREACHABLE, "connection refused")
TIMEOUT = Failure(FailureKind.TIMEOUT, "no answer")
BAD = Failure(FailureKind.REFUSED, "bad request", raccoon_code=2, reason="deserialization failure")


# ------------------------------------------------------------------ held time


def test_held_time_counts_overlapping_holds_once_and_never_more_than_elapsed():
    clock = FakeClock(0.0)
    held = HeldTime(clock)
    first, second = held.holding(), held.holding()
    first.__enter__()
    clock.now = 1.0
    second.__enter__()  # side by side with the first
    clock.now = 3.0
    first.__exit__(None, None, None)
    clock.now = 4.0
    second.__exit__(None, None, None)
    clock.now = 10.0  # nobody held from 4 to 10
    assert held.seconds == 4.0  # the union, 0..4: not 4 + 3
    assert held.take_whole_seconds() == 4 and held.take_whole_seconds() == 0


def test_held_time_hands_each_whole_second_out_once_across_threads():
    clock = FakeClock(0.0)
    held = HeldTime(clock)
    with held.holding():
        clock.now = 7.5
    taken = []
    threads = [threading.Thread(target=lambda: taken.append(held.take_whole_seconds())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(taken) == 7  # the half second waits for more


# ------------------------------------------------------------------ rate limit


def test_rate_limit_paces_events_to_the_rate_whatever_the_batch_size():
    clock = FakeClock(0.0)
    rate = RateLimit(1000.0, clock=clock)
    sent = 0
    for size in [500, 1, 250, 500, 500, 249] * 20:
        clock.now += rate.take(size)  # wait as told, then send
        sent += size
    # 40,000 events at 1,000/s: 40 s, less what the first request did not wait for.
    assert clock.now == pytest.approx(sent / 1000.0, rel=0.02)


def test_rate_limit_saves_at_most_a_second_of_credit_when_idle():
    clock = FakeClock(0.0)
    rate = RateLimit(100.0, clock=clock)
    clock.now += rate.take(100)
    clock.now += 3600  # an hour idle
    assert rate.take(100) == 0.0  # one second's worth saved
    assert rate.take(100) == pytest.approx(1.0)  # not an hour's


def test_ramp_up_starts_at_a_tenth_and_reaches_the_limit():
    clock = FakeClock(50.0)
    rate = RateLimit(1000.0, ramp_up=100.0, clock=clock)
    rate.take(1)
    assert rate.rate(50.0) == pytest.approx(1000.0 * DEFAULT_RAMP_UP_START)
    assert rate.rate(100.0) == pytest.approx(1000.0 * (DEFAULT_RAMP_UP_START + (1 - DEFAULT_RAMP_UP_START) / 2))
    assert rate.rate(150.0) == rate.rate(10_000.0) == 1000.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(max_events_per_second=0), "max_events_per_second must be a positive number"),
        (dict(max_events_per_second=float("inf")), "max_events_per_second must be a positive number"),
        (dict(max_events_per_second=True), "max_events_per_second must be a positive number"),
        (dict(ramp_up_duration=60.0), "ramp_up_duration needs max_events_per_second"),
        (dict(max_events_per_second=10, ramp_up_duration=-1), "ramp_up_duration must be a positive number"),
    ],
)
def test_flow_options_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FlowOptions(**kwargs)


def test_flow_options_refuse_a_non_bool_switch():
    with pytest.raises(TypeError, match="adaptive_throttling must be True or False"):
        FlowOptions(adaptive_throttling="yes")  # type: ignore[arg-type]


# ------------------------------------------------------------------ accept-ratio throttle


def test_throttle_lets_a_handful_of_failures_through_then_holds_back_most_when_all_fail():
    clock = FakeClock(0.0)
    throttle = AcceptRatioThrottle(clock=clock)
    for _ in range(DEFAULT_MIN_REQUESTS - 1):
        assert not throttle.throttles()  # a few failing requests are no storm
        throttle.overloaded()
    decisions = []
    for _ in range(200):  # none accepted in the window
        decisions.append(throttle.throttles())
        throttle.overloaded()
    assert sum(decisions) > 150


def test_throttle_counts_requests_while_calm_so_a_later_overload_sees_them():
    clock = FakeClock(0.0)
    throttle = AcceptRatioThrottle(clock=clock)
    for _ in range(100):  # calm: counted, not computed
        assert not throttle.throttles()
    throttle.overloaded()
    # 101 requests, none accepted yet (all still out, say): p = 101 / 102.
    assert sum(throttle.throttles() for _ in range(100)) > 80


def test_throttle_lets_everything_through_while_the_server_accepts():
    clock = FakeClock(0.0)
    throttle = AcceptRatioThrottle(clock=clock)
    decisions = []
    for _ in range(500):
        decisions.append(throttle.throttles())
        throttle.accepted()
        clock.now += 0.01
    assert not any(decisions)


def test_throttle_forgets_an_overload_after_its_window():
    clock = FakeClock(0.0)
    throttle = AcceptRatioThrottle(window=10.0, clock=clock)
    for _ in range(100):
        throttle.throttles()
        throttle.overloaded()
    assert throttle.throttles_again() or throttle.throttles_again()
    clock.now += 11.0
    assert not throttle.throttles()


# ------------------------------------------------------------------ adaptive concurrency limit


def _settle(limit: ConcurrencyLimit, clock: FakeClock, latency_of, rounds: int) -> None:
    """Runs ``rounds`` of: fill the limit, every attempt succeeding with ``latency_of(in_flight)``."""
    for _ in range(rounds):
        started = clock.now
        slots = 0
        while limit.try_acquire():
            slots += 1
        latency = latency_of(slots)
        clock.now += latency
        for _ in range(slots):
            limit.release(started, latency, overload=False)


def test_limit_grows_on_a_healthy_server_up_to_max_in_flight():
    clock = FakeClock(0.0)
    limit = ConcurrencyLimit(64, clock=clock)
    assert limit.limit == DEFAULT_INITIAL_LIMIT  # starts low: no opening burst
    _settle(limit, clock, lambda in_flight: 0.01, rounds=30)  # latency does not grow with load
    assert limit.limit == 64


def test_limit_settles_where_the_server_queues_little_when_latency_grows_with_load():
    """Raccoon's blocking buffer: each request in flight adds its service time."""
    clock = FakeClock(0.0)
    limit = ConcurrencyLimit(64, clock=clock)
    _settle(limit, clock, lambda in_flight: 0.005 + 0.05 * in_flight, rounds=200)
    assert 2 <= limit.limit <= 12, limit.limit


def test_default_max_in_flight_is_never_lowered_by_latency_alone():
    clock = FakeClock(0.0)
    limit = ConcurrencyLimit(4, clock=clock)
    _settle(limit, clock, lambda in_flight: 0.001 * random.choice([1, 5, 50]), rounds=300)
    assert limit.limit == 4


def test_overload_halves_the_limit_once_per_round_trip():
    clock = FakeClock(0.0)
    limit = ConcurrencyLimit(64, initial=32, clock=clock)
    for _ in range(32):
        assert limit.try_acquire()
    clock.now = 1.0
    for _ in range(32):  # a whole window of timeouts, all started at 0
        limit.release(0.0, None, overload=True)
    assert limit.limit == 16  # once, not 32 times
    assert limit.try_acquire()
    clock.now = 2.0
    limit.release(1.5, None, overload=True)  # started after the decrease: new news
    assert limit.limit == 8


def test_waiters_get_slots_first_come_first_served_and_cancelled_ones_pass_theirs_on():
    async def scenario():
        limit = ConcurrencyLimit(1, initial=1)
        assert limit.try_acquire()
        order = []

        async def waiter(name):
            await limit.acquire()
            order.append(name)

        first = asyncio.ensure_future(waiter("first"))
        cancelled = asyncio.ensure_future(waiter("cancelled"))
        last = asyncio.ensure_future(waiter("last"))
        await asyncio.sleep(0)
        cancelled.cancel()
        limit.release(0.0, 0.01, overload=False)
        await asyncio.sleep(0)
        limit.release(0.0, 0.01, overload=False)
        await asyncio.wait_for(asyncio.gather(first, last), 5)
        assert order == ["first", "last"] and limit.in_flight == 1

    asyncio.run(scenario())


# ------------------------------------------------------------------ outage gate


class VirtualTime:
    """A clock and a sleep that advances it to the wait's end (waits pass without waiting).

    Waiters side by side waiting for the same moment move the clock once.
    """

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> Awaitable[None]:
        target = self.now + seconds  # when called, not when first run

        async def wait() -> None:
            self.now = max(self.now, target)
            await asyncio.sleep(0)

        return wait()


def _gate(policy: RetryPolicy, time: VirtualTime) -> OutageGate:
    return OutageGate(policy, "grpc://h:1", clock=time, sleep=time.sleep, rng=random.Random(7))


def test_one_refused_connection_makes_an_outage_other_failures_need_a_run():
    time = VirtualTime()
    gate = _gate(RetryPolicy(), time)
    gate.observe(TIMEOUT, probe=False)
    assert not gate.down
    gate.observe(None, probe=False)  # a success ends the run
    for _ in range(DEFAULT_FAILURES_FOR_OUTAGE - 1):
        gate.observe(TIMEOUT, probe=False)
    gate.observe(BAD, probe=False)  # an answer, even a refusal, proves the server is there
    assert not gate.down
    gate.observe(REFUSED, probe=False)
    assert gate.down


def test_during_an_outage_one_request_probes_at_a_time_and_all_give_up_together():
    """Many requests, one schedule: the policy's attempts are spent once, not once per request."""
    time = VirtualTime()
    policy = RetryPolicy(max_attempts=5, initial_backoff=1.0, max_backoff=8.0, deadline=1000.0)

    async def scenario():
        gate = _gate(policy, time)
        gate.observe(REFUSED, probe=False)
        probes = 0
        results = []

        async def request():
            while True:
                probe, failure = await gate.admit()
                if failure is not None:
                    results.append(failure)
                    return
                nonlocal probes
                probes += probe
                await asyncio.sleep(0)
                gate.observe(REFUSED, probe)

        await asyncio.wait_for(asyncio.gather(*(request() for _ in range(50))), 10)
        return gate, probes, results

    gate, probes, results = asyncio.run(scenario())
    assert probes == policy.max_attempts - 1  # the first failure was the first attempt
    assert len(results) == 50 and all(f.kind is FailureKind.UNREACHABLE for f in results)
    assert all("not sent" in f.message and "connection refused" in f.message for f in results)
    assert time.now <= 1 + 2 + 4 + 8  # the backoff bounds, once


def test_the_deadline_ends_the_outage_for_everyone():
    time = VirtualTime()
    policy = RetryPolicy(max_attempts=None, initial_backoff=10.0, max_backoff=10.0, deadline=25.0)

    async def scenario():
        gate = _gate(policy, time)
        gate.observe(REFUSED, probe=False)
        while True:
            probe, failure = await gate.admit()
            if failure is not None:
                return failure
            gate.observe(REFUSED, probe)

    failure = asyncio.run(scenario())
    assert "not sent" in failure.message and 25.0 <= time.now <= 35.0


def test_a_given_up_outage_keeps_probing_and_ends_when_the_endpoint_answers():
    time = VirtualTime()
    policy = RetryPolicy(max_attempts=2, initial_backoff=1.0, max_backoff=5.0)

    async def scenario():
        gate = _gate(policy, time)
        gate.observe(REFUSED, probe=False)
        probe, failure = await gate.admit()
        gate.observe(REFUSED, probe)  # the last attempt: given up
        _, refused = await gate.admit()  # what comes now is refused at once
        time.now += policy.max_backoff
        probe, failure = await gate.admit()  # one probe per max_backoff watches
        assert probe and failure is None
        gate.observe(None, probe)
        return refused, await gate.admit()

    refused, after = asyncio.run(scenario())
    assert refused is not None and after == (False, None)


def test_a_policy_that_never_gives_up_keeps_waiting_and_says_why(caplog):
    time = VirtualTime()

    async def scenario():
        gate = _gate(RetryPolicy.forever(initial_backoff=1.0, max_backoff=30.0), time)
        gate.observe(REFUSED, probe=False)
        attempts = 0
        while time.now < 3600:
            probe, failure = await gate.admit()
            assert failure is None
            attempts += probe
            gate.observe(REFUSED, probe)
        return attempts

    with caplog.at_level(logging.WARNING, logger="raccoon_beam"):
        attempts = asyncio.run(scenario())
    assert attempts >= 3600 / 30  # probing all along, at most max_backoff apart
    held = [r.getMessage() for r in caplog.records if "held while the endpoint is down" in r.getMessage()]
    assert held and "connection refused" in held[0] and "next attempt in" in held[0]


def test_a_policy_of_one_attempt_gives_up_with_the_outage_at_once():
    time = VirtualTime()

    async def scenario():
        gate = _gate(RetryPolicy.no_retry(), time)
        gate.observe(REFUSED, probe=False)
        return await gate.admit()

    probe, failure = asyncio.run(scenario())
    assert not probe and failure is not None and failure.message.startswith("not sent: ")


def test_a_cancelled_probe_lets_another_request_probe():
    time = VirtualTime()

    async def scenario():
        gate = _gate(RetryPolicy(), time)
        gate.observe(REFUSED, probe=False)
        time.now += 100
        probe, _ = await gate.admit()
        assert probe
        gate.abandon_probe()
        return await gate.admit()

    assert asyncio.run(scenario()) == (True, None)


# ------------------------------------------------------------------ flow control


def test_a_healthy_attempt_is_never_held():
    async def scenario():
        flow = FlowControl(FlowOptions(), RetryPolicy(), 4, "grpc://h:1")
        for _ in range(100):
            ticket = await flow.admit(500)
            assert isinstance(ticket, Ticket) and not ticket.held
            flow.finish(ticket, None, 0.001)
        return flow

    flow = asyncio.run(scenario())
    assert flow.attempts_held == 0 and flow.held.seconds == 0.0


@pytest.mark.parametrize("retry_after, held", [(3600, False), (0.3, True)])
def test_a_retry_after_past_the_deadline_fails_other_requests_at_once_instead_of_holding_them(retry_after, held):
    """Retry-After: 3600 from one request: another one with a 20 s deadline is not held for an hour
    (it fails at once, not sent); a Retry-After that ends before its deadline holds it as usual."""

    async def scenario():
        flow = FlowControl(FlowOptions(adaptive_throttling=False), RetryPolicy(), 4, "http://h:1")
        ticket = await flow.admit(500)
        assert isinstance(ticket, Ticket)
        flow.finish(ticket, Failure(FailureKind.REFUSED, "busy", http_status=429, retry_after=retry_after), 0.001)
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(flow.admit(500, deadline=loop.time() + 20), timeout=10)

    admitted = asyncio.run(scenario())
    if held:
        assert isinstance(admitted, Ticket) and admitted.held
    else:
        assert isinstance(admitted, Failure) and admitted.http_status == 429, admitted
        assert "not sent" in admitted.message and "Retry-After" in admitted.message and "busy" in admitted.message


def test_a_retry_after_holds_every_attempt_of_the_sender_not_only_its_own():
    async def scenario():
        flow = FlowControl(FlowOptions(adaptive_throttling=False), RetryPolicy(), 4, "http://h:1")
        ticket = await flow.admit(500)
        assert isinstance(ticket, Ticket)
        flow.finish(ticket, Failure(FailureKind.REFUSED, "busy", http_status=429, retry_after=0.3), 0.001)
        loop = asyncio.get_running_loop()
        started = loop.time()
        other = await flow.admit(500)  # another request, which got no Retry-After itself
        return loop.time() - started, other, flow

    waited, other, flow = asyncio.run(scenario())
    assert isinstance(other, Ticket) and other.held and 0.25 <= waited
    assert flow.attempts_held == 1 and flow.held.seconds >= 0.25


def test_a_probe_refused_for_a_retry_after_past_its_deadline_lets_the_next_request_probe():
    """The outage's probe must be given back however its admission ends: one kept by a request that
    was not sent (a Retry-After past its deadline) held every other request of the sender for ever."""

    async def scenario():
        policy = RetryPolicy(initial_backoff=0.001, max_backoff=0.001)
        flow = FlowControl(FlowOptions(adaptive_throttling=False), policy, 4, "http://h:1")
        flow.finish(Ticket(), REFUSED, 0.001)  # down: a probe is due within a millisecond
        flow.finish(Ticket(), Failure(FailureKind.REFUSED, "busy", http_status=429, retry_after=3600), 0.001)
        assert flow.gate.down
        await asyncio.sleep(0.01)
        loop = asyncio.get_running_loop()
        first = await asyncio.wait_for(flow.admit(500, deadline=loop.time() + 20), 5)
        second = await asyncio.wait_for(flow.admit(500, deadline=loop.time() + 20), 5)
        return first, second

    first, second = asyncio.run(scenario())
    for admitted in (first, second):
        assert isinstance(admitted, Failure) and "Retry-After" in admitted.message, admitted


# ------------------------------------------------------------------ admitted off the loop


def test_admit_now_admits_a_healthy_attempt_and_counts_it_like_admit():
    flow = FlowControl(FlowOptions(), RetryPolicy(), 4, "grpc://h:1")
    tickets = [flow.admit_now(500) for _ in range(4)]
    assert all(isinstance(ticket, Ticket) and ticket.limited and not ticket.held for ticket in tickets)
    assert flow.limit is not None and flow.limit.in_flight == 4
    assert flow.admit_now(500) is None  # the limit is full: the loop waits for a slot, not this thread
    for ticket in tickets:
        assert flow.finish_success(ticket, 0.001)
    assert flow.limit.in_flight == 0 and flow.attempts_held == 0


@pytest.mark.parametrize("setup", ["rate limit", "outage", "retry-after", "overload in the window"])
def test_admit_now_leaves_to_the_loop_whatever_may_hold_an_attempt_and_takes_nothing(setup):
    options = FlowOptions(max_events_per_second=1000.0) if setup == "rate limit" else FlowOptions()
    flow = FlowControl(options, RetryPolicy(), 4, "grpc://h:1")
    if setup == "outage":
        flow.finish(Ticket(), REFUSED, 0.001)
        assert flow.gate.down
    elif setup == "retry-after":
        flow.finish(Ticket(), Failure(FailureKind.REFUSED, "busy", http_status=429, retry_after=30), 0.001)
    elif setup == "overload in the window":
        flow.finish(Ticket(), TIMEOUT, 0.001)
    assert flow.admit_now(500) is None
    assert flow.limit is not None and flow.limit.in_flight == 0


def test_finish_success_leaves_a_down_endpoint_to_the_loop():
    flow = FlowControl(FlowOptions(), RetryPolicy(), 4, "grpc://h:1")
    ticket = flow.admit_now(500)
    assert isinstance(ticket, Ticket)
    flow.finish(Ticket(), REFUSED, 0.001)  # another attempt found the endpoint down meanwhile
    assert not flow.finish_success(ticket, 0.001)  # the gate's waiters are the loop's: finish() there
    assert flow.gate.down and flow.limit is not None and flow.limit.in_flight == 1
    flow.finish(ticket, None, 0.001)
    assert not flow.gate.down and flow.limit.in_flight == 0


async def _full_limit_with_a_waiter():
    """A limit of one slot, taken, and a task waiting on this loop for it."""
    limit = ConcurrencyLimit(1, initial=1)
    assert limit.try_acquire()
    waiter = asyncio.ensure_future(limit.acquire())
    await asyncio.sleep(0)
    return limit, waiter


def _release_on_another_thread(limit: ConcurrencyLimit) -> None:
    releaser = threading.Thread(target=limit.release, args=(0.0, 0.01, False))
    releaser.start()
    releaser.join()


def test_a_slot_given_back_on_another_thread_goes_to_the_waiter_on_the_loop():
    async def scenario():
        limit, waiter = await _full_limit_with_a_waiter()
        _release_on_another_thread(limit)
        await asyncio.wait_for(waiter, 5)
        return limit

    limit = asyncio.run(scenario())
    assert limit.in_flight == 1


def test_a_slot_granted_from_another_thread_to_a_cancelled_waiter_is_passed_on():
    async def scenario():
        limit, cancelled = await _full_limit_with_a_waiter()
        _release_on_another_thread(limit)  # the grant is on its way to the loop ...
        cancelled.cancel()  # ... and the waiter gives up before it lands
        await asyncio.gather(cancelled, return_exceptions=True)
        await asyncio.sleep(0.01)
        return limit

    limit = asyncio.run(scenario())
    assert limit.in_flight == 0 and limit.try_acquire()
