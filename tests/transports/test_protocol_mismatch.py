"""A protocol spoken to the wrong port fails at once, with a reason a person can read.

Real servers, ports swapped: HTTP and WebSocket to the emulator's gRPC port,
gRPC to its HTTP port, plain text to a TLS emulator's ports and TLS to a
plain one. Every client retries (FAST_POLICY allows 4 attempts): one attempt
is the classification, not the policy.
"""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from raccoon_beam import RetryPolicy, WriteToRaccoon
from raccoon_beam.errors import FailureKind
from raccoon_beam.retry import Verdict
from raccoon_beam.transports import TlsOptions
from raccoon_beam.wire import Wire

from tests.transports.helpers import make_request

pytestmark = pytest.mark.timeout(120)


def _once(make_client, endpoint, **config):
    client = make_client(endpoint, timeout=5.0, **config)
    outcome = client.submit(make_request(Wire.PROTOBUF)).result(60)
    assert not outcome.ok
    assert outcome.attempts == 1 and outcome.verdict is Verdict.PERMANENT, outcome
    return outcome.failure


@pytest.mark.parametrize("scheme", ["http", "ws"])
def test_http_and_websocket_to_the_grpc_port(scheme, shared_emulator, make_client):
    authority = f"127.0.0.1:{shared_emulator.grpc_port}"
    failure = _once(make_client, f"{scheme}://{authority}/api/v1/events")
    assert failure.kind is FailureKind.PROTOCOL
    assert failure.message == f"{authority} answered with HTTP/2 (gRPC?); use grpc://{authority}"
    assert not failure.outcome_unknown  # a gRPC server publishes nothing it cannot read


def test_grpc_to_the_http_port(shared_emulator, make_client):
    authority = f"127.0.0.1:{shared_emulator.http_port}"
    failure = _once(make_client, f"grpc://{authority}")
    assert failure.kind is FailureKind.PROTOCOL
    assert failure.message == (
        f"{authority} answered with HTTP/1.1, not HTTP/2: not a gRPC port; "
        f"use http://{authority}/api/v1/events (REST) or ws://{authority}/api/v1/events (WebSocket)"
    )


@pytest.mark.parametrize(
    "scheme, port, secure",
    [("http", "http_port", "https"), ("ws", "http_port", "wss"), ("grpc", "grpc_port", "grpcs")],
)
def test_plain_text_to_a_tls_port(scheme, port, secure, tls_emulator, make_client):
    authority = f"127.0.0.1:{getattr(tls_emulator, port)}"
    path = "" if scheme == "grpc" else "/api/v1/events"
    failure = _once(make_client, f"{scheme}://{authority}{path}")
    assert failure.kind is FailureKind.PROTOCOL
    assert failure.message == f"{authority} speaks TLS, not plain text; use {secure}://{authority}{path}"


@pytest.mark.parametrize(
    "scheme, port, plain",
    [("https", "http_port", "http"), ("wss", "http_port", "ws"), ("grpcs", "grpc_port", "grpc")],
)
def test_tls_to_a_plain_text_port(scheme, port, plain, shared_emulator, pki, make_client):
    authority = f"127.0.0.1:{getattr(shared_emulator, port)}"
    path = "" if scheme == "grpcs" else "/api/v1/events"
    failure = _once(make_client, f"{scheme}://{authority}{path}", tls=TlsOptions(ca_certs=pki[0]))
    assert failure.kind is FailureKind.TLS
    assert f"{authority} answered in plain text, not TLS; use {plain}://{authority}{path}" in failure.message


def test_grpcs_to_an_https_port(tls_emulator, pki, make_client):
    authority = f"127.0.0.1:{tls_emulator.http_port}"
    failure = _once(make_client, f"grpcs://{authority}", tls=TlsOptions(ca_certs=pki[0]))
    assert failure.kind is FailureKind.PROTOCOL
    assert failure.message.startswith(f"{authority} does not offer HTTP/2 over TLS (ALPN h2): not a gRPC port; ")


@pytest.mark.parametrize("scheme", ["https", "wss"])
def test_https_and_wss_to_a_grpc_tls_port(scheme, tls_emulator, pki, make_client):
    authority = f"127.0.0.1:{tls_emulator.grpc_port}"
    failure = _once(make_client, f"{scheme}://{authority}/api/v1/events", tls=TlsOptions(ca_certs=pki[0]))
    assert failure.kind is FailureKind.PROTOCOL
    assert failure.message == f"{authority} offers only HTTP/2 over TLS (gRPC?); use grpcs://{authority}"


def _hanging_up_server(tls_context=None):
    """A listener that reads one request (after a TLS handshake, with a context) and closes without a word."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.1)
    stop = threading.Event()

    def hang_up():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            try:
                conn.settimeout(5)
                if tls_context is not None:
                    conn = tls_context.wrap_socket(conn, server_side=True)
                conn.recv(1024)
            except OSError:
                pass  # a probe's handshake, aborted at once
            finally:
                conn.close()

    thread = threading.Thread(target=hang_up, daemon=True)
    thread.start()

    def close():
        stop.set()
        thread.join(5)
        listener.close()

    return listener.getsockname()[1], close


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_a_port_that_hangs_up_is_not_taken_for_another_protocol(tls, pki, make_client):
    """A server dropping the connection without a word stays a retried network failure."""
    import ssl

    context = None
    if tls:  # an HTTPS server (HTTP/1.1 over TLS) that drops every request
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(pki[1], pki[2])
    port, close = _hanging_up_server(context)
    try:
        scheme, options = ("https", {"tls": TlsOptions(ca_certs=pki[0])}) if tls else ("http", {})
        client = make_client(f"{scheme}://127.0.0.1:{port}/api/v1/events", timeout=5.0, **options)
        outcome = client.submit(make_request(Wire.PROTOBUF)).result(60)
        assert outcome.failure.kind is FailureKind.NETWORK and outcome.verdict is Verdict.RETRY, outcome.failure
        assert outcome.attempts == 4  # FAST_POLICY's attempts: retried as before
    finally:
        close()


def test_the_pipeline_dead_letters_after_one_attempt_with_the_reason(shared_emulator):
    authority = f"127.0.0.1:{shared_emulator.grpc_port}"
    with beam.Pipeline() as pipeline:
        result = pipeline | beam.Create([{"n": 1}, {"n": 2}]) | WriteToRaccoon(
            f"http://{authority}/api/v1/events",
            event_type="click",
            retry=RetryPolicy(max_attempts=10, initial_backoff=1.0),
        )
        letters = result.failed | beam.Map(lambda letter: (letter.attempts, letter.delivered, letter.error))
        reason = f"not retryable: {authority} answered with HTTP/2 (gRPC?); use grpc://{authority}"
        assert_that(letters, equal_to([(1, False, reason)] * 2))
