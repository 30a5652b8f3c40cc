"""Dead letters reach ``result.failed`` on the in-process runners: bad elements last, and a closed port.

The same check runs on the portable runner (test_portable.py) and on Dask
(test_dask.py): captured ids + dead-lettered ids == input ids.
"""

from __future__ import annotations

import time
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner, DirectRunner
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from raccoon_beam.emulator import RaccoonEmulator

from tests.runners import harness


# DirectRunner is Beam's SwitchingDirectRunner: the FnApiRunner for what it supports, as here.
RUNNERS = {
    "DirectRunner": DirectRunner,
    "BundleBasedDirectRunner": BundleBasedDirectRunner,
    "FnApiRunner": FnApiRunner,
}


@pytest.mark.parametrize("name", sorted(RUNNERS))
def test_nothing_is_lost_on_in_process_runners(name: str, emulator: RaccoonEmulator, tmp_path: Any) -> None:
    runner = RUNNERS[name]
    live, closed = tmp_path / "live", tmp_path / "closed"
    live.mkdir()
    closed.mkdir()
    started = time.monotonic()
    with beam.Pipeline(runner=runner()) as pipeline:
        harness.build_straight(pipeline, emulator.ws_endpoint, str(live))
        harness.build_straight(pipeline, harness.closed_endpoint(), str(closed), label="Closed")
    harness.check_straight(emulator, str(live), str(closed), name, time.monotonic() - started)
