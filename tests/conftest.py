"""Fixtures shared by every test folder."""

from __future__ import annotations

from typing import Iterator

import pytest

from raccoon_beam.emulator import RaccoonEmulator

from tests import hang_dump


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "emulator(**kwargs): RaccoonEmulator arguments for the `emulator` fixture"
    )
    config.pluginmanager.register(hang_dump, "raccoon-hang-dump")


@pytest.fixture
def emulator(request: pytest.FixtureRequest) -> Iterator[RaccoonEmulator]:
    """A started RaccoonEmulator (stock Raccoon settings), stopped after the test.

    Pass constructor arguments with a marker, e.g.
    ``@pytest.mark.emulator(ack="sync", dedup=True)``.
    """
    marker = request.node.get_closest_marker("emulator")
    kwargs = dict(marker.kwargs) if marker is not None else {}
    with RaccoonEmulator(**kwargs) as emu:
        yield emu


@pytest.fixture(autouse=True)
def _no_lingering_senders() -> Iterator[None]:
    """Closes the shared senders a test left lingering, so that no test inherits another's connection."""
    yield
    from raccoon_beam.delivery import shared

    shared.close_idle_senders()
