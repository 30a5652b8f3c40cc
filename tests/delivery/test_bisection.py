"""deliver(): a batch the server rejects whole is split until the bad events stand alone."""

from __future__ import annotations

import asyncio
from typing import List, Set

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raccoon_beam._proto import raccoon_pb2
from raccoon_beam.batching import Batch
from raccoon_beam.delivery import SendOutcome, deliver
from raccoon_beam.errors import Failure, FailureKind
from raccoon_beam.retry import Verdict, classify
from raccoon_beam.wire import EncodedRequest, Wire, decode_request

BAD = b"bad"


class FakeServer:
    """Rejects a request holding a bad payload as Raccoon does (CODE_BAD_REQUEST), acks the others.

    A fake, not the emulator: the emulator cannot reject chosen events.
    """

    def __init__(self, retryable: bool = False) -> None:
        self.requests: List[List[bytes]] = []
        self.retryable = retryable

    async def send(self, request: EncodedRequest) -> SendOutcome:
        payloads = [event.event_bytes for event in decode_request(request.body, request.wire).events]
        self.requests.append(payloads)
        if BAD not in payloads:
            return SendOutcome(raccoon_pb2.SendEventResponse(status=1, code=1), None, None, 1, latencies=[0.002])
        if self.retryable:
            failure = Failure(FailureKind.NETWORK, "down")
        else:
            failure = Failure(FailureKind.REFUSED, "bad event", raccoon_code=raccoon_pb2.CODE_BAD_REQUEST)
        attempts = 3 if self.retryable else 1
        return SendOutcome(None, failure, classify(failure), attempts, 1.5, latencies=[0.002] * attempts)


def _batch(payloads: List[bytes]) -> Batch[int]:
    return Batch(["click"] * len(payloads), list(payloads), list(range(len(payloads))))


def test_an_acknowledged_batch_is_one_request():
    server = FakeServer()
    report = asyncio.run(deliver(_batch([b"a", b"b", b"c"]), server.send, Wire.PROTOBUF))
    assert (report.events, report.acknowledged, report.requests, report.failures) == (3, 3, 1, [])
    assert report.latencies_ms == [2] and report.bytes_sent > 0


def test_a_retryable_failure_is_not_split():
    server = FakeServer(retryable=True)
    report = asyncio.run(deliver(_batch([b"a", BAD, b"c"]), server.send, Wire.JSON))
    assert len(server.requests) == 1 and report.acknowledged == 0
    (failed,) = report.failures
    assert failed.sources == [0, 1, 2] and failed.verdict is Verdict.RETRY and failed.attempts == 3
    assert report.retries == 2 and report.waited == 1.5
    assert report.latencies_ms == [2, 2, 2]  # every attempt's, the failed ones too
    assert failed.reason.startswith("gave up after 3 attempt(s): down")


@settings(max_examples=60, deadline=None)
@given(bad=st.sets(st.integers(0, 40)), size=st.integers(1, 41))
def test_bad_events_end_alone_and_every_event_in_exactly_one_place(bad: Set[int], size: int):
    bad = {index for index in bad if index < size}
    payloads = [BAD if index in bad else b"ok-%d" % index for index in range(size)]
    server = FakeServer()
    report = asyncio.run(deliver(_batch(payloads), server.send, Wire.PROTOBUF))
    failed = [source for f in report.failures for source in f.sources]
    assert sorted(failed) == sorted(bad)
    assert all(len(f.sources) == 1 and f.verdict is Verdict.SPLIT for f in report.failures)
    assert all(f.reason.startswith("rejected by the server: bad event") for f in report.failures)
    assert report.acknowledged == size - len(bad) and report.events == size
    # Bisection: each bad event costs at most two requests per level of the split.
    assert report.requests == len(server.requests) <= 1 + 2 * max(len(bad), 1) * size.bit_length()


class WholeRequestRejecter:
    """Answers as Raccoon does to a request that does not decode: every request alike.

    With ``judge``, a gateway in front that gives Raccoon's reason only to
    requests holding a bad payload (so splitting does help).
    """

    def __init__(self, judge: bool = False) -> None:
        self.requests: List[List[bytes]] = []
        self.judge = judge

    async def send(self, request: EncodedRequest) -> SendOutcome:
        payloads = [event.event_bytes for event in decode_request(request.body, request.wire).events]
        self.requests.append(payloads)
        if self.judge and BAD not in payloads:
            return SendOutcome(raccoon_pb2.SendEventResponse(status=1, code=1), None, None, 1)
        failure = Failure(
            FailureKind.REFUSED,
            f"HTTP 400 for {len(payloads)} event(s)",  # messages differ; the answer is the same
            raccoon_code=raccoon_pb2.CODE_BAD_REQUEST,
            http_status=400,
            reason="deserialization failure",
        )
        return SendOutcome(None, failure, classify(failure), 1)


@pytest.mark.parametrize("size", [2, 3, 50, 500])
def test_a_whole_request_rejection_costs_at_most_three_requests(size):
    server = WholeRequestRejecter()
    payloads = [b"ok-%d" % index for index in range(size)]
    report = asyncio.run(deliver(_batch(payloads), server.send, Wire.JSON))
    assert report.requests == len(server.requests) == 3
    assert report.acknowledged == 0
    assert sorted(source for f in report.failures for source in f.sources) == list(range(size))
    assert all(f.verdict is Verdict.SPLIT for f in report.failures)
    assert all(f.failure.reason == "deserialization failure" for f in report.failures)


def test_a_whole_request_rejection_that_splitting_helps_is_bisected():
    """A gateway that judges events with Raccoon's reason: one good half proves splitting helps."""
    server = WholeRequestRejecter(judge=True)
    payloads = [b"ok-%d" % index for index in range(16)]
    payloads[5] = BAD
    report = asyncio.run(deliver(_batch(payloads), server.send, Wire.PROTOBUF))
    assert [f.sources for f in report.failures] == [[5]]
    assert report.acknowledged == 15



@pytest.mark.parametrize("whole_maybe_published", [True, False])
def test_halves_of_a_batch_that_may_have_been_published_keep_an_unknown_outcome(whole_maybe_published):
    """The whole batch timed out, then was refused for its size: its halves, refused too, may be published."""
    too_large = Failure(FailureKind.TOO_LARGE, "request too large")
    refused = Failure(FailureKind.REFUSED, "unavailable", http_status=503)
    sent: List[int] = []

    async def send(request: EncodedRequest) -> SendOutcome:
        sent.append(request.event_count)
        if len(sent) == 1:
            return SendOutcome(None, too_large, classify(too_large), 2, maybe_published=whole_maybe_published)
        return SendOutcome(None, refused, classify(refused), 1)

    report = asyncio.run(deliver(_batch([b"a", b"b", b"c", b"d"]), send, Wire.PROTOBUF))
    assert sent == [4, 2, 2] and report.acknowledged == 0
    assert [len(failed.sources) for failed in report.failures] == [2, 2]
    expected = None if whole_maybe_published else False
    assert [failed.delivered for failed in report.failures] == [expected, expected]
