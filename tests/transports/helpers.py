"""Helpers of the transport tests: requests, fake sleep, leak checks, certificates."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import threading
import time
from typing import Callable, List, Sequence, Set, Tuple

from raccoon_beam.errors import FailureKind
from raccoon_beam.delivery.flow import FlowOptions
from raccoon_beam.retry import RetryPolicy
from raccoon_beam.wire import EncodedRequest, Wire, encode_request

# Retries that never wait for real: the tests inject RecordingSleep.
FAST_POLICY = RetryPolicy(max_attempts=4, initial_backoff=0.01, max_backoff=0.05, deadline=120.0)
NO_RETRY = RetryPolicy(max_attempts=1)
# Every request in flight at once: transport tests that need max_in_flight
# requests out together, whatever the adaptive limit would allow.
UNPACED = FlowOptions(adaptive_throttling=False)
# Long enough for a loaded 2-core machine, short enough for timeout tests.
SHORT_TIMEOUT = 0.5

# (endpoint attribute of the emulator, wire) for every transport/wire pair.
TRANSPORT_WIRES = [
    ("grpc_endpoint", Wire.PROTOBUF),
    ("rest_endpoint", Wire.PROTOBUF),
    ("rest_endpoint", Wire.JSON),
    ("ws_endpoint", Wire.PROTOBUF),
    ("ws_endpoint", Wire.JSON),
]
TRANSPORT_WIRE_IDS = ["grpc", "rest-proto", "rest-json", "ws-proto", "ws-json"]


def make_request(wire: Wire, n: int = 1, event_type: str = "click", **kwargs) -> EncodedRequest:
    events = [(event_type, f'{{"i":{i}}}'.encode()) for i in range(n)]
    return encode_request(events, wire=wire, **kwargs)


class RecordingSleep:
    """A retry sleep that records the waits and returns at once."""

    def __init__(self) -> None:
        self.waits: List[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


class GatedSleep(RecordingSleep):
    """Waits until ``gate`` is set (e.g. the server is back), then briefly for real."""

    def __init__(self, gate: threading.Event, after: float = 0.05) -> None:
        super().__init__()
        self.gate = gate
        self.after = after

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        while not self.gate.is_set():
            await asyncio.sleep(0.01)
        await asyncio.sleep(min(seconds, self.after))


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def eventually(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Polls ``condition`` until true or ``timeout`` (a bound, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


# ----------------------------------------------------------------- leak checks


def _socket_inodes() -> Set[str]:
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def client_sockets(ports: Sequence[int]) -> List[Tuple[int, int, str]]:
    """This process's open TCP sockets whose remote port is one of ``ports``.

    Those are the client side of connections to the server (its accepted
    sockets have the port as *local* port), so they are the transport's own.
    """
    inodes = _socket_inodes()
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as handle:
                lines = handle.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            remote_port = int(remote.rsplit(":", 1)[1], 16)
            if inode in inodes and remote_port in ports:
                found.append((int(local.rsplit(":", 1)[1], 16), remote_port, state))
    return found


# Not the transport's: gRPC's asyncio poller thread is process-wide (started
# by the first grpc.aio object, the emulator's server), and the servers'
# own loop threads (a restarted emulator has a new one).
_PROCESS_WIDE_THREADS = ("_poll_wrapper", "raccoon-emulator", "raw-test-server")


def live_threads() -> Set[threading.Thread]:
    return {t for t in threading.enumerate() if not any(p in t.name for p in _PROCESS_WIDE_THREADS)}


# ----------------------------------------------------------------- TLS


def make_ca_and_server_cert(
    directory: str, hostnames: Sequence[str] = ("localhost",), ips: Sequence[str] = ("127.0.0.1",)
):
    """Writes a throwaway CA and a server certificate it signed; returns the paths.

    Returns:
      (ca_cert_path, server_cert_path, server_key_path)
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "raccoon-beam test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName(h) for h in hostnames] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = tuple(os.path.join(directory, name) for name in ("ca.pem", "server.pem", "server.key"))
    with open(paths[0], "wb") as handle:
        handle.write(ca_cert.public_bytes(serialization.Encoding.PEM))
    with open(paths[1], "wb") as handle:
        handle.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(paths[2], "wb") as handle:
        handle.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return paths


class RawServer:
    """A tiny aiohttp server on its own loop, for answers the emulator does not give.

    Args:
      routes: ``(method, path, handler)`` triples; handlers are aiohttp handlers.
    """

    def __init__(self, routes) -> None:
        self.routes = routes
        self.port = 0
        self._loop = None
        self._runner = None

    @property
    def base_url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> "RawServer":
        from raccoon_beam._loop import EventLoopThread

        self._loop = EventLoopThread(name="raw-test-server").start()
        self._loop.run(self._start(), 30)
        return self

    async def _start(self) -> None:
        from aiohttp import web

        app = web.Application()
        for method, path, handler in self.routes:
            app.router.add_route(method, path, handler)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def __exit__(self, *exc_info) -> None:
        try:
            self._loop.run(self._runner.cleanup(), 30)
        finally:
            self._loop.stop()


# The facts a test expects of a failure: what happened (its kind) or the server's status.
FACT_KINDS = {
    "network": FailureKind.NETWORK,
    "timeout": FailureKind.TIMEOUT,
    "malformed": FailureKind.MALFORMED,
    "too_large": FailureKind.TOO_LARGE,
    "tls_error": FailureKind.TLS,
}


def assert_facts(failure, facts) -> None:
    """Asserts ``facts`` (``{"timeout": True, "http_status": 200, ...}``) of a Failure."""
    for fact, value in facts.items():
        if fact in FACT_KINDS:
            assert (failure.kind is FACT_KINDS[fact]) == value, (fact, failure)
        elif fact != "reconnect":  # the WebSocket transport's own business
            assert getattr(failure, fact) == value, (fact, failure)
