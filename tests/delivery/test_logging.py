"""What the sender logs: one line per connection, retries and dead letters rate-limited, never a secret."""

from __future__ import annotations

import asyncio
import logging
import time

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that

from raccoon_beam import RetryPolicy, WriteToRaccoon
from raccoon_beam.batching import Batch
from raccoon_beam.delivery import Sender
from raccoon_beam.transports import TransportConfig

from tests.transports.helpers import FakeClock
from tests.ports import closed_port

pytestmark = pytest.mark.timeout(120)

LOGGER = "raccoon_beam"


def _virtual_time_sender(endpoint: str, clock: FakeClock, **config) -> Sender:
    async def virtual_sleep(seconds: float) -> None:  # waits pass on the fake clock, not for real
        clock.now += seconds
        await asyncio.sleep(0)

    return Sender(TransportConfig(endpoint, **config), RetryPolicy(), sleep=virtual_sleep, clock=clock)


def _lines(caplog, level: str):
    return [record for record in caplog.records if record.levelname == level and record.name.startswith(LOGGER)]


@pytest.mark.parametrize("scheme", ["grpc", "http", "ws"])
def test_closed_port_warns_at_once_then_every_10_s_then_logs_the_dead_letters(scheme, caplog):
    """The default policy against a closed port: ~2 minutes of retries, told as they happen."""
    clock = FakeClock(0.0)
    started = time.time()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        sender = _virtual_time_sender(f"{scheme}://user:hunter2@127.0.0.1:{closed_port()}", clock)
        try:
            report = sender.deliver(Batch(["click"], [b"{}"], ["source"])).result(60)
        finally:
            sender.close()
    (failed,) = report.failures
    assert failed.attempts == RetryPolicy().max_attempts
    (connection,) = _lines(caplog, "INFO")
    assert f"over {TransportConfig(f'{scheme}://h').kind} as connection id raccoon-beam-" in connection.getMessage()
    warnings = _lines(caplog, "WARNING")
    assert warnings and warnings[0].created - started < 2.0  # the first failure is told at once
    retries = [w for w in warnings if w.name == "raccoon_beam.delivery.sender"]
    # Then at most one line per 10 s of (virtual) time, each with the count since the last.
    assert len(retries) <= 1 + clock.now / 10
    assert sum(int(w.getMessage().split()[0]) for w in retries) <= failed.attempts - 1
    # The outage is told as one: down, held, given up.
    outage = [w.getMessage() for w in warnings if w.name == "raccoon_beam.delivery.outage"]
    assert "looks down" in outage[0] and "dead-lettering what waits" in outage[-1], outage
    (error,) = _lines(caplog, "ERROR")
    message = error.getMessage()
    assert message.startswith("1 event(s) dead-lettered at stage 'send'; latest: gave up after 10 attempt(s)")
    assert "(code " not in message and "None" not in message  # no status: no empty suffix
    assert all("hunter2" not in record.getMessage() for record in caplog.records)


def test_unknown_host_is_retried_and_told_at_once(caplog):
    clock = FakeClock(0.0)
    started = time.time()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        sender = _virtual_time_sender("http://no-such-host.invalid:8080", clock)
        try:
            report = sender.deliver(Batch(["click"], [b"{}"], ["source"])).result(60)
        finally:
            sender.close()
    assert report.failures[0].attempts > 1  # may be a service name not published yet
    warnings = _lines(caplog, "WARNING")
    assert warnings and warnings[0].created - started < 2.0 and "no-such-host.invalid" in warnings[0].getMessage()


@pytest.mark.parametrize(
    "endpoint, reason",
    [
        ("https://127.0.0.1:{http_port}", "TLS handshake"),  # TLS against a plain-text port
        ("grpcs://127.0.0.1:{grpc_port}", "UNAVAILABLE"),
        ("http://127.0.0.1:{http_port}/no/such/path", "HTTP 404"),
    ],
)
def test_what_retrying_cannot_fix_is_dead_lettered_after_one_attempt_and_logged(endpoint, reason, emulator, caplog):
    url = endpoint.format(http_port=emulator.http_port, grpc_port=emulator.grpc_port)

    def check(letters):
        assert len(letters) == 2 and all(letter.attempts == 1 for letter in letters), letters
        assert all(letter.error.startswith("not retryable: ") and reason in letter.error for letter in letters)

    with caplog.at_level(logging.ERROR, logger=LOGGER):
        with beam.Pipeline() as pipeline:
            result = pipeline | beam.Create([{"n": 1}, {"n": 2}]) | WriteToRaccoon(
                url, event_type="click", retry=RetryPolicy(max_attempts=5, initial_backoff=5.0, max_backoff=5.0)
            )
            assert_that(result.failed, check)
    errors = [r.getMessage() for r in _lines(caplog, "ERROR")]
    assert any("dead-lettered at stage 'send'" in line and reason in line for line in errors), errors
