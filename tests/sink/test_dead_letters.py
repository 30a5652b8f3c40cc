"""The dead-letter record: one code format, and whether the event may have been published."""

from __future__ import annotations

import logging
from typing import List

import pytest

from raccoon_beam import RaccoonDeadLetter, RetryPolicy
from raccoon_beam import io as raccoon_io
from raccoon_beam.emulator import Outcome
from raccoon_beam.errors import Failure, FailureKind

from tests.sink.test_write_pipeline import make_events, run_write
from tests.ports import closed_port

ONE_ATTEMPT = RetryPolicy(max_attempts=1)


@pytest.mark.parametrize(
    "status, code",
    [
        (dict(raccoon_code=2, http_status=400), "raccoon:2"),
        (dict(http_status=503), "http:503"),
        (dict(grpc_status="UNAVAILABLE"), "grpc:UNAVAILABLE"),
        (dict(), None),
    ],
)
def test_code_has_one_format_whatever_the_transport(status, code):
    assert Failure(FailureKind.REFUSED, "x", **status).code == code


@pytest.mark.parametrize(
    "failure, unknown",
    [
        (Failure(FailureKind.TIMEOUT, "no answer"), True),
        (Failure(FailureKind.NETWORK, "reset mid-request"), True),
        (Failure(FailureKind.UNREACHABLE, "connection refused"), False),
        (Failure(FailureKind.NETWORK, "server full", raccoon_code=4), False),
        (Failure(FailureKind.REFUSED, "bad request", raccoon_code=2), False),
        (Failure(FailureKind.TLS, "untrusted"), False),
    ],
)
def test_outcome_is_unknown_only_when_the_request_may_have_been_published(failure, unknown):
    assert failure.outcome_unknown is unknown


def _letters_where(check):
    def matcher(letters: List[RaccoonDeadLetter]) -> None:
        assert letters, "no dead letters"
        for letter in letters:
            check(letter)

    return matcher


@pytest.mark.parametrize("scheme", ["grpc", "http", "ws"])
def test_closed_port_letters_were_certainly_not_delivered(scheme):
    def check(letter: RaccoonDeadLetter) -> None:
        assert letter.stage == "send" and letter.delivered is False, letter
        assert letter.code in (None, "grpc:UNAVAILABLE"), letter
        assert "None" not in letter.error, letter.error
        assert letter.payload is not None and letter.payload.startswith(b"{")

    run_write(
        make_events(3),
        endpoint=f"{scheme}://127.0.0.1:{closed_port()}",
        event_type="click",
        retry=ONE_ATTEMPT,
        collect_failed=_letters_where(check),
    )


def test_connection_dropped_after_capture_is_an_unknown_outcome(emulator):
    emulator.faults.drop_connection(100, after_capture=True, transport="rest")

    def check(letter: RaccoonDeadLetter) -> None:
        assert letter.delivered is None, letter  # the emulator did capture it: replaying duplicates
        assert letter.code is None

    run_write(
        make_events(5),
        endpoint=emulator.rest_endpoint,
        event_type="click",
        retry=ONE_ATTEMPT,
        collect_failed=_letters_where(check),
    )
    assert len(emulator.events()) == 5


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_an_earlier_attempt_with_an_unknown_outcome_makes_the_letter_unknown(emulator, transport):
    """Attempt 1 captured, then its connection dropped; attempt 2 refused with a 503. The events did
    arrive, so the letter must not say "certainly not published", whatever the last attempt met."""
    emulator.faults.drop_connection(1, after_capture=True, transport=transport)
    emulator.faults.fail_next(10, Outcome.http(503), transport=transport)

    def check(letter: RaccoonDeadLetter) -> None:
        assert letter.attempts == 2 and letter.code in ("http:503", "grpc:UNAVAILABLE"), letter
        assert letter.delivered is None, letter

    run_write(
        make_events(5),
        endpoint=emulator.rest_endpoint if transport == "rest" else emulator.grpc_endpoint,
        event_type="click",
        retry=RetryPolicy(max_attempts=2, initial_backoff=0.001, max_backoff=0.01),
        collect_failed=_letters_where(check),
    )
    assert len(emulator.events()) == 5


def test_validate_stage_letter_carries_the_payload():
    def check(letter: RaccoonDeadLetter) -> None:
        assert letter.stage == "validate" and letter.payload is not None and len(letter.payload) > 10

    run_write(
        make_events(2),
        endpoint=f"grpc://127.0.0.1:{closed_port()}",
        event_type="click",
        max_event_bytes=10,
        collect_failed=_letters_where(check),
    )


def test_serialize_and_validate_dead_letters_are_logged_with_a_summary_per_stage(caplog, monkeypatch):
    # The logs are per process: fresh ones, so that earlier tests' lines do not rate-limit these.
    monkeypatch.setattr(raccoon_io, "_STAGE_LOGS", {})
    elements = make_events(40) + [{"id": 40, "event_name": "x" * 50}]
    with caplog.at_level(logging.WARNING, logger="raccoon_beam"):
        run_write(
            elements,
            endpoint=f"grpc://127.0.0.1:{closed_port()}",
            event_type="click",
            serializer="protobuf",  # dicts without message_type: every element fails to serialize
            collect_failed=_letters_where(lambda letter: None),
        )
    errors = [
        r.getMessage() for r in caplog.records if r.levelno == logging.ERROR and "stage 'serialize'" in r.getMessage()
    ]
    # Rate-limited: the first occurrence at once, then at most a line per interval, with the count.
    assert errors and len(errors) <= 2, errors
    assert errors[0].split()[0].isdigit() and "pass message_type=" in errors[0]
    summaries = [r.getMessage() for r in caplog.records if r.getMessage().startswith("bundle finished with")]
    assert summaries, "no summary line at the end of the bundle"
    assert sum(int(line.split()[3]) for line in summaries if "stage 'serialize'" in line) == 41
    assert all("fail_on_error=True" in line for line in summaries)

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="raccoon_beam"):
        run_write(
            make_events(3),
            endpoint=f"grpc://127.0.0.1:{closed_port()}",
            event_type="click",
            max_event_bytes=10,
            collect_failed=_letters_where(lambda letter: None),
        )
    messages = [r.getMessage() for r in caplog.records]
    assert any("dead-lettered at stage 'validate'; latest: event of" in m for m in messages), messages
    assert any(m.startswith("bundle finished with") and "stage 'validate'" in m for m in messages), messages


def test_a_report_without_payloads_still_gives_every_letter():
    from apache_beam.transforms.window import GlobalWindow
    from apache_beam.utils.windowed_value import WindowedValue

    from raccoon_beam import WriteToRaccoon
    from raccoon_beam.delivery.report import DeliveryReport, FailedEvents
    from raccoon_beam.io import _WriteEventsFn
    from raccoon_beam.retry import Verdict

    fn = _WriteEventsFn(WriteToRaccoon(f"grpc://127.0.0.1:{closed_port()}", event_type="t").options)
    fn.setup()
    try:
        fn._windowing = WindowedValue(None, 0, [GlobalWindow()])
        failed = FailedEvents(["a", "b"], ["t", "t"], Failure(FailureKind.TIMEOUT, "late"), Verdict.RETRY, 3, "g")
        fn._record([DeliveryReport(events=2, failures=[failed])])
        letters = [windowed.value for windowed in fn._dead_letters]
        assert [(letter.element, letter.payload, letter.delivered) for letter in letters] == [
            ("a", None, None),
            ("b", None, None),
        ]
    finally:
        fn.teardown()
