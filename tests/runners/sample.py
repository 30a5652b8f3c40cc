"""Running the sample pipeline (pipelines/clickstream.py) on an engine, and what it must print."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

from raccoon_beam.emulator import RaccoonEmulator

ROOT = pathlib.Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "pipelines" / "clickstream.py"
DATA = ROOT / "pipelines" / "data" / "clickstream.jsonl"
SAMPLE_TIMEOUT = 240.0


def deliverable_event_ids(path: pathlib.Path = DATA) -> List[str]:
    """The ids of the lines the sample can deliver: JSON objects with a string ``event_name``."""
    ids = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(event, dict) and isinstance(event.get("event_name"), str):
                ids.append(event["event_id"])
    return ids


def line_count(path: pathlib.Path = DATA) -> int:
    with open(path, encoding="utf-8") as handle:
        return sum(1 for _ in handle)


def run_sample(engine_flags: Sequence[str], endpoint: str, dead_letters: pathlib.Path) -> str:
    """Runs the sample against ``endpoint`` on an engine; returns what it printed (it must succeed)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    command = [sys.executable, str(SAMPLE), "--endpoint", endpoint, "--dead-letters", str(dead_letters), *engine_flags]
    done = subprocess.run(
        command, cwd=str(ROOT), env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=SAMPLE_TIMEOUT
    )
    assert done.returncode == 0, f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return done.stdout


def _count(output: str, label: str) -> Optional[int]:
    found = re.search(rf"^\s*{label}\b[\s:=]+([\d,]+)", output, re.MULTILINE)
    return int(found.group(1).replace(",", "")) if found else None


def summary_counts(output: str) -> Dict[str, int]:
    """The counts of the sample's summary: ``acknowledged`` and ``dead letters`` (all of them).

    The summary names the total of dead letters ``dead letters`` (beside the
    sink's own ``dead-lettered``), or, in its first version, ``dead-lettered``.
    """
    acknowledged = _count(output, "acknowledged")
    dead = _count(output, "dead letters")
    if dead is None:
        dead = _count(output, "dead-lettered")
    assert acknowledged is not None and dead is not None, f"no counts in the sample's summary:\n{output[-3000:]}"
    return {"acknowledged": acknowledged, "dead letters": dead}


def check_sample_run(output: str, emulator: RaccoonEmulator, dead_letters: pathlib.Path) -> None:
    """The summary's counts are the emulator's and the dead-letter file's, and both are the data file's."""
    counts = summary_counts(output)
    captured: List[str] = [json.loads(event.event_bytes)["event_id"] for event in emulator.events()]
    expected = deliverable_event_ids()
    assert sorted(captured) == sorted(expected), "the emulator did not capture each deliverable event exactly once"
    with open(dead_letters, encoding="utf-8") as handle:
        letters = [line for line in handle if line.strip()]
    assert counts["acknowledged"] == len(captured), (counts, len(captured))
    assert counts["dead letters"] == len(letters) == line_count() - len(expected), (counts, len(letters))
