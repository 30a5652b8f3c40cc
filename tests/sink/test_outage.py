"""One outage, one schedule: a closed port, and a policy that waits for the endpoint to come up."""

from __future__ import annotations

import logging
import threading
import time

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from raccoon_beam import RetryPolicy, WriteToRaccoon
from raccoon_beam.emulator import RaccoonEmulator

from tests.sink.test_write_pipeline import make_events
from tests.ports import HeldPort, closed_port

pytestmark = pytest.mark.timeout(120)

ENDPOINTS = {
    "grpc": ("grpc://127.0.0.1:{port}", "grpc_port"),
    "rest": ("http://127.0.0.1:{port}", "http_port"),
    "websocket": ("ws://127.0.0.1:{port}", "http_port"),
}


@pytest.mark.slow
def test_a_closed_port_dead_letters_everything_on_one_schedule():
    """20,000 events, 40 batches: the policy runs once for the endpoint, not once per batch.

    Each batch running the policy on its own would take 40 / 4 x the
    policy's length; one schedule takes it once.
    """
    policy = RetryPolicy(max_attempts=5, initial_backoff=0.2, max_backoff=0.4, deadline=60.0)
    longest = sum(policy.backoff_bound(n) for n in range(1, policy.max_attempts))
    events = make_events(20_000)

    def check(letters):
        assert len(letters) == 20_000 and {letter.element["id"] for letter in letters} == set(range(20_000))
        assert all(letter.delivered is False for letter in letters)  # refused: certainly not delivered
        # Held behind the outage, then dead-lettered at once, unsent: and said so.
        unsent = [letter for letter in letters if letter.attempts == 0]
        assert len(unsent) > 10_000 and all(letter.error.startswith("not sent: ") for letter in unsent)

    started = time.monotonic()
    with beam.Pipeline() as pipeline:
        result = pipeline | beam.Create(events, reshuffle=False) | WriteToRaccoon(
            f"grpc://127.0.0.1:{closed_port()}", event_type=lambda e: e["event_name"], retry=policy
        )
        assert_that(result.failed, check)
    elapsed = time.monotonic() - started
    # Once the policy's length (plus the pipeline's own time), far from 10 x it.
    assert elapsed < 10 * longest, elapsed


@pytest.mark.parametrize("transport", sorted(ENDPOINTS))
def test_a_policy_that_never_gives_up_waits_and_delivers_once_the_server_comes_up(transport, caplog):
    template, setting = ENDPOINTS[transport]
    reserved = HeldPort()
    port = reserved.port
    events = make_events(2_000)
    policy = RetryPolicy.forever(initial_backoff=0.05, max_backoff=0.3)
    errors = []

    def run():
        try:
            with beam.Pipeline() as pipeline:
                result = pipeline | beam.Create(events, reshuffle=False) | WriteToRaccoon(
                    template.format(port=port), event_type=lambda e: e["event_name"], retry=policy
                )
                assert_that(result.failed, equal_to([]))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    with caplog.at_level(logging.WARNING, logger="raccoon_beam"):
        writer = threading.Thread(target=run, name="pipeline")
        writer.start()
        time.sleep(2.0)  # the server is down for a while: well past a default policy's first retries
        assert writer.is_alive()
        reserved.release()
        with RaccoonEmulator(**{setting: port}) as emulator:
            writer.join(90)
            assert not writer.is_alive() and not errors, errors
            captured = sorted(int(e.event_bytes.split(b'"id":')[1].split(b",")[0]) for e in emulator.events())
    assert set(captured) == set(range(2_000))
    held = [r.getMessage() for r in caplog.records if "held while the endpoint is down" in r.getMessage()]
    assert held and "next attempt in" in held[0], [r.getMessage() for r in caplog.records]
