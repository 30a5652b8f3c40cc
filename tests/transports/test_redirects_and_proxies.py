"""No header leaves for another origin: redirects are never followed, proxies are used only when asked.

* A WebSocket upgrade answered with a redirect (``ws`` and ``wss``, to
  another port and, after ``wss``, to plain text) is a permanent failure
  with a readable reason; the redirect target receives not one byte.
* An upgrade answered with anything else than the upgrade is permanent too.
* Proxy environment variables are ignored by every transport (gRPC reads
  them by default); ``proxy=`` sends all three through the proxy given.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import List
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from raccoon_beam.errors import FailureKind
from raccoon_beam.retry import Verdict
from raccoon_beam.transports import TlsOptions, TransportConfig
from raccoon_beam.wire import Wire

from tests.reliability.conftest import TinyServer
from tests.transports.helpers import (
    FAST_POLICY,
    TRANSPORT_WIRE_IDS,
    TRANSPORT_WIRES,
    make_ca_and_server_cert,
    make_request,
)

pytestmark = pytest.mark.timeout(60)

SECRET = "sekrit-API-KEY-0042"
HEADERS = {"X-Api-Key": SECRET, "X-Auth-Token": SECRET + "-b", "Authorization": "Bearer " + SECRET}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_ca_and_server_cert(str(tmp_path_factory.mktemp("pki")))


class Recorder:
    """A raw TCP server that records every byte it receives and answers nothing useful."""

    def __init__(self) -> None:
        self.received: List[bytes] = []
        self.server = TinyServer(on_connect=self._on_connect)
        self.port = self.server.port

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read(65536)
        self.received.append(data)
        writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()

    def close(self) -> None:
        self.server.close()


def _redirecting_server(location: str, status: int, ssl_context=None) -> TinyServer:
    async def upgrade(request: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": location})

    return TinyServer(routes={("GET", "/api/v1/events"): upgrade}, ssl_context=ssl_context)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("scheme", ["ws", "wss"])
@pytest.mark.parametrize("target", ["ws", "http"], ids=["to-ws", "to-http"])
def test_a_redirected_upgrade_is_permanent_and_sends_nothing_elsewhere(scheme, target, status, pki, make_client):
    ca, cert, key = pki
    context = None
    if scheme == "wss":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
    elsewhere = Recorder()
    try:
        # After wss, a plain-text location: following it would be a downgrade.
        location = f"{target}://127.0.0.1:{elsewhere.port}/api/v1/events"
        with _redirecting_server(location, status, context) as server:
            tls = TlsOptions(ca_certs=ca) if scheme == "wss" else TlsOptions()
            client = make_client(
                f"{scheme}://127.0.0.1:{server.port}/api/v1/events", headers=HEADERS, policy=FAST_POLICY, tls=tls
            )
            outcome = client.submit(make_request(Wire.PROTOBUF)).result(30)
            assert server.requests and server.requests[0]["headers"].get("X-Api-Key") == SECRET  # the origin got them
    finally:
        elsewhere.close()
    assert elsewhere.received == []  # not one byte, let alone a header
    assert not outcome.ok
    failure = outcome.failure
    assert failure.kind is FailureKind.REFUSED and failure.http_status == status, failure
    assert outcome.verdict is Verdict.PERMANENT and outcome.attempts == 1
    assert "redirects are never followed" in failure.message
    assert SECRET not in failure.message


def test_an_upgrade_answered_with_a_page_is_permanent(make_client):
    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<html>a web site</html>", content_type="text/html")

    with TinyServer(routes={("GET", "/api/v1/events"): page}) as server:
        client = make_client(f"ws://127.0.0.1:{server.port}/api/v1/events", policy=FAST_POLICY)
        outcome = client.submit(make_request(Wire.PROTOBUF)).result(30)
    assert not outcome.ok and outcome.failure.http_status == 200
    assert outcome.verdict is Verdict.PERMANENT and outcome.attempts == 1
    assert "not a WebSocket upgrade" in outcome.failure.message


# ------------------------------------------------------------------ proxies


class ConnectProxy:
    """A tiny HTTP proxy: ``CONNECT`` tunnels and absolute-form requests; records each request line."""

    def __init__(self) -> None:
        self.lines: List[str] = []
        self.server = TinyServer(on_connect=self._on_connect)
        self.url = f"http://127.0.0.1:{self.server.port}"

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        first, _, rest = head.partition(b"\r\n")
        method, target, version = first.decode("latin-1").split(" ", 2)
        self.lines.append(f"{method} {target}")
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
            upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:  # absolute form: forwarded in origin form
            url = urlsplit(target)
            upstream_reader, upstream_writer = await asyncio.open_connection(url.hostname, url.port)
            path = url.path + (f"?{url.query}" if url.query else "")
            upstream_writer.write(f"{method} {path} {version}\r\n".encode("latin-1") + rest)
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

    def close(self) -> None:
        self.server.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


@pytest.fixture
def proxy():
    server = ConnectProxy()
    yield server
    server.close()


@pytest.mark.parametrize("attribute, wire", TRANSPORT_WIRES, ids=TRANSPORT_WIRE_IDS)
def test_proxy_environment_variables_are_ignored(attribute, wire, emulator, proxy, make_client, monkeypatch):
    for name in ("http_proxy", "https_proxy", "grpc_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, proxy.url)
    for name in ("no_proxy", "NO_PROXY", "no_grpc_proxy"):
        monkeypatch.delenv(name, raising=False)
    client = make_client(getattr(emulator, attribute), wire=wire)
    outcome = client.submit(make_request(wire, n=3)).result(30)
    assert outcome.ok, outcome.failure
    assert len(emulator.events()) == 3
    assert proxy.lines == []


@pytest.mark.parametrize("attribute, wire", TRANSPORT_WIRES, ids=TRANSPORT_WIRE_IDS)
def test_an_explicit_proxy_carries_every_transport(attribute, wire, emulator, proxy, make_client, monkeypatch):
    for name in ("no_proxy", "NO_PROXY", "no_grpc_proxy"):
        monkeypatch.delenv(name, raising=False)
    endpoint = getattr(emulator, attribute)
    client = make_client(endpoint, wire=wire, proxy=proxy.url)
    outcomes = [client.submit(make_request(wire, n=2)).result(30) for _ in range(2)]
    assert all(o.ok for o in outcomes), [o.failure for o in outcomes]
    assert len(emulator.events()) == 4
    authority = f"127.0.0.1:{emulator.grpc_port if attribute == 'grpc_endpoint' else emulator.http_port}"
    assert proxy.lines and all(authority in line for line in proxy.lines), proxy.lines


@pytest.mark.parametrize(
    "bad",
    ["https://proxy:3128", "socks5://proxy:1080", "http://proxy", "http://proxy:3128/path", "proxy:3128", ""],
)
def test_a_proxy_is_an_http_url_with_a_port(bad):
    with pytest.raises(ValueError, match="proxy"):
        TransportConfig("grpc://h:1", proxy=bad)


def test_the_proxy_password_is_never_shown():
    config = TransportConfig("ws://h:1", proxy="http://user:pr0xy-pw@proxy:3128")
    assert "pr0xy-pw" not in repr(config) and "proxy:3128" in repr(config)
    with pytest.raises(ValueError) as info:
        TransportConfig("ws://h:1", proxy="https://user:pr0xy-pw@proxy:3128")
    assert "pr0xy-pw" not in str(info.value)


def test_write_to_raccoon_passes_the_proxy_and_shows_header_names_only():
    from raccoon_beam import WriteToRaccoon

    transform = WriteToRaccoon(
        "grpc://h:1", event_type="click", headers={"X-Auth-Token": "abc", "X-Team": "growth"},
        proxy="http://u:pw-9@proxy:3128",
    )
    assert transform.options.transport.proxy == "http://u:pw-9@proxy:3128"
    shown = repr(transform.options)
    assert "X-Auth-Token" in shown and "X-Team" in shown
    assert "abc" not in shown and "growth" not in shown and "pw-9" not in shown
