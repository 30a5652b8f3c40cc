"""The samples' shared helpers (pipelines/_cli.py) where the samples' runs do not reach."""

from __future__ import annotations

import itertools

import _cli
import pytest
from apache_beam.metrics.monitoring_infos import consolidate


def test_deep_stack_reads_metrics_nested_as_deep_as_a_long_streaming_run():
    # What the FnApiRunner builds for a stage of 60,000 bundles (about 7 minutes
    # of PeriodicImpulse): one lazy consolidate(chain(...)) per bundle. Consuming
    # it on the main thread overflows the default recursion limit (and, raised,
    # the 8 MiB C stack).
    def nested() -> int:
        metrics = iter([])
        for _ in range(60_000):
            metrics = consolidate(itertools.chain([], metrics))
        return sum(1 for _ in metrics)

    with pytest.raises(RecursionError):
        nested()
    assert _cli.call_with_deep_stack(nested) == 0


def test_deep_stack_raises_what_the_call_raised():
    def fail() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        _cli.call_with_deep_stack(fail)
