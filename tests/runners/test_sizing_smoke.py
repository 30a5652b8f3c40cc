"""Smoke test of the sizing benchmark (``python -m benchmarks.sizing``): one small verified run."""

from __future__ import annotations

import pytest

from benchmarks import sizing, workload

pytestmark = pytest.mark.timeout(300)


@pytest.mark.slow
def test_one_sizing_run_is_verified_and_measured() -> None:
    events = 2 * sizing.CHUNK
    expected = {t: tuple(d) for t, d in workload.expected_digests(sizing.SERIALIZER, [events])[events].items()}

    row = sizing.measure("websocket", 2, events, expected)

    assert row["digest_ok"], row
    assert row["events_per_second"] > 0 and row["worker_cpu_seconds"] > 0, row
    assert "| websocket | 2 |" in sizing._table([row])
