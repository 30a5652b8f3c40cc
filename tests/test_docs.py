"""The API reference builds from the docstrings (``make docs``, pdoc)."""

from __future__ import annotations

import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_make_docs_builds_the_api_reference(tmp_path):
    out = tmp_path / "api"
    proc = subprocess.run(
        ["make", "--no-print-directory", "docs", f"DOCS_DIR={out}"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    index = (out / "raccoon_beam.html").read_text(encoding="utf-8")
    # The public API, its docstrings, and the public modules beyond raccoon_beam's __all__.
    assert "WriteToRaccoon" in index and "RaccoonDeadLetter" in index
    sink = (out / "raccoon_beam" / "io.html").read_text(encoding="utf-8")
    assert "max_buffering_duration" in sink
    assert (out / "raccoon_beam" / "emulator.html").exists()
    assert not list(out.rglob("_proto*")), "private modules are not part of the reference"
