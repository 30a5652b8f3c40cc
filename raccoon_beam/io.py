"""``WriteToRaccoon``: the Beam sink, and the DoFns behind it.

This module is orchestration: it holds no protocol detail and no delivery
logic. element -> :class:`~raccoon_beam.events.EventBuilder` ->
:class:`~raccoon_beam.delivery.BundleWriter` (batches, sent by the worker
process's shared :class:`~raccoon_beam.delivery.Sender`) -> acknowledged, or
a :class:`~raccoon_beam.errors.RaccoonDeadLetter` on the ``failed`` output,
in the element's own window and with its timestamp.

Two shapes of pipeline:

* by default each bundle is batched on its own, and ``finish_bundle`` returns
  only when every request of the bundle is acknowledged or dead-lettered;
* with ``max_buffering_duration``, events are serialized first and batched
  across bundles by ``GroupIntoBatches.WithShardedKey``, for streaming
  pipelines whose bundles are tiny.
"""

from __future__ import annotations

import logging
import random
import threading
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import PCollection, TaggedOutput
from apache_beam.transforms.display import DisplayDataItem
from apache_beam.transforms.window import BoundedWindow, GlobalWindows, WindowFn
from apache_beam.utils import windowed_value
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from raccoon_beam.acknowledgements import RaccoonAck, ack_records
from raccoon_beam.batching import DEFAULT_MAX_BATCH_BYTES, DEFAULT_MAX_BATCH_SIZE
from raccoon_beam.dead_letters import RaccoonDeadLetterRow, to_row
from raccoon_beam.delivery import BundleWriter, DeliveryReport, Sender, acquire_sender, release_sender
from raccoon_beam.delivery.log import RateLimitedLog, dead_letter_log
from raccoon_beam.errors import STAGE_SEND, DeliveryError, RaccoonDeadLetter
from raccoon_beam.events import EventRejected, EventTypeSpec
from raccoon_beam.protocol import DEFAULT_TOPIC_PATTERN
from raccoon_beam.options import WriteOptions
from raccoon_beam.retry import RetryPolicy
from raccoon_beam.serializers import DescriptorSetSpec, MessageTypeSpec
from raccoon_beam.serializers.json import DEFAULT_JSON_BYTES
from raccoon_beam.transports import (
    DEFAULT_CONN_ID_HEADER,
    DEFAULT_CONN_ID_PREFIX,
    DEFAULT_GROUP_HEADER,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_TIMEOUT,
    TlsOptions,
)
from raccoon_beam.transports.endpoint import redact_url
from raccoon_beam.transports.credentials import HeaderValue

__all__ = ["WriteToRaccoon", "WriteToRaccoonResult", "FAILED_TAG", "ACKNOWLEDGED_TAG", "METRICS_NAMESPACE"]

FAILED_TAG = "failed"
# The main output of the sending DoFns: the ack records when asked for, else nothing.
ACKNOWLEDGED_TAG = "acknowledged"
METRICS_NAMESPACE = "raccoon"


class WriteToRaccoonResult:
    """The outputs of :class:`WriteToRaccoon`.

    Attributes:
      failed: a PCollection of :class:`RaccoonDeadLetter`, one per element that
        was not delivered, in that element's window and with its timestamp;
        its coder encodes any letter (see :mod:`raccoon_beam.dead_letters`).
      failed_rows: the same letters as :class:`~raccoon_beam.dead_letters.RaccoonDeadLetterRow`
        rows with a Beam schema, for ``WriteToJson``, ``WriteToBigQuery`` or Beam SQL.
    """

    def __init__(
        self,
        pipeline: beam.Pipeline,
        failed: PCollection,
        failed_rows: PCollection,
        acknowledged: Optional[PCollection] = None,
    ) -> None:
        self.pipeline = pipeline
        self.failed = failed
        self.failed_rows = failed_rows
        self._acknowledged = acknowledged

    @property
    def acknowledged(self) -> PCollection:
        """With ``acknowledgements=True``: a PCollection of :class:`~raccoon_beam.acknowledgements.RaccoonAck`.

        One record per acknowledged request (per window of its events), with
        a Beam schema; see :mod:`raccoon_beam.acknowledgements` for its
        windowing.

        Raises:
          AttributeError: the sink was made without ``acknowledgements=True``.
        """
        if self._acknowledged is None:
            raise AttributeError("result.acknowledged needs WriteToRaccoon(..., acknowledgements=True)")
        return self._acknowledged

    def __getitem__(self, tag: str) -> PCollection:
        if tag == FAILED_TAG:
            return self.failed
        if tag == ACKNOWLEDGED_TAG and self._acknowledged is not None:
            return self._acknowledged
        raise KeyError(tag)


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
        Default ``"json"``: it takes what most pipelines carry (dicts, Rows,
        dataclasses) with no schema to declare.
      wire: how requests are encoded, ``"protobuf"`` or ``"json"`` (REST and
        WebSocket only; gRPC is always protobuf). Default ``"protobuf"``:
        smaller and cheaper to encode, and valid on every transport.
      avro_schema: the Avro schema (a dict or JSON string) for ``"avro"``;
        by default derived from the input's Beam schema (see
        :mod:`raccoon_beam.serializers.avro_schema`).
      message_type: with ``"protobuf"``, the message plain data (dicts, Rows,
        NamedTuples, dataclasses) is converted to: a generated message class,
        or a full name with ``descriptor_set``.
      descriptor_set: the FileDescriptorSet file (or its bytes) that defines
        a ``message_type`` given by name.
      ignore_unknown_fields: with ``message_type``, skip fields the message
        does not have instead of dead-lettering the element. Off by default:
        an unknown field is usually a typo or a schema that moved on, and
        dropping it silently would lose data.
      json_bytes: with ``"json"``, how bytes values are written:
        ``"base64"`` (strings, as BigQuery's JSON export writes BYTES) or
        ``"error"`` (the element is dead-lettered).
      json_default: with ``"json"``, a function for values of your own
        types, as orjson's ``default``: it returns something the JSON
        mapping writes (docs/serializers.md), or raises ``TypeError``.
      avro_schema_registry_id: with ``"avro"``, the schema's id in a
        Confluent schema registry; every payload is then framed as the
        registry's serializers frame it (magic byte 0, the id as 4 bytes
        big-endian, then the Avro binary).
      max_batch_size: the most events in one request.
      max_batch_bytes: the most bytes in one encoded request; by default
        safely under gRPC's 4 MiB receive limit.
      max_event_bytes: the largest serialized event; larger ones are
        dead-lettered (stage ``validate``). By default only events that could
        not fit in a request of their own are.
      topic_pattern: the server's ``EVENT_DISTRIBUTION_PUBLISHER_PATTERN``
        (Raccoon's default ``"clickstream-%s-log"``): an event type whose
        topic Kafka would refuse (a character other than ASCII letters,
        digits, ``.``, ``_``, ``-``; over 249 characters) is dead-lettered at
        stage ``validate`` rather than lost at publish.
      max_buffering_duration: seconds; batch across bundles with
        ``GroupIntoBatches.WithShardedKey`` and send a batch at the latest
        this long after its first event (for streaming pipelines). Off by
        default: nothing is kept in the runner's state, and each bundle's
        events are sent before the bundle ends (docs/streaming.md).
      retry: retry policy for failures that can succeed later. ``None``:
        ``RetryPolicy()``, 10 attempts within 300 s, about two minutes of
        backoff: long enough to ride out a Raccoon restart.
      timeout: seconds to wait for a request's answer. Raccoon in sync-ack
        mode answers only after publishing, so keep it generous.
      max_in_flight: the most batches in flight per client. DoFn instances
        of one worker process share one client per configuration (gRPC and
        WebSocket: one connection; REST: up to ``max_in_flight`` TCP
        connections, one per request in flight), so this is per worker
        process, not per thread: it bounds the requests a worker process has
        in flight to one endpoint. The connection opens on the first send,
        not in ``setup()``.
      adaptive_throttling: send less when Raccoon shows overload (timeouts,
        429, 503, gRPC ``UNAVAILABLE``, publish failures, latency growing
        with what is in flight): Beam's accept-ratio throttling and a limit
        on requests in flight that adapts (within ``max_in_flight``,
        starting at 4). On by default, per worker process and endpoint;
        time held back is reported as ``cumulativeThrottlingSeconds``
        (docs/backfill.md).
      max_events_per_second: the most events per second sent by one
        worker process to this endpoint (every DoFn of the process shares
        it); a fleet sends up to that times its processes (docs/sizing.md).
        ``None`` (the default): no limit.
      ramp_up_duration: seconds over which the rate limit grows from a
        tenth of ``max_events_per_second`` to all of it, so that a backfill
        does not hit a cold server at full speed (needs
        ``max_events_per_second``). ``None``: no ramp-up.
      headers: extra headers sent with every request (auth, ...). A value
        is a string, or a credential provider resolved on the worker and
        read again when the server answers 401 (``FromEnv``, ``FromFile``,
        ``FromCallable`` or a plain function); see docs/credentials.md.
      conn_id_header: the header with the connection id that Raccoon
        requires (``SERVER_WEBSOCKET_CONN_ID_HEADER``).
      conn_id_prefix: prefix of the unique connection id of each client.
      group: the connection group, sent in ``group_header``. ``None``: no
        header, so Raccoon puts the connection in its default group.
      group_header: the group header (``SERVER_WEBSOCKET_CONN_GROUP_HEADER``).
      tls: TLS options (custom CA, client certificate) for grpcs/https/wss.
        ``None``: ``TlsOptions()``, the system's roots, verification on.
      secret_headers: names of headers whose values must never be shown;
        ``Authorization`` and the like are always secret.
      proxy: an HTTP proxy, ``http://[user:password@]host:port``, for all
        three transports. ``None`` (the default): no proxy at all; proxy
        environment variables (``http_proxy``, ``grpc_proxy``, ...) are
        ignored by every transport, gRPC included.
      fail_on_error: raise in the bundle instead of dead-lettering, so that
        the runner retries the bundle. Off by default: a few bad elements
        should not stop a pipeline, and the dead letters keep them; turn it
        on for first runs, to see a misconfiguration at once.
      acknowledgements: also output ``result.acknowledged``, one
        :class:`~raccoon_beam.acknowledgements.RaccoonAck` per acknowledged
        request (see docs/acknowledgements.md); off by default, when no
        per-request record is made.

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
        message_type: Optional[MessageTypeSpec] = None,
        descriptor_set: Optional[DescriptorSetSpec] = None,
        ignore_unknown_fields: bool = False,
        json_bytes: str = DEFAULT_JSON_BYTES,
        json_default: Optional[Callable[[Any], Any]] = None,
        avro_schema_registry_id: Optional[int] = None,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
        max_event_bytes: Optional[int] = None,
        topic_pattern: str = DEFAULT_TOPIC_PATTERN,
        max_buffering_duration: Optional[float] = None,
        retry: Optional[RetryPolicy] = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        adaptive_throttling: bool = True,
        max_events_per_second: Optional[float] = None,
        ramp_up_duration: Optional[float] = None,
        headers: Optional[Mapping[str, HeaderValue]] = None,
        conn_id_header: str = DEFAULT_CONN_ID_HEADER,
        conn_id_prefix: str = DEFAULT_CONN_ID_PREFIX,
        group: Optional[str] = None,
        group_header: str = DEFAULT_GROUP_HEADER,
        tls: Optional[TlsOptions] = None,
        secret_headers: Sequence[str] = (),
        proxy: Optional[str] = None,
        fail_on_error: bool = False,
        acknowledgements: bool = False,
    ) -> None:
        super().__init__()
        self._options = WriteOptions(
            endpoint=endpoint,
            event_type=event_type,
            serializer=serializer,
            wire=wire,
            avro_schema=avro_schema,
            message_type=message_type,
            descriptor_set=descriptor_set,
            ignore_unknown_fields=ignore_unknown_fields,
            json_bytes=json_bytes,
            json_default=json_default,
            avro_schema_registry_id=avro_schema_registry_id,
            max_batch_size=max_batch_size,
            max_batch_bytes=max_batch_bytes,
            max_event_bytes=max_event_bytes,
            topic_pattern=topic_pattern,
            max_buffering_duration=max_buffering_duration,
            retry=retry if retry is not None else RetryPolicy(),
            timeout=timeout,
            max_in_flight=max_in_flight,
            adaptive_throttling=adaptive_throttling,
            max_events_per_second=max_events_per_second,
            ramp_up_duration=ramp_up_duration,
            headers=dict(headers or {}),
            conn_id_header=conn_id_header,
            conn_id_prefix=conn_id_prefix,
            group=group,
            group_header=group_header,
            tls=tls if tls is not None else TlsOptions(),
            secret_headers=tuple(secret_headers),
            proxy=proxy,
            fail_on_error=fail_on_error,
            acknowledgements=acknowledgements,
        )

    @property
    def options(self) -> WriteOptions:
        """The validated options."""
        return self._options

    def expand(self, pcoll: PCollection) -> WriteToRaccoonResult:
        # The serializer may depend on the input's Beam schema (a derived Avro schema).
        options = self._options.for_element_type(pcoll.element_type)
        if options.acknowledgements:
            _check_runner_keeps_outputs_apart(pcoll.pipeline)
        # One label for the step that sends, whatever the path: see docs/runners.md
        # for what changes between the paths.
        if _runs_on_dask(pcoll.pipeline):
            # Beam's Dask runner drops what finish_bundle emits: whole groups,
            # each delivered and dead-lettered inside one process call.
            groups = (
                pcoll
                | "KeyForGrouping" >> beam.ParDo(_KeyElementsFn(_DASK_SHARDS, pcoll.windowing.windowfn))
                | "GroupElements" >> beam.GroupByKey()
            )
            sent = groups | "WriteEvents" >> _sending(_WriteGroupsFn(options, whole_groups=True), options)
        elif options.max_buffering_duration is None:
            sent = pcoll | "WriteEvents" >> _sending(_WriteEventsFn(options), options)
        else:
            groups = (
                pcoll
                | "KeyForBuffering"
                >> beam.ParDo(_KeyElementsFn(1, pcoll.windowing.windowfn)).with_output_types(Tuple[int, Any])
                | "BatchAcrossBundles"
                >> beam.GroupIntoBatches.WithShardedKey(
                    options.max_batch_size,
                    max_buffering_duration_secs=options.max_buffering_duration,
                    clock=options.buffering_clock,
                )
            )
            sent = groups | "WriteEvents" >> _sending(_WriteGroupsFn(options, whole_groups=False), options)
        failed = sent[FAILED_TAG]
        # An explicit coder that encodes any letter (raccoon_beam.dead_letters).
        failed.element_type = RaccoonDeadLetter
        rows = failed | "DeadLetterRows" >> beam.Map(to_row).with_output_types(RaccoonDeadLetterRow)
        return WriteToRaccoonResult(pcoll.pipeline, failed, rows, _acknowledged(sent, options))

    def display_data(self) -> Dict[str, Any]:
        options = self._options
        transport = options.transport
        data: Dict[str, Any] = {
            "endpoint": DisplayDataItem(transport.parsed_endpoint.redacted, label="Raccoon endpoint"),
            "transport": DisplayDataItem(transport.kind, label="Transport"),
            "wire": DisplayDataItem(options.wire_type.value, label="Wire type"),
            "serializer": DisplayDataItem(options.serializer_name, label="Serializer"),
            "event_type": DisplayDataItem(options.event_type_name, label="Event type"),
            "max_batch_size": DisplayDataItem(options.max_batch_size, label="Max events per request"),
            "max_batch_bytes": DisplayDataItem(options.max_batch_bytes, label="Max bytes per request"),
            "max_in_flight": DisplayDataItem(transport.max_in_flight, label="Max requests in flight"),
            "timeout": DisplayDataItem(transport.timeout, label="Request timeout (s)"),
            "adaptive_throttling": DisplayDataItem(options.adaptive_throttling, label="Adaptive throttling"),
            "retry": DisplayDataItem(repr(options.retry), label="Retry policy"),
        }
        for name, value in options.serializer_display.items():
            data[name] = DisplayDataItem(value, label=_SERIALIZER_LABELS.get(name, name))
        if options.acknowledgements:
            data["acknowledgements"] = DisplayDataItem(True, label="Acknowledgement output")
        if options.max_events_per_second is not None:
            data["max_events_per_second"] = DisplayDataItem(
                options.max_events_per_second, label="Max events per second (per worker process)"
            )
        if options.ramp_up_duration is not None:
            data["ramp_up_duration"] = DisplayDataItem(options.ramp_up_duration, label="Ramp-up duration (s)")
        if options.max_event_bytes is not None:
            data["max_event_bytes"] = DisplayDataItem(options.max_event_bytes, label="Max event bytes")
        if options.max_buffering_duration is not None:
            data["max_buffering_duration"] = DisplayDataItem(
                options.max_buffering_duration, label="Max buffering duration (s)"
            )
        if transport.headers:
            # Names only: a value may be a credential whatever its header is called.
            data["headers"] = DisplayDataItem(", ".join(sorted(transport.headers)), label="Extra headers")
        if transport.proxy is not None:
            data["proxy"] = DisplayDataItem(redact_url(transport.proxy), label="Proxy")
        return data


_SERIALIZER_LABELS = {
    "avro_schema": "Avro schema (derived from the Beam schema)",
    "avro_schema_name": "Avro schema name",
    "avro_schema_fingerprint": "Avro schema fingerprint",
}


def _sending(fn: beam.DoFn, options: WriteOptions) -> beam.PTransform:
    """The ParDo of a sending DoFn: dead letters tagged, ack records (if asked for) on the main output."""
    if not options.acknowledgements:
        return beam.ParDo(fn).with_outputs(FAILED_TAG, main="unused")
    return beam.ParDo(fn).with_output_types(RaccoonAck).with_outputs(FAILED_TAG, main=ACKNOWLEDGED_TAG)


def _check_runner_keeps_outputs_apart(pipeline: beam.Pipeline) -> None:
    """Refuses ``acknowledgements=True`` on a runner that mixes a ParDo's outputs.

    Beam's Dask runner (2.77) puts every output of a ParDo into one bag that
    each consumer reads: ack records would reach ``result.failed``'s
    consumers (a dead-letter file) and the other way round. Measured, not
    assumed; refused with a clear error rather than mixed silently.
    """
    if _runs_on_dask(pipeline):
        raise ValueError(
            "acknowledgements=True is not supported on Beam's Dask runner: it hands every output of a ParDo "
            "to each consumer, so the ack records would be mixed with the dead letters"
        )


def _acknowledged(outputs: Any, options: WriteOptions) -> Optional[PCollection]:
    """``result.acknowledged``: the sending DoFn's main output, through one plain Map.

    The Map is there because Beam (2.77) loses what a DoFn outputs from
    ``finish_bundle`` when it goes straight into a fused batched DoFn, such
    as ``beam.io.WriteToJson``'s pandas conversion: without it, a pipeline
    writing the acks to JSON would silently write none of those. It costs one
    call per acknowledged request.
    """
    if not options.acknowledgements:
        return None
    return outputs[ACKNOWLEDGED_TAG] | "Acknowledged" >> beam.Map(_same).with_output_types(RaccoonAck)


def _same(ack: RaccoonAck) -> RaccoonAck:
    return ack


_EVENTS_DEAD_LETTERED = "events_dead_lettered"


def _counter(name: str) -> Any:
    return Metrics.counter(METRICS_NAMESPACE, name)


class _Metrics:
    """The sink's Beam metrics, updated once per batch on the bundle's thread."""

    def __init__(self) -> None:
        counter = _counter
        self.events_sent = counter("events_sent")
        self.events_acknowledged = counter("events_acknowledged")
        self.events_dead_lettered = counter(_EVENTS_DEAD_LETTERED)
        self.batches = counter("batches")
        self.requests = counter("requests")
        self.retries = counter("retries")
        self.bytes_sent = counter("bytes_sent")
        # The name Dataflow's autoscaler reads: wall-clock seconds the worker
        # held requests back (throttling, rate limit, an outage's backoff).
        self.throttling_seconds = counter("cumulativeThrottlingSeconds")
        # Wall-clock seconds the bundle's thread waited for a free slot
        # (max_in_flight): back-pressure from the server or the limits.
        self.blocked_seconds = counter("max_in_flight_blocked_seconds")
        # Beam's RequestResponseIO names.
        self.requests_timed_out = counter("requests_timed_out")
        self.throttled_requests = counter("throttled_requests")
        self.batch_size = Metrics.distribution(METRICS_NAMESPACE, "batch_size")
        # Each attempt's latency, failed ones included, without backoff or time held back.
        self.request_latency_ms = Metrics.distribution(METRICS_NAMESPACE, "request_latency_ms")

    def record(self, report: DeliveryReport[Any]) -> None:
        """Records one finished batch."""
        self.batches.inc()
        self.batch_size.update(report.events)
        self.events_sent.inc(report.events)
        self.events_acknowledged.inc(report.acknowledged)
        self.requests.inc(report.requests)
        self.bytes_sent.inc(report.bytes_sent)
        for latency in report.latencies_ms:
            self.request_latency_ms.update(latency)
        if report.retries:
            self.retries.inc(report.retries)
        if report.timeouts:
            self.requests_timed_out.inc(report.timeouts)

    def record_flow(self, sender: Sender) -> None:
        """Records the sender's held-back time not reported yet (by this DoFn or another)."""
        held, blocked, throttled = sender.take_flow_stats()
        if held:
            self.throttling_seconds.inc(held)
        if blocked:
            self.blocked_seconds.inc(blocked)
        if throttled:
            self.throttled_requests.inc(throttled)


class _SendingFn(beam.DoFn):
    """Shared lifecycle of the DoFns that send: the process's sender, this instance's batches.

    Every event's source (what its dead letter is made from) is its
    element's WindowedValue, or in the usual case the element alone: when it
    is in the window, at the timestamp and in the pane that the bundle's
    elements share (``_windowing``). Either way the dead letter keeps them.
    Why the element alone: the sink holds each event until its batch is
    acknowledged, long enough for a held WindowedValue to reach the garbage
    collector's oldest generation, and those thousands of promotions trigger
    full collections that scan every object of the worker (about 1 us per
    event in all; see benchmarks/README.md).
    """

    def __init__(self, options: WriteOptions) -> None:
        self._options = options
        self._sender: Optional[Sender] = None
        self._writer: Optional[BundleWriter[Any]] = None
        self._metrics: Optional[_Metrics] = None
        self._dead_letters: List[WindowedValue] = []
        # Ack records (acknowledgements=True), for the main output.
        self._acks: List[WindowedValue] = []
        # Dead letters of this bundle per stage: [count, latest reason] (the summary lines).
        self._tally: Dict[str, List[Any]] = {}
        # The window, timestamp and pane of the bundle's elements, as a
        # WindowedValue of None; set by the first chunk of a bundle.
        self._windowing: Optional[WindowedValue] = None

    def setup(self) -> None:
        options = self._options
        self._sender = acquire_sender(options.transport, options.retry, options.flow)
        self._writer = BundleWriter(
            self._sender,
            options.wire_type,
            options.max_batch_size,
            options.max_batch_bytes,
            acknowledgements=options.acknowledgements,
        )
        self._metrics = _Metrics()
        self._dead_letters = []
        self._acks = []

    def start_bundle(self) -> None:
        # A bundle that failed half-way left its batches behind; the runner
        # retries those elements, so they must not leak into this bundle.
        assert self._writer is not None
        self._writer.discard()
        self._dead_letters = []
        self._acks = []
        self._tally = {}
        self._windowing = None

    def finish_bundle(self) -> Iterable[Any]:
        assert self._writer is not None
        try:
            self._record(self._writer.finish())
        except Exception:
            self._writer.discard()
            raise
        dead_letters, self._dead_letters = self._dead_letters, []
        if self._tally:
            _summarize(self._tally)
            self._tally = {}
        for letter in dead_letters:
            yield TaggedOutput(FAILED_TAG, letter)
        acks, self._acks = self._acks, []
        yield from acks

    def teardown(self) -> None:
        if self._writer is not None:
            self._writer.discard()
            self._writer = None
        if self._sender is not None:
            release_sender(self._sender)
            self._sender = None

    def _ready_dead_letters(self) -> Optional[Tuple[Any, ...]]:
        """The dead letters (and ack records) of the batches that finished, as outputs of ``process``.

        Emitting them as soon as their batch finishes, rather than at the end
        of the bundle, keeps memory bounded when a bundle is large and the
        server rejects everything. Only valid while the input element is in
        one window.
        """
        assert self._writer is not None
        if self._writer.finished:
            self._record(self._writer.take_finished())
        if not self._dead_letters and not self._acks:
            return None
        dead_letters, self._dead_letters = self._dead_letters, []
        acks, self._acks = self._acks, []
        return tuple(TaggedOutput(FAILED_TAG, letter) for letter in dead_letters) + tuple(acks)

    def _count(self, stage: str, count: int, reason: str) -> None:
        """Adds ``count`` dead letters of ``stage`` to the bundle's summary."""
        tally = self._tally.setdefault(stage, [0, reason])
        tally[0] += count
        tally[1] = reason

    def _windowed(self, source: Any) -> WindowedValue:
        """The WindowedValue of an event's source: itself, or the element in the bundle's windowing."""
        if type(source) is WindowedValue:
            return source
        assert self._windowing is not None, "a bare element is only kept once the bundle's windowing is known"
        return self._windowing.with_value(source)

    def _record(self, reports: Iterable[DeliveryReport[Any]]) -> None:
        metrics = self._metrics
        assert metrics is not None and self._sender is not None
        recorded = False
        for report in reports:
            recorded = True
            metrics.record(report)
            if report.acked:
                kind = self._options.transport.kind
                for acked in report.acked:
                    self._acks.extend(ack_records(acked, kind, self._windowed))
            for failed in report.failures:
                if self._options.fail_on_error:
                    raise DeliveryError(f"{len(failed.sources)} event(s) were not delivered: {failed.reason}")
                metrics.events_dead_lettered.inc(len(failed.sources))
                self._count(STAGE_SEND, len(failed.sources), failed.reason)  # the sender logs them
                error, code, delivered = failed.reason, failed.failure.code, failed.delivered
                payloads: Sequence[Optional[bytes]] = failed.payloads
                if len(payloads) != len(failed.sources):  # a report without them: never let zip drop a letter
                    payloads = [None] * len(failed.sources)
                for source, event_type, payload in zip(failed.sources, failed.event_types, payloads):
                    windowed = self._windowed(source)
                    letter = RaccoonDeadLetter(
                        element=windowed.value,
                        event_type=event_type,
                        stage=STAGE_SEND,
                        error=error,
                        code=code,
                        attempts=failed.attempts,
                        req_guid=failed.req_guid,
                        delivered=delivered,
                        payload=payload,
                    )
                    self._dead_letters.append(windowed.with_value(letter))
        if recorded:  # once per batch or bundle, never per event: three locks
            metrics.record_flow(self._sender)


_log = logging.getLogger(__name__)
# One rate-limited log per stage and worker process (as the sender's for stage
# "send"), made on first use: a logger's lock does not pickle with a DoFn.
_STAGE_LOGS: Dict[str, RateLimitedLog] = {}
_STAGE_LOGS_LOCK = threading.Lock()


def _stage_log(stage: str) -> RateLimitedLog:
    log = _STAGE_LOGS.get(stage)
    if log is None:
        with _STAGE_LOGS_LOCK:
            log = _STAGE_LOGS.setdefault(stage, dead_letter_log(_log, stage))
    return log


def _summarize(tally: Mapping[str, List[Any]]) -> None:
    """One line per stage for a bundle that dead-lettered events."""
    for stage, (count, reason) in sorted(tally.items()):
        _log.warning(
            "bundle finished with %d event(s) dead-lettered at stage '%s' (in result.failed; "
            "fail_on_error=True fails the pipeline instead); latest: %s",
            count,
            stage,
            reason,
        )


def _rejection_letter(element: Any, rejection: EventRejected, fail_on_error: bool) -> RaccoonDeadLetter:
    """The dead letter of an element that cannot become an event (or the error, with ``fail_on_error``)."""
    if fail_on_error:
        raise DeliveryError(f"{rejection.stage} failed: {rejection.reason}") from rejection
    return RaccoonDeadLetter(
        element=element,
        event_type=rejection.event_type,
        stage=rejection.stage,
        error=rejection.reason,
        payload=rejection.payload,
    )


# Elements built into events at once: enough to spread the cost of a call
# over many elements, few enough that a chunk of large elements stays small:
# each chunk is sized after the one before to hold about _CHUNK_BYTES of
# payloads (so when events turn large, one chunk may hold _CHUNK_EVENTS).
_CHUNK_EVENTS = 64
_CHUNK_BYTES = 1 << 20


class _WriteEventsFn(_SendingFn):
    """Builds, batches and sends the events of each bundle.

    ``process`` only keeps each element (as its WindowedValue); every
    ``_CHUNK_EVENTS`` of them (fewer for large events) are built into
    events at once (:meth:`EventBuilder.build_many
    <raccoon_beam.events.EventBuilder.build_many>`) and added to the batches.
    """

    def __init__(self, options: WriteOptions) -> None:
        super().__init__(options)
        assert options.builder is not None, "options.for_element_type() first"
        self._builder = options.builder
        self._rejected = _counter(_EVENTS_DEAD_LETTERED)
        self._chunk: List[WindowedValue] = []
        self._chunk_limit = 1
        self._chunk_events = 1

    def setup(self) -> None:
        super().setup()
        self._chunk = []
        self._chunk_events = min(_CHUNK_EVENTS, self._options.max_batch_size)
        self._chunk_limit = 1  # until the first chunk shows how large events are

    def start_bundle(self) -> None:
        super().start_bundle()
        self._chunk = []

    # Once per element, so kept to an append and a comparison. Not a
    # generator: most elements output nothing, which Beam takes as None at less cost.
    def process(self, element: Any, windowed=beam.DoFn.WindowedValueParam) -> Optional[Iterable[Any]]:
        chunk = self._chunk
        chunk.append(windowed)
        if len(chunk) >= self._chunk_limit:
            return self._add_full_chunk(windowed)
        return None  # kept; nothing to output yet (a bare "return None" line makes Beam warn)

    def _add_full_chunk(self, current: WindowedValue) -> Optional[Tuple[TaggedOutput, ...]]:
        """Adds the chunk; returns the dead letters ready, as outputs of ``current``'s process call."""
        self._add_chunk()
        if len(current.windows) == 1:
            return self._ready_dead_letters()
        return None  # Beam would multiply the windows of a WindowedValue output here

    def finish_bundle(self) -> Iterable[TaggedOutput]:
        self._add_chunk()
        return super().finish_bundle()

    def _add_chunk(self) -> None:
        """Builds the elements kept so far into events and adds them to the batches."""
        chunk, self._chunk = self._chunk, []
        if not chunk:
            return
        assert self._writer is not None
        values = [windowed.value for windowed in chunk]
        built = self._builder.build_many(values)
        sources: List[Any] = values if self._share_windowing(chunk, values) else chunk
        if built.rejected:
            sources = self._reject(chunk, sources, built.rejected)
        self._writer.extend(built.event_types, built.payloads, sources, built.encoded_size)
        # The next chunk: no more than fills the open batch, fewer when events are large.
        fitting = _CHUNK_BYTES * len(built.payloads) // built.encoded_size if built.payloads else self._chunk_events
        self._chunk_limit = max(1, min(self._chunk_events, fitting, self._writer.room))

    def _share_windowing(self, chunk: List[WindowedValue], values: List[Any]) -> bool:
        """Whether every element of ``chunk`` is in the bundle's window, timestamp and pane.

        Then the elements alone are their events' sources. An element that is
        itself a WindowedValue keeps its own wrapper, so that a bare source is
        never one.
        """
        shared = self._windowing
        if shared is None:
            shared = self._windowing = chunk[0].with_value(None)
        micros, windows, pane = shared.timestamp_micros, shared.windows, shared.pane_info
        for windowed in chunk:  # a loop, not all() over a generator: this runs for every element
            if windowed.timestamp_micros != micros or windowed.pane_info is not pane or windowed.windows != windows:
                return False
        return WindowedValue not in map(type, values)

    def _reject(
        self, chunk: List[WindowedValue], sources: List[Any], rejected: List[Tuple[int, EventRejected]]
    ) -> List[Any]:
        """Dead-letters the rejected elements of ``chunk``; returns the sources of the others."""
        fail_on_error = self._options.fail_on_error
        for index, rejection in rejected:
            windowed = chunk[index]
            letter = _rejection_letter(windowed.value, rejection, fail_on_error)
            self._dead_letters.append(windowed.with_value(letter))
        self._rejected.inc(len(rejected))
        # Logged once per chunk and stage, off the per-event path.
        latest: Dict[str, List[Any]] = {}
        for _, rejection in rejected:
            counted = latest.setdefault(rejection.stage, [0, ""])
            counted[0] += 1
            counted[1] = rejection.reason
        for stage, (count, reason) in latest.items():
            _stage_log(stage).record(count, reason)
            self._count(stage, count, reason)
        dropped = {index for index, _ in rejected}
        return [source for index, source in enumerate(sources) if index not in dropped]


def _runs_on_dask(pipeline: beam.Pipeline) -> bool:
    """Whether ``pipeline`` runs on Beam's Dask runner (known when the transform expands)."""
    runner = getattr(pipeline, "runner", None)
    return any(cls.__module__.startswith("apache_beam.runners.dask") for cls in type(runner).__mro__)


# Groups the Dask path delivers at once: enough to spread over a cluster's
# worker processes and threads, few enough that each group is many batches.
_DASK_SHARDS = 32


class _KeyElementsFn(beam.DoFn):
    """Keys each element to a shard for grouping, carrying its timestamp (and windows) in the value.

    The value is ``(element, timestamp_micros, windows)``. An element in
    several windows (sliding ones) is keyed once, in the first of them, with
    all of them in ``windows`` (None in the usual case of one window): the
    grouping step would otherwise hold, and send, one copy per window; its
    dead letter still goes to every window. Beam calls ``process`` once per
    window here (``WindowParam``), so the element's windows are those the
    input's ``WindowFn`` assigns, and only the call for the first outputs.
    Only the element is kept, not its serialized event: the event is rebuilt
    after the grouping, and what a dead letter needs is the element. The
    timestamp travels in the value because a grouping step may lose it
    (Beam's Dask runner hands main outputs on without their windows).
    """

    def __init__(self, shards: int, window_fn: WindowFn) -> None:
        self._shards = shards
        self._window_fn = None if isinstance(window_fn, GlobalWindows) else window_fn
        self._next = 0

    def setup(self) -> None:
        # Instances start at different shards, so that small bundles still spread.
        self._next = random.randrange(self._shards)

    def process(self, element: Any, window=beam.DoFn.WindowParam, timestamp=beam.DoFn.TimestampParam) -> Iterable[Any]:
        windows = None if self._window_fn is None else self._all_windows(element, timestamp, window)
        if windows is not None and window != windows[0]:
            return  # the call for the element's first window keys it
        self._next = shard = (self._next + 1) % self._shards
        yield shard, (element, timestamp.micros, windows)

    def _all_windows(self, element: Any, timestamp: Timestamp, window: BoundedWindow) -> Optional[Tuple[Any, ...]]:
        """The element's windows when it is in more than one (and they are known), else None."""
        assert self._window_fn is not None
        try:
            windows = tuple(self._window_fn.assign(WindowFn.AssignContext(timestamp, element, window)))
        except Exception:  # noqa: BLE001 - a WindowFn that needs more context: treat the window alone
            return None
        # Not among them: windows the WindowFn did not assign (merged, or set by hand); keep each.
        return windows if len(windows) > 1 and window in windows else None


class _WriteGroupsFn(_WriteEventsFn):
    """Writes the groups of keyed elements formed ahead of it.

    Each element is handled as the default path handles an element of a
    bundle. With ``whole_groups`` (the Dask path) each group is delivered
    completely inside its ``process`` call, which outputs all of its dead
    letters: nothing depends on what ``finish_bundle`` emits. Otherwise (the
    buffering path) the group is sent at once and its dead letters come out
    as their batches finish, the last ones at the end of the bundle.
    """

    def __init__(self, options: WriteOptions, whole_groups: bool) -> None:
        super().__init__(options)
        self._whole_groups = whole_groups

    def default_label(self) -> str:
        # The step that sends has one full label on every path (a Dataflow
        # update matches steps by label): "WriteEvents/ParDo(_WriteEventsFn)".
        return _WriteEventsFn.__name__

    def process(self, keyed_group: Tuple[Any, Iterable[Any]], window=beam.DoFn.WindowParam) -> List[Any]:
        outputs: List[Any] = []
        add = super().process
        group_windows = (window,)  # the one window each element was grouped in
        for element, micros, windows in keyed_group[1]:
            windowed = windowed_value.create(element, micros, windows if windows is not None else group_windows)
            ready = add(element, windowed)
            if ready:
                outputs.extend(ready)
        if self._whole_groups:
            outputs.extend(super().finish_bundle())  # waits for every request of the group
            self.start_bundle()
        else:
            self._add_chunk()
            assert self._writer is not None
            self._writer.flush()  # a buffered group is due now: do not hold it until the bundle ends
            outputs.extend(self._ready_dead_letters() or ())
        return outputs

    def finish_bundle(self) -> Iterable[TaggedOutput]:
        if self._whole_groups:
            return ()  # every group was finished in its process call
        return super().finish_bundle()
