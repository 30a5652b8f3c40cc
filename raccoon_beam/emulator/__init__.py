"""A Raccoon-compatible server for tests, samples and local development.

``RaccoonEmulator`` serves gRPC, REST and WebSocket exactly as the real
Raccoon does (see RACCOON_PROTOCOL.md), captures what it accepts, and can be
told to fail. ``python -m raccoon_beam.emulator`` runs it as a server.
"""

from raccoon_beam.emulator.capture import CapturedEvent, TypeDigest, expected_digest
from raccoon_beam.emulator.counters import CountersSnapshot
from raccoon_beam.emulator.faults import Faults
from raccoon_beam.emulator.outcomes import Outcome
from raccoon_beam.emulator.server import RaccoonEmulator

__all__ = [
    "RaccoonEmulator",
    "Outcome",
    "Faults",
    "CapturedEvent",
    "TypeDigest",
    "CountersSnapshot",
    "expected_digest",
]
