"""``result.acknowledged``: one schema'd record per acknowledged request, adding up under faults."""

from __future__ import annotations

import collections
import glob
import json
import logging
import threading
from typing import Any, Dict, List

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import window

from raccoon_beam import EventTypeCount, RaccoonAck, RetryPolicy, WriteToRaccoon
from raccoon_beam.emulator import Outcome

from tests.sink.test_write_pipeline import endpoint_of, make_events

# Many quick retries: the faults below must cost dead letters only where the server refuses events.
# On WebSocket an injected 503 closes the connection (1011), failing every
# request pending on it: with four in flight an attempt fails more than half
# the time (1 - 0.8 ** 4), so 12 attempts ran out about once in 30 runs
# (those letters read "gave up after 12 attempt(s): ... closed (code 1011)").
# Only a deadline bounds the retries here.
PATIENT_RETRY = RetryPolicy(max_attempts=None, initial_backoff=0.001, max_backoff=0.01, deadline=60.0)


class Collected:
    """What the pipeline's last steps saw (the DirectRunner runs them in this process)."""

    lock = threading.Lock()
    outputs: Dict[str, List[Any]] = collections.defaultdict(list)

    @classmethod
    def add(cls, name: str, value: Any) -> None:
        with cls.lock:
            cls.outputs[name].append(value)

    @classmethod
    def take(cls, name: str) -> List[Any]:
        with cls.lock:
            return cls.outputs.pop(name, [])


def _collect(name: str):
    return beam.Map(lambda value: Collected.add(name, value))


@pytest.mark.parametrize("transport", ["grpc", "rest", "websocket"])
def test_acknowledged_counts_add_up_under_faults(emulator, transport):
    emulator.faults.fail_fraction(0.2, Outcome.http(503), seed=7)  # retried until they pass
    emulator.faults.reject_event_type("refused")  # bisected: those events are dead-lettered
    events = make_events(1_500)
    for event in events[::50]:
        event["event_name"] = "refused"
    with beam.Pipeline() as pipeline:
        result = (
            pipeline
            | beam.Create(events, reshuffle=False)
            | WriteToRaccoon(
                endpoint_of(emulator, transport),
                event_type=lambda e: e["event_name"],
                max_batch_size=50,
                retry=PATIENT_RETRY,
                acknowledgements=True,
            )
        )
        _ = result.acknowledged | "Acks" >> _collect(f"acks-{transport}")
        _ = result.failed | "Dead" >> _collect(f"dead-{transport}")
    acks: List[RaccoonAck] = Collected.take(f"acks-{transport}")
    dead = Collected.take(f"dead-{transport}")
    captured = emulator.events()
    distinct = {(e.req_guid, e.event_bytes): e for e in captured}  # a resend after a lost ack is captured twice

    assert len(dead) == 30 and {letter.event_type for letter in dead} == {"refused"}
    assert sum(ack.events for ack in acks) + len(dead) == len(events)
    assert sum(ack.events for ack in acks) == len(distinct)
    assert {ack.req_guid for ack in acks} == {e.req_guid for e in captured}
    per_type: collections.Counter = collections.Counter()
    for ack in acks:
        assert ack.events == sum(count.events for count in ack.event_types)
        assert [count.event_type for count in ack.event_types] == sorted({c.event_type for c in ack.event_types})
        per_type.update({count.event_type: count.events for count in ack.event_types})
    assert per_type == collections.Counter(e.type for e in distinct.values())
    conn_ids = collections.defaultdict(set)
    for event in captured:
        conn_ids[event.req_guid].add(event.conn_id)
    # (req_guid, the ack's conn_id, the conn_ids it was captured with, attempts) of every ack that disagrees
    elsewhere = [(a.req_guid, a.conn_id, conn_ids[a.req_guid], a.attempts) for a in acks if a.conn_id not in conn_ids[a.req_guid]]
    assert not elsewhere, elsewhere
    assert {ack.transport for ack in acks} == {transport}
    assert all(ack.bytes > 0 and ack.ack_time.micros > 0 for ack in acks)
    assert sum(ack.attempts for ack in acks) > len(acks)  # some were retried before their ack
    assert max(ack.attempts for ack in acks) < 50  # retried, not stormed
    assert emulator.counters().injected() > 0


def _stamped(pipeline, pairs):
    return (
        pipeline
        | beam.Create(pairs, reshuffle=False)
        | beam.Map(lambda pair: window.TimestampedValue(pair[0], pair[1]))
        | beam.WindowInto(window.FixedWindows(10))
    )


def _per_window(acks):
    """Each ack record as (window start, events, its timestamp)."""
    return acks | beam.Map(
        lambda ack, ts=beam.DoFn.TimestampParam, w=beam.DoFn.WindowParam: (float(w.start), ack.events, float(ts))
    )


def test_a_request_spanning_windows_has_one_record_per_window_at_its_latest_timestamp(emulator):
    pairs = [({"id": i, "event_name": "click"}, ts) for i, ts in enumerate([1, 3, 12, 9, 15, 27, 21])]
    with beam.Pipeline() as pipeline:
        result = _stamped(pipeline, pairs) | WriteToRaccoon(
            emulator.grpc_endpoint, event_type="click", max_batch_size=100, acknowledgements=True
        )
        assert_that(_per_window(result.acknowledged), equal_to([(0.0, 3, 9.0), (10.0, 2, 15.0), (20.0, 2, 27.0)]))
    assert len({e.req_guid for e in emulator.events()}) == 1  # one request, three records


def test_the_buffering_path_acknowledges_per_window(emulator):
    pairs = [({"id": i, "event_name": "click"}, i % 30) for i in range(90)]
    with beam.Pipeline() as pipeline:
        result = _stamped(pipeline, pairs) | WriteToRaccoon(
            emulator.rest_endpoint,
            event_type="click",
            max_batch_size=20,
            max_buffering_duration=5,
            acknowledgements=True,
        )
        described = _per_window(result.acknowledged)
        totals = described | beam.Map(lambda d: (d[0], d[1])) | beam.CombinePerKey(sum)
        assert_that(totals, equal_to([(0.0, 30), (10.0, 30), (20.0, 30)]), label="Totals")
        in_window = described | beam.Map(lambda d: d[0] <= d[2] < d[0] + 10)
        assert_that(in_window, equal_to([True] * 6), label="Stamps")  # 90 events in batches of 20, per window
    assert len(emulator.events()) == 90


def test_acknowledged_has_a_beam_schema_and_goes_to_json_files(emulator, tmp_path, caplog):
    events = make_events(300)
    with caplog.at_level(logging.WARNING):
        with beam.Pipeline() as pipeline:
            result = pipeline | beam.Create(events, reshuffle=False) | WriteToRaccoon(
                emulator.ws_endpoint, event_type=lambda e: e["event_name"], max_batch_size=40, acknowledgements=True
            )
            assert result.acknowledged.element_type is RaccoonAck
            coder = beam.coders.registry.get_coder(result.acknowledged.element_type)
            assert isinstance(coder, beam.coders.RowCoder)
            assert [f.name for f in coder.schema.fields] == list(RaccoonAck._fields)
            _ = result.acknowledged | beam.io.WriteToJson(str(tmp_path / "acks"))
    assert not [r for r in caplog.records if "coder" in r.getMessage().lower()]
    rows = [json.loads(line) for path in glob.glob(str(tmp_path / "acks*")) for line in open(path)]
    assert len(rows) == 8 and sum(row["events"] for row in rows) == 300  # every record, none lost
    assert {row["req_guid"] for row in rows} == {e.req_guid for e in emulator.events()}
    assert all(row["transport"] == "websocket" for row in rows)


def test_without_acknowledgements_there_is_no_such_output(emulator):
    with beam.Pipeline() as pipeline:
        result = pipeline | beam.Create([{"id": 1}]) | WriteToRaccoon(emulator.grpc_endpoint, event_type="x")
        with pytest.raises(AttributeError, match="acknowledgements=True"):
            _ = result.acknowledged
        with pytest.raises(KeyError):
            _ = result["acknowledged"]


def test_event_type_counts_are_rows_too():
    coder = beam.coders.registry.get_coder(EventTypeCount)
    assert isinstance(coder, beam.coders.RowCoder)
    ack_coder = beam.coders.registry.get_coder(RaccoonAck)
    record = RaccoonAck("g", 3, [EventTypeCount("a", 2), EventTypeCount("b", 1)], 10, 1, "grpc", "c",
                        beam.utils.timestamp.Timestamp(5))
    assert ack_coder.decode(ack_coder.encode(record)) == record


def test_refused_on_the_dask_runner_which_mixes_a_pardos_outputs():
    pytest.importorskip("dask")
    from apache_beam.options.pipeline_options import PipelineOptions

    pipeline = beam.Pipeline(options=PipelineOptions(["--runner=apache_beam.runners.dask.dask_runner.DaskRunner"]))
    with pytest.raises(ValueError, match="not supported on Beam's Dask runner"):
        _ = pipeline | beam.Create([{"id": 1}]) | WriteToRaccoon("grpc://127.0.0.1:1", event_type="x", acknowledgements=True)
    _ = pipeline | "Plain" >> beam.Create([{"id": 1}]) | "Write" >> WriteToRaccoon("grpc://127.0.0.1:1", event_type="x")


@pytest.mark.parametrize("buffering", [None, 2], ids=["per-bundle", "buffering"])
def test_in_streaming_per_window_sums_arrive_on_time(emulator, buffering):
    """A downstream per-window sum (default trigger, no allowed lateness) drops late records: none may be late."""
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
    from apache_beam.testing.test_stream import TestStream
    from apache_beam.utils.timestamp import Timestamp

    from tests.sink.test_streaming import _on_fake_clock

    def events(ids):
        return [window.TimestampedValue({"id": i, "event_name": "click"}, Timestamp(i)) for i in ids]

    stream = (
        TestStream()
        .advance_watermark_to(0)
        .add_elements(events(range(0, 7)))
        .advance_processing_time(5)
        .advance_watermark_to(12)  # window [0, 10) closes
        .add_elements(events(range(12, 17)))
        .advance_processing_time(5)
        .advance_watermark_to(25)  # window [10, 20) closes
        .add_elements(events(range(25, 28)))
        .advance_watermark_to_infinity()
    )
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    sink = WriteToRaccoon(
        emulator.grpc_endpoint,
        event_type="click",
        max_batch_size=1000,
        max_buffering_duration=buffering,
        acknowledgements=True,
    )
    with beam.Pipeline(options=options) as pipeline:
        result = pipeline | stream | beam.WindowInto(window.FixedWindows(10)) | _on_fake_clock(sink)
        sums = (
            result.acknowledged
            | beam.Map(lambda ack: ack.events)
            | beam.CombineGlobally(sum).without_defaults()
            | beam.Map(lambda total, w=beam.DoFn.WindowParam: (float(w.start), total))
        )
        assert_that(sums, equal_to([(0.0, 7), (10.0, 5), (20.0, 3)]))
    assert len(emulator.events()) == 15
