"""The sample pipelines, imported as modules (they import their helper ``_cli`` as a sibling)."""

from __future__ import annotations

import pathlib
import sys

PIPELINES = pathlib.Path(__file__).resolve().parents[2] / "pipelines"

if str(PIPELINES) not in sys.path:
    sys.path.insert(0, str(PIPELINES))
