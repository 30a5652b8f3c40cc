"""Sender: the one bound, retries counted and logged, close() leaving no thread or socket."""

from __future__ import annotations

import asyncio
import threading

import pytest

from raccoon_beam._proto import raccoon_pb2
from raccoon_beam.batching import Batch
from raccoon_beam.errors import FailureKind, SendFailure
from raccoon_beam.delivery import Sender
from raccoon_beam.retry import RetryPolicy
from raccoon_beam.transports import Transport, TransportConfig, open_transport
from raccoon_beam.wire import Wire

from tests.transports.helpers import (
    TRANSPORT_WIRE_IDS,
    TRANSPORT_WIRES,
    RecordingSleep,
    client_sockets,
    live_threads,
    make_request,
)

pytestmark = pytest.mark.timeout(60)


class GatedTransport(Transport):
    """Answers success once the test releases a request."""

    def __init__(self, config):
        super().__init__(config)
        self.release = threading.Semaphore(0)
        self.started = threading.Semaphore(0)
        self.in_flight = 0
        self.max_seen = 0
        self.closed = False

    async def send(self, request):
        self.in_flight += 1
        self.max_seen = max(self.max_seen, self.in_flight)
        self.started.release()
        try:
            while not self.release.acquire(blocking=False):
                await asyncio.sleep(0.005)
        finally:
            self.in_flight -= 1
        return raccoon_pb2.SendEventResponse(status=1, code=1, data={"req_guid": request.req_guid})

    async def close(self):
        self.closed = True


def _gated_client(max_in_flight=2):
    config = TransportConfig("grpc://h:1", max_in_flight=max_in_flight)
    # Made here, handed out on the loop: the test thread may use it at once.
    holder = {"transport": GatedTransport(config), "opened": 0}

    def factory(config):
        holder["opened"] += 1
        return holder["transport"]

    client = Sender(config, RetryPolicy(), transport_factory=factory)
    return client, holder


def test_submit_blocks_while_max_in_flight_are_pending():
    client, holder = _gated_client(max_in_flight=2)
    try:
        first = [client.submit(make_request(Wire.PROTOBUF)) for _ in range(2)]
        third_future = []
        blocked = threading.Thread(
            target=lambda: third_future.append(client.submit(make_request(Wire.PROTOBUF)))
        )
        blocked.start()
        blocked.join(0.3)
        assert blocked.is_alive() and not third_future  # back-pressure
        holder["transport"].release.release()
        blocked.join(30)
        assert not blocked.is_alive() and third_future
        holder["transport"].release.release()
        holder["transport"].release.release()
        assert all(f.result(30).ok for f in first + third_future)
        assert holder["transport"].max_seen == 2
    finally:
        client.close()
    assert holder["transport"].closed


def test_batches_and_requests_share_the_one_bound():
    client, holder = _gated_client(max_in_flight=3)
    batches = [Batch(["click"], [b"{}"], [index]) for index in range(5)]
    futures = []

    def fan_out():  # deliver() and submit() block the caller, as the sink's bundle thread
        for batch in batches:
            futures.append(client.deliver(batch))
        for _ in range(5):
            futures.append(client.submit(make_request(Wire.PROTOBUF)))

    thread = threading.Thread(target=fan_out)
    try:
        thread.start()
        transport = holder["transport"]
        for _ in range(3):
            assert transport.started.acquire(timeout=30)
        assert not transport.started.acquire(timeout=0.3)  # a fourth waits for a slot
        assert transport.in_flight == 3
        for _ in range(10):
            transport.release.release()
        thread.join(30)
        reports, outcomes = [f.result(30) for f in futures[:5]], [f.result(30) for f in futures[5:]]
        assert all(r.acknowledged == 1 and not r.failures for r in reports)
        assert all(o.ok for o in outcomes)
        assert holder["transport"].max_seen == 3
    finally:
        client.close()


def test_transport_opens_nothing_before_a_send_and_close_is_idempotent():
    client, holder = _gated_client()
    assert holder["opened"] == 1 and holder["transport"].max_seen == 0
    client.close()
    client.close()
    assert client.closed and holder["transport"].closed
    with pytest.raises(RuntimeError):
        client.submit(make_request(Wire.PROTOBUF))
    with pytest.raises(RuntimeError):
        client.deliver(Batch(["click"], [b"{}"], [0]))


def test_retries_are_counted_waited_and_logged(caplog):
    failures = [SendFailure(FailureKind.NETWORK, "down", grpc_status="UNAVAILABLE") for _ in range(2)]

    class Flaky(Transport):
        async def send(self, request):
            if failures:
                raise failures.pop(0)
            return raccoon_pb2.SendEventResponse(status=1, code=1)

        async def close(self):
            pass

    sleep = RecordingSleep()
    client = Sender(
        TransportConfig("grpc://h:1"),
        RetryPolicy(initial_backoff=1.0, max_backoff=1.0),
        sleep=sleep,
        transport_factory=Flaky,
    )
    with caplog.at_level("WARNING", logger="raccoon_beam"), client:
        outcome = client.submit(make_request(Wire.PROTOBUF)).result(30)
    assert outcome.ok and outcome.attempts == 3
    assert 0 <= outcome.waited <= 2.0 and outcome.waited == pytest.approx(sum(sleep.waits))
    # The first retry is logged at once; the second falls within the rate limit.
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "UNAVAILABLE" in warnings[0].getMessage()


@pytest.mark.parametrize("attribute, wire", TRANSPORT_WIRES, ids=TRANSPORT_WIRE_IDS)
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_close_leaves_no_thread_and_no_socket(attribute, wire, host, emulator):
    endpoint = getattr(emulator, attribute).replace("127.0.0.1", host)
    ports = [emulator.grpc_port, emulator.http_port]
    threads_before = live_threads()
    client = Sender(
        TransportConfig(endpoint, wire=wire, max_in_flight=4), RetryPolicy(), sleep=RecordingSleep()
    )
    futures = [client.submit(make_request(wire)) for _ in range(12)]
    assert all(f.result(30).ok for f in futures)
    assert client_sockets(ports)  # connections were open
    client.close()
    # Immediately: close() returns only once everything is released.
    assert client_sockets(ports) == []
    assert {t for t in live_threads() - threads_before if t.is_alive()} == set()


def test_transport_refuses_to_send_after_close(emulator):
    async def main():
        for attribute in ("grpc_endpoint", "rest_endpoint", "ws_endpoint"):
            transport = open_transport(TransportConfig(getattr(emulator, attribute)))
            assert (await transport.send(make_request(Wire.PROTOBUF))).status == raccoon_pb2.STATUS_SUCCESS
            await transport.close()
            with pytest.raises(SendFailure) as info:
                await transport.send(make_request(Wire.PROTOBUF))
            assert "closed" in str(info.value)

    asyncio.run(main())


def test_repr_never_shows_credentials():
    client = Sender(TransportConfig("https://user:hunter2@h", headers={"Authorization": "Bearer x"}))
    try:
        assert "hunter2" not in repr(client) and "hunter2" not in repr(client.config)
        assert "Bearer x" not in repr(client.config)
    finally:
        client.close()


class _ScriptedTransport(Transport):
    """Fails or answers each attempt as its script says (a fake: a bug cannot be provoked in a real server)."""

    def __init__(self, config, script):
        super().__init__(config)
        self.script = list(script)
        self.attempts = 0

    async def send(self, request):
        self.attempts += 1
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return raccoon_pb2.SendEventResponse(status=1, code=1, data={"req_guid": request.req_guid})

    async def close(self):
        pass


@pytest.mark.parametrize(
    "script, attempts, kind",
    [
        ([SendFailure(FailureKind.NETWORK, "reset"), "ack"], 2, None),
        ([SendFailure(FailureKind.NETWORK, "reset"), KeyError("bug in a library")], 2, FailureKind.UNEXPECTED),
        ([SendFailure(FailureKind.NETWORK, "reset")] * 2 + [SendFailure(FailureKind.REFUSED, "bad")], 3, FailureKind.REFUSED),
        ([SendFailure(FailureKind.NETWORK, "reset")] * 3, 3, FailureKind.NETWORK),
    ],
    ids=["retried-then-acked", "unexpected-on-a-retry", "permanent-on-a-retry", "attempts-run-out"],
)
def test_every_attempt_ends_as_an_outcome_never_an_exception(script, attempts, kind, caplog):
    config = TransportConfig("grpc://h:1")
    sender = Sender(
        config,
        RetryPolicy(max_attempts=3),
        sleep=RecordingSleep(),
        transport_factory=lambda cfg: _ScriptedTransport(cfg, script),
    )
    try:
        outcome = sender.submit(make_request(Wire.PROTOBUF)).result(10)
    finally:
        sender.close()
    assert outcome.attempts == attempts == sender.transport.attempts
    assert (None if outcome.failure is None else outcome.failure.kind) is kind
    if kind is FailureKind.UNEXPECTED:
        assert "KeyError" in outcome.failure.message and "bug in a library" in caplog.text
