"""max_buffering_duration: batching across bundles with GroupIntoBatches, under TestStream."""

from __future__ import annotations

import collections
import dataclasses
import json

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import window
from apache_beam.utils.timestamp import Timestamp

from raccoon_beam import WriteToRaccoon


class FakeClock:
    """Processing time as TestStream sees it, which starts at 0."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _stream_options() -> PipelineOptions:
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    return options


def _events(ids):
    return [window.TimestampedValue({"id": i, "event_name": "click"}, Timestamp(i)) for i in ids]


def _request_sizes(emulator):
    per_request = collections.Counter(event.req_guid for event in emulator.events())
    return sorted(per_request.values())


def _on_fake_clock(sink: WriteToRaccoon) -> WriteToRaccoon:
    """The sink with its buffering timer on TestStream's processing time (a private hook, not a parameter).

    Also used by tests/sink/test_acknowledgements.py.
    """
    sink._options = dataclasses.replace(sink.options, buffering_clock=FakeClock())
    return sink


def _buffered_sink(endpoint: str, **options) -> WriteToRaccoon:
    """The sink of these tests: the type from ``event_name``, its buffering timer on TestStream's processing time."""
    return _on_fake_clock(WriteToRaccoon(endpoint, event_type=lambda e: e["event_name"], **options))


def test_events_are_flushed_by_the_buffering_timer_not_the_window_end(emulator):
    # A batch size no stream here reaches: only the buffering timer (or the
    # end of the global window) can flush a batch.
    stream = (
        TestStream()
        .advance_watermark_to(0)
        .add_elements(_events(range(0, 3)))
        .advance_processing_time(5)  # past max_buffering_duration: the first 3 go out
        .add_elements(_events(range(3, 5)))  # a late trickle
        .advance_processing_time(5)
        .add_elements(_events([5]))
        .advance_watermark_to_infinity()
    )
    with beam.Pipeline(options=_stream_options()) as pipeline:
        result = (
            pipeline
            | stream
            | _buffered_sink(emulator.grpc_endpoint, max_batch_size=1000, max_buffering_duration=2)
        )
        assert_that(result.failed, equal_to([]))
    assert sorted(json.loads(e.event_bytes)["id"] for e in emulator.events()) == list(range(6))
    # Three requests, not one: each buffered group went out when its timer fired.
    assert _request_sizes(emulator) == [1, 2, 3]


def test_buffered_dead_letters_keep_their_timestamps(emulator):
    emulator.faults.reject_event_type("bad")
    stream = (
        TestStream()
        .advance_watermark_to(0)
        .add_elements(
            [
                window.TimestampedValue({"id": 1, "event_name": "click"}, Timestamp(11)),
                window.TimestampedValue({"id": 2, "event_name": "bad"}, Timestamp(12)),
                window.TimestampedValue({"id": 3, "event_name": "click", "v": {1}}, Timestamp(13)),
            ]
        )
        .advance_processing_time(5)
        .advance_watermark_to_infinity()
    )
    with beam.Pipeline(options=_stream_options()) as pipeline:
        result = (
            pipeline
            | stream
            | beam.WindowInto(window.FixedWindows(10))
            | _buffered_sink(emulator.rest_endpoint, max_buffering_duration=1)
        )
        described = result.failed | beam.Map(
            lambda letter, ts=beam.DoFn.TimestampParam, w=beam.DoFn.WindowParam: (
                letter.element["id"],
                letter.stage,
                int(ts.micros // 1_000_000),
                int(w.start.micros // 1_000_000),
            )
        )
        assert_that(described, equal_to([(2, "send", 12, 10), (3, "serialize", 13, 10)]))
    assert [json.loads(e.event_bytes)["id"] for e in emulator.events()] == [1]


def test_an_element_in_several_windows_is_sent_once_and_dead_lettered_in_each(emulator):
    # SlidingWindows(10, 5) puts every element in two windows.
    stream = (
        TestStream()
        .advance_watermark_to(0)
        .add_elements(_events(range(10)) + [window.TimestampedValue({"id": 99, "event_name": 7}, Timestamp(3))])
        .advance_processing_time(5)
        .advance_watermark_to_infinity()
    )
    with beam.Pipeline(options=_stream_options()) as pipeline:
        result = (
            pipeline
            | stream
            | beam.WindowInto(window.SlidingWindows(10, 5))
            | _buffered_sink(emulator.grpc_endpoint, max_buffering_duration=1)
        )
        windows = result.failed | beam.Map(
            lambda letter, w=beam.DoFn.WindowParam: (letter.element["id"], int(w.start.micros // 1_000_000))
        )
        assert_that(windows, equal_to([(99, -5), (99, 0)]))
    assert sorted(json.loads(e.event_bytes)["id"] for e in emulator.events()) == list(range(10))


def _labels(pipeline: beam.Pipeline) -> set:
    labels = set()

    class Collect(beam.pipeline.PipelineVisitor):
        def enter_composite_transform(self, node):
            labels.add(node.full_label)

        def visit_transform(self, node):
            labels.add(node.full_label)

    pipeline.visit(Collect())
    return labels


def test_the_sending_step_keeps_its_label_when_buffering_is_turned_on():
    # The update rule of docs/runners.md: turning max_buffering_duration on
    # adds steps before the one that sends; the steps of the default path
    # keep their labels.
    def build(**kwargs) -> set:
        pipeline = beam.Pipeline()
        _ = (
            pipeline
            | beam.Create([{"id": 1}])
            | "Write" >> WriteToRaccoon("grpc://127.0.0.1:1", event_type="t", **kwargs)
        )
        return {label for label in _labels(pipeline) if label.startswith("Write/")}

    default, buffered = build(), build(max_buffering_duration=1)
    assert {"Write/WriteEvents", "Write/DeadLetterRows"} <= default
    assert default <= buffered
    assert {"Write/KeyForBuffering", "Write/BatchAcrossBundles"} <= buffered
