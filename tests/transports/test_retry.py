"""classify (every row of the protocol's failure table) and send_with_retry."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raccoon_beam._proto import raccoon_pb2
from raccoon_beam.emulator import RaccoonEmulator
from raccoon_beam.errors import Failure, FailureKind, SendFailure
from raccoon_beam.delivery import SendOutcome, send_with_retry
from raccoon_beam.retry import RetryPolicy, Verdict, classify, rejects_whole_request, signals_overload
from raccoon_beam.transports import Transport, TransportConfig
from raccoon_beam.wire import Wire, encode_request

from tests.transports.helpers import FakeClock, RecordingSleep

R, S, P = Verdict.RETRY, Verdict.SPLIT, Verdict.PERMANENT

CLASSIFY_TABLE = [
    # Raccoon codes (any transport)
    ("CODE_BAD_REQUEST", FailureKind.REFUSED, dict(raccoon_code=raccoon_pb2.CODE_BAD_REQUEST), S),
    ("CODE_BAD_REQUEST over REST 400", FailureKind.REFUSED, dict(raccoon_code=2, http_status=400), S),
    ("CODE_INTERNAL_ERROR", FailureKind.REFUSED, dict(raccoon_code=raccoon_pb2.CODE_INTERNAL_ERROR), R),
    ("CODE_INTERNAL_ERROR over REST 500", FailureKind.REFUSED, dict(raccoon_code=3, http_status=500), R),
    ("WS code 4 server full", FailureKind.NETWORK, dict(raccoon_code=4), R),
    ("WS code 5 duplicate id", FailureKind.NETWORK, dict(raccoon_code=5), R),
    ("WS close 1008 without response", FailureKind.NETWORK, dict(), R),
    # HTTP statuses
    # A proxy's 400 says nothing about the events: no bisection storm.
    ("HTTP 400 not Raccoon's body", FailureKind.MALFORMED, dict(http_status=400), P),
    ("HTTP 400 without a Raccoon code", FailureKind.REFUSED, dict(http_status=400), P),
    (
        "CODE_BAD_REQUEST invalid content type (a proxy rewrote it)", FailureKind.REFUSED, dict(raccoon_code=2, http_status=400, reason="invalid content type"), P),
    (
        "CODE_BAD_REQUEST deserialization failure", FailureKind.REFUSED, dict(raccoon_code=2, http_status=400, reason="deserialization failure"), S),
    ("WS close 1009 message too big", FailureKind.TOO_LARGE, dict(), S),
    ("unexpected client error", FailureKind.UNEXPECTED, dict(), P),
    ("HTTP 413", FailureKind.MALFORMED, dict(http_status=413), S),
    ("HTTP 500", FailureKind.MALFORMED, dict(http_status=500), R),
    ("HTTP 429", FailureKind.MALFORMED, dict(http_status=429, retry_after=3.0), R),
    ("HTTP 502 proxy page", FailureKind.MALFORMED, dict(http_status=502), R),
    ("HTTP 503", FailureKind.REFUSED, dict(http_status=503), R),
    ("HTTP 504", FailureKind.REFUSED, dict(http_status=504), R),
    ("HTTP 408", FailureKind.REFUSED, dict(http_status=408), R),
    ("HTTP 401", FailureKind.REFUSED, dict(http_status=401), P),
    ("HTTP 403", FailureKind.REFUSED, dict(http_status=403), P),
    ("HTTP 404", FailureKind.REFUSED, dict(http_status=404), P),
    ("HTTP 405", FailureKind.REFUSED, dict(http_status=405), P),
    ("HTTP 200 garbage body", FailureKind.MALFORMED, dict(http_status=200), R),
    ("HTTP 200 truncated", FailureKind.MALFORMED, dict(http_status=200), R),
    # gRPC statuses
    ("UNAVAILABLE", FailureKind.NETWORK, dict(grpc_status="UNAVAILABLE"), R),
    ("DEADLINE_EXCEEDED", FailureKind.TIMEOUT, dict(grpc_status="DEADLINE_EXCEEDED"), R),
    ("INTERNAL", FailureKind.REFUSED, dict(grpc_status="INTERNAL"), R),
    ("CANCELLED", FailureKind.REFUSED, dict(grpc_status="CANCELLED"), R),
    ("ABORTED", FailureKind.REFUSED, dict(grpc_status="ABORTED"), R),
    (
        "RESOURCE_EXHAUSTED too large", FailureKind.REFUSED, dict(grpc_status="RESOURCE_EXHAUSTED", message="grpc: received message larger than max (5000000 vs. 4194304)"), S),
    ("RESOURCE_EXHAUSTED quota", FailureKind.REFUSED, dict(grpc_status="RESOURCE_EXHAUSTED", message="quota"), R),
    (
        "UNKNOWN connection id header missing", FailureKind.REFUSED, dict(grpc_status="UNKNOWN", message="connection id header missing"), P),
    ("UNKNOWN other", FailureKind.REFUSED, dict(grpc_status="UNKNOWN", message="panic"), R),
    ("UNAUTHENTICATED", FailureKind.REFUSED, dict(grpc_status="UNAUTHENTICATED"), P),
    ("PERMISSION_DENIED", FailureKind.REFUSED, dict(grpc_status="PERMISSION_DENIED"), P),
    ("UNIMPLEMENTED", FailureKind.REFUSED, dict(grpc_status="UNIMPLEMENTED"), P),
    ("NOT_FOUND", FailureKind.REFUSED, dict(grpc_status="NOT_FOUND"), P),
    ("INVALID_ARGUMENT", FailureKind.REFUSED, dict(grpc_status="INVALID_ARGUMENT"), S),
    # connection-level facts
    ("connection reset", FailureKind.NETWORK, dict(), R),
    ("connection refused, no such host", FailureKind.UNREACHABLE, dict(), R),
    ("gRPC failed to connect", FailureKind.UNREACHABLE, dict(grpc_status="UNAVAILABLE"), R),
    ("timeout", FailureKind.TIMEOUT, dict(), R),
    ("malformed answer", FailureKind.MALFORMED, dict(), R),
    ("TLS certificate not trusted", FailureKind.TLS, dict(), P),
    ("TLS failure wins over gRPC UNAVAILABLE", FailureKind.TLS, dict(grpc_status="UNAVAILABLE"), P),
    ("a port speaking another protocol", FailureKind.PROTOCOL, dict(), P),
    ("no fact at all", FailureKind.REFUSED, dict(), R),
]


@pytest.mark.parametrize("name, kind, status, verdict", CLASSIFY_TABLE, ids=[row[0] for row in CLASSIFY_TABLE])
def test_classify(name, kind, status, verdict):
    status = dict(status)
    message = status.pop("message", name)
    assert classify(Failure(kind, message, **status)) is verdict


OVERLOAD_TABLE = [
    # (name, kind, status, overload?)
    ("timeout", FailureKind.TIMEOUT, dict(), True),
    ("gRPC DEADLINE_EXCEEDED", FailureKind.TIMEOUT, dict(grpc_status="DEADLINE_EXCEEDED"), True),
    ("HTTP 429", FailureKind.REFUSED, dict(http_status=429), True),
    ("HTTP 503", FailureKind.REFUSED, dict(http_status=503), True),
    ("gRPC UNAVAILABLE from a gateway", FailureKind.NETWORK, dict(grpc_status="UNAVAILABLE"), True),
    ("gRPC RESOURCE_EXHAUSTED quota", FailureKind.REFUSED, dict(grpc_status="RESOURCE_EXHAUSTED", message="quota"), True),
    ("publish failure under sync acks", FailureKind.REFUSED, dict(raccoon_code=3, http_status=500), True),
    (
        "gRPC RESOURCE_EXHAUSTED message too large", FailureKind.REFUSED,
        dict(grpc_status="RESOURCE_EXHAUSTED", message="grpc: received message larger than max (5 vs. 4)"), False),
    ("refused connection (an outage, not an overload)", FailureKind.UNREACHABLE, dict(grpc_status="UNAVAILABLE"), False),
    ("connection reset", FailureKind.NETWORK, dict(), False),
    ("HTTP 500 without a Raccoon code", FailureKind.MALFORMED, dict(http_status=500), False),
    ("CODE_BAD_REQUEST", FailureKind.REFUSED, dict(raccoon_code=2, http_status=400), False),
    ("HTTP 502", FailureKind.REFUSED, dict(http_status=502), False),
]


@pytest.mark.parametrize("name, kind, status, overload", OVERLOAD_TABLE, ids=[row[0] for row in OVERLOAD_TABLE])
def test_signals_overload(name, kind, status, overload):
    status = dict(status)
    message = status.pop("message", name)
    assert signals_overload(Failure(kind, message, **status)) is overload


@pytest.mark.parametrize(
    "status, whole",
    [
        (dict(raccoon_code=2, http_status=400, reason="deserialization failure"), True),
        (dict(raccoon_code=2, reason="cannot deserialize request: proto: cannot parse invalid wire-format data"), True),
        (dict(grpc_status="INVALID_ARGUMENT"), True),
        (dict(raccoon_code=2, http_status=400, reason="event type rejected: bad"), False),  # a gateway judging events
        (dict(raccoon_code=2), False),
        (dict(http_status=413), False),
    ],
)
def test_rejects_whole_request(status, whole):
    assert rejects_whole_request(Failure(FailureKind.REFUSED, "m", **status)) is whole


@pytest.mark.parametrize(
    "kind, unknown",
    [
        (FailureKind.TIMEOUT, True),
        (FailureKind.NETWORK, True),
        (FailureKind.UNREACHABLE, False),
        (FailureKind.REFUSED, False),
        (FailureKind.TOO_LARGE, False),
        (FailureKind.TLS, False),
        (FailureKind.PROTOCOL, False),
        (FailureKind.MALFORMED, False),
        (FailureKind.UNEXPECTED, False),
    ],
)
def test_outcome_unknown_after_a_timeout_or_a_lost_connection_only(kind, unknown):
    assert Failure(kind, "m").outcome_unknown is unknown


class ScriptedTransport(Transport):
    """Answers from a script of SendFailures (raised) and responses (returned)."""

    def __init__(self, script):
        super().__init__(TransportConfig("grpc://h"))
        self.script = list(script)
        self.sent = []

    async def send(self, request):
        self.sent.append(request)
        step = self.script.pop(0) if self.script else raccoon_pb2.SendEventResponse(status=1, code=1)
        if isinstance(step, BaseException):
            raise step
        return step

    async def close(self):
        pass


def _send(transport, policy, **kwargs) -> SendOutcome:
    request = encode_request([("t", b"x")], wire=Wire.PROTOBUF)
    return asyncio.run(send_with_retry(transport, request, policy, **kwargs)), request


def unavailable():
    return SendFailure(FailureKind.NETWORK, "down", grpc_status="UNAVAILABLE")


def test_success_first_time():
    outcome, _ = _send(ScriptedTransport([]), RetryPolicy(), sleep=RecordingSleep())
    assert outcome.ok and outcome.attempts == 1 and outcome.verdict is None and outcome.failure is None


def test_retries_then_succeeds_with_the_same_request():
    transport = ScriptedTransport([unavailable(), SendFailure(FailureKind.TIMEOUT, "t")])
    sleep = RecordingSleep()
    outcome, request = _send(transport, RetryPolicy(), sleep=sleep)
    assert outcome.ok and outcome.attempts == 3
    assert len(sleep.waits) == 2
    # The very same object: same body, hence same req_guid and sent_time.
    assert all(sent is request for sent in transport.sent)
    assert {sent.body for sent in transport.sent} == {request.body}


@pytest.mark.parametrize(
    "failure, verdict",
    [
        (SendFailure(FailureKind.REFUSED, "bad", raccoon_code=raccoon_pb2.CODE_BAD_REQUEST), Verdict.SPLIT),
        (SendFailure(FailureKind.REFUSED, "big", grpc_status="RESOURCE_EXHAUSTED"), Verdict.RETRY),
        (SendFailure(FailureKind.REFUSED, "id", grpc_status="UNKNOWN"), Verdict.RETRY),
        (SendFailure(FailureKind.REFUSED, "connection id header missing", grpc_status="UNKNOWN"), Verdict.PERMANENT),
        (SendFailure(FailureKind.REFUSED, "auth", http_status=401), Verdict.PERMANENT),
    ],
)
def test_only_retry_verdicts_are_retried(failure, verdict):
    transport = ScriptedTransport([failure] * 10)
    outcome, _ = _send(transport, RetryPolicy(max_attempts=3), sleep=RecordingSleep())
    assert outcome.failure is failure.failure and outcome.verdict is verdict
    assert outcome.attempts == (3 if verdict is Verdict.RETRY else 1)


def test_gives_up_after_max_attempts_and_never_raises():
    transport = ScriptedTransport([unavailable() for _ in range(10)])
    sleep = RecordingSleep()
    outcome, _ = _send(transport, RetryPolicy(max_attempts=5), sleep=sleep)
    assert not outcome.ok and outcome.verdict is Verdict.RETRY and outcome.attempts == 5
    assert outcome.failure.grpc_status == "UNAVAILABLE"
    assert len(sleep.waits) == 4


def test_no_retry_policy():
    outcome, _ = _send(ScriptedTransport([unavailable()]), RetryPolicy.no_retry(), sleep=RecordingSleep())
    assert outcome.attempts == 1 and outcome.verdict is Verdict.RETRY


@settings(max_examples=50, deadline=None)
@given(
    initial=st.floats(min_value=0.001, max_value=2.0),
    factor=st.floats(min_value=1.0, max_value=100.0),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_full_jitter_bounds(initial, factor, seed):
    random.seed(seed)
    policy = RetryPolicy(max_attempts=12, initial_backoff=initial, max_backoff=initial * factor, deadline=1e9)
    sleep = RecordingSleep()
    _send(ScriptedTransport([unavailable() for _ in range(11)]), policy, sleep=sleep)
    assert len(sleep.waits) == 11
    for n, wait in enumerate(sleep.waits, start=1):
        bound = min(policy.max_backoff, initial * 2 ** (n - 1))
        assert 0 <= wait <= bound * (1 + 1e-9), (n, wait, bound)
        assert policy.backoff_bound(n) == pytest.approx(bound)


def test_jitter_actually_varies():
    policy = RetryPolicy(max_attempts=30, initial_backoff=1.0, max_backoff=1.0, deadline=1e9)
    sleep = RecordingSleep()
    _send(ScriptedTransport([unavailable() for _ in range(29)]), policy, sleep=sleep)
    assert len(set(sleep.waits)) > 20


def test_retry_after_is_a_minimum_wait():
    failure = SendFailure(FailureKind.REFUSED, "slow down", http_status=429, retry_after=7.0)
    sleep = RecordingSleep()
    seen = []
    outcome, _ = _send(
        ScriptedTransport([failure, failure]),
        RetryPolicy(initial_backoff=0.1, max_backoff=1.0),
        sleep=sleep,
        on_retry=lambda f, wait: seen.append((f, wait)),
    )
    assert outcome.ok and outcome.attempts == 3
    assert sleep.waits == [7.0, 7.0]
    assert seen == [(failure.failure, 7.0), (failure.failure, 7.0)]


def test_retry_after_below_jitter_does_not_shorten_it():
    random.seed(1)
    failure = SendFailure(FailureKind.REFUSED, "slow down", http_status=503, retry_after=0.0)
    sleep = RecordingSleep()
    _send(ScriptedTransport([failure] * 3), RetryPolicy(initial_backoff=5.0, max_backoff=5.0), sleep=sleep)
    assert all(0 <= wait <= 5.0 for wait in sleep.waits) and any(wait > 0 for wait in sleep.waits)


def test_deadline_stops_with_the_injected_clock():
    clock = FakeClock()

    class Slow(ScriptedTransport):
        async def send(self, request):
            clock.now += 40.0  # each attempt takes 40 s of fake time
            return await super().send(request)

    transport = Slow([unavailable() for _ in range(10)])
    sleep = RecordingSleep()
    policy = RetryPolicy(max_attempts=10, initial_backoff=0.0, max_backoff=0.0, deadline=100.0)
    outcome, _ = _send(transport, policy, sleep=sleep, clock=clock)
    # attempts end at 40, 80, 120 s: the third is past the deadline, no fourth.
    assert outcome.attempts == 3 and outcome.verdict is Verdict.RETRY
    assert len(sleep.waits) == 2


def test_deadline_refuses_a_wait_that_would_end_past_it():
    clock = FakeClock()
    failure = SendFailure(FailureKind.REFUSED, "later", http_status=503, retry_after=500.0)
    outcome, _ = _send(
        ScriptedTransport([failure] * 3), RetryPolicy(deadline=300.0), sleep=RecordingSleep(), clock=clock
    )
    assert outcome.attempts == 1 and outcome.failure is failure.failure


def test_cancellation_propagates():
    async def main():
        class Hanging(ScriptedTransport):
            async def send(self, request):
                await asyncio.Event().wait()

        request = encode_request([("t", b"x")], wire=Wire.PROTOBUF)
        task = asyncio.ensure_future(send_with_retry(Hanging([]), request, RetryPolicy()))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(max_attempts=0),
        dict(initial_backoff=-1),
        dict(max_backoff=float("nan")),
        dict(deadline=-5),
        dict(initial_backoff=2.0, max_backoff=1.0),
    ],
)
def test_policy_validation(kwargs):
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


def test_policy_defaults_and_pickles():
    import pickle

    policy = RetryPolicy()
    assert (policy.max_attempts, policy.initial_backoff, policy.max_backoff, policy.deadline) == (
        10,
        0.5,
        30.0,
        300.0,
    )
    assert pickle.loads(pickle.dumps(policy)) == policy


# ------------------------------------------------------------------ over real sockets


def test_unexpected_transport_exception_is_a_permanent_failure_not_a_crash(emulator, caplog):
    """H5: an exception that is not a SendFailure used to escape and fail the bundle.

    The case met: grpc.aio raising its own ExecuteBatchError for a metadata
    value it refuses (TransportConfig now refuses such values, and grpcio's
    futures report them as INTERNAL). A library error is faked here, raised
    where grpcio would raise it: by the channel's callable.
    """
    import logging

    from raccoon_beam.delivery import Sender
    from raccoon_beam.transports.grpc import GrpcTransport

    class ExecuteBatchError(Exception):
        pass

    class RaisingCall:
        def future(self, body, timeout, metadata):
            raise ExecuteBatchError("Failed \"execute_batch\": (<grpc._cython.cygrpc.SendInitialMetadataOperation>,)")

    class LibraryErrorTransport(GrpcTransport):
        def _callable(self):
            return RaisingCall()

    config = TransportConfig(emulator.grpc_endpoint, headers={"X-Team": "plain"})
    object.__setattr__(config, "headers", {"X-Team": "caf\u00e9-team-value"})
    client = Sender(config, RetryPolicy(max_attempts=5), sleep=RecordingSleep(), transport_factory=LibraryErrorTransport)
    try:
        with caplog.at_level(logging.ERROR, logger="raccoon_beam.delivery"):
            outcome = client.submit(encode_request([("click", b"{}")], wire=Wire.PROTOBUF)).result(30)
    finally:
        client.close()
    failure = outcome.failure
    assert isinstance(failure, Failure) and (failure.kind is FailureKind.UNEXPECTED), failure
    assert outcome.verdict is Verdict.PERMANENT and outcome.attempts == 1
    assert "ExecuteBatchError" in failure.message
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "ExecuteBatchError" in logged and 'File "' in logged  # with its traceback
    assert "caf\u00e9-team-value" not in failure.message + logged
    assert emulator.events() == []


def test_default_policy_outlasts_a_raccoon_restart(make_client):
    """H6: the old defaults gave up after about 1.5 s of backoff and dead-lettered everything.

    The server is down for 5 s of virtual time (the waits are recorded and
    added to a fake clock, not slept), then comes back on the same port.
    """
    from raccoon_beam.delivery import Sender

    emulator = RaccoonEmulator().start()
    try:
        endpoint = emulator.rest_endpoint
        emulator.stop()
        clock = FakeClock()
        restarted = []

        async def virtual_sleep(seconds):
            clock.now += seconds
            if clock.now - 1000.0 >= 5.0 and not restarted:
                restarted.append(clock.now)
                await asyncio.get_running_loop().run_in_executor(None, emulator.start)
            await asyncio.sleep(0)

        client = Sender(TransportConfig(endpoint), RetryPolicy(), sleep=virtual_sleep, clock=clock)
        try:
            outcome = client.submit(encode_request([("click", b"{}")], wire=Wire.PROTOBUF)).result(60)
        finally:
            client.close()
        assert outcome.ok and outcome.attempts >= 2, outcome.failure
        assert restarted
        assert len(emulator.events()) == 1
    finally:
        emulator.stop()
