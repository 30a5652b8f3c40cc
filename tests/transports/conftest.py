"""Fixtures of the transport tests: a shared emulator and leak-checked clients."""

from __future__ import annotations

import urllib.parse
from typing import Callable, List, Optional

import pytest

from raccoon_beam.emulator import RaccoonEmulator
from raccoon_beam.retry import RetryPolicy
from raccoon_beam.delivery import Sender
from raccoon_beam.delivery.flow import FlowOptions
from raccoon_beam.transports import TransportConfig
from raccoon_beam.wire import Wire

from tests.transports.helpers import FAST_POLICY, RecordingSleep, client_sockets, live_threads, make_ca_and_server_cert


@pytest.fixture(scope="module")
def shared_emulator():
    with RaccoonEmulator() as emulator:
        yield emulator


@pytest.fixture
def emulator(shared_emulator):
    """The module's emulator, with no faults and nothing captured (reset before and after the test)."""
    shared_emulator.reset()
    yield shared_emulator
    shared_emulator.reset()

@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A throwaway CA and a server certificate it signed: (ca, cert, key) paths."""
    return make_ca_and_server_cert(str(tmp_path_factory.mktemp("pki")))


@pytest.fixture(scope="module")
def tls_emulator(pki):
    """An emulator serving grpcs, https and wss with ``pki``'s certificate."""
    _, cert, key = pki
    with RaccoonEmulator(tls=(cert, key)) as emulator:
        yield emulator


class ClientFactory:
    """Builds clients and, at teardown, closes them and checks nothing leaked."""

    def __init__(self) -> None:
        self.clients: List[Sender] = []
        self.ports: List[int] = []
        self.threads_before = live_threads()

    def __call__(
        self,
        endpoint: str,
        wire: Wire = Wire.PROTOBUF,
        policy: RetryPolicy = FAST_POLICY,
        sleep: Optional[Callable] = None,
        flow: Optional[FlowOptions] = None,
        **config,
    ) -> Sender:
        client = Sender(
            TransportConfig(endpoint, wire=wire, **config),
            policy,
            flow,
            sleep=sleep if sleep is not None else RecordingSleep(),
        )
        self.clients.append(client)
        # The port the client's own sockets go to: the proxy's, when there is one
        # (the proxy's sockets to the endpoint close after it, on their own time).
        proxy = client.config.proxy
        self.ports.append(urllib.parse.urlsplit(proxy).port if proxy else client.config.parsed_endpoint.port)
        return client

    def close_and_check(self) -> None:
        for client in self.clients:
            client.close()
        # Immediately: close() returns once every socket is closed.
        assert client_sockets(self.ports) == []
        leaked = {t for t in live_threads() - self.threads_before if t.is_alive()}
        assert not leaked, leaked


@pytest.fixture
def make_client():
    factory = ClientFactory()
    yield factory
    factory.close_and_check()
