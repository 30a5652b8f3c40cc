"""``result.acknowledged`` on the portable runner path (SDK workers of an external worker pool)."""

from __future__ import annotations

import glob
import json
import os
import uuid
from typing import Any, List

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.engines import WorkerPool
from raccoon_beam import WriteToRaccoon
from raccoon_beam.emulator import RaccoonEmulator

pytestmark = pytest.mark.timeout(600)


class RecordOutputs(beam.DoFn):
    """Writes what reaches it (its type, and an ack's events and req_guid) to a file per bundle, in the SDK worker."""

    def __init__(self, directory: str) -> None:
        self._directory = directory
        self._records: List[str] = []

    def start_bundle(self) -> None:
        self._records = []

    def process(self, record: Any) -> None:
        fields = {"type": type(record).__name__, "events": getattr(record, "events", 1)}
        fields["req_guid"] = getattr(record, "req_guid", None)
        self._records.append(json.dumps(fields))

    def finish_bundle(self) -> None:
        if self._records:
            with open(os.path.join(self._directory, f"{uuid.uuid4().hex}.jsonl"), "w", encoding="utf-8") as out:
                out.write("\n".join(self._records) + "\n")


def _read(directory: str) -> List[dict]:
    return [json.loads(line) for path in glob.glob(os.path.join(directory, "*.jsonl")) for line in open(path)]


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
    acks, dead = _read(str(acks_dir)), _read(str(dead_dir))
    assert {record["type"] for record in acks} == {"RaccoonAck"}
    assert {record["type"] for record in dead} == {"RaccoonDeadLetter"} and len(dead) == 100
    captured = emulator.events()
    assert sum(record["events"] for record in acks) == len({(e.req_guid, e.event_bytes) for e in captured}) == 900
    assert {record["req_guid"] for record in acks} == {e.req_guid for e in captured}
