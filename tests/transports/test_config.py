"""Endpoint parsing, TransportConfig validation and redaction, Retry-After parsing."""

from __future__ import annotations

import pickle

import pytest

from raccoon_beam.errors import FailureKind, SendFailure
from raccoon_beam.transports import TlsOptions, TransportConfig, parse_endpoint
from raccoon_beam.transports import check_response, parse_retry_after, redact
from raccoon_beam._proto import raccoon_pb2
from raccoon_beam.wire import Wire, encode_request


@pytest.mark.parametrize(
    "url, scheme, host, port, path, tls, kind",
    [
        ("grpc://raccoon.internal:8081", "grpc", "raccoon.internal", 8081, "", False, "grpc"),
        ("grpc://raccoon", "grpc", "raccoon", 8081, "", False, "grpc"),
        ("grpcs://raccoon", "grpcs", "raccoon", 443, "", True, "grpc"),
        ("grpc://raccoon/", "grpc", "raccoon", 8081, "", False, "grpc"),
        ("http://127.0.0.1", "http", "127.0.0.1", 8080, "/api/v1/events", False, "rest"),
        ("https://raccoon.example.com", "https", "raccoon.example.com", 443, "/api/v1/events", True, "rest"),
        ("http://h:9000/custom/events", "http", "h", 9000, "/custom/events", False, "rest"),
        ("ws://h", "ws", "h", 8080, "/api/v1/events", False, "websocket"),
        ("wss://h:8443/", "wss", "h", 8443, "/api/v1/events", True, "websocket"),
        ("WS://H:1", "ws", "h", 1, "/api/v1/events", False, "websocket"),
        ("grpc://[::1]:50051", "grpc", "::1", 50051, "", False, "grpc"),
    ],
)
def test_parse_endpoint(url, scheme, host, port, path, tls, kind):
    endpoint = parse_endpoint(url)
    assert (endpoint.scheme, endpoint.host, endpoint.port, endpoint.path, endpoint.tls, endpoint.kind) == (
        scheme,
        host,
        port,
        path,
        tls,
        kind,
    )


def test_ipv6_authority_and_url():
    endpoint = parse_endpoint("http://[::1]:8080")
    assert endpoint.authority == "[::1]:8080"
    assert endpoint.url == "http://[::1]:8080/api/v1/events"


@pytest.mark.parametrize(
    "url, message",
    [
        ("", "non-empty"),
        ("raccoon:8081", "no scheme"),
        ("ftp://raccoon", "unknown scheme"),
        ("tcp://raccoon:8081", "unknown scheme"),
        ("grpc://", "no host"),
        ("http://:8080/x", "no host"),
        ("grpc://raccoon:notaport", "malformed"),
        ("grpc://raccoon:99999", "malformed"),
        ("grpc://raccoon:0", "port 0"),
        ("grpc://raccoon/api/v1/events", "no path"),
        ("http://raccoon/api?x=1", "query"),
        ("http://bad host/", "invalid host"),
    ],
)
def test_malformed_endpoints_raise_value_error(url, message):
    with pytest.raises(ValueError, match=message):
        parse_endpoint(url)


def test_non_string_endpoint():
    with pytest.raises(ValueError):
        parse_endpoint(None)  # type: ignore[arg-type]


def test_credentials_are_kept_aside_and_never_shown():
    endpoint = parse_endpoint("https://alice:s%40cret@raccoon.example.com/api/v1/events")
    assert endpoint.username == "alice" and endpoint.password == "s@cret"
    for text in (endpoint.redacted, str(endpoint), repr(endpoint), endpoint.url):
        assert "s@cret" not in text and "s%40cret" not in text and "alice" not in text
    assert endpoint.redacted == "https://***@raccoon.example.com:443/api/v1/events"
    with pytest.raises(ValueError) as info:
        parse_endpoint("ftp://alice:s3cret@raccoon")
    assert "s3cret" not in str(info.value)


def test_url_credentials_become_basic_auth():
    config = TransportConfig("http://alice:pw@h:1")
    assert config.request_headers("id")["Authorization"] == "Basic YWxpY2U6cHc="
    assert "pw" not in repr(config) and "YWxpY2U6cHc" not in repr(config)


def test_json_wire_over_grpc_is_refused():
    with pytest.raises(ValueError, match="gRPC"):
        TransportConfig("grpc://h:1", wire="json")
    with pytest.raises(ValueError, match="gRPC"):
        TransportConfig("grpcs://h:1", wire=Wire.JSON)
    assert TransportConfig("http://h:1", wire="JSON").wire is Wire.JSON
    assert TransportConfig("ws://h:1", wire="json").wire is Wire.JSON


@pytest.mark.parametrize(
    "kwargs",
    [
        {"wire": "avro"},
        {"timeout": 0},
        {"timeout": -1},
        {"timeout": float("inf")},
        {"max_in_flight": 0},
        {"conn_id_header": ""},
        {"conn_id_header": "X User"},
        {"headers": {"X-A": "line\nbreak"}},
        {"headers": {"bad header": "v"}},
        {"tls": TlsOptions(ca_certs="/ca.pem")},  # TLS options on a plain endpoint
    ],
)
def test_config_validation(kwargs):
    with pytest.raises(ValueError):
        TransportConfig("http://h:1", **kwargs)


def test_grpc_cannot_skip_verification():
    with pytest.raises(ValueError, match="verification"):
        TransportConfig("grpcs://h", tls=TlsOptions(verify=False))
    TransportConfig("https://h", tls=TlsOptions(verify=False))


def test_tls_client_cert_and_key_go_together():
    with pytest.raises(ValueError):
        TlsOptions(client_cert="/c.pem")


def test_defaults():
    config = TransportConfig("grpc://h")
    assert config.timeout == 30.0
    assert config.max_in_flight == 4
    assert config.conn_id_header == "X-User-ID"
    assert config.group_header == "X-User-Group"
    assert config.wire is Wire.PROTOBUF
    assert config.tls.verify is True


def test_config_pickles():
    config = TransportConfig(
        "wss://u:p@h:1",
        wire="json",
        headers={"Authorization": "Bearer t", "X-Team": "a"},
        group="g",
        conn_id="fixed",
        tls=TlsOptions(ca_certs="/ca.pem"),
        timeout=5,
    )
    assert pickle.loads(pickle.dumps(config)) == config
    assert hash(pickle.loads(pickle.dumps(config))) == hash(config)


def test_request_headers_identity_group_and_user_headers():
    config = TransportConfig("http://h", headers={"x-user-id": "spoof", "X-Team": "a"}, group="g1")
    headers = config.request_headers("conn-1")
    assert headers == {"X-Team": "a", "X-User-ID": "conn-1", "X-User-Group": "g1"}
    assert "X-User-Group" not in TransportConfig("http://h").request_headers("c")


def test_conn_ids_are_unique_with_prefix_or_fixed():
    config = TransportConfig("ws://h", conn_id_prefix="pipeline-7")
    ids = {config.new_conn_id() for _ in range(100)}
    assert len(ids) == 100 and all(i.startswith("pipeline-7-") for i in ids)
    assert TransportConfig("ws://h", conn_id="me").new_conn_id() == "me"


def test_secret_headers_redacted():
    config = TransportConfig(
        "http://h", headers={"Authorization": "Bearer tok3n", "X-Api-Key": "k3y", "X-A": "v"}
    )
    assert "tok3n" not in repr(config) and "k3y" not in repr(config)
    # Every value hidden, not only the secret list's: names only.
    assert "'X-A'" in repr(config) and "'v'" not in repr(config)
    assert redact("got Bearer tok3n and k3y", config) == "got *** and ***"
    custom = TransportConfig("http://h", headers={"X-Secret": "zz"}, secret_headers=("X-Secret",))
    assert "zz" not in repr(custom)


def test_parse_retry_after():
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-3") is None
    now = 1_700_000_000.0  # Tue, 14 Nov 2023 22:13:20 GMT
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:50 GMT", now=now) == 30.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now=now) == 0.0


@pytest.mark.parametrize(
    "value", ["\u00b2", "\u0663", "\uff17", "1e3", "inf", "nan", "0x10", "1.", ".5", "9" * 400,
              "Mon, 01 Jan 99999 00:00:00 GMT"]
)
def test_parse_retry_after_never_raises(value):
    assert parse_retry_after(value) is None


def test_parse_retry_after_decimals():
    assert parse_retry_after("1.5") == 1.5


def test_redact_removes_url_credentials_and_the_basic_token_built_from_them():
    import base64

    config = TransportConfig("https://svc:pa%3Ass@h", headers={"X-Team-Token": "team-token-42", "X-V": "1"})
    token = base64.b64encode(b"svc:pa:ss").decode()
    assert config.request_headers("c")["Authorization"] == "Basic " + token
    text = f"Authorization: Basic {token}; raw {token}; pa:ss pa%3Ass team-token-42 version 1"
    shown = redact(text, config)
    assert token not in shown and "pa:ss" not in shown and "pa%3Ass" not in shown
    assert "team-token-42" not in shown
    assert shown.endswith("version 1")  # short values cannot be secrets and are left alone


def _response(status, code, guid=None, reason=""):
    response = raccoon_pb2.SendEventResponse(status=status, code=code, reason=reason)
    if guid is not None:
        response.data["req_guid"] = guid
    return response


def test_check_response():
    request = encode_request([("t", b"x")], wire=Wire.PROTOBUF)
    ok = _response(raccoon_pb2.STATUS_SUCCESS, raccoon_pb2.CODE_OK, request.req_guid)
    assert check_response(ok, request) is ok
    assert check_response(
        _response(raccoon_pb2.STATUS_SUCCESS, raccoon_pb2.CODE_OK), request, http_status=200
    )
    with pytest.raises(SendFailure) as info:
        check_response(_response(raccoon_pb2.STATUS_SUCCESS, raccoon_pb2.CODE_OK, "other"), request)
    assert info.value.failure.kind is FailureKind.MALFORMED
    with pytest.raises(SendFailure) as info:
        check_response(raccoon_pb2.SendEventResponse(), request, http_status=200)
    assert info.value.failure.kind is FailureKind.MALFORMED and info.value.failure.http_status == 200
    with pytest.raises(SendFailure) as info:
        check_response(
            _response(
                raccoon_pb2.STATUS_ERROR, raccoon_pb2.CODE_INTERNAL_ERROR, request.req_guid, "kafka down"
            ),
            request,
            http_status=500,
            retry_after=2.0,
        )
    failure = info.value.failure
    assert (failure.raccoon_code, failure.http_status, failure.retry_after) == (3, 500, 2.0)
    assert "CODE_INTERNAL_ERROR: kafka down" in failure.message
