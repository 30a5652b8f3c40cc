"""The sender: the one owner of the event loop, the transport, the retry loop and the bound.

A :class:`Sender` sends to one endpoint from any thread. :meth:`Sender.deliver`
hands it a batch and returns a ``concurrent.futures.Future`` of the batch's
:class:`~raccoon_beam.delivery.report.DeliveryReport`; :meth:`Sender.submit`
does the same for one encoded request. Both block the caller while
``max_in_flight`` batches or requests are under way: that one semaphore is
the sink's back-pressure and the bound on requests in flight (the halves of a
split batch go one after the other, in their batch's slot). Within it, every
attempt passes the sender's :class:`~raccoon_beam.delivery.flow.FlowControl`
(an outage's shared backoff, ``Retry-After``, the rate limit and adaptive
throttling), which may hold it back further.

A transport that can start a send on the caller's thread (gRPC, whose
library answers on its own thread) gets a batch's first attempt there when
the flow control has nothing to hold back: an acknowledged batch then never
passes through the loop, and anything else (a failure, a retry, a split)
continues on the loop from that attempt.

Each request is retried as the :class:`~raccoon_beam.retry.RetryPolicy`
says, resending the very same encoded bytes so that its ``req_guid`` and
``sent_time`` never change. Retries and dead letters are logged,
rate-limited, under ``raccoon_beam.delivery``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import threading
import time
import traceback
from typing import Any, Awaitable, Callable, Coroutine, Generic, List, Optional, Set, Tuple, TypeVar

from raccoon_beam._loop import EventLoopThread
from raccoon_beam.batching import Batch
from raccoon_beam.delivery.bisection import acknowledged_at_once, deliver
from raccoon_beam.delivery.flow import FlowControl, FlowOptions, Ticket
from raccoon_beam.delivery.held import HeldTime
from raccoon_beam.delivery.log import DEFAULT_LOG_INTERVAL, RateLimitedLog, dead_letter_log
from raccoon_beam.delivery.report import DeliveryReport, SendOutcome
from raccoon_beam.errors import STAGE_SEND, Failure, FailureKind, SendFailure
from raccoon_beam.retry import RetryPolicy, Verdict, classify, refused_credentials
from raccoon_beam.transports import StartedSend, Transport, TransportConfig, open_transport
from raccoon_beam.transports import redact
from raccoon_beam.wire import EncodedRequest, Wire, encode_batch

__all__ = ["Sender", "send_with_retry", "DEFAULT_CLOSE_TIMEOUT"]

# How long close() waits for the transport to shut down.
DEFAULT_CLOSE_TIMEOUT = 30.0

_log = logging.getLogger(__name__)

T = TypeVar("T")
S = TypeVar("S")


@dataclasses.dataclass(frozen=True)
class Begun:
    """A first attempt started off the loop: what its retries continue from."""

    send: StartedSend
    ticket: Ticket
    started: float
    """When it was started, on the sender's clock."""


@dataclasses.dataclass(frozen=True)
class _BegunBatch(Generic[S]):
    """A batch whose first attempt was begun off the loop, and the future of its report."""

    batch: Batch[S]
    request: EncodedRequest
    begun: Begun
    acknowledgements: bool
    report: "concurrent.futures.Future[DeliveryReport[S]]" = dataclasses.field(default_factory=concurrent.futures.Future)


async def send_with_retry(
    transport: Transport,
    request: EncodedRequest,
    policy: RetryPolicy,
    *,
    flow: Optional[FlowControl] = None,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    on_retry: Optional[Callable[[Failure, float], None]] = None,
    begun: Optional[Begun] = None,
) -> SendOutcome:
    """Sends ``request`` until it is acknowledged or its failure is not retryable.

    The same ``request`` object is resent on every attempt, so the req_guid
    and sent_time in its body never change. An attempt the server refuses
    for its credentials (401, ``UNAUTHENTICATED``) while a header value comes
    from a credential provider is sent once more at once, with the values
    read again, within the same attempt of the policy: a token that expired
    costs no backoff and no attempt of the budget, and only a refusal of the
    fresh value is final.

    Args:
      transport: where to send.
      request: the encoded request.
      policy: attempts, backoff and deadline.
      flow: what holds each attempt back (outage gate, rate limit,
        throttling), if anything.
      sleep: the coroutine function that waits between attempts.
      clock: a monotonic clock in seconds, for the deadline and latencies.
      on_retry: called with each retried failure and the wait before the
        next attempt (for logs).
      begun: the request's first attempt, already started (and admitted by
        ``flow``) off the loop: its answer is awaited in place of a first send.

    Returns:
      The outcome; a failure is returned in it, never raised. Any other
      exception from the transport (a bug, an unanticipated library error)
      is logged with its traceback and returned as an ``UNEXPECTED`` failure
      (PERMANENT): raised, it would fail the bundle on every runner retry.
      Cancellation still propagates.
    """
    started = clock() if begun is None else begun.started
    deadline = None if policy.deadline is None else started + policy.deadline
    outcome = SendOutcome(None, None, None, 0)
    # The first attempt outside tenacity: most requests succeed at once, and
    # the retry machinery costs more than the call itself.
    response, failure = await _attempt(transport, request, flow, clock, outcome, deadline=deadline, begun=begun)
    if failure is None:
        outcome.response, outcome.conn_id = response, transport.acknowledged_on(request)
        return outcome
    verdict = classify(failure)
    if outcome.attempts == 0 or verdict is not Verdict.RETRY or policy.max_attempts == 1:
        outcome.failure, outcome.verdict = failure, verdict
        return outcome

    def before_retry(failure: Failure, wait: float) -> None:
        outcome.waited += wait
        if on_retry is not None:
            on_retry(failure, wait)

    replay: List[Failure] = [failure]  # tenacity's first attempt is the one made above
    try:
        async for attempt in policy.retrying(sleep=sleep, clock=clock, on_retry=before_retry, started=started):
            with attempt:
                if replay:
                    response, failure = None, replay.pop()
                else:
                    sent = outcome.attempts
                    response, failure = await _attempt(
                        transport, request, flow, clock, outcome, failure, deadline=deadline
                    )
                    if failure is not None and outcome.attempts == sent:
                        raise _NotSent(failure)  # the outage outlasted the policy: stop here
                if failure is not None:
                    raise SendFailure.carrying(failure)  # tenacity decides on exceptions
    except (SendFailure, _NotSent) as exc:
        outcome.failure = exc.failure
        outcome.verdict = classify(exc.failure)
        return outcome
    outcome.response, outcome.conn_id = response, transport.acknowledged_on(request)
    return outcome


class _NotSent(Exception):
    """An attempt the outage gate refused (not a SendFailure: tenacity must not retry it)."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


async def _attempt(
    transport: Transport,
    request: EncodedRequest,
    flow: Optional[FlowControl],
    clock: Callable[[], float],
    outcome: SendOutcome,
    last: Optional[Failure] = None,
    *,
    deadline: Optional[float] = None,
    begun: Optional[Begun] = None,
) -> Tuple[Any, Optional[Failure]]:
    """One attempt through ``flow``: ``(response, None)``, or ``(None, failure)`` for whatever went wrong.

    Counts the attempt (two sends when the credentials were refused and
    read again), its latency (without the time held back) and its timeout
    in ``outcome``. An attempt the outage gate refuses, or one that a
    server's Retry-After would hold past ``deadline``, is not sent and not
    counted: its failure says why (keeping the kind of this request's own
    ``last`` failure, which may have left its outcome unknown). An attempt
    ``begun`` off the loop was admitted there: only its answer is awaited.
    """
    ticket = None
    if begun is not None:
        ticket, started = begun.ticket, begun.started
    else:
        if flow is not None:
            admitted = await flow.admit(request.event_count, deadline)
            if isinstance(admitted, Failure):
                if last is not None:
                    admitted = dataclasses.replace(last, message=admitted.message)
                return None, admitted
            ticket = admitted
        started = clock()
    try:
        response, failure, sends = await _send_with_credentials(transport, request, begun)
    except asyncio.CancelledError:
        if flow is not None and ticket is not None:
            flow.cancel(ticket)
        raise
    latency = clock() - started
    outcome.attempts += sends
    outcome.latencies.append(latency)
    if failure is not None and failure.kind is FailureKind.TIMEOUT:
        outcome.timeouts += 1
    if failure is not None and failure.outcome_unknown:
        outcome.maybe_published = True
    if flow is not None and ticket is not None:
        flow.finish(ticket, failure, latency)
    return response, failure


async def _send_with_credentials(
    transport: Transport, request: EncodedRequest, begun: Optional[Begun] = None
) -> Tuple[Any, Optional[Failure], int]:
    """One send (or the answer of one ``begun``): ``(response, None, sends)``, or ``(None, failure, sends)``.

    ``sends`` is 2 when the credentials were refused and read again, and the
    request resent with them (see :func:`send_with_retry`); 1 otherwise.
    """
    started = None if begun is None else begun.send
    generation = transport.credentials.generation if started is None else started.generation
    response, failure = await _send(transport, request, started)
    if failure is None or not refused_credentials(failure):
        return response, failure, 1
    try:
        if not await transport.credentials.refresh(generation):
            return response, failure, 1
    except SendFailure as exc:  # the provider gave nothing now: that is the failure to report
        return None, exc.failure, 1
    response, failure = await _send(transport, request)
    return response, failure, 2


async def _send(
    transport: Transport, request: EncodedRequest, started: Optional[StartedSend] = None
) -> Tuple[Any, Optional[Failure]]:
    """One send, or the answer of one ``started``: ``(response, None)``, or ``(None, failure)``.

    The one boundary where anything is caught: an exception that is not a
    SendFailure (a bug, an unanticipated library error) is logged with its
    traceback and becomes an ``UNEXPECTED`` failure. Cancellation propagates.
    """
    try:
        if started is not None:
            return await started.settle(), None
        return await transport.send(request), None
    except SendFailure as exc:
        return None, exc.failure
    except Exception as exc:  # noqa: BLE001 - see the docstring
        return None, _unexpected_failure(exc, transport)


def _unexpected_failure(exc: Exception, transport: Transport) -> Failure:
    """Logs ``exc`` (traceback, redacted messages) and turns it into an UNEXPECTED failure.

    The traceback is formatted here rather than with ``exc_info``: a library
    exception's message may quote a header or the URL's password, so every
    message of the chain goes through ``redact`` first (frames show source
    lines, never values).
    """
    config = transport.config

    def clean(error: BaseException) -> str:
        return redact(f"{type(error).__name__}: {error}", config)

    where = config.parsed_endpoint.redacted
    chain = []
    seen = set()
    current: Optional[BaseException] = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append("".join(traceback.format_tb(current.__traceback__)) + clean(current))
        current = current.__cause__ or current.__context__
    message = clean(exc)
    _log.error(
        "unexpected error sending a request to %s (not retried): %s\n%s",
        where,
        message,
        "\n--- caused by ---\n".join(chain),
    )
    return Failure(FailureKind.UNEXPECTED, f"unexpected client error sending to {where}: {message}")


def _with_code(text: str, failure: Failure) -> str:
    """``text`` and the failure's status code, when it has one (``"... (http:503)"``)."""
    return text if failure.code is None else f"{text} ({failure.code})"


class Sender:
    """Sends batches and requests to one endpoint, with retries, from any thread.

    Args:
      config: the transport configuration; ``config.max_in_flight`` is the
        most batches (or requests) under way at once.
      policy: the retry policy (default: ``RetryPolicy()``).
      flow: how the sender paces itself (default: ``FlowOptions()``,
        adaptive throttling on, no rate limit).
      sleep: the coroutine function that waits between attempts (tests).
      clock: the monotonic clock of the retry deadline and the log's rate limit (tests).
      transport_factory: builds the transport (tests and benchmarks may wrap it).
      log_interval: the least seconds between two log lines of one kind.
    """

    def __init__(
        self,
        config: TransportConfig,
        policy: Optional[RetryPolicy] = None,
        flow: Optional[FlowOptions] = None,
        *,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        transport_factory: Callable[[TransportConfig], Transport] = open_transport,
        log_interval: float = DEFAULT_LOG_INTERVAL,
    ) -> None:
        self.config = config
        self.policy = policy if policy is not None else RetryPolicy()
        self.flow_options = flow if flow is not None else FlowOptions()
        self._sleep = sleep
        self._clock = clock
        self._slots = threading.BoundedSemaphore(config.max_in_flight)
        self.flow = FlowControl(
            self.flow_options,
            self.policy,
            config.max_in_flight,
            config.parsed_endpoint.redacted,
            clock=clock,
            sleep=sleep,
        )
        self.blocked = HeldTime(clock)
        """Wall-clock seconds during which a caller waited for a free slot (``max_in_flight``)."""
        self._taken_lock = threading.Lock()
        self._attempts_held_taken = 0
        self._transport = transport_factory(config)  # opens nothing until its first send
        self._wire = Wire(config.wire)
        self._active: Set["asyncio.Task[Any]"] = set()
        # First attempts begun off the loop whose answer has not been handled yet (close() waits for them).
        self._answering = threading.Condition()
        self._unanswered = 0
        self._closed = False
        self._close_lock = threading.Lock()
        self._retries = RateLimitedLog(
            _log, logging.WARNING, "request(s) failed and will be retried", log_interval, clock
        )
        self._dead_letters = dead_letter_log(_log, STAGE_SEND, log_interval, clock)
        self._loop = EventLoopThread(name=f"raccoon-beam-{config.kind}-sender")
        self._loop.start()
        _log.info(
            "raccoon_beam: sending to %s over %s as connection id %s",
            config.parsed_endpoint.redacted,
            config.kind,
            getattr(self._transport, "conn_id", "?"),
        )

    @property
    def transport(self) -> Transport:
        """The transport (its connection opens with the first request)."""
        return self._transport

    @property
    def closed(self) -> bool:
        return self._closed

    def deliver(
        self, batch: Batch[S], *, acknowledgements: bool = False
    ) -> "concurrent.futures.Future[DeliveryReport[S]]":
        """Starts delivering ``batch`` (with retries and bisection).

        Blocks while ``max_in_flight`` batches or requests are under way.

        Args:
          batch: the events and their sources.
          acknowledgements: list each acknowledged request in the report's
            ``acked`` (for the acknowledgement output).

        Returns:
          A future of the batch's report, in which every event is either
          acknowledged or failed. It is cancelled if the sender is closed first.

        Raises:
          RuntimeError: the sender is closed.
        """
        return self._start(lambda: self._begin_delivery(batch, acknowledgements))

    def submit(self, request: EncodedRequest) -> "concurrent.futures.Future[SendOutcome]":
        """Sends one encoded request (with retries, no bisection); blocks like :meth:`deliver`.

        Raises:
          RuntimeError: the sender is closed.
        """
        return self._start(lambda: self._submit(self._send(request)))

    def close(self, timeout: float = DEFAULT_CLOSE_TIMEOUT) -> None:
        """Cancels what is pending, closes the transport and stops the loop.

        Afterwards no thread or socket of the sender remains. Idempotent.
        """
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            if self._loop.running:
                self._loop.run(self._aclose(), timeout)
            # Closing the transport ended the first attempts still out; their
            # reports are settled on grpcio's thread: wait for that too.
            with self._answering:
                self._answering.wait_for(lambda: self._unanswered == 0, timeout)
        finally:
            self._loop.stop()

    def __enter__(self) -> "Sender":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"Sender({self.config.parsed_endpoint.redacted}, {state})"

    def take_flow_stats(self) -> Tuple[int, int, int]:
        """``(seconds held back, seconds blocked on max_in_flight, attempts held back)`` since the last call.

        Whole seconds of wall clock (Beam counters are integers; the rest
        waits for the next call); each is handed out once, so the DoFns
        sharing this sender report its time exactly once between them.
        """
        with self._taken_lock:
            held = self.flow.attempts_held
            attempts, self._attempts_held_taken = held - self._attempts_held_taken, held
        return self.flow.held.take_whole_seconds(), self.blocked.take_whole_seconds(), attempts

    def _start(self, start: Callable[[], "concurrent.futures.Future[T]"]) -> "concurrent.futures.Future[T]":
        """Takes an in-flight slot (waiting for one), calls ``start``, and frees the slot when its future is done."""
        self._check_open()
        if not self._slots.acquire(blocking=False):
            with self.blocked.holding():
                self._slots.acquire()
        try:
            self._check_open()
            future = start()
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _: self._slots.release())
        return future

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")

    def _submit(self, coro: Coroutine[Any, Any, T]) -> "concurrent.futures.Future[T]":
        try:
            return self._loop.submit(self._tracked(coro))
        except BaseException:
            coro.close()
            raise

    def _begin_delivery(
        self, batch: Batch[S], acknowledgements: bool
    ) -> "concurrent.futures.Future[DeliveryReport[S]]":
        """Starts the batch's delivery: its first attempt on this thread if it may go at once, else on the loop."""
        if not self._transport.can_begin:
            return self._submit(self._deliver(batch, acknowledgements))
        request = encode_batch(batch.event_types, batch.payloads, wire=self._wire)
        at_once = self._deliver_at_once(batch, request, acknowledgements)
        if at_once is not None:
            return at_once
        return self._submit(self._deliver(batch, acknowledgements, request))

    def _deliver_at_once(
        self, batch: Batch[S], request: EncodedRequest, acknowledgements: bool
    ) -> "Optional[concurrent.futures.Future[DeliveryReport[S]]]":
        """Begins the batch's first attempt on this thread, if nothing holds it back.

        Returns the report's future, or None: then nothing was sent or taken.
        An acknowledgement completes the future on the thread that sees it;
        anything else hands the batch to the loop, which goes on from that attempt.
        """
        ticket = self.flow.admit_now(len(batch))
        if ticket is None:
            return None
        started = self._clock()
        try:
            sending = self._transport.begin(request)
        except Exception:  # noqa: BLE001 - the loop's send meets it again, and reports it as a failure
            sending = None
        if sending is None:
            self.flow.cancel(ticket)
            return None
        with self._answering:
            self._unanswered += 1
        begun = _BegunBatch(batch, request, Begun(sending, ticket, started), acknowledgements)
        sending.add_done_callback(lambda: self._answered_at_once(begun))
        begun.report.add_done_callback(lambda future: future.cancelled() and sending.cancel())
        return begun.report

    def _answered_at_once(self, begun: "_BegunBatch[S]") -> None:
        """The end of a first attempt begun off the loop, on whichever thread saw it."""
        try:
            self._settle_at_once(begun)
        except BaseException as exc:  # raised on grpcio's thread, it would be lost and the batch never end
            _log.exception("unexpected error ending a request to %s", self.config.parsed_endpoint.redacted)
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                begun.report.set_exception(exc)
        finally:
            with self._answering:
                self._unanswered -= 1
                self._answering.notify_all()

    def _settle_at_once(self, begun: "_BegunBatch[S]") -> None:
        report, attempt = begun.report, begun.begun
        response = None if report.cancelled() else attempt.send.response()
        if response is not None:  # acknowledged, even if the sender is closing meanwhile
            latency = self._clock() - attempt.started
            if not self.flow.finish_success(attempt.ticket, latency):
                with contextlib.suppress(RuntimeError):  # the loop has stopped: nobody waits on the gate
                    self._loop.loop.call_soon_threadsafe(self.flow.finish, attempt.ticket, None, latency)
            outcome = SendOutcome(response, None, None, 1, conn_id=self._transport.acknowledged_on(begun.request))
            outcome.latencies.append(latency)
            acknowledged = acknowledged_at_once(
                begun.batch, begun.request, outcome, acknowledgements=begun.acknowledgements
            )
            with contextlib.suppress(concurrent.futures.InvalidStateError):  # cancelled meanwhile
                report.set_result(acknowledged)
            return
        if not (report.cancelled() or self._closed):  # not acknowledged: the loop takes it from here
            with contextlib.suppress(RuntimeError):  # unless it has stopped meanwhile
                resumed = self._deliver(begun.batch, begun.acknowledgements, begun.request, attempt)
                _follow(self._submit(resumed), report)
                return
        self.flow.cancel(attempt.ticket)
        report.cancel()

    async def _deliver(
        self,
        batch: Batch[S],
        acknowledgements: bool,
        request: Optional[EncodedRequest] = None,
        begun: Optional[Begun] = None,
    ) -> DeliveryReport[S]:
        """Delivers ``batch``; ``request`` is its encoding when made already, ``begun`` its first attempt."""
        first = None if request is None else (request, self._send(request, begun))
        report = await deliver(batch, self._send, self._wire, acknowledgements=acknowledgements, first=first)
        for failed in report.failures:
            self._dead_letters.record(len(failed.sources), _with_code(failed.reason, failed.failure))
        return report

    async def _send(self, request: EncodedRequest, begun: Optional[Begun] = None) -> SendOutcome:
        return await send_with_retry(
            self._transport,
            request,
            self.policy,
            flow=self.flow,
            sleep=self._backoff,
            clock=self._clock,
            on_retry=self._on_retry,
            begun=begun,
        )

    async def _backoff(self, seconds: float) -> None:
        """A retry's wait, counted as time held back (once, however many requests wait side by side)."""
        with self.flow.held.holding():
            await self._sleep(seconds)

    def _on_retry(self, failure: Failure, wait: float) -> None:
        self._retries.record(1, f"{_with_code(failure.message, failure)}; next attempt in {wait:.1f} s")

    async def _tracked(self, coro: Awaitable[T]) -> T:
        # Remember the task so that close() can cancel it: a request still
        # retrying at close would otherwise retry against a closed transport.
        task = asyncio.current_task()
        assert task is not None
        self._active.add(task)
        try:
            return await coro
        finally:
            self._active.discard(task)

    async def _aclose(self) -> None:
        active = [task for task in self._active if task is not asyncio.current_task()]
        for task in active:
            task.cancel()
        await asyncio.gather(*active, return_exceptions=True)
        await self._transport.close()
        # aiohttp resolves host names in the loop's default executor: join its
        # threads, or they would outlive the sender.
        await asyncio.get_running_loop().shutdown_default_executor()


def _follow(source: "concurrent.futures.Future[T]", target: "concurrent.futures.Future[T]") -> None:
    """Completes ``target`` as ``source`` completes; cancelling ``target`` cancels ``source``."""

    def copy(done: "concurrent.futures.Future[T]") -> None:
        if done.cancelled():
            target.cancel()
            return
        error = done.exception()
        with contextlib.suppress(concurrent.futures.InvalidStateError):  # target cancelled meanwhile
            if error is not None:
                target.set_exception(error)
            else:
                target.set_result(done.result())

    target.add_done_callback(lambda future: future.cancelled() and source.cancel())
    source.add_done_callback(copy)
