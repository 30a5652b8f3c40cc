"""Metrics, pickling, and distributed execution of WriteToRaccoon."""

from __future__ import annotations

import json
import threading
import time

import apache_beam as beam
from apache_beam.internal import pickler
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from raccoon_beam import RetryPolicy, WriteToRaccoon
from raccoon_beam.emulator import Outcome
from apache_beam.transforms.window import GlobalWindow, IntervalWindow
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from raccoon_beam.delivery import shared
from raccoon_beam.io import METRICS_NAMESPACE, _WriteEventsFn, _WriteGroupsFn


def _metrics(result):
    query = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    counters = {c.key.metric.name: c.committed for c in query["counters"]}
    distributions = {d.key.metric.name: d.committed for d in query["distributions"]}
    return counters, distributions


def test_metrics_count_events_batches_retries_and_dead_letters(emulator):
    emulator.faults.reject_event_type("bad")
    emulator.faults.fail_next(2, Outcome.http(503), transport="rest")
    events = [{"id": i, "event_name": "bad" if i == 7 else "click"} for i in range(100)]
    pipeline = beam.Pipeline()
    result_pc = (
        pipeline
        | beam.Create(events, reshuffle=False)
        | WriteToRaccoon(
            emulator.rest_endpoint,
            event_type=lambda e: e["event_name"],
            max_batch_size=50,
            retry=RetryPolicy(initial_backoff=0.001, max_backoff=0.001),
        )
    )
    assert_that(result_pc.failed | beam.Map(lambda d: d.element["id"]), equal_to([7]))
    result = pipeline.run()
    result.wait_until_finish()
    counters, distributions = _metrics(result)
    assert counters["events_sent"] == 100
    assert counters["events_acknowledged"] == 99
    assert counters["events_dead_lettered"] == 1
    assert counters["batches"] == 2
    assert counters["retries"] == 2
    # One batch of 50 bisected down to the bad event: 2 * log2(50) more requests.
    assert counters["requests"] > 2 + 2
    assert counters["bytes_sent"] > 100 * len(json.dumps(events[0]))
    assert distributions["batch_size"].count == 2 and distributions["batch_size"].max == 50
    # Every attempt's latency: the retried and the rejected ones too.
    assert distributions["request_latency_ms"].count == counters["requests"]
    assert len(emulator.events()) == 99


def test_throttling_seconds_are_wall_clock_however_many_requests_wait_side_by_side(emulator):
    """8 requests in flight, each told to wait 1 s at once: 1 s held back, not 8."""
    emulator.faults.fail_next(8, Outcome.http(429, retry_after=1), transport="rest")
    events = [{"id": i} for i in range(4_000)]
    pipeline = beam.Pipeline()
    result_pc = pipeline | beam.Create(events, reshuffle=False) | WriteToRaccoon(
        emulator.rest_endpoint, event_type="click", max_in_flight=8, adaptive_throttling=False
    )
    assert_that(result_pc.failed, equal_to([]))
    started = time.monotonic()
    result = pipeline.run()
    result.wait_until_finish()
    elapsed = time.monotonic() - started
    counters, _ = _metrics(result)
    # Each of the 8 is held behind the one Retry-After, except possibly the one
    # whose own backoff ends just as the hold does (it is then not held).
    assert counters["retries"] == 8 and counters["throttled_requests"] >= 7
    # Whole seconds: the waits side by side make one second, never more than the run took.
    assert 1 <= counters["cumulativeThrottlingSeconds"] <= min(2, elapsed)
    assert counters.get("requests_timed_out", 0) == 0


def test_dofns_pickle_before_setup_and_hold_no_live_state():
    transform = WriteToRaccoon("grpc://127.0.0.1:1", event_type=lambda e: "t", max_buffering_duration=1)
    for fn in (_WriteEventsFn(transform.options), _WriteGroupsFn(transform.options, whole_groups=True)):
        clone = pickler.loads(pickler.dumps(fn))
        assert clone._sender is None and clone._writer is None
        assert (clone._options.transport, clone._options.retry) == (fn._options.transport, fn._options.retry)


def test_setup_and_teardown_leave_no_thread(emulator):
    before = {t.ident for t in threading.enumerate()}
    transform = WriteToRaccoon(emulator.ws_endpoint, event_type="t")
    fn = _WriteEventsFn(transform.options)
    fn.setup()
    assert len(threading.enumerate()) > len(before)
    fn.teardown()
    # The sender lingers for the next DoFn instance (Dask: the next partition), then closes.
    assert shared.open_senders() == 1
    assert shared.close_idle_senders() == 1
    assert {t.ident for t in threading.enumerate()} <= before


def test_dofn_instances_of_a_process_share_one_sender_and_one_connection(emulator):
    """Dask sets a DoFn up per partition, one after the other: they must not open a connection each."""
    transform = WriteToRaccoon(emulator.ws_endpoint, event_type="t")
    for partition in range(5):
        fn = _WriteEventsFn(transform.options)
        fn.setup()
        fn.start_bundle()
        fn.process({"partition": partition}, WindowedValue({"partition": partition}, 0, (GlobalWindow(),)))
        assert list(fn.finish_bundle()) == []
        fn.teardown()
    assert shared.open_senders() == 1 and shared.close_idle_senders() == 1
    assert len(emulator.events()) == 5 and len({event.conn_id for event in emulator.events()}) == 1
    # Once closed, the next user gets a new sender (and a new connection id).
    fn = _WriteEventsFn(transform.options)
    fn.setup()
    shared.release_sender(fn._sender, linger=0)
    fn._sender = None
    assert shared.open_senders() == 0


def test_multi_process_direct_runner_delivers_exactly_the_input(emulator):
    events = [{"id": i, "event_name": ("click", "view")[i % 2]} for i in range(4000)]
    options = PipelineOptions(direct_running_mode="multi_processing", direct_num_workers=2)
    with beam.Pipeline(options=options) as pipeline:
        result = (
            pipeline
            | beam.Create(events)
            | beam.Reshuffle()
            | WriteToRaccoon(emulator.grpc_endpoint, event_type=lambda e: e["event_name"], max_batch_size=100)
        )
        assert_that(result.failed, equal_to([]))
    captured = sorted(json.loads(e.event_bytes)["id"] for e in emulator.events())
    assert captured == list(range(4000))
    # Each worker process identified itself with a connection id of its own.
    assert len({e.conn_id for e in emulator.events()}) >= 2


def test_elements_are_built_in_chunks_that_stay_small_when_events_are_large(emulator):
    """process() keeps elements until a chunk is built: small events 64 at a time, large ones few."""
    transform = WriteToRaccoon(emulator.grpc_endpoint, event_type="t", serializer="bytes")
    fn = _WriteEventsFn(transform.options)
    fn.setup()
    try:
        fn.start_bundle()
        window = (GlobalWindow(),)
        largest_chunk = {"small": 0, "large": 0}
        for size, kind, count in ((100, "small", 300), (300_000, "large", 100)):
            for i in range(count):
                payload = bytes([i % 256]) * size
                fn.process(payload, WindowedValue(payload, 0, window))
                if i >= 64:  # the first chunk of a kind is sized after the kind before
                    largest_chunk[kind] = max(largest_chunk[kind], len(fn._chunk))
        assert list(fn.finish_bundle()) == []
    finally:
        fn.teardown()
    assert largest_chunk["small"] == 63  # built when the 64th arrives
    assert largest_chunk["large"] < (1 << 20) // 300_000  # about 1 MiB of payloads, not 64 elements
    assert len(emulator.events()) == 400


def test_applying_the_sink_logs_no_warning_from_beam(caplog):
    """Beam reads process()'s source and warns about a bare 'return None' line."""
    import logging

    with caplog.at_level(logging.WARNING, logger="apache_beam"):
        pipeline = beam.Pipeline()
        _ = pipeline | beam.Create([{"a": 1}]) | WriteToRaccoon("grpc://127.0.0.1:1", event_type="t")
    assert [r.getMessage() for r in caplog.records if r.name.startswith("apache_beam.transforms")] == []


def test_an_element_that_is_a_windowed_value_is_dead_lettered_in_the_window_it_arrived_in(emulator):
    """Elements sharing a window are kept bare, but never one that is itself a WindowedValue."""
    emulator.faults.reject_event_type("t")  # every request refused: each element is dead-lettered at send
    transform = WriteToRaccoon(
        emulator.grpc_endpoint, event_type="t", serializer=lambda element: b"x", retry=RetryPolicy(max_attempts=1)
    )
    fn = _WriteEventsFn(transform.options)
    fn.setup()
    try:
        fn.start_bundle()
        arrived_in = (IntervalWindow(0, 10),)
        inner = WindowedValue("inner", 99, (GlobalWindow(),))
        for element in (inner, "plain"):
            fn.process(element, WindowedValue(element, 5, arrived_in))
        letters = [output.value for output in fn.finish_bundle()]
    finally:
        fn.teardown()
    assert len(letters) == 2
    for windowed in letters:
        assert windowed.value.stage == "send"
        assert (windowed.timestamp, windowed.windows) == (Timestamp(5), arrived_in)
    elements = [windowed.value.element for windowed in letters]
    assert any(element is inner for element in elements) and "plain" in elements
