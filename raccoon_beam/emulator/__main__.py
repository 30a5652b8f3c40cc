"""Entry point of ``python -m raccoon_beam.emulator`` and the ``raccoon-emulator`` script."""

from __future__ import annotations

import sys

from raccoon_beam.emulator.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
