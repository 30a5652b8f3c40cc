"""The samples end to end against the emulator: their summaries, from Beam metrics, add up."""

from __future__ import annotations

import json
import re
from typing import Dict

import clickstream
import clickstream_streaming
import pytest

from raccoon_beam.emulator import RaccoonEmulator

ROW = re.compile(r"^\s+(?P<label>[a-z][a-z ()-]*?)\s{2,}(?P<value>[\d,]+)(?:\s|$)")


def rows(summary: str) -> Dict[str, int]:
    """``label -> number`` of the summary's rows (a label seen twice keeps its first value)."""
    found: Dict[str, int] = {}
    for line in summary.splitlines():
        match = ROW.match(line)
        if match:
            found.setdefault(match["label"].strip(), int(match["value"].replace(",", "")))
    return found


def _dead_letters(path) -> list:
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def test_summary_counts_add_up_on_the_sample_data(tmp_path, capsys):
    dead_letters = tmp_path / "dead.jsonl"
    # --direct_num_workers is Beam's: it must pass through to the pipeline options.
    status = clickstream.run(["--dead-letters", str(dead_letters), "--direct_num_workers", "1"])
    out = capsys.readouterr().out
    summary = rows(out)
    assert status == 0
    assert summary["lines read"] == 3000
    assert summary["parsed"] + summary["malformed (stage parse)"] == summary["lines read"]
    # The sample data: 6 lines that are not JSON objects, 4 objects without a usable event_name.
    assert summary["malformed (stage parse)"] == 6
    assert (summary["stage serialize"], summary["stage validate"], summary["stage send"]) == (4, 0, 0)
    assert summary["acknowledged"] == 2990
    assert summary["acknowledged"] + summary["dead-lettered"] == summary["events into the sink"]
    letters = _dead_letters(dead_letters)
    assert summary["dead letters"] == len(letters) == 10
    assert sorted(letter["stage"] for letter in letters) == ["parse"] * 6 + ["serialize"] * 4
    assert "WARNING" not in out
    assert "clickstream summary (Beam metrics)" in out.splitlines()
    # Where a runner has no metrics (Dask) the summary is counted from the
    # outputs instead: on this run both sources give the same counts.
    from_outputs = clickstream.output_counts(str(dead_letters))
    labels = {
        "lines read": "lines_read",
        "parsed": "parsed",
        "malformed (stage parse)": "malformed",
        "acknowledged": "acknowledged",
        "dead-lettered": "sink_dead_lettered",
        **{f"stage {stage}": f"dead_letters_{stage}" for stage in clickstream.STAGES[1:]},
    }
    assert {label: from_outputs[key] for label, key in labels.items()} == {label: summary[label] for label in labels}


def test_send_dead_letters_are_counted_by_stage_and_exit_1(tmp_path, capsys):
    dead_letters = tmp_path / "dead.jsonl"
    with RaccoonEmulator() as emulator:
        emulator.faults.reject_event_type("checkout")
        status = clickstream.run(
            [
                "--endpoint", emulator.rest_endpoint,
                "--max-event-bytes", "211",  # add_to_cart events (212 to 214 bytes) are dead-lettered (validate)
                "--dead-letters", str(dead_letters),
            ]
        )
        captured = len(emulator.events())
    out = capsys.readouterr().out
    summary = rows(out)
    letters = _dead_letters(dead_letters)
    by_stage = {stage: sum(1 for letter in letters if letter["stage"] == stage) for stage in clickstream.STAGES}
    assert status == 1
    assert by_stage["parse"] == 6 and by_stage["serialize"] == 4
    assert by_stage["validate"] == 169 and by_stage["send"] == 67  # every add_to_cart, every checkout
    for stage in clickstream.STAGES[1:]:
        assert summary[f"stage {stage}"] == by_stage[stage]
    assert summary["dead-lettered"] == sum(by_stage[stage] for stage in clickstream.STAGES[1:])
    assert summary["acknowledged"] + summary["dead-lettered"] == summary["events into the sink"] == 2994
    assert summary["dead letters"] == len(letters)
    assert summary["acknowledged"] == captured
    assert all(letter["event_type"] == "checkout" for letter in letters if letter["stage"] == "send")
    assert "WARNING" not in out


def test_a_rate_limited_run_shows_the_time_held_back(tmp_path, capsys):
    """A backfill at a chosen rate: the summary says how long the sink held requests back."""
    status = clickstream.run(
        ["--dead-letters", str(tmp_path / "dead.jsonl"), "--max-events-per-second", "1000", "--batch-size", "100"]
    )
    out = capsys.readouterr().out
    summary = rows(out)
    assert status == 0 and summary["acknowledged"] == 2990
    # 2,990 events at 1,000/s: about 3 s of the run were spent waiting for the rate.
    assert summary["throttled"] >= 20 and 1 <= summary["held back (s)"] <= 4, out
    assert "timed out" not in summary  # nothing to tell, nothing shown


def test_streaming_sample_batches_on_the_local_runner(capsys):
    status = clickstream_streaming.run(["--duration", "3"])
    captured = capsys.readouterr()
    summary = rows(captured.out)
    per_request = float(re.search(r"mean events per request ([\d,.]+)", captured.out)[1].replace(",", ""))
    assert status == 0
    assert summary["events created"] == summary["acknowledged"] > 0
    assert summary["dead-lettered"] == 0
    # Measured from the sink's metrics, and matching what the emulator captured.
    assert per_request == pytest.approx(summary["acknowledged"] / summary["requests"], abs=0.05)
    assert per_request >= clickstream_streaming.DEFAULT_BATCH_SIZE / 2
    emulator_line = re.search(r"captured by the emulator ([\d,]+) events in ([\d,]+) requests", captured.out)
    assert int(emulator_line[1].replace(",", "")) == summary["acknowledged"]
    assert int(emulator_line[2].replace(",", "")) == summary["requests"]
    # Progress on stderr while it ran, a line a second from the first second on (how
    # many fit in this short run depends on how long the runner takes to start).
    progress = [line for line in captured.err.splitlines() if "events accepted by the emulator" in line]
    assert progress and re.match(r"^\s+1 s: [\d,]+ events accepted by the emulator, [\d,]+ events/s$", progress[0])


def test_streaming_sample_with_an_endpoint_prints_its_summary(emulator, capsys):
    status = clickstream_streaming.run(["--endpoint", emulator.grpc_endpoint, "--duration", "2"])
    captured = capsys.readouterr()
    summary = rows(captured.out)
    assert status == 0
    assert summary["acknowledged"] == len(emulator.events()) == summary["events created"] > 0
    assert summary["requests"] == len({event.req_guid for event in emulator.events()})
    # The local runner reports metrics only at the end: the progress line says so instead of a count.
    assert "this runner reports its counts when the pipeline ends" in captured.err


def test_a_slow_batch_run_prints_progress(emulator, tmp_path, capsys):
    # Each of the 6 requests takes 2 s and at most 4 are in flight: a run of over 4 s.
    emulator.faults.add_latency(2.0)
    status = clickstream.run(["--endpoint", emulator.grpc_endpoint, "--dead-letters", str(tmp_path / "dead.jsonl")])
    captured = capsys.readouterr()
    assert status == 0
    assert rows(captured.out)["acknowledged"] == len(emulator.events()) == 2990
    progress = [line for line in captured.err.splitlines() if re.match(r"^\s+\d+ s: running", line)]
    assert progress, captured.err
