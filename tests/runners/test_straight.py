"""Dead letters reach ``result.failed`` on the in-process runners: bad elements last, and a closed port.

The same check runs on the portable runner (test_portable.py) and on Dask
(test_dask.py): captured ids + dead-lettered ids == input ids.
"""

from __future__ import annotations

from typing import Any

import apache_beam as beam
import pytest
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner, DirectRunner
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from raccoon_beam.emulator import RaccoonEmulator

from tests.runners import harness


@pytest.mark.parametrize("runner", [DirectRunner, BundleBasedDirectRunner, FnApiRunner], ids=lambda r: r.__name__)
def test_nothing_is_lost_on_in_process_runners(runner: Any, emulator: RaccoonEmulator, tmp_path: Any) -> None:
    live, closed = tmp_path / "live", tmp_path / "closed"
    live.mkdir()
    closed.mkdir()
    with beam.Pipeline(runner=runner()) as pipeline:
        harness.build_straight(pipeline, emulator.ws_endpoint, str(live))
        harness.build_straight(pipeline, harness.closed_endpoint(), str(closed), label="Closed")
    harness.check_straight(emulator, str(live), str(closed))
