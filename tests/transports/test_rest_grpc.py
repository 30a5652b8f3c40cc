"""REST and gRPC specifics, and the official clients' weaknesses we must not share."""

from __future__ import annotations

import base64
import email.utils
import json
import re
import socket
import threading
import time

import pytest
from aiohttp import web

from raccoon_beam.errors import FailureKind
from raccoon_beam._proto import raccoon_pb2
from raccoon_beam.emulator import Outcome, RaccoonEmulator
from raccoon_beam.retry import Verdict
from raccoon_beam.wire import Wire, decode_request, encode_request, encode_response

from tests.transports.helpers import UNPACED, NO_RETRY, RawServer, assert_facts, eventually, live_threads, make_request
from tests.ports import closed_port

pytestmark = pytest.mark.timeout(60)


# ------------------------------------------------------------------ JSON wire


def _walk_keys(value, keys):
    if isinstance(value, dict):
        for key, item in value.items():
            keys.append(key)
            _walk_keys(item, keys)
    elif isinstance(value, list):
        for item in value:
            _walk_keys(item, keys)
    return keys


def test_json_wire_has_no_camel_case_and_no_rfc3339_times(make_client):
    """What goes on the wire, byte for byte, over REST and WebSocket."""
    bodies = []

    async def rest(request):
        body = await request.read()
        bodies.append(("rest", request.headers.get("Content-Type"), body))
        document = json.loads(body)
        ack = raccoon_pb2.SendEventResponse(status=1, code=1, data={"req_guid": document["req_guid"]})
        return web.Response(
            body=encode_response(ack, Wire.JSON), headers={"Content-Type": "application/json"}
        )

    async def ws(request):
        socket_ = web.WebSocketResponse()
        await socket_.prepare(request)
        async for message in socket_:
            bodies.append(("websocket", message.type.name, message.data.encode()))
            document = json.loads(message.data)
            ack = raccoon_pb2.SendEventResponse(status=1, code=1, data={"req_guid": document["req_guid"]})
            await socket_.send_str(encode_response(ack, Wire.JSON).decode())
        return socket_

    with RawServer([("POST", "/api/v1/events", rest), ("GET", "/api/v1/events", ws)]) as server:
        events = [("click", bytes(range(256))), ("page<view>&", b"\xff\xfe")]
        for endpoint in (f"http://{server.base_url}", f"ws://{server.base_url}"):
            client = make_client(endpoint, wire=Wire.JSON)
            request = encode_request(events, wire=Wire.JSON, sent_time_ns=1_700_000_000_250_000_000)
            assert client.submit(request).result(30).ok
            client.close()
    assert [b[:2] for b in bodies] == [("rest", "application/json"), ("websocket", "TEXT")]
    for _, _, body in bodies:
        assert not re.search(rb'"(reqGuid|sentTime|eventBytes)"', body)
        document = json.loads(body)
        keys = set(_walk_keys(document, []))
        assert keys == {"req_guid", "sent_time", "seconds", "nanos", "events", "event_bytes", "type"}
        assert all(k == k.lower() for k in keys)
        assert document["sent_time"] == {"seconds": 1_700_000_000, "nanos": 250_000_000}
        assert not re.search(rb"\d{4}-\d{2}-\d{2}T", body)  # no RFC 3339 anywhere
        assert [base64.b64decode(e["event_bytes"], validate=True) for e in document["events"]] == [
            e[1] for e in events
        ]
        assert [e["type"] for e in document["events"]] == ["click", "page<view>&"]


# ------------------------------------------------------------------ REST


def test_rest_content_type_is_exact_and_connections_are_pooled(make_client):
    seen = []

    async def handler(request):
        body = await request.read()
        peer = request.transport.get_extra_info("peername")
        seen.append((request.headers.get("Content-Type"), peer, request.headers.get("X-User-ID")))
        from raccoon_beam.wire import decode_request, wire_for_content_type

        wire = wire_for_content_type(request.headers.get("Content-Type"))
        guid = decode_request(body, wire).req_guid
        ack = raccoon_pb2.SendEventResponse(status=1, code=1, data={"req_guid": guid})
        return web.Response(
            body=encode_response(ack, wire), headers={"Content-Type": request.headers["Content-Type"]}
        )

    with RawServer([("POST", "/api/v1/events", handler)]) as server:
        for wire in (Wire.PROTOBUF, Wire.JSON):
            client = make_client(f"http://{server.base_url}", wire=wire, max_in_flight=2)
            futures = [client.submit(make_request(wire)) for _ in range(20)]
            assert all(f.result(30).ok for f in futures)
            client.close()
    assert {s[0] for s in seen[:20]} == {"application/proto"}
    assert {s[0] for s in seen[20:]} == {"application/json"}
    # keep-alive: 20 requests per client over at most max_in_flight connections
    assert len({s[1] for s in seen[:20]}) <= 2
    assert len({s[1] for s in seen[20:]}) <= 2
    assert len({s[2] for s in seen[:20]}) == 1


@pytest.mark.parametrize(
    "name, respond, facts",
    [
        (
            "empty-200",
            lambda: web.Response(status=200, body=b"", content_type="application/proto"),
            dict(http_status=200, malformed=True),
        ),
        (
            "html-502",
            lambda: web.Response(status=502, text="<html>bad gateway</html>", content_type="text/html"),
            dict(http_status=502, malformed=True),
        ),
        (
            "empty-503-no-type",
            lambda: web.Response(status=503, body=b""),
            dict(http_status=503, malformed=True),
        ),
        (
            "json-for-proto",
            lambda: web.Response(status=200, body=b'{"status":1,"code":1}', content_type="application/json"),
            dict(http_status=200, malformed=True),
        ),
        (
            "charset",
            lambda: web.Response(
                status=200, body=b"x", headers={"Content-Type": "application/proto; charset=utf-8"}
            ),
            dict(http_status=200, malformed=True),
        ),
    ],
)
def test_rest_non_raccoon_bodies_are_classified_not_crashes(name, respond, facts, make_client):
    async def handler(request):
        await request.read()
        return respond()

    with RawServer([("POST", "/api/v1/events", handler)]) as server:
        client = make_client(f"http://{server.base_url}", policy=NO_RETRY)
        outcome = client.submit(make_request(Wire.PROTOBUF)).result(30)
        assert_facts(outcome.failure, facts)
        assert outcome.verdict is Verdict.RETRY
        client.close()


def test_rest_success_with_a_charset_parameter_is_an_ack(make_client):
    async def handler(request):
        guid = decode_request(await request.read(), Wire.PROTOBUF).req_guid
        ack = raccoon_pb2.SendEventResponse(status=raccoon_pb2.STATUS_SUCCESS, code=raccoon_pb2.CODE_OK)
        ack.data["req_guid"] = guid
        return web.Response(
            status=200,
            body=encode_response(ack, Wire.PROTOBUF),
            headers={"Content-Type": "application/proto; charset=utf-8"},
        )

    with RawServer([("POST", "/api/v1/events", handler)]) as server:
        client = make_client(f"http://{server.base_url}", policy=NO_RETRY)
        outcome = client.submit(make_request(Wire.PROTOBUF)).result(30)
        assert outcome.ok, outcome.failure
        client.close()


def test_rest_truncated_body(make_client):
    async def handler(request):
        await request.read()
        response = web.StreamResponse(
            status=200, headers={"Content-Type": "application/proto", "Content-Length": "100"}
        )
        await response.prepare(request)
        await response.write(b"\x08\x01")
        request.transport.close()  # cut short: 2 of 100 bytes
        return response

    with RawServer([("POST", "/api/v1/events", handler)]) as server:
        client = make_client(f"http://{server.base_url}", policy=NO_RETRY)
        outcome = client.submit(make_request(Wire.PROTOBUF)).result(30)
        assert outcome.failure is not None and outcome.verdict is Verdict.RETRY
        assert (outcome.failure.kind is FailureKind.MALFORMED) or (outcome.failure.kind is FailureKind.NETWORK), outcome.failure
        client.close()


def test_rest_retry_after_http_date(make_client):
    async def handler(request):
        await request.read()
        when = email.utils.formatdate(time.time() + 30, usegmt=True)
        return web.Response(status=503, text="busy", headers={"Retry-After": when})

    with RawServer([("POST", "/api/v1/events", handler)]) as server:
        client = make_client(f"http://{server.base_url}", policy=NO_RETRY)
        outcome = client.submit(make_request(Wire.PROTOBUF)).result(30)
        assert 20 < outcome.failure.retry_after <= 31
        client.close()


def test_rest_bad_request_is_not_retried(emulator, make_client):
    client = make_client(emulator.rest_endpoint, wire=Wire.JSON)
    emulator.faults.fail_next(
        5, Outcome.raccoon("CODE_BAD_REQUEST", "deserialization failure"), transport="rest"
    )
    outcome = client.submit(make_request(Wire.JSON)).result(30)
    assert outcome.attempts == 1 and outcome.verdict is Verdict.SPLIT
    assert emulator.counters().received("rest") == 1


def test_rest_timeout_is_a_retryable_timeout(emulator, make_client):
    client = make_client(emulator.rest_endpoint, policy=NO_RETRY, timeout=0.3)
    emulator.faults.fail_next(1, Outcome.no_answer(), transport="rest")
    outcome = client.submit(make_request(Wire.PROTOBUF)).result(30)
    assert (outcome.failure.kind is FailureKind.TIMEOUT) and outcome.verdict is Verdict.RETRY


# ------------------------------------------------------------------ gRPC


def test_grpc_transport_errors_are_retried_never_swallowed(make_client):
    client = make_client(f"grpc://127.0.0.1:{closed_port()}", timeout=5.0)
    outcome = client.submit(make_request(Wire.PROTOBUF)).result(30)
    assert not outcome.ok and outcome.response is None
    assert outcome.failure.grpc_status == "UNAVAILABLE" and (outcome.failure.kind is FailureKind.UNREACHABLE)
    assert outcome.verdict is Verdict.RETRY and outcome.attempts == 4


def test_grpc_missing_connection_id_fails_clearly_without_retry(emulator, make_client):
    client = make_client(emulator.grpc_endpoint, conn_id_header="X-Not-The-Server-Header")
    outcome = client.submit(make_request(Wire.PROTOBUF)).result(30)
    assert outcome.verdict is Verdict.PERMANENT and outcome.attempts == 1
    assert outcome.failure.grpc_status == "UNKNOWN"
    assert "connection id header missing" in str(outcome.failure)


def test_grpc_custom_conn_id_header_is_sent_lower_cased():
    with RaccoonEmulator(conn_id_header="X-Beam-Worker", group_header="X-Beam-Group") as emulator:
        from tests.transports.conftest import ClientFactory

        factory = ClientFactory()
        try:
            client = factory(
                emulator.grpc_endpoint,
                conn_id_header="X-Beam-Worker",
                group_header="X-Beam-Group",
                conn_id="w-7",
                group="g-1",
            )
            assert client.submit(make_request(Wire.PROTOBUF)).result(30).ok
            [event] = emulator.events()
            assert (event.conn_id, event.group) == ("w-7", "g-1")
        finally:
            factory.close_and_check()


def test_grpc_bad_request_is_not_retried(emulator, make_client):
    client = make_client(emulator.grpc_endpoint)
    emulator.faults.fail_next(5, Outcome.raccoon("CODE_BAD_REQUEST"), transport="grpc")
    outcome = client.submit(make_request(Wire.PROTOBUF)).result(30)
    assert outcome.attempts == 1 and outcome.verdict is Verdict.SPLIT
    assert emulator.counters().received("grpc") == 1


def test_grpc_no_thread_per_request(emulator, make_client):
    before = live_threads()
    client = make_client(emulator.grpc_endpoint, max_in_flight=8, flow=UNPACED)
    emulator.faults.fail_next(8, Outcome.no_answer(), transport="grpc")
    futures = [client.submit(make_request(Wire.PROTOBUF)) for _ in range(8)]
    assert eventually(lambda: emulator.counters().received("grpc") >= 8)
    # The sender's loop, and grpcio's one thread that answers the channel's calls.
    added = sorted(t.name for t in live_threads() - before)
    assert len(added) == 2 and "raccoon-beam-grpc-sender" in added, added
    client.close()
    assert all(f.cancelled() for f in futures)


# ------------------------------------------------------------------ what a proxy may answer


@pytest.mark.parametrize("wire", [Wire.PROTOBUF, Wire.JSON])
def test_rest_proxy_400_is_permanent_not_bisected(wire, emulator, make_client):
    """M2: a 400 that is not Raccoon's says nothing about the events."""
    client = make_client(emulator.rest_endpoint, wire=wire)
    emulator.faults.fail_next(
        5, Outcome.http(400, body=b"<html>400 Bad Request</html>", content_type="text/html"), transport="rest"
    )
    outcome = client.submit(make_request(wire)).result(30)
    assert outcome.failure.http_status == 400 and (outcome.failure.kind is FailureKind.MALFORMED)
    assert outcome.verdict is Verdict.PERMANENT and outcome.attempts == 1


def test_rest_invalid_content_type_is_permanent_not_bisected(emulator, make_client):
    """M2: the client sends Raccoon's exact types; this 400 means a proxy rewrote the header."""
    client = make_client(emulator.rest_endpoint, wire=Wire.JSON)
    emulator.faults.fail_next(5, Outcome.raccoon("CODE_BAD_REQUEST", "invalid content type"), transport="rest")
    outcome = client.submit(make_request(Wire.JSON)).result(30)
    assert outcome.failure.raccoon_code == raccoon_pb2.CODE_BAD_REQUEST
    assert outcome.failure.reason == "invalid content type"
    assert outcome.verdict is Verdict.PERMANENT and outcome.attempts == 1


def test_rest_endless_body_is_cut_at_the_cap(make_client):
    """L2: the response body is read up to 1 MiB, not until the timeout (or memory) runs out."""

    async def handler(request):
        await request.read()
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/proto"})
        await response.prepare(request)
        chunk = b"\x00" * 65536
        while True:
            await response.write(chunk)

    with RawServer([("POST", "/api/v1/events", handler)]) as server:
        client = make_client(f"http://{server.base_url}", policy=NO_RETRY, timeout=30.0)
        started = time.monotonic()
        outcome = client.submit(make_request(Wire.PROTOBUF)).result(20)
        assert time.monotonic() - started < 15
        assert (outcome.failure.kind is FailureKind.MALFORMED) and outcome.failure.kind is not FailureKind.TIMEOUT, outcome.failure
        assert outcome.failure.http_status == 200
        assert outcome.verdict is Verdict.RETRY
        client.close()


def test_rest_declared_oversized_body_is_not_read(make_client):
    async def handler(request):
        await request.read()
        return web.Response(status=502, body=b"<" * (2 * 1024 * 1024), content_type="text/html")

    with RawServer([("POST", "/api/v1/events", handler)]) as server:
        client = make_client(f"http://{server.base_url}", policy=NO_RETRY)
        outcome = client.submit(make_request(Wire.PROTOBUF)).result(30)
        assert (outcome.failure.kind is FailureKind.MALFORMED) and outcome.failure.http_status == 502
        assert "over 1048576 bytes" in outcome.failure.message
        client.close()


@pytest.mark.parametrize("value", ["\u00b2", "\u0663", "1e3", "-5", "", "  "])
def test_rest_unreadable_retry_after_is_ignored_never_raised(value, make_client):
    """M6: str.isdigit accepts "²", which float() then refuses."""

    async def handler(request):
        await request.read()
        response = web.Response(status=503, text="busy")
        response.headers["Retry-After"] = value
        return response

    with RawServer([("POST", "/api/v1/events", handler)]) as server:
        client = make_client(f"http://{server.base_url}", policy=NO_RETRY)
        outcome = client.submit(make_request(Wire.PROTOBUF)).result(30)
        assert outcome.failure.http_status == 503 and outcome.failure.retry_after is None, outcome.failure
        assert outcome.verdict is Verdict.RETRY
        client.close()


def test_rest_failure_messages_never_show_credentials_or_header_values(make_client):
    """A proxy's error page echoing the request headers: the message shows none of them."""

    async def handler(request):
        await request.read()
        echoed = " ".join(f"{k}: {v}" for k, v in request.headers.items())
        return web.Response(status=502, text=f"<html>{echoed}</html>", content_type="text/html")

    token = base64.b64encode(b"svc:s3cr3t-pass").decode()
    with RawServer([("POST", "/api/v1/events", handler)]) as server:
        client = make_client(
            f"http://svc:s3cr3t-pass@{server.base_url}",
            policy=NO_RETRY,
            headers={"X-Team-Token": "team-token-42"},
        )
        outcome = client.submit(make_request(Wire.PROTOBUF)).result(30)
        message = outcome.failure.message
        assert "Authorization" in message  # the page is shown, redacted
        for secret in (token, "s3cr3t-pass", "team-token-42"):
            assert secret not in message, message
        client.close()


# ------------------------------------------------------------------ gRPC metadata and TLS markers


def test_grpc_non_ascii_header_is_a_construction_error(emulator):
    """H4: gRPC refused it from deep inside each call, with an exception of its own."""
    from raccoon_beam.transports import TransportConfig

    with pytest.raises(ValueError, match="X-Team"):
        TransportConfig(emulator.grpc_endpoint, headers={"X-Team": "caf\u00e9"})
    for field in ("conn_id", "conn_id_prefix", "group"):
        with pytest.raises(ValueError, match=field):
            TransportConfig(emulator.grpc_endpoint, **{field: "gr\u00fcppe"})
    with pytest.raises(ValueError):
        TransportConfig(emulator.grpc_endpoint, headers={"X-Team": "tab\there"})
    # Binary metadata keys may carry anything; REST headers are not gRPC metadata.
    TransportConfig(emulator.grpc_endpoint, headers={"x-trace-bin": "caf\u00e9"})
    TransportConfig(emulator.rest_endpoint, headers={"X-Team": "caf\u00e9"})


def test_grpc_printable_ascii_headers_are_sent(emulator, make_client):
    client = make_client(emulator.grpc_endpoint, headers={"X-Team": "cafe ~!@#"}, group="g-1")
    assert client.submit(make_request(Wire.PROTOBUF)).result(30).ok
    assert emulator.events()[0].group == "g-1"


@pytest.mark.parametrize(
    "details, tls_error",
    [
        ("failed to connect to all addresses; last error: UNKNOWN: ipv4:10.0.0.1:443: "
         "Ssl handshake failed: SSL_ERROR_SYSCALL", False),
        ("Ssl handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:SSL "
         "routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED", True),
        ("Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: WRONG_VERSION_NUMBER: "
         "Invalid certificate verification context", True),
        ("Peer name raccoon.example is not in peer certificate", True),
    ],
)
def test_grpc_tls_that_cannot_work_is_a_tls_error(details, tls_error):
    """A handshake dropped mid-way (SSL_ERROR_SYSCALL) is transient; one TLS refuses is not."""
    import grpc
    import grpc.aio

    from raccoon_beam.retry import classify
    from raccoon_beam.transports import TransportConfig
    from raccoon_beam.transports.grpc import GrpcTransport

    transport = GrpcTransport(TransportConfig("grpcs://raccoon.example:443"))
    error = grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details
    )
    failure = transport._failure(error).failure
    assert (failure.kind is FailureKind.TLS) is tls_error
    assert classify(failure) is (Verdict.PERMANENT if tls_error else Verdict.RETRY)


def test_tls_handshake_answered_by_a_plain_text_server_fails_at_once(make_client):
    """A TLS client meeting a plain-text listener (grpcs:// or https:// to a plain port): no retry can help."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        stop = threading.Event()

        def serve():
            listener.settimeout(0.1)
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except OSError:
                    continue
                with conn:
                    try:
                        conn.recv(1024)
                        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                    except OSError:
                        pass

        thread = threading.Thread(target=serve, name="raw-test-server-tls", daemon=True)
        thread.start()
        try:
            for scheme in ("grpcs", "https", "wss"):
                client = make_client(f"{scheme}://127.0.0.1:{port}", policy=NO_RETRY, timeout=5.0)
                outcome = client.submit(make_request(Wire.PROTOBUF)).result(30)
                assert outcome.failure.kind is FailureKind.TLS, (scheme, outcome.failure)
                assert outcome.verdict is Verdict.PERMANENT and outcome.attempts == 1, (scheme, outcome.failure)
                client.close()
        finally:
            stop.set()
            thread.join(5)


def test_rest_body_over_the_proxy_limit_is_split_not_retried():
    """E1 seen from the client: the emulator's limit answers 413, as a proxy does."""
    from tests.transports.conftest import ClientFactory

    with RaccoonEmulator(max_body_bytes=1024) as emulator:
        factory = ClientFactory()
        try:
            client = factory(emulator.rest_endpoint)
            big = encode_request([("click", b"x" * 4096)], wire=Wire.PROTOBUF)
            outcome = client.submit(big).result(30)
            assert outcome.failure.http_status == 413 and outcome.verdict is Verdict.SPLIT
            assert outcome.attempts == 1
            assert emulator.counters().rejected("rest") == 1
        finally:
            factory.close_and_check()
