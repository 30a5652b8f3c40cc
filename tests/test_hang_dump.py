"""The hang dump (tests/hang_dump.py): a test about to time out shows what its event loops' tasks wait for."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import textwrap

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent

# A sender-like task that waits two coroutines deep for a slot of a full limit.
_HUNG_TEST = textwrap.dedent(
    """
    import time

    import pytest

    from raccoon_beam._loop import EventLoopThread
    from raccoon_beam.delivery.concurrency import ConcurrencyLimit


    async def send_one(limit):
        await wait_for_a_slot(limit)


    async def wait_for_a_slot(limit):
        await limit.acquire()


    @pytest.mark.timeout(10)
    def test_hangs():
        loop = EventLoopThread(name="hung-loop").start()
        limit = ConcurrencyLimit(1, initial=1)
        assert limit.try_acquire()
        loop.submit(send_one(limit))
        time.sleep(60)
    """
)


@pytest.mark.slow  # the hung test runs into its 10 s timeout
def test_a_test_about_to_time_out_shows_what_its_loops_tasks_wait_for(tmp_path):
    (tmp_path / "test_hung.py").write_text(_HUNG_TEST)
    # -p tests.conftest: the plugin registered as in every run of this suite.
    command = [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", str(tmp_path)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Timeout" in output, output  # pytest-timeout still fails the test
    assert output.count("===== hang dump: ") == 1 and "test_hung.py::test_hangs is about to time out" in output, output
    assert "--- tasks of hung-loop" in output, output
    tasks = output.split("--- tasks of hung-loop\n", 1)[1].splitlines()
    chain = [line.strip() for line in tasks[1:5]]  # the task, then where it waits
    assert [line.rsplit(" in ", 1)[-1] for line in chain[:3]] == ["send_one", "wait_for_a_slot", "acquire"], output
    assert chain[3].startswith("awaiting <Future pending"), output
    assert "--- ConcurrencyLimit {" in output and "'in_flight': 1" in output, output
