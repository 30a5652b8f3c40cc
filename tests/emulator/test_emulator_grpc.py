"""gRPC behaviour, as Raccoon's own code serves it (docs/protocol.md), over real sockets."""

from __future__ import annotations

import datetime
import ipaddress

import grpc
import pytest

from raccoon_beam._proto import raccoon_pb2, raccoon_pb2_grpc
from raccoon_beam.emulator import RaccoonEmulator


def test_success_with_generated_stub(kit, emulator):
    req = raccoon_pb2.SendEventRequest(req_guid="g-1", events=[raccoon_pb2.Event(type="click", event_bytes=b"p")])
    req.sent_time.seconds = 1700000000
    target = emulator.grpc_endpoint.split("://", 1)[1]
    with grpc.insecure_channel(target) as channel:
        stub = raccoon_pb2_grpc.EventServiceStub(channel)
        resp = stub.SendEvent(req, metadata=[("x-user-id", "u-9"), ("x-user-group", "g")], timeout=10)
    assert (resp.status, resp.code) == (raccoon_pb2.STATUS_SUCCESS, raccoon_pb2.CODE_OK)
    assert resp.data["req_guid"] == "g-1" and resp.sent_time > 0
    (event,) = emulator.events()
    assert event[:7] == ("click", b"p", "g-1", "u-9", "g", "grpc", "clickstream-click-log")
    assert event.captured_at > 1_700_000_000


def test_missing_connection_id_is_unknown(kit, emulator):
    error = kit.grpc_error(kit.request([("click", b"x")]).body, metadata=[("x-user-group", "g")])
    assert error.code() is grpc.StatusCode.UNKNOWN
    assert error.details() == "connection id header missing"
    assert emulator.events() == []


def test_default_group_and_empty_id(kit, emulator):
    kit.grpc(kit.request([("click", b"x")]).body, metadata=[("x-user-id", "")])
    (event,) = emulator.events()
    assert (event.conn_id, event.group) == ("", "--default--")


@pytest.mark.emulator(conn_id_header="X-Conn-Id")
def test_configured_header_is_lower_cased_metadata(kit, emulator):
    kit.grpc(kit.request([("click", b"x")]).body, metadata=[("x-conn-id", "c-1")])
    assert emulator.events()[0].conn_id == "c-1"
    assert kit.grpc_error(b"", metadata=[("x-user-id", "u")]).code() is grpc.StatusCode.UNKNOWN


def test_unparseable_request_is_internal_like_grpc_go(kit, emulator):
    error = kit.grpc_error(b"\x0a\xff\xff\xff")
    assert error.code() is grpc.StatusCode.INTERNAL
    assert "unmarshalling" in error.details()
    assert emulator.counters().rejected("grpc") == 1


def test_request_over_4_mib_is_resource_exhausted(kit, emulator):
    big = kit.request([("click", b"x" * (4 * 1024 * 1024))]).body
    assert len(big) > 4_194_304
    error = kit.grpc_error(big)
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    # Just under the limit passes.
    kit.grpc(kit.request([("click", b"x" * (4 * 1024 * 1024 - 200))]).body)
    assert len(emulator.events()) == 1


def test_tls_endpoints(tmp_path):
    cert, key = _self_signed(tmp_path)
    with RaccoonEmulator(tls=(str(cert), str(key))) as emu:
        assert emu.grpc_endpoint.startswith("grpcs://")
        assert emu.rest_endpoint.startswith("https://") and emu.ws_endpoint.startswith("wss://")
        creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        target = emu.grpc_endpoint.split("://", 1)[1]
        with grpc.secure_channel(target, creds) as channel:
            stub = raccoon_pb2_grpc.EventServiceStub(channel)
            resp = stub.SendEvent(raccoon_pb2.SendEventRequest(req_guid="t"), metadata=[("x-user-id", "u")],
                                  timeout=10)
        assert resp.code == raccoon_pb2.CODE_OK
        import requests

        assert requests.get(emu.http_base_url + "/ping", verify=str(cert), timeout=10).text == "pong"


def _self_signed(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path
