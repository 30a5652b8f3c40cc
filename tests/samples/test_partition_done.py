"""The partition sample: the next step (its marker) only once every event is acknowledged."""

from __future__ import annotations

import json

import partition_done  # on sys.path by tests/samples/conftest.py


def test_the_marker_is_written_once_every_event_is_acknowledged(tmp_path, capsys, emulator):
    done = tmp_path / "part._DONE"
    status = partition_done.run(["--done", str(done), "--endpoint", emulator.grpc_endpoint])
    assert status == 0, capsys.readouterr().err
    counts = json.loads(done.read_text())
    assert counts["acknowledged"] == counts["events"] == len(emulator.events()) > 0
    assert counts["lines"] > counts["events"]  # the sample's malformed lines are counted, not sent


def test_no_marker_when_events_are_dead_lettered(tmp_path, capsys, emulator):
    emulator.faults.reject_event_type("page_view")
    done = tmp_path / "part._DONE"
    done.write_text("left by an earlier run")
    status = partition_done.run(["--done", str(done), "--endpoint", emulator.rest_endpoint])
    assert status == 1 and not done.exists()
    assert "not every event was acknowledged" in capsys.readouterr().err
    assert emulator.events() and "page_view" not in {e.type for e in emulator.events()}
