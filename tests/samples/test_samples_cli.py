"""The samples as command-line programs: flags, usage errors, exit status."""

from __future__ import annotations

import subprocess
import sys

import clickstream
import clickstream_streaming
import pytest

from tests.samples.conftest import PIPELINES


def test_a_misspelt_flag_exits_2_and_names_the_closest_flag():
    # A real process: the exit status and stderr are what a shell sees.
    proc = subprocess.run(
        [sys.executable, str(PIPELINES / "clickstream.py"), "--trasport", "websocket"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "clickstream.py: error: unknown flag --trasport; did you mean --transport?"
    ]
    assert proc.stdout == ""


def _usage_error(run, argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        run(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # one line, no traceback
    return lines[0]


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--batch-size", "0"], "argument --batch-size: expected a positive integer, got '0'"),
        # The sink's own message follows; the sample only puts it on one line.
        (["--endpoint", "raccoon:8081"], "error: --endpoint: Raccoon endpoint 'raccoon:8081'"),
        (["--endpoint", "foo://x:1"], "error: --endpoint: Raccoon endpoint 'foo://x:1'"),
        (["--input", "/nonexistent/clicks.jsonl"], "--input /nonexistent/clicks.jsonl: no such file"),
        (["--runer", "DirectRunner"], "unknown flag --runer; did you mean --runner?"),  # a Beam flag
        (["--batch_size", "5"], "unknown flag --batch_size; did you mean --batch-size?"),
        (["--direct_num_workers", "two"], "argument --direct_num_workers: invalid int value: 'two'"),
        (["stray"], "unexpected argument 'stray'"),
        (["--wire", "json"], "--wire json needs --transport rest or websocket"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(argv, expected, capsys):
    line = _usage_error(clickstream.run, argv, capsys)
    assert line.startswith("clickstream.py: error: ") and expected in line


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--rate", "0"], "argument --rate: expected a positive number, got '0'"),
        (["--duraton", "3"], "unknown flag --duraton; did you mean --duration?"),
        (["--runner", "DirectRunner"], "leave --runner out to use the FnApiRunner"),
        (["--runner", "direct"], "cannot run this streaming pipeline"),
    ],
)
def test_streaming_user_errors_are_one_line_and_exit_2(argv, expected, capsys):
    line = _usage_error(clickstream_streaming.run, argv, capsys)
    assert line.startswith("clickstream_streaming.py: error: ") and expected in line
