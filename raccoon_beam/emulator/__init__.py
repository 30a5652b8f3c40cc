"""A Raccoon-compatible server for tests, samples and local development.

``RaccoonEmulator`` serves gRPC, REST and WebSocket exactly as the real
Raccoon does (docs/protocol.md), captures what it accepts, and can be
told to fail. ``python -m raccoon_beam.emulator`` runs it as a server.

The names below are imported on first use (PEP 562): the command line
(``raccoon-emulator --help``) answers before grpc and aiohttp are loaded.
The emulator never imports Apache Beam.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict

from raccoon_beam._lazy import lazy_attributes

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time, __getattr__ below
    from raccoon_beam.emulator.capture import CapturedEvent, TypeDigest, expected_digest
    from raccoon_beam.emulator.config import EmulatorConfig
    from raccoon_beam.emulator.counters import CountersSnapshot
    from raccoon_beam.emulator.faults import Faults
    from raccoon_beam.emulator.outcomes import Outcome
    from raccoon_beam.emulator.server import RaccoonEmulator

__all__ = [
    "RaccoonEmulator",
    "EmulatorConfig",
    "Outcome",
    "Faults",
    "CapturedEvent",
    "TypeDigest",
    "CountersSnapshot",
    "expected_digest",
]

# public name -> the module that defines it (the TYPE_CHECKING imports above, once more for run time).
_LAZY: Dict[str, str] = {
    "RaccoonEmulator": "raccoon_beam.emulator.server",
    "EmulatorConfig": "raccoon_beam.emulator.config",
    "Outcome": "raccoon_beam.emulator.outcomes",
    "Faults": "raccoon_beam.emulator.faults",
    "CapturedEvent": "raccoon_beam.emulator.capture",
    "TypeDigest": "raccoon_beam.emulator.capture",
    "CountersSnapshot": "raccoon_beam.emulator.counters",
    "expected_digest": "raccoon_beam.emulator.capture",
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, __all__)
