"""The package as shipped: the built wheel, installed in a fresh virtualenv, runs.

Builds the sdist and the wheel with ``make dist`` (``python -m build``: the
wheel is built from the sdist, so a file missing from the sdist fails here
too; then ``twine check --strict``), installs the wheel with pip into a new virtualenv (its
dependencies come from the registry or pip's cache), then, from outside
the checkout, starts the ``raccoon-emulator`` console script and runs a
100-event pipeline against it with the installed package.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
N_EVENTS = 100

PIPELINE = f"""
import sys
import apache_beam as beam
import raccoon_beam
from raccoon_beam import WriteToRaccoon

print(raccoon_beam.__file__)
with beam.Pipeline() as pipeline:
    result = (
        pipeline
        | beam.Create([{{"id": i, "event_name": "click"}} for i in range({N_EVENTS})])
        | WriteToRaccoon(sys.argv[1], event_type=lambda event: event["event_name"])
    )
    result.failed | beam.Map(lambda letter: print("dead letter", letter, file=sys.stderr))
"""


def _run(command, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=600, **kwargs)
    assert proc.returncode == 0, f"{command[:3]} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _clean_env() -> dict:
    # Nothing from this checkout or its virtualenv may leak into the fresh one.
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_built_wheel_runs_the_emulator_and_a_pipeline(tmp_path):
    dist = tmp_path / "dist"
    built = _run(["make", "--no-print-directory", "dist", f"DIST_DIR={dist}"], cwd=ROOT)
    (wheel,) = dist.glob("raccoon_beam-*-py3-none-any.whl")
    (sdist,) = dist.glob("raccoon_beam-*.tar.gz")
    assert built.stdout.count("PASSED") == 2, built.stdout  # twine check --strict, of both

    venv = tmp_path / "venv"
    env = _clean_env()
    _run([sys.executable, "-m", "venv", venv], env=env)
    _run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-compile", wheel], env=env, cwd=tmp_path)

    emulator = subprocess.Popen(
        [venv / "bin" / "raccoon-emulator", "--grpc-port", "0", "--http-port", "0", "--stats-interval", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        endpoints = {}
        assert emulator.stdout is not None
        for line in emulator.stdout:
            line = line.strip()
            if line == "ready":
                break
            if "=" in line:
                name, value = line.split("=", 1)
                endpoints[name] = value
        assert "grpc_endpoint" in endpoints, f"the emulator did not start: {endpoints}"

        # From tmp_path, so that the checkout's raccoon_beam cannot be imported.
        proc = _run([venv / "bin" / "python", "-c", PIPELINE, endpoints["grpc_endpoint"]], env=env, cwd=tmp_path)
        installed = pathlib.Path(proc.stdout.strip().splitlines()[0])
        assert venv in installed.parents and ROOT not in installed.parents
        assert "dead letter" not in proc.stderr

        with urllib.request.urlopen(endpoints["control_url"] + "/counters", timeout=30) as response:  # noqa: S310
            counters = json.loads(response.read())
        assert sum(counters["events_accepted"].values()) == N_EVENTS
    finally:
        emulator.terminate()
        emulator.communicate(timeout=60)
