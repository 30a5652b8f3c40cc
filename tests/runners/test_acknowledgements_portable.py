"""``result.acknowledged`` on the portable runner path (SDK workers of an external worker pool)."""

from __future__ import annotations

from typing import Any

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.engines import WorkerPool
from raccoon_beam import WriteToRaccoon
from raccoon_beam.emulator import RaccoonEmulator

from tests.runners import harness

pytestmark = pytest.mark.timeout(600)


class RecordOutputs(harness.RecordPerBundle):
    """Writes what reaches it (its type, and an ack's events and req_guid) to a file per bundle, in the SDK worker."""

    def process(self, record: Any) -> None:
        self.add(
            {
                "type": type(record).__name__,
                "events": getattr(record, "events", 1),
                "req_guid": getattr(record, "req_guid", None),
            }
        )


def _type_of(element: dict) -> str:
    return "refused" if element["i"] % 10 == 0 else "ok"


@pytest.mark.slow
def test_acks_and_dead_letters_stay_apart_and_add_up(worker_pool: WorkerPool, emulator: RaccoonEmulator, tmp_path):
    emulator.faults.reject_event_type("refused")
    acks_dir, dead_dir = tmp_path / "acks", tmp_path / "dead"
    acks_dir.mkdir()
    dead_dir.mkdir()
    with beam.Pipeline(runner=worker_pool.runner(), options=PipelineOptions(["--direct_num_workers=2"])) as pipeline:
        result = (
            pipeline
            | beam.Create([{"i": i} for i in range(1_000)])
            | WriteToRaccoon(emulator.ws_endpoint, event_type=_type_of, max_batch_size=50, acknowledgements=True)
        )
        _ = result.acknowledged | "Acks" >> beam.ParDo(RecordOutputs(str(acks_dir)))
        _ = result.failed | "Dead" >> beam.ParDo(RecordOutputs(str(dead_dir)))
    acks, dead = harness.read_records(str(acks_dir)), harness.read_records(str(dead_dir))
    assert {record["type"] for record in acks} == {"RaccoonAck"}
    assert {record["type"] for record in dead} == {"RaccoonDeadLetter"} and len(dead) == 100
    captured = emulator.events()
    assert sum(record["events"] for record in acks) == len({(e.req_guid, e.event_bytes) for e in captured}) == 900
    assert {record["req_guid"] for record in acks} == {e.req_guid for e in captured}
