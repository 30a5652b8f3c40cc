"""Credentials and TLS.

* TLS is verified by default for ``grpcs``, ``https`` and ``wss``: a server
  whose certificate comes from a private CA is refused without that CA (not
  retried: a configuration problem), accepted with ``TlsOptions(ca_certs=)``.
* Header values that carry credentials (``Authorization``, ``X-Api-Key`` and
  the like, plus the headers named in ``secret_headers``) and the password of
  a ``user:password@`` endpoint never appear in logs (DEBUG included),
  display data, exceptions, reprs or dead-letter records.
"""

from __future__ import annotations

import base64
import logging
import os
import time
from typing import Any, Dict, Iterable, List

import apache_beam as beam
import pytest
from apache_beam.transforms.display import DisplayData

from raccoon_beam import RetryPolicy, TlsOptions, WriteToRaccoon
from raccoon_beam.emulator import Outcome, RaccoonEmulator
from raccoon_beam.transports import TransportConfig, parse_endpoint

from tests.reliability.conftest import TinyServer, endpoint_of, run_pipeline
from tests.transports.helpers import make_ca_and_server_cert

FAST = RetryPolicy(max_attempts=3, initial_backoff=0.001, max_backoff=0.01, deadline=30.0)
ELEMENTS = [{"id": i, "event_name": "click"} for i in range(30)]
BOUND = 60.0

SCHEMES = {"grpcs": "grpc", "https": "rest", "wss": "websocket"}


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("certs")
    ca, cert, key = make_ca_and_server_cert(str(directory), hostnames=("localhost",), ips=("127.0.0.1",))
    return {"ca": ca, "cert": cert, "key": key}


@pytest.fixture(scope="module")
def tls_emulator(certs):
    with RaccoonEmulator(tls=(certs["cert"], certs["key"])) as emulator:
        yield emulator


@pytest.fixture
def tls_server(tls_emulator):
    tls_emulator.reset()
    yield tls_emulator
    tls_emulator.faults.clear()


# ------------------------------------------------------------------ TLS


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_tls_is_verified_by_default_and_a_private_ca_is_refused(tls_server, letters_path, scheme):
    endpoint = endpoint_of(tls_server, SCHEMES[scheme])
    assert endpoint.startswith(scheme + "://")
    started = time.monotonic()
    letters = run_pipeline(ELEMENTS, letters_path, endpoint=endpoint, event_type="click", retry=FAST, timeout=5)
    assert time.monotonic() - started < BOUND
    assert tls_server.events() == []
    assert len(letters) == len(ELEMENTS)
    for letter in letters:
        assert letter["stage"] == "send"
        assert letter["attempts"] == 1, letter  # an untrusted certificate is not transient
        assert "not retryable" in letter["error"], letter
        assert any(word in letter["error"] for word in ("TLS", "CERTIFICATE", "certificate", "SSL", "Ssl")), letter


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_tls_with_the_private_ca_is_accepted(tls_server, letters_path, certs, scheme):
    letters = run_pipeline(
        ELEMENTS,
        letters_path,
        endpoint=endpoint_of(tls_server, SCHEMES[scheme]),
        event_type="click",
        tls=TlsOptions(ca_certs=certs["ca"]),
        retry=FAST,
    )
    assert letters == []
    assert len(tls_server.events()) == len(ELEMENTS)


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_tls_host_name_mismatch_is_refused(tls_server, letters_path, certs, scheme):
    letters = run_pipeline(
        ELEMENTS,
        letters_path,
        endpoint=endpoint_of(tls_server, SCHEMES[scheme]),
        event_type="click",
        tls=TlsOptions(ca_certs=certs["ca"], server_hostname="raccoon.other.example"),
        retry=FAST,
        timeout=5,
    )
    assert tls_server.events() == []
    assert len(letters) == len(ELEMENTS)
    assert all(letter["attempts"] == 1 for letter in letters), letters[0]


@pytest.mark.parametrize("scheme", ["http", "ws", "grpc"])
def test_plain_client_against_a_tls_port_is_bounded(tls_server, letters_path, scheme):
    """Speaking plain text to a TLS port: bounded, dead-lettered, never a hang."""
    port = tls_server.grpc_port if scheme == "grpc" else tls_server.http_port
    path = "" if scheme == "grpc" else "/api/v1/events"
    started = time.monotonic()
    letters = run_pipeline(
        ELEMENTS,
        letters_path,
        endpoint=f"{scheme}://127.0.0.1:{port}{path}",
        event_type="click",
        retry=FAST,
        timeout=2,
    )
    assert time.monotonic() - started < BOUND
    assert len(letters) == len(ELEMENTS) and tls_server.events() == []


# ------------------------------------------------------------------ secrets

AUTH = "Bearer tok-AUTH-0001"
API_KEY = "key-API-0002"
SESSION = "sess-TOKEN-0003"  # a header the user marks secret
PASSWORD = "pw-URL-0004"
SECRET_HEADERS = {"Authorization": AUTH, "X-Api-Key": API_KEY, "X-Session-Token": SESSION, "X-Team": "growth"}
BASIC = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
SECRETS = ("tok-AUTH-0001", API_KEY, SESSION, PASSWORD, BASIC)


def with_password(endpoint: str) -> str:
    scheme, rest = endpoint.split("://", 1)
    return f"{scheme}://alice:{PASSWORD}@{rest}"


def assert_no_secret(texts: Iterable[str], where: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} leaked in {where}: {text[:500]!r}"


def log_texts(caplog) -> List[str]:
    texts = []
    for record in caplog.records:
        texts.append(record.getMessage())
        if record.exc_text:
            texts.append(record.exc_text)
        if record.exc_info and record.exc_info[1] is not None:
            texts.append(repr(record.exc_info[1]))
    return texts


def letter_texts(letters: List[Dict[str, Any]]) -> List[str]:
    return [letter["repr"] + " " + letter["error"] for letter in letters]


def _transform(endpoint: str, headers: Dict[str, str] = SECRET_HEADERS) -> WriteToRaccoon:
    return WriteToRaccoon(
        with_password(endpoint),
        event_type="click",
        headers=headers,
        secret_headers=["X-Session-Token"],
        retry=FAST,
        timeout=1,
    )


@pytest.mark.parametrize("transport", ["grpc", "rest", "websocket"])
def test_secrets_never_appear_in_display_data_or_reprs(emulator, transport):
    transform = _transform(endpoint_of(emulator, transport))
    items = DisplayData.create_from(transform).items
    shown = [f"{item.key}={item.value}" for item in items]
    assert_no_secret(shown, "display data")
    assert any("X-Team" in text for text in shown)  # the header is shown, not the secret values
    config = transform.options.transport
    reprs = [repr(transform.options), repr(config), str(config.parsed_endpoint), repr(config.parsed_endpoint)]
    assert_no_secret(reprs, "reprs")


@pytest.mark.parametrize("transport", ["grpc", "rest", "websocket"])
@pytest.mark.parametrize(
    "name, outcome",
    [
        ("unavailable", Outcome.http(503)),
        ("unauthorized", Outcome.http(401, body=b"bad credentials")),
        ("garbage", Outcome.garbage()),
        ("grpc-unauthenticated", Outcome.grpc("UNAUTHENTICATED", "token rejected")),
        ("ok", None),
    ],
)
def test_secrets_never_appear_in_logs_or_dead_letters(emulator, letters_path, caplog, transport, name, outcome):
    caplog.set_level(logging.DEBUG)
    if outcome is not None:
        emulator.faults.fail_next(10**6, outcome)
    endpoint = with_password(endpoint_of(emulator, transport))
    # Basic auth from the URL (no Authorization header) and explicit secret headers.
    for headers in (SECRET_HEADERS, {k: v for k, v in SECRET_HEADERS.items() if k != "Authorization"}):
        if outcome is None:
            emulator.reset()  # count this run's deliveries only
        if os.path.exists(letters_path):
            os.remove(letters_path)
        letters = run_pipeline(
            ELEMENTS,
            letters_path,
            endpoint=endpoint,
            event_type="click",
            headers=headers,
            secret_headers=["X-Session-Token"],
            retry=FAST,
            timeout=1,
        )
        assert_no_secret(letter_texts(letters), "dead letters")
        assert_no_secret(log_texts(caplog), "logs")
        if outcome is None:
            assert letters == []
            # The credentials did reach the server (they are not dropped, only hidden).
            assert len(emulator.events()) == len(ELEMENTS)
        else:
            assert len(letters) == len(ELEMENTS)


def test_fail_on_error_exception_carries_no_secret(emulator):
    emulator.faults.fail_next(10**6, Outcome.http(401, body=b"nope"), transport="rest")
    with pytest.raises(Exception) as raised:
        with beam.Pipeline() as pipeline:
            _ = (
                pipeline
                | beam.Create(ELEMENTS[:5])
                | WriteToRaccoon(
                    with_password(emulator.rest_endpoint),
                    event_type="click",
                    headers=SECRET_HEADERS,
                    secret_headers=["X-Session-Token"],
                    retry=FAST,
                    fail_on_error=True,
                )
            )
    assert "not delivered" in str(raised.value)
    assert_no_secret([str(raised.value), repr(raised.value)], "the pipeline's exception")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://alice:pw-URL-0004@host:21",
        "http://alice:pw-URL-0004@host:notaport",
        "http://alice:pw-URL-0004@",
        "http://alice:pw-URL-0004@ho st:1",
        "grpc://alice:pw-URL-0004@host:1/path",
        "http://alice:pw-URL-0004@host:1/?q=1",
    ],
)
def test_construction_errors_never_show_the_password(url):
    with pytest.raises(ValueError) as raised:
        WriteToRaccoon(url, event_type="click")
    assert_no_secret([str(raised.value)], "the construction error")


@pytest.mark.parametrize(
    "url",
    ["https://alice:pw-URL-0004/x@host/api", "https://alice:pw-URL-0004#x@host", "https://alice:pw-URL-0004?x@host"],
)
def test_construction_errors_never_show_a_password_with_special_characters(url):
    with pytest.raises(ValueError) as raised:
        parse_endpoint(url)
    assert_no_secret([str(raised.value)], "the construction error")


# ------------------------------------------------------------------ hostile servers


def _echo_server(status: int = 502):
    """A 'proxy' whose error page echoes the request headers (as debugging pages do)."""
    from aiohttp import web

    async def handler(request):
        await request.read()
        lines = "".join(f"<li>{k}: {v}</li>" for k, v in request.headers.items())
        return web.Response(status=status, text=f"<html><ul>{lines}</ul></html>", content_type="text/html")

    return TinyServer(routes={("POST", "/api/v1/events"): handler})


@pytest.mark.parametrize("credentials", ["headers", "url"])
def test_error_page_echoing_headers_leaks_no_secret(letters_path, caplog, credentials):
    """A proxy's error page that echoes the request headers: no secret in dead letters or logs."""
    caplog.set_level(logging.DEBUG)
    with _echo_server() as server:
        endpoint = f"http://127.0.0.1:{server.port}/api/v1/events"
        if credentials == "url":  # Basic auth derived from user:password@
            endpoint, headers = with_password(endpoint), {"X-Team": "growth"}
        else:
            headers = SECRET_HEADERS
        letters = run_pipeline(
            ELEMENTS[:5],
            letters_path,
            endpoint=endpoint,
            event_type="click",
            headers=headers,
            secret_headers=["X-Session-Token"],
            retry=FAST,
        )
        echoed = " ".join(str(r["headers"]) for r in server.requests)
    assert len(letters) == 5
    assert "growth" in echoed and ("Basic " in echoed or "tok-AUTH-0001" in echoed)  # the server did see them
    assert_no_secret(letter_texts(letters), "dead letters")
    assert_no_secret(log_texts(caplog), "logs")


def test_basic_token_from_the_url_is_redacted():
    from raccoon_beam.transports import redact

    config = TransportConfig(with_password("http://127.0.0.1:1/api/v1/events"))
    sent = config.request_headers("conn")["Authorization"]
    assert BASIC in sent
    assert BASIC not in redact(f"server said: Authorization: {sent}", config)


def test_redirect_to_another_origin_receives_no_secret(letters_path):
    from aiohttp import web

    async def sink(request):
        await request.read()
        return web.Response(status=404, text="no")

    with TinyServer(routes={("POST", "/api/v1/events"): sink}) as elsewhere:

        async def redirect(request):
            await request.read()
            raise web.HTTPTemporaryRedirect(f"http://localhost:{elsewhere.port}/api/v1/events")

        with TinyServer(routes={("POST", "/api/v1/events"): redirect}) as server:
            run_pipeline(
                ELEMENTS[:5],
                letters_path,
                endpoint=f"http://127.0.0.1:{server.port}/api/v1/events",
                event_type="click",
                headers=SECRET_HEADERS,
                secret_headers=["X-Session-Token"],
                retry=FAST,
            )
        received = [str(r["headers"]) for r in elsewhere.requests]
    assert_no_secret(received, "the redirect target's requests")
