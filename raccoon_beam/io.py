"""``WriteToRaccoon``: the Beam sink, and the DoFns behind it.

This module wires the data path together and holds no protocol detail:
element -> :class:`~raccoon_beam.events.EventBuilder` -> :class:`~raccoon_beam.batching.Batcher`
-> :func:`~raccoon_beam.delivery.deliver` (encoding, transport, retries,
bisection) -> acknowledged, or a :class:`~raccoon_beam.errors.RaccoonDeadLetter`
on the ``failed`` output, in the element's own window and with its timestamp.

Two shapes of pipeline:

* by default each bundle is batched on its own, and ``finish_bundle`` returns
  only when every request of the bundle is acknowledged or dead-lettered;
* with ``max_buffering_duration``, events are serialized first and batched
  across bundles by ``GroupIntoBatches.WithShardedKey``, for streaming
  pipelines whose bundles are tiny.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any, Callable, Coroutine, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import PCollection, TaggedOutput
from apache_beam.transforms.display import DisplayDataItem
from apache_beam.utils.windowed_value import WindowedValue

from raccoon_beam import serializers
from raccoon_beam.batching import DEFAULT_MAX_BATCH_BYTES, DEFAULT_MAX_BATCH_SIZE, Batch, Batcher
from raccoon_beam.delivery import DeliveryReport, Dispatcher, FailedEvents, deliver
from raccoon_beam.errors import STAGE_SEND, DeliveryError, RaccoonDeadLetter, SendFailure
from raccoon_beam.events import EventBuilder, EventRejected, EventTypeSpec, describe_event_type
from raccoon_beam.retry import RetryPolicy, Verdict
from raccoon_beam.transports import RaccoonClient
from raccoon_beam.transports.base import TlsOptions, TransportConfig
from raccoon_beam.transports.base import (
    DEFAULT_CONN_ID_HEADER,
    DEFAULT_CONN_ID_PREFIX,
    DEFAULT_GROUP_HEADER,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_SECRET_HEADERS,
    DEFAULT_TIMEOUT,
)
from raccoon_beam.wire import Wire

__all__ = ["WriteToRaccoon", "WriteToRaccoonResult", "FAILED_TAG", "METRICS_NAMESPACE"]

FAILED_TAG = "failed"
METRICS_NAMESPACE = "raccoon"
# The key of the events batched across bundles; GroupIntoBatches.WithShardedKey
# spreads it over the workers' threads.
_BUFFERING_KEY = "raccoon"


class WriteToRaccoonResult:
    """The outputs of :class:`WriteToRaccoon`.

    Attributes:
      failed: a PCollection of :class:`RaccoonDeadLetter`, one per element that
        was not delivered, in that element's window and with its timestamp.
    """

    def __init__(self, pipeline: beam.Pipeline, failed: PCollection) -> None:
        self.pipeline = pipeline
        self.failed = failed

    def __getitem__(self, tag: str) -> PCollection:
        if tag != FAILED_TAG:
            raise KeyError(tag)
        return self.failed


class WriteToRaccoon(beam.PTransform):
    """Writes every element of a PCollection to Raccoon, as one event each.

    Every input element ends either acknowledged by the server or in
    ``result.failed``; delivery is at-least-once (a retried request may be
    published twice when its first attempt went through unseen).

    Args:
      endpoint: ``grpc://host:port``, ``grpcs://host:port`` (TLS),
        ``http(s)://host:port[/api/v1/events]`` (REST) or
        ``ws(s)://host:port[/api/v1/events]`` (WebSocket).
      event_type: the event type (routes the event to a topic): a string, or
        a callable element -> string.
      serializer: ``"json"``, ``"protobuf"``, ``"avro"`` (with
        ``avro_schema``), ``"bytes"``, or a callable element -> bytes.
      wire: how requests are encoded, ``"protobuf"`` or ``"json"`` (REST and
        WebSocket only; gRPC is always protobuf).
      avro_schema: the Avro schema (a dict or JSON string) for ``"avro"``;
        by default derived from the input's Beam schema (see
        :mod:`raccoon_beam.avro_schema`).
      message_type: with ``"protobuf"``, the message plain data (dicts, Rows,
        NamedTuples, dataclasses) is converted to: a generated message class,
        or a full name with ``descriptor_set``.
      descriptor_set: the FileDescriptorSet file (or its bytes) that defines
        a ``message_type`` given by name.
      ignore_unknown_fields: with ``message_type``, skip fields the message
        does not have instead of dead-lettering the element.
      max_batch_size: the most events in one request.
      max_batch_bytes: the most bytes in one encoded request; by default
        safely under gRPC's 4 MiB receive limit.
      max_event_bytes: the largest serialized event; larger ones are
        dead-lettered (stage ``validate``). By default only events that could
        not fit in a request of their own are.
      max_buffering_duration: seconds; batch across bundles with
        ``GroupIntoBatches.WithShardedKey`` and send a batch at the latest
        this long after its first event (for streaming pipelines).
      retry: retry policy for failures that can succeed later.
      timeout: seconds to wait for a request's answer. Raccoon in sync-ack
        mode answers only after publishing, so keep it generous.
      max_in_flight: the most batches in flight per DoFn instance (Beam runs
        one per worker thread), and the most requests its connection carries at once.
      headers: extra headers sent with every request (auth, ...).
      conn_id_header: the header with the connection id that Raccoon
        requires (``SERVER_WEBSOCKET_CONN_ID_HEADER``).
      conn_id_prefix: prefix of the unique connection id of each worker.
      group: the connection group, sent in ``group_header``.
      group_header: the group header (``SERVER_WEBSOCKET_CONN_GROUP_HEADER``).
      tls: TLS options (custom CA, client certificate) for grpcs/https/wss.
      secret_headers: names of headers whose values must never be shown;
        ``Authorization`` and the like are always secret.
      fail_on_error: raise in the bundle instead of dead-lettering, so that
        the runner retries the bundle.
      buffering_clock: the processing-time clock of the buffering timer, as
        in ``GroupIntoBatches`` (tests with ``TestStream`` pass a fake one).

    Raises:
      ValueError: an option is invalid (bad endpoint, unknown serializer,
        JSON wire over gRPC, ...), before the pipeline runs.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        event_type: EventTypeSpec,
        serializer: Union[str, Callable[[Any], bytes]] = "json",
        wire: str = "protobuf",
        avro_schema: Optional[Union[Dict[str, Any], str]] = None,
        message_type: Optional[serializers.MessageTypeSpec] = None,
        descriptor_set: Optional[serializers.DescriptorSetSpec] = None,
        ignore_unknown_fields: bool = False,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
        max_event_bytes: Optional[int] = None,
        max_buffering_duration: Optional[float] = None,
        retry: Optional[RetryPolicy] = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        headers: Optional[Mapping[str, str]] = None,
        conn_id_header: str = DEFAULT_CONN_ID_HEADER,
        conn_id_prefix: str = DEFAULT_CONN_ID_PREFIX,
        group: Optional[str] = None,
        group_header: str = DEFAULT_GROUP_HEADER,
        tls: Optional[TlsOptions] = None,
        secret_headers: Sequence[str] = (),
        fail_on_error: bool = False,
        buffering_clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self._transport = TransportConfig(
            endpoint=endpoint,
            wire=wire,
            timeout=timeout,
            headers=dict(headers or {}),
            conn_id_header=conn_id_header,
            conn_id_prefix=conn_id_prefix,
            group=group,
            group_header=group_header,
            tls=tls or TlsOptions(),
            max_in_flight=max_in_flight,
            secret_headers=tuple(DEFAULT_SECRET_HEADERS) + tuple(secret_headers),
        )
        _check_positive_int("max_batch_size", max_batch_size)
        _check_positive_int("max_batch_bytes", max_batch_bytes)
        if max_event_bytes is not None:
            _check_positive_int("max_event_bytes", max_event_bytes)
        if max_buffering_duration is not None and not (
            isinstance(max_buffering_duration, (int, float)) and max_buffering_duration > 0
        ):
            raise ValueError(
                f"max_buffering_duration must be a positive number of seconds, got {max_buffering_duration!r}"
            )
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
        wire_type = Wire(self._transport.wire)
        self._serializer_name = serializers.describe_serializer(serializer)
        self._event_type_spec = event_type
        self._serializer_spec = serializer
        self._serializer_options: Dict[str, Any] = dict(
            avro_schema=avro_schema,
            message_type=message_type,
            descriptor_set=descriptor_set,
            ignore_unknown_fields=ignore_unknown_fields,
        )
        self._wire_type = wire_type
        # An Avro schema derived from the input's Beam schema is only known in expand().
        self._builder: Optional[EventBuilder] = None
        if not (serializer == "avro" and avro_schema is None):
            self._builder = self._make_builder(None, max_event_bytes, max_batch_bytes)
        # Checks the limits against the request overhead now, not on a worker.
        Batcher(wire_type, max_batch_size, max_batch_bytes)
        self._event_type_name = describe_event_type(event_type)
        self._max_batch_size = max_batch_size
        self._max_batch_bytes = max_batch_bytes
        self._max_event_bytes = max_event_bytes
        self._max_buffering_duration = max_buffering_duration
        self._retry = retry or RetryPolicy()
        self._fail_on_error = fail_on_error
        self._buffering_clock = buffering_clock

    def _make_builder(self, element_type: Any, max_event_bytes: Optional[int], max_batch_bytes: int) -> EventBuilder:
        serializer = serializers.resolve_serializer(
            self._serializer_spec, element_type=element_type, **self._serializer_options
        )
        self._serializer_name = serializers.describe_serializer(serializer)
        return EventBuilder(self._event_type_spec, serializer, self._wire_type, max_event_bytes, max_batch_bytes)

    def _sender(self) -> "_SenderSpec":
        return _SenderSpec(
            transport=self._transport,
            retry=self._retry,
            max_batch_size=self._max_batch_size,
            max_batch_bytes=self._max_batch_bytes,
            fail_on_error=self._fail_on_error,
        )

    def expand(self, pcoll: PCollection) -> WriteToRaccoonResult:
        builder = self._builder or self._make_builder(
            pcoll.element_type, self._max_event_bytes, self._max_batch_bytes
        )
        if self._max_buffering_duration is None:
            outputs = pcoll | "WriteEvents" >> beam.ParDo(
                _WriteEventsFn(builder, self._sender())
            ).with_outputs(FAILED_TAG, main="unused")
            return WriteToRaccoonResult(pcoll.pipeline, outputs[FAILED_TAG])
        prepared = pcoll | "BuildEvents" >> beam.ParDo(_BuildEventsFn(builder, self._fail_on_error)).with_output_types(
            Tuple[str, Any]  # GroupIntoBatches.WithShardedKey needs a keyed type
        ).with_outputs(FAILED_TAG, main="events")
        sent = (
            prepared["events"]
            | "BatchAcrossBundles"
            >> beam.GroupIntoBatches.WithShardedKey(
                self._max_batch_size,
                max_buffering_duration_secs=self._max_buffering_duration,
                clock=self._buffering_clock,
            )
            | "WriteBatches" >> beam.ParDo(_WriteBatchesFn(self._sender())).with_outputs(FAILED_TAG, main="unused")
        )
        failed = (prepared[FAILED_TAG], sent[FAILED_TAG]) | "AllDeadLetters" >> beam.Flatten()
        return WriteToRaccoonResult(pcoll.pipeline, failed)

    def display_data(self) -> Dict[str, Any]:
        transport = self._transport
        data: Dict[str, Any] = {
            "endpoint": DisplayDataItem(transport.parsed_endpoint.redacted, label="Raccoon endpoint"),
            "transport": DisplayDataItem(transport.kind, label="Transport"),
            "wire": DisplayDataItem(Wire(transport.wire).value, label="Wire type"),
            "serializer": DisplayDataItem(self._serializer_name, label="Serializer"),
            "event_type": DisplayDataItem(self._event_type_name, label="Event type"),
            "max_batch_size": DisplayDataItem(self._max_batch_size, label="Max events per request"),
            "max_batch_bytes": DisplayDataItem(self._max_batch_bytes, label="Max bytes per request"),
            "max_in_flight": DisplayDataItem(transport.max_in_flight, label="Max requests in flight"),
            "timeout": DisplayDataItem(transport.timeout, label="Request timeout (s)"),
            "retry": DisplayDataItem(repr(self._retry), label="Retry policy"),
        }
        if self._max_event_bytes is not None:
            data["max_event_bytes"] = DisplayDataItem(self._max_event_bytes, label="Max event bytes")
        if self._max_buffering_duration is not None:
            data["max_buffering_duration"] = DisplayDataItem(
                self._max_buffering_duration, label="Max buffering duration (s)"
            )
        if transport.headers:
            # Names only: a value may be a credential whatever its header is called.
            data["headers"] = DisplayDataItem(", ".join(sorted(transport.headers)), label="Extra headers")
        return data


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclasses.dataclass(frozen=True)
class _SenderSpec:
    """The picklable settings of a :class:`_Sender`."""

    transport: TransportConfig
    retry: RetryPolicy
    max_batch_size: int
    max_batch_bytes: int
    fail_on_error: bool


_EVENTS_DEAD_LETTERED = "events_dead_lettered"


def _counter(name: str) -> Any:
    return Metrics.counter(METRICS_NAMESPACE, name)


class _Metrics:
    """The sink's Beam metrics, updated on the bundle's thread only."""

    def __init__(self) -> None:
        counter = _counter
        self.events_sent = counter("events_sent")
        self.events_acknowledged = counter("events_acknowledged")
        self.events_dead_lettered = counter(_EVENTS_DEAD_LETTERED)
        self.batches = counter("batches")
        self.requests = counter("requests")
        self.retries = counter("retries")
        self.bytes_sent = counter("bytes_sent")
        # The name Dataflow's autoscaler reads as time spent throttled.
        self.throttling_seconds = counter("cumulativeThrottlingSeconds")
        self.batch_size = Metrics.distribution(METRICS_NAMESPACE, "batch_size")
        self.request_latency_ms = Metrics.distribution(METRICS_NAMESPACE, "request_latency_ms")
        self._throttled_carry = 0.0

    def record(self, report: DeliveryReport) -> None:
        """Records one finished batch."""
        self.batches.inc()
        self.batch_size.update(report.events)
        self.events_sent.inc(report.events)
        self.events_acknowledged.inc(report.acknowledged)
        self.requests.inc(report.requests)
        self.bytes_sent.inc(report.bytes_sent)
        for latency in report.latencies_ms:
            self.request_latency_ms.update(latency)

    def record_retries(self, retries: int, waited_seconds: float) -> None:
        """Records retries and the time spent backing off before them."""
        if retries:
            self.retries.inc(retries)
        # Counters are integers: carry the fractions over to later calls.
        self._throttled_carry += waited_seconds
        whole = int(self._throttled_carry)
        if whole:
            self.throttling_seconds.inc(whole)
            self._throttled_carry -= whole


class _RetryTally:
    """Counts retries on the client's loop, for metrics on the bundle's thread.

    Beam metrics can only be updated on the bundle's thread, so the loop
    appends here and :meth:`take` hands the totals over.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._retries = 0
        self._waited = 0.0

    def record(self, failure: SendFailure, wait_seconds: float) -> None:
        del failure  # the failure that ends a request is reported with its outcome
        with self._lock:
            self._retries += 1
            self._waited += wait_seconds

    def take(self) -> Tuple[int, float]:
        with self._lock:
            taken = (self._retries, self._waited)
            self._retries, self._waited = 0, 0.0
        return taken


class _Sender:
    """Per-DoFn-instance runtime: batches, sends, and collects dead letters.

    Created in ``DoFn.setup()`` (it owns a thread and a connection, neither of
    which pickles) and closed in ``teardown()``. Sources are the elements'
    WindowedValues, so every dead letter keeps its window and timestamp.
    """

    def __init__(self, spec: _SenderSpec) -> None:
        self._spec = spec
        self._wire = Wire(spec.transport.wire)
        self._tally = _RetryTally()
        self._client = RaccoonClient(spec.transport, spec.retry, on_retry=self._tally.record)
        self._batcher: Batcher[WindowedValue] = Batcher(self._wire, spec.max_batch_size, spec.max_batch_bytes)
        self._dispatcher: Dispatcher[WindowedValue] = Dispatcher(
            self._client.run, self._deliver, spec.transport.max_in_flight
        )
        self._metrics = _Metrics()
        self._dead_letters: List[WindowedValue] = []

    def _deliver(self, batch: Batch[WindowedValue]) -> Coroutine[Any, Any, DeliveryReport[WindowedValue]]:
        return deliver(batch, self._client.send, self._wire)

    def add(self, event_type: str, payload: bytes, source: WindowedValue, encoded_size: Optional[int] = None) -> None:
        closed = self._batcher.add(event_type, payload, source, encoded_size)
        if closed is not None:
            self._record(self._dispatcher.dispatch(closed))

    def flush(self) -> None:
        """Starts sending the open batch, if any."""
        closed = self._batcher.flush()
        if closed is not None:
            self._record(self._dispatcher.dispatch(closed))

    @property
    def has_dead_letters(self) -> bool:
        return bool(self._dead_letters)

    def take_dead_letters(self) -> List[WindowedValue]:
        """The dead letters of the deliveries that finished so far, handed over once."""
        dead, self._dead_letters = self._dead_letters, []
        return dead

    def finish(self) -> List[WindowedValue]:
        """Sends what is left, waits for every request; returns the remaining dead letters."""
        self.flush()
        self._record(self._dispatcher.wait_all())
        return self.take_dead_letters()

    def discard(self) -> None:
        """Forgets the open batch and what is in flight (a failed bundle is retried whole)."""
        self._batcher.flush()
        self._dispatcher.cancel_all()
        self._dead_letters = []

    def close(self) -> None:
        """Cancels what is in flight and closes the client: no thread or socket is left."""
        self._dispatcher.cancel_all()
        self._client.close()

    def _record(self, reports: Iterable[DeliveryReport[WindowedValue]]) -> None:
        self._metrics.record_retries(*self._tally.take())
        for report in reports:
            self._metrics.record(report)
            for failed in report.failures:
                if self._spec.fail_on_error:
                    raise DeliveryError(
                        f"{len(failed.sources)} event(s) were not delivered: {_send_error(failed)}"
                    )
                self._metrics.events_dead_lettered.inc(len(failed.sources))
                error = _send_error(failed)
                for source, event_type in zip(failed.sources, failed.event_types):
                    letter = RaccoonDeadLetter(
                        element=source.value,
                        event_type=event_type,
                        stage=STAGE_SEND,
                        error=error,
                        code=failed.failure.code,
                        attempts=failed.attempts,
                        req_guid=failed.req_guid,
                    )
                    self._dead_letters.append(WindowedValue(letter, source.timestamp, source.windows))


def _send_error(failed: FailedEvents) -> str:
    """A dead letter's reason: why the sink stopped trying, then what the server said."""
    if failed.verdict is Verdict.RETRY:
        return f"gave up after {failed.attempts} attempt(s): {failed.failure.message}"
    if failed.verdict is Verdict.SPLIT:
        return f"rejected by the server: {failed.failure.message}"
    return f"not retryable: {failed.failure.message}"


def _dead_letter_outputs(sender: _Sender) -> Optional[Tuple[TaggedOutput, ...]]:
    """Dead letters ready now, as outputs of ``process``.

    Emitting them as soon as their batch finishes, rather than at the end of
    the bundle, keeps memory bounded when a bundle is large and the server
    rejects everything. Only valid while the input element is in one window.
    """
    if not sender.has_dead_letters:  # the common case, once per event: no allocation
        return None
    return tuple(TaggedOutput(FAILED_TAG, letter) for letter in sender.take_dead_letters())


class _SendingFn(beam.DoFn):
    """Shared lifecycle of the DoFns that own a :class:`_Sender`."""

    def __init__(self, spec: _SenderSpec) -> None:
        self._spec = spec
        self._sender: Optional[_Sender] = None

    def setup(self) -> None:
        self._sender = _Sender(self._spec)

    def start_bundle(self) -> None:
        # A bundle that failed half-way left its batches behind; the runner
        # retries those elements, so they must not leak into this bundle.
        assert self._sender is not None
        self._sender.discard()

    def finish_bundle(self) -> Iterable[TaggedOutput]:
        assert self._sender is not None
        try:
            dead_letters = self._sender.finish()
        except Exception:
            self._sender.discard()
            raise
        for letter in dead_letters:
            yield TaggedOutput(FAILED_TAG, letter)

    def teardown(self) -> None:
        if self._sender is not None:
            self._sender.close()
            self._sender = None


def _rejection_letter(element: Any, rejection: EventRejected, fail_on_error: bool) -> RaccoonDeadLetter:
    """The dead letter of an element that cannot become an event (or the error, with ``fail_on_error``)."""
    if fail_on_error:
        raise DeliveryError(f"{rejection.stage} failed: {rejection.reason}") from rejection
    return RaccoonDeadLetter(
        element=element, event_type=rejection.event_type, stage=rejection.stage, error=rejection.reason
    )


class _WriteEventsFn(_SendingFn):
    """Builds, batches and sends the events of each bundle."""

    def __init__(self, builder: EventBuilder, spec: _SenderSpec) -> None:
        super().__init__(spec)
        self._builder = builder
        self._rejected = _counter(_EVENTS_DEAD_LETTERED)

    # Not a generator: this runs once per element and most elements output
    # nothing, which Beam takes as None at less cost than an empty generator.
    def process(self, element: Any, windowed=beam.DoFn.WindowedValueParam) -> Optional[Iterable[Any]]:
        try:
            event_type, payload, encoded_size = self._builder(element)
        except EventRejected as rejection:
            letter = _rejection_letter(element, rejection, self._spec.fail_on_error)
            self._rejected.inc()
            return (TaggedOutput(FAILED_TAG, letter),)  # inherits the element's windowing
        assert self._sender is not None
        self._sender.add(event_type, payload, windowed, encoded_size)
        if len(windowed.windows) == 1:
            return _dead_letter_outputs(self._sender)
        return None  # Beam would multiply the windows of a WindowedValue output here


class _BuildEventsFn(beam.DoFn):
    """Builds events ahead of GroupIntoBatches (the buffering path)."""

    def __init__(self, builder: EventBuilder, fail_on_error: bool) -> None:
        self._builder = builder
        self._fail_on_error = fail_on_error
        self._rejected = _counter(_EVENTS_DEAD_LETTERED)

    def process(self, element: Any, timestamp=beam.DoFn.TimestampParam) -> Iterable[Any]:
        try:
            event_type, payload, encoded_size = self._builder(element)
        except EventRejected as rejection:
            letter = _rejection_letter(element, rejection, self._fail_on_error)
            self._rejected.inc()
            yield TaggedOutput(FAILED_TAG, letter)
            return
        # The timestamp travels with the event: GroupIntoBatches re-stamps its output.
        yield _BUFFERING_KEY, (event_type, payload, encoded_size, element, timestamp)


class _WriteBatchesFn(_SendingFn):
    """Sends the batches that GroupIntoBatches formed across bundles."""

    def process(
        self, keyed_batch: Tuple[Any, Iterable[Any]], window=beam.DoFn.WindowParam
    ) -> Optional[Tuple[TaggedOutput, ...]]:
        assert self._sender is not None
        windows = (window,)
        for event_type, payload, encoded_size, element, timestamp in keyed_batch[1]:
            self._sender.add(event_type, payload, WindowedValue(element, timestamp, windows), encoded_size)
        # A buffered batch is due now: do not hold it until the bundle ends.
        self._sender.flush()
        return _dead_letter_outputs(self._sender)
