"""Smoke test of the benchmark harness (``python -m benchmarks.run``) on a tiny workload.

It checks that the harness runs every configuration end to end against the
emulator in its own process and produces a result table whose digests are
verified. It asserts no timing: the numbers of so small a run mean nothing.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import subprocess
import sys

import pytest

from benchmarks import report, run
from raccoon_beam import WriteToRaccoon

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# About a minute: a dozen pipeline processes and emulator processes.
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_harness_produces_a_verified_result_table(tmp_path):
    command = [
        sys.executable, "-m", "benchmarks.run", "--quick",
        "--events", "3000", "--chunk", "1000", "--memory-factor", "2",
        "--streaming-duration", "2", "--streaming-rate", "200",
        "--no-profile",  # py-spy is in the bench extra, not the test extra
        "--output-dir", str(tmp_path),
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]

    results = json.loads((tmp_path / "results.json").read_text())
    rows = {row["name"]: row for row in results["throughput"]}
    assert set(rows) == {config.name for config in run.CONFIGS}
    for reference in report.REFERENCES:
        assert rows[reference]["events_per_second"] > 0 and rows[reference]["digest_ok"] is None
    sending = [row for row in rows.values() if row["mode"] in ("sink", "ideal-sink", "handwritten")]
    assert len(sending) == 9
    for row in sending:
        assert row["digest_ok"] is True, row["name"]
        assert row["dead_letters"] == 0, row["name"]
        assert row["events"] == 3000
    assert results["memory"]["digest_ok"] is True
    assert results["streaming"]["captured_events"] == results["streaming"]["expected_events"] == 400
    assert set(results["wire"]) >= {"protobuf", "json"}

    readme = (tmp_path / "README.md").read_text()
    assert "| configuration | events/s |" in readme
    assert readme.count("| verified |") >= 9
    # Every throughput target is judged, each against the ideal sink of this run.
    judged = [name for name, _, met in report.targets(results) if met is not None]
    assert len(judged) == len(report.TARGETS) + 2  # + memory, streaming
    for target in report.TARGETS:
        assert target.reference == report.IDEAL_SINK
        assert f"{target.label} >= {target.factor:g} x {target.reference} | " in readme
    # ... and, for information, the ratios to the floors (the references without I/O).
    assert len(report.floor_targets(results)) == len(report.FLOOR_TARGETS)
    assert f"x {report.IDEAL_WINDOWED} |" in readme
    if importlib.util.find_spec("matplotlib") is not None:  # the `bench` extra draws the chart
        assert (tmp_path / "throughput.png").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_overload_benchmark_runs_its_scenarios_and_writes_its_section(tmp_path):
    # --quick: a capacity the writer does not overload; the harness is under test here, not the throttle.
    command = [sys.executable, "-m", "benchmarks.overload", "--quick", "--output-dir", str(tmp_path)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]

    from benchmarks import overload

    saved = json.loads((tmp_path / "overload.json").read_text())
    rows = {row["name"]: row for row in saved["rows"]}
    assert set(rows) == {"throttled", "unthrottled", "rate_limited"}
    options = set(inspect.signature(WriteToRaccoon).parameters)
    for row in rows.values():
        # A scenario runs exactly when the installed WriteToRaccoon has its options.
        assert row["available"] is (set(row["options"]) <= options), row
        if row["available"]:
            assert row["dead_letters"] == 0 and row["digest_ok"] is True, row
            assert row["unique"] == row["events"] == 10_000
            assert row["goodput"] > 0 and row["timeline"]
    readme = (tmp_path / "README.md").read_text()
    assert overload.BEGIN in readme and overload.END in readme
    assert "| scenario | options | events | dead letters | duplicates |" in readme
    assert "| target | measured | met |" in readme
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "overload.png").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_paired_runs_give_each_sink_its_ratio_to_the_ideal_sink():
    command = [sys.executable, "-m", "benchmarks.paired", "--rounds", "2", "--events", "10000", "--sink", f"this={ROOT}"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["ideal sink", "this"], done.stdout
    assert lines[0].endswith("ratios 1.00 1.00; median ratio 1.000")
    assert len(lines[1].split("ratios ")[1].split(";")[0].split()) == 2  # one ratio per round
    # Rotated: the ideal sink first in round 1, the sink first in round 2.
    order = [line.split(": ")[0] for line in done.stderr.splitlines() if line.startswith("round ")]
    assert order == ["round 1 ideal sink", "round 1 this", "round 2 this", "round 2 ideal sink"], done.stderr


def test_paired_runs_pair_each_round_and_rotate_the_order():
    from benchmarks import paired

    assert [paired.run_order(["a", "b", "c"], n) for n in range(4)] == [
        ["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]
    ]
    results = {
        paired.IDEAL: [{"seconds": 4.0, "cpu_us_per_event": 3.0}, {"seconds": 4.0, "cpu_us_per_event": 3.0}],
        "new": [{"seconds": 5.0, "cpu_us_per_event": 4.0}, {"seconds": 4.0, "cpu_us_per_event": 3.5}],
        "old": [{"seconds": 8.0, "cpu_us_per_event": 6.0}],  # stopped after one round
    }
    lines = paired.summary(results)
    assert lines[1] == "new: median 5.000 s, CPU 4.00 us/event; ratios 0.80; median ratio 0.800"
    assert lines[2] == "old: median 8.000 s, CPU 6.00 us/event; ratios 0.50; median ratio 0.500"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--rounds", "0"], "--rounds must be at least 1"),
        (["--events", "15000"], "--events must be a positive multiple"),
        (["--sink", "x"], "--sink takes NAME=DIR"),
        (["--sink", f"a={ROOT}", "--sink", f"a={ROOT}"], "names must differ"),
        (["--sink", f"ideal sink={ROOT}"], "names must differ"),
    ],
)
def test_paired_runs_refuse_wrong_arguments(argv, message, capsys):
    from benchmarks import paired

    with pytest.raises(SystemExit):
        paired.main(argv)
    assert message in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_bundle_thread_breakdown_times_every_part_and_puts_the_methods_back():
    import importlib

    from benchmarks import bundle_thread

    parts = bundle_thread.SINK_PARTS + bundle_thread.IDEAL_PARTS
    before = [vars(getattr(importlib.import_module(module), cls))[method] for _, module, cls, method in parts]
    result = bundle_thread.measure(events=2_000, passes=2)
    assert set(result) == {bundle_thread.SINK, bundle_thread.IDEAL}
    assert set(result[bundle_thread.SINK]) == {"total", "other"} | {label for label, *_ in bundle_thread.SINK_PARTS}
    assert set(result[bundle_thread.IDEAL]) == {"total", "other"} | {label for label, *_ in bundle_thread.IDEAL_PARTS}
    for row in result.values():
        assert row["total"] > 0 and row["total"] == pytest.approx(sum(v for k, v in row.items() if k != "total"))
    after = [vars(getattr(importlib.import_module(module), cls))[method] for _, module, cls, method in parts]
    assert after == before
