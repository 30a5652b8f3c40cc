"""The hang dump (tests/hang_dump.py): a test about to time out shows its event loops' tasks."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import textwrap

REPO = pathlib.Path(__file__).resolve().parent.parent

_HUNG_TEST = textwrap.dedent(
    """
    import asyncio
    import time

    import pytest

    from raccoon_beam._loop import EventLoopThread
    from raccoon_beam.delivery.concurrency import ConcurrencyLimit


    async def waits_for_a_grant_that_never_comes(event):
        await event.wait()


    @pytest.mark.timeout(6)
    def test_hangs():
        loop = EventLoopThread(name="hung-loop").start()
        limit = ConcurrencyLimit(4)
        event = loop.run(_make_event())
        loop.submit(waits_for_a_grant_that_never_comes(event))
        time.sleep(30)
        assert limit


    async def _make_event():
        return asyncio.Event()
    """
)


def test_a_test_about_to_time_out_shows_its_loops_tasks_and_flow_state(tmp_path):
    (tmp_path / "test_hung.py").write_text(_HUNG_TEST)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.hang_dump", "-p", "no:cacheprovider", str(tmp_path / "test_hung.py")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output  # pytest-timeout still fails the test
    assert "hang dump: " in output and "test_hung.py::test_hangs is about to time out" in output, output
    assert "--- tasks of hung-loop" in output, output
    assert "waits_for_a_grant_that_never_comes" in output, output
    assert "--- ConcurrencyLimit {" in output and "'in_flight': 0" in output, output
    assert "--- thread MainThread" in output, output
