"""Debian's headless chromium under Selenium, for the console's browser test and its screenshot script.

``/usr/bin/chromium`` and ``/usr/bin/chromedriver`` (``make browser-deps``)
are required: without them :func:`chromium` fails rather than skipping.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from typing import Iterator, List, Sequence

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

__all__ = ["chromium", "CHROMIUM", "CHROMEDRIVER"]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Headless, no sandbox (root in CI), and nothing that reaches the network on its own.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1400,1800",
)


def _processes_using(marker: str) -> List[int]:
    """Pids whose command line contains ``marker`` (this browser's user-data-dir)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as file:
                    if marker.encode() in file.read():
                        pids.append(int(entry))
            except OSError:
                pass
    return pids


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@contextlib.contextmanager
def chromium(extra_flags: Sequence[str] = ()) -> Iterator[webdriver.Chrome]:
    """A fresh headless chromium (own profile in a tmp dir); on exit, checks that it and its driver are gone.

    Args:
      extra_flags: more command-line flags (e.g. ``--host-resolver-rules=...``).
    """
    for path in (CHROMIUM, CHROMEDRIVER):
        assert os.path.exists(path), f"{path} is missing: run `make browser-deps` (apt-get install chromium chromium-driver)"
    profile = tempfile.mkdtemp(prefix="raccoon-console-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, *extra_flags):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    # An explicit driver path: Selenium Manager (which would download one) never runs.
    service = Service(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(service=service, options=options)
    driver_pid = service.process.pid
    try:
        yield driver
    finally:
        driver.quit()
        deadline = time.monotonic() + 10
        while (_processes_using(profile) or _alive(driver_pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = _processes_using(profile)
        shutil.rmtree(profile, ignore_errors=True)
        assert not left and not _alive(driver_pid), f"browser processes left: {left}, driver {driver_pid}"
