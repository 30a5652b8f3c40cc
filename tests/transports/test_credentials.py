"""Credential providers: resolved on the worker, read again on a 401, never shown or pickled as values."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import pickle

import pytest

from raccoon_beam import FromCallable, FromEnv, FromFile
from raccoon_beam.emulator import RaccoonEmulator
from raccoon_beam.errors import FailureKind
from raccoon_beam.retry import Verdict
from raccoon_beam.transports import TransportConfig, redact
from raccoon_beam.transports.credentials import (
    CredentialProvider,
    HeaderValues,
    header_value_from_config,
    resolved_secrets,
)
from raccoon_beam.wire import Wire

from tests.transports.helpers import TRANSPORT_WIRE_IDS, TRANSPORT_WIRES, RecordingSleep, make_request

TOKEN_HEADER = "Authorization"
FIRST_TOKEN = "Bearer first-token-0123"


@pytest.fixture(scope="module")
def gateway():
    """An emulator behind an authenticating gateway: the token changes only when a test rotates it."""
    with RaccoonEmulator(require_header=(TOKEN_HEADER, FIRST_TOKEN)) as emulator:
        yield emulator


class CountingToken:
    """A module-level provider function's state: how often it was called, and what it returns."""

    calls = 0
    value = ""


def counting_token() -> str:
    CountingToken.calls += 1
    return CountingToken.value


# ---------------------------------------------------------------- providers


def test_providers_read_their_source_each_time(tmp_path, monkeypatch):
    monkeypatch.setenv("RACCOON_TEST_TOKEN", "from-env")
    assert FromEnv("RACCOON_TEST_TOKEN", prefix="Bearer ").resolve() == "Bearer from-env"
    monkeypatch.setenv("RACCOON_TEST_TOKEN", "changed")
    assert FromEnv("RACCOON_TEST_TOKEN").resolve() == "changed"
    path = tmp_path / "token"
    path.write_text("from-file\n")  # the newline `echo token > file` leaves is not part of it
    provider = FromFile(path)
    assert provider.resolve() == "from-file"
    path.write_text("rewritten")
    assert provider.resolve() == "rewritten"
    assert FromCallable(lambda: "from-function", prefix="Token ").resolve() == "Token from-function"


def test_a_missing_source_is_a_clear_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.delenv("RACCOON_TEST_UNSET", raising=False)
    with pytest.raises(ValueError, match="'RACCOON_TEST_UNSET' is not set"):
        FromEnv("RACCOON_TEST_UNSET").resolve()
    with pytest.raises(ValueError, match="cannot read .*missing"):
        FromFile(tmp_path / "missing").resolve()

    def broken() -> str:
        raise RuntimeError("the secret is s3cr3t-value")

    with pytest.raises(ValueError, match="raised RuntimeError") as raised:
        FromCallable(broken).resolve()
    assert "s3cr3t" not in str(raised.value)  # the exception's message may quote the secret
    with pytest.raises(ValueError, match="not a string"):
        FromCallable(lambda: 42).resolve()  # type: ignore[arg-type, return-value]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: FromEnv(""), "environment variable name"),
        (lambda: FromFile(""), "file path"),
        (lambda: FromCallable("not callable"), "needs a function"),  # type: ignore[arg-type]
        (lambda: FromEnv("X", prefix="a\nb"), "single-line"),
    ],
)
def test_bad_providers_fail_at_construction(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_reprs_name_the_source_never_the_value(tmp_path, monkeypatch):
    monkeypatch.setenv("RACCOON_TEST_TOKEN", "secret-in-env-xyz")
    config = TransportConfig(
        "grpc://h:1",
        headers={"Authorization": FromEnv("RACCOON_TEST_TOKEN"), "X-Key": counting_token, "X-Plain": "visible-value"},
    )
    shown = repr(config)
    assert "FromEnv('RACCOON_TEST_TOKEN')" in shown and "FromCallable(counting_token)" in shown
    assert "visible-value" not in shown  # a string value is shown as *** whatever its header
    assert "secret-in-env-xyz" not in shown
    assert repr(FromFile(tmp_path / "t")) == f"FromFile({str(tmp_path / 't')!r})"


def test_providers_pickle_as_their_source_and_configs_stay_hashable(monkeypatch):
    monkeypatch.setenv("RACCOON_TEST_TOKEN", "pickled-never-123")
    provider = FromEnv("RACCOON_TEST_TOKEN", prefix="Bearer ")
    provider.resolve()
    config = TransportConfig("http://h:1", headers={"Authorization": provider, "X-Fn": counting_token})
    data = pickle.dumps(config)
    assert b"pickled-never-123" not in data
    restored = pickle.loads(data)
    assert restored == config and hash(restored) == hash(config)  # one shared sender per worker and config
    assert restored.headers["Authorization"].resolve() == "Bearer pickled-never-123"
    assert isinstance(restored.headers["X-Fn"], FromCallable)  # a plain function is wrapped


@dataclasses.dataclass(frozen=True, repr=False)
class FromVault(CredentialProvider):
    """A user's own provider: a frozen dataclass implementing read() and describe()."""

    path: str

    def read(self) -> str:
        return f"vault-value-of-{self.path}"

    def describe(self) -> str:
        return f"FromVault({self.path!r})"


def test_a_providers_own_subclass_works_like_the_others():
    provider = FromVault("kv/raccoon")
    assert provider.resolve() == "vault-value-of-kv/raccoon"  # no prefix unless it defines one
    config = TransportConfig("grpc://h:1", headers={"Authorization": provider})
    assert "FromVault('kv/raccoon')" in repr(config) and "vault-value" not in repr(config)
    assert pickle.loads(pickle.dumps(config)) == config


def test_header_values_of_configuration_files():
    assert header_value_from_config("A", "plain") == "plain"
    assert header_value_from_config("A", {"env": "TOKEN"}) == FromEnv("TOKEN")
    assert header_value_from_config("A", {"file": "/s/t", "prefix": "Bearer "}) == FromFile("/s/t", prefix="Bearer ")
    for bad in ({"env": "A", "file": "B"}, {"vault": "x"}, {"env": "A", "extra": 1}, 12):
        with pytest.raises(ValueError, match="header 'A'"):
            header_value_from_config("A", bad)


def test_a_grpc_value_that_cannot_be_metadata_fails_without_quoting_it():
    values = HeaderValues({"x-token": FromCallable(lambda: "caf\u00e9-secret")}, grpc=True, where="grpc://h:1")

    async def resolve():
        return await values.current()

    with pytest.raises(Exception) as raised:
        asyncio.run(resolve())
    assert raised.value.failure.kind is FailureKind.CREDENTIALS
    assert "printable ASCII" in str(raised.value) and "secret" not in str(raised.value)


def test_many_refusals_of_one_generation_read_the_source_once():
    CountingToken.calls, CountingToken.value = 0, "t"
    values = HeaderValues({"A": FromCallable(counting_token)}, grpc=False, where="x")

    async def scenario():
        seen = values.generation  # 0: before the first resolution
        await values.current()
        assert CountingToken.calls == 1
        # Four requests sent with the first values, refused at once.
        assert all(await asyncio.gather(*(values.refresh(seen) for _ in range(4))))
        assert CountingToken.calls == 2
        await values.refresh(values.generation)
        assert CountingToken.calls == 3

    asyncio.run(scenario())
    plain = HeaderValues({"A": "fixed"}, grpc=False, where="x")
    assert asyncio.run(plain.refresh(0)) is False  # nothing to read again: the 401 stands


def test_resolved_values_are_redacted_from_messages():
    secret = "resolved-secret-4711"
    CountingToken.value = secret
    config = TransportConfig("http://h:1", headers={"X-Short": FromCallable(counting_token)})
    asyncio.run(HeaderValues(config.headers, grpc=False, where="x").current())
    assert secret in resolved_secrets(config.credential_providers.values())
    assert secret not in redact(f"proxy echoed X-Short: {secret}", config)
    other = TransportConfig("http://h:1", headers={"X-Other": FromEnv("RACCOON_TEST_OTHER")})
    assert secret in redact(f"a message quoting {secret}", other)  # another endpoint's secret: not this one's


# ---------------------------------------------------------------- against the gateway


class StaleThenCurrent:
    """A provider function whose first value has expired: later calls return the gateway's current one."""

    def __init__(self, gateway) -> None:
        self.gateway = gateway
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return "Bearer expired-token-99" if self.calls == 1 else self.gateway.required_header_value


@pytest.mark.parametrize("attr, wire", TRANSPORT_WIRES, ids=TRANSPORT_WIRE_IDS)
def test_a_refused_value_is_read_again_and_the_request_resent_at_once(gateway, make_client, attr, wire, caplog):
    gateway.reset()
    provider = StaleThenCurrent(gateway)
    sleep = RecordingSleep()
    client = make_client(getattr(gateway, attr), wire, sleep=sleep, headers={TOKEN_HEADER: provider})
    with caplog.at_level(logging.DEBUG):
        outcome = client.submit(make_request(wire)).result(30)
        assert client.submit(make_request(wire)).result(30).attempts == 1
    assert outcome.ok, outcome.failure
    assert outcome.attempts == 2  # refused once, then sent with the value read again
    assert sleep.waits == []  # no backoff: an expired token is no outage
    assert provider.calls == 2
    assert len(gateway.events()) == 2 and gateway.counters().rejected() == 1
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "refused the credentials" in logged
    assert gateway.required_header_value not in logged and "expired-token-99" not in logged


@pytest.mark.parametrize("attr", ["grpc_endpoint", "rest_endpoint"])
def test_a_token_file_rotated_mid_run_is_read_again(gateway, make_client, tmp_path, attr):
    gateway.reset()
    token_file = tmp_path / "token"
    token_file.write_text(gateway.required_header_value + "\n")
    client = make_client(getattr(gateway, attr), headers={TOKEN_HEADER: FromFile(token_file)})
    outcomes = [client.submit(make_request(Wire.PROTOBUF)).result(30)]
    for _ in range(3):
        token_file.write_text(gateway.rotate_required_header())  # expired, renewed by whoever owns the secret
        outcomes += [client.submit(make_request(Wire.PROTOBUF)).result(30) for _ in range(2)]
    # The file is read when the server refuses the value held, not before each request.
    assert [(o.ok, o.attempts) for o in outcomes] == [(True, 1)] + [(True, 2), (True, 1)] * 3
    assert len(gateway.events()) == 7 and gateway.counters().rejected() == 3


def test_a_refused_fresh_value_is_final_after_one_read(gateway, make_client):
    gateway.reset()
    CountingToken.calls, CountingToken.value = 0, "Bearer never-right-77"
    sleep = RecordingSleep()
    client = make_client(gateway.rest_endpoint, sleep=sleep, headers={TOKEN_HEADER: counting_token})
    outcome = client.submit(make_request(Wire.PROTOBUF)).result(30)
    assert (outcome.ok, outcome.verdict, outcome.attempts) == (False, Verdict.PERMANENT, 2)
    assert outcome.failure.http_status == 401
    assert CountingToken.calls == 2 and sleep.waits == []
    assert "never-right-77" not in outcome.failure.message


def test_a_string_header_refused_is_final_at_once(gateway, make_client):
    gateway.reset()
    client = make_client(gateway.grpc_endpoint, headers={TOKEN_HEADER: "Bearer wrong-string"})
    outcome = client.submit(make_request(Wire.PROTOBUF)).result(30)
    assert (outcome.verdict, outcome.attempts, outcome.failure.grpc_status) == (
        Verdict.PERMANENT,
        1,
        "UNAUTHENTICATED",
    )


def test_a_provider_without_a_value_is_retried_then_fails_naming_it(gateway, make_client, monkeypatch):
    monkeypatch.delenv("RACCOON_TEST_UNSET", raising=False)
    client = make_client(gateway.ws_endpoint, headers={TOKEN_HEADER: FromEnv("RACCOON_TEST_UNSET")})
    outcome = client.submit(make_request(Wire.PROTOBUF)).result(30)
    assert outcome.failure.kind is FailureKind.CREDENTIALS
    assert outcome.attempts == client.policy.max_attempts  # a secret may be mounted late: retried
    assert "header 'Authorization' (FromEnv('RACCOON_TEST_UNSET'))" in outcome.failure.message
    assert "is not set" in outcome.failure.message
    monkeypatch.setenv("RACCOON_TEST_UNSET", gateway.required_header_value)
    assert client.submit(make_request(Wire.PROTOBUF)).result(30).ok  # set now: read on the next send
