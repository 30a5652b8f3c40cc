"""TLS with a throwaway CA: accepted with the CA, refused (PERMANENT) without it."""

from __future__ import annotations

import pytest

from raccoon_beam.errors import FailureKind
from raccoon_beam.retry import Verdict
from raccoon_beam.transports import TlsOptions
from raccoon_beam.wire import Wire

from tests.transports.helpers import (
    NO_RETRY,
    TRANSPORT_WIRE_IDS,
    TRANSPORT_WIRES,
    make_ca_and_server_cert,
    make_request,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory):
    return make_ca_and_server_cert(str(tmp_path_factory.mktemp("other")))[0]


@pytest.fixture
def tls_target(tls_emulator):
    tls_emulator.faults.clear()
    tls_emulator.reset()
    return tls_emulator


def test_emulator_serves_tls_schemes(tls_target):
    assert tls_target.grpc_endpoint.startswith("grpcs://")
    assert tls_target.rest_endpoint.startswith("https://")
    assert tls_target.ws_endpoint.startswith("wss://")


@pytest.mark.parametrize("attribute, wire", TRANSPORT_WIRES, ids=TRANSPORT_WIRE_IDS)
def test_accepted_with_the_ca(attribute, wire, tls_target, pki, make_client):
    client = make_client(getattr(tls_target, attribute), wire=wire, tls=TlsOptions(ca_certs=pki[0]))
    outcomes = [f.result(30) for f in [client.submit(make_request(wire)) for _ in range(3)]]
    assert all(o.ok for o in outcomes), [o.failure for o in outcomes]
    assert len(tls_target.events()) == 3


@pytest.mark.parametrize("attribute, wire", TRANSPORT_WIRES, ids=TRANSPORT_WIRE_IDS)
@pytest.mark.parametrize("trust", ["system-roots", "another-ca"])
def test_refused_without_the_ca(attribute, wire, trust, tls_target, other_ca, make_client):
    tls = TlsOptions() if trust == "system-roots" else TlsOptions(ca_certs=other_ca)
    client = make_client(getattr(tls_target, attribute), wire=wire, tls=tls)
    outcome = client.submit(make_request(wire)).result(30)
    assert not outcome.ok
    assert (outcome.failure.kind is FailureKind.TLS), outcome.failure
    assert outcome.verdict is Verdict.PERMANENT and outcome.attempts == 1
    assert tls_target.events() == []


@pytest.mark.parametrize("endpoint_attr", ["rest_endpoint", "ws_endpoint"])
def test_hostname_is_verified(endpoint_attr, tls_target, pki, make_client):
    # The certificate names localhost and 127.0.0.1, not raccoon.example.
    client = make_client(
        getattr(tls_target, endpoint_attr),
        tls=TlsOptions(ca_certs=pki[0], server_hostname="raccoon.example"),
    )
    outcome = client.submit(make_request(Wire.PROTOBUF)).result(30)
    assert outcome.failure is not None and (outcome.failure.kind is FailureKind.TLS)


def test_grpc_hostname_override(tls_target, pki, make_client):
    ok = make_client(tls_target.grpc_endpoint, tls=TlsOptions(ca_certs=pki[0], server_hostname="localhost"))
    assert ok.submit(make_request(Wire.PROTOBUF)).result(30).ok
    wrong = make_client(
        tls_target.grpc_endpoint, tls=TlsOptions(ca_certs=pki[0], server_hostname="raccoon.example")
    )
    outcome = wrong.submit(make_request(Wire.PROTOBUF)).result(30)
    assert not outcome.ok and outcome.verdict is Verdict.PERMANENT, outcome.failure


@pytest.mark.parametrize("endpoint_attr", ["rest_endpoint", "ws_endpoint"])
def test_verification_can_be_turned_off_for_http(endpoint_attr, tls_target, make_client):
    client = make_client(getattr(tls_target, endpoint_attr), tls=TlsOptions(verify=False))
    assert client.submit(make_request(Wire.PROTOBUF)).result(30).ok


def test_plain_client_against_tls_server_fails_clearly(tls_target, make_client):
    plain = tls_target.rest_endpoint.replace("https://", "http://")
    client = make_client(plain, policy=NO_RETRY)
    outcome = client.submit(make_request(Wire.PROTOBUF)).result(30)
    # The port is asked whether it speaks TLS: a configuration error, named (test_protocol_mismatch.py).
    assert not outcome.ok and (outcome.failure.kind is FailureKind.PROTOCOL), outcome.failure
    assert "speaks TLS, not plain text; use https://" in outcome.failure.message


@pytest.mark.parametrize("attribute", ["grpc_endpoint", "rest_endpoint", "ws_endpoint"])
def test_missing_ca_file_is_a_permanent_tls_failure(attribute, tls_target, tmp_path, make_client):
    client = make_client(
        getattr(tls_target, attribute), tls=TlsOptions(ca_certs=str(tmp_path / "missing.pem"))
    )
    outcome = client.submit(make_request(Wire.PROTOBUF)).result(30)
    assert (outcome.failure.kind is FailureKind.TLS) and outcome.verdict is Verdict.PERMANENT and outcome.attempts == 1
    assert "missing.pem" in outcome.failure.message
