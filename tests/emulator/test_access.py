"""The control surface is safe by default: no other origin, JSON only, loopback names, checked fault arguments.

And the token: never on a command line, printed once, from the environment or a file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any, Dict, Iterator

import pytest
import requests

from raccoon_beam.emulator import Outcome, RaccoonEmulator
from raccoon_beam.emulator.config import CONSOLE_TOKEN_ENV
from raccoon_beam.emulator.control import fault_methods
from raccoon_beam.emulator.faults import MAX_LATENCY
from raccoon_beam.emulator.process import EmulatorProcess

HTTP_503 = Outcome.http(503).to_dict()
FAULT = {"method": "fail_fraction", "args": {"fraction": 1.0, "outcome": HTTP_503}}


@pytest.fixture(scope="module")
def shared() -> Iterator[RaccoonEmulator]:
    with RaccoonEmulator() as emu:
        yield emu


@pytest.fixture
def emu(shared: RaccoonEmulator) -> Iterator[RaccoonEmulator]:
    shared.reset()
    yield shared
    shared.reset()


def _post(emu: RaccoonEmulator, path: str, **kwargs: Any) -> requests.Response:
    return requests.post(emu.http_base_url + path, timeout=10, **kwargs)


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},  # another port of the same host is another origin
    ],
    ids=["origin", "origin-null", "cross-site", "same-site"],
)
def test_another_origin_can_neither_steer_nor_read(emu: RaccoonEmulator, headers: Dict[str, str]) -> None:
    assert _post(emu, "/_emulator/faults", json=FAULT, headers=headers).status_code == 403
    assert not emu.faults.active
    emu.faults.add_latency(0.5)
    assert _post(emu, "/_emulator/reset", json={}, headers=headers).status_code == 403
    assert emu.faults.active  # not reset
    for path in ("/_emulator", "/_emulator/events", "/_emulator/counters", "/_emulator/ui", "/_emulator/ui/stream"):
        answer = requests.get(emu.http_base_url + path, headers=headers, timeout=10)
        assert answer.status_code == 403, path
        assert "another origin" in answer.json()["error"]


def test_the_same_origin_and_plain_clients_are_served(emu: RaccoonEmulator) -> None:
    own = {"Origin": emu.http_base_url, "Sec-Fetch-Site": "same-origin"}
    assert _post(emu, "/_emulator/faults", json=FAULT, headers=own).json() == {"ok": True}
    assert emu.faults.active
    assert _post(emu, "/_emulator/reset", json={}).json() == {"ok": True}  # no browser headers at all
    typed = requests.get(emu.http_base_url + "/_emulator/ui", headers={"Sec-Fetch-Site": "none"}, timeout=10)
    assert typed.status_code == 200  # the user typed the URL


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", None])
def test_a_post_that_is_not_json_is_refused(emu: RaccoonEmulator, content_type: Any) -> None:
    # What a page may post to any origin without a preflight.
    import json

    headers = {"Content-Type": content_type} if content_type else {}
    answer = _post(emu, "/_emulator/faults", data=json.dumps(FAULT), headers=headers)
    assert answer.status_code == 415 and "application/json" in answer.json()["error"]
    assert not emu.faults.active
    emu.faults.add_latency(0.5)
    assert _post(emu, "/_emulator/reset", data="", headers=headers).status_code == 415
    assert emu.faults.active


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "10.0.0.7", "[fe80::1]:80", ""])
def test_without_a_token_only_loopback_host_names_are_answered(emu: RaccoonEmulator, host: str) -> None:
    # DNS rebinding: another site's name resolving to 127.0.0.1 still sends its own name.
    for path in ("/_emulator/events", "/_emulator/ui", "/_emulator/counters"):
        answer = requests.get(emu.http_base_url + path, headers={"Host": host}, timeout=10)
        assert answer.status_code == 403 and "loopback" in answer.json()["error"], (host, path)
    assert _post(emu, "/_emulator/faults", json=FAULT, headers={"Host": host}).status_code == 403
    assert not emu.faults.active
    # Ingest is Raccoon's API: any Host.
    assert requests.get(emu.http_base_url + "/ping", headers={"Host": host}, timeout=10).status_code == 200


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.1.2.3:9", "[::1]:8080", "LOCALHOST:1"])
def test_loopback_host_names_are_answered(emu: RaccoonEmulator, host: str) -> None:
    assert requests.get(emu.http_base_url + "/_emulator/counters", headers={"Host": host}, timeout=10).ok


def test_with_a_token_any_host_name_is_answered_with_the_token() -> None:
    with RaccoonEmulator(console_token="t0ken-xyz") as emu:
        headers = {"Host": "raccoon.internal:1234", "X-Emulator-Token": "t0ken-xyz"}
        assert requests.get(emu.http_base_url + "/_emulator/counters", headers=headers, timeout=10).ok


# ------------------------------------------------------------------ fault arguments


@pytest.mark.parametrize(
    "body, why",
    [
        ('{"method": "add_latency", "args": {"seconds": Infinity}}', "is not JSON"),
        ('{"method": "add_latency", "args": {"seconds": NaN}}', "is not JSON"),
        ('{"method": "add_latency", "args": {"seconds": 1e999}}', "infinity"),
        ('{"method": "add_latency", "args": {"seconds": -1}}', "within [0, 3600]"),
        ('{"method": "add_latency", "args": {"seconds": 7200}}', "within [0, 3600]"),
        ('{"method": "add_latency", "args": {"seconds": "1"}}', "must be float"),
        ('{"method": "add_latency", "args": {"seconds": 1, "extra": 2}}', "unknown argument"),
        ('{"method": "fail_next", "args": {"n": 1}}', "missing argument"),
        ('{"method": "fail_next", "args": {"n": true, "outcome": {"kind": "http", "status": 503}}}', "must be int"),
        ('{"method": "fail_next", "args": {"n": -3, "outcome": {"kind": "http", "status": 503}}}', ">= 0"),
        ('{"method": "fail_next", "args": {"n": 1, "outcome": "503"}}', "Outcome object"),
        ('{"method": "fail_next", "args": {"n": 1, "outcome": {"kind": "boom"}}}', "outcome kind"),
        ('{"method": "fail_next", "args": {"n": 1, "outcome": {"kind": "http", "status": 503, "retry_after": -1}}}',
         "retry_after"),
        ('{"method": "fail_fraction", "args": {"fraction": 1.5, "outcome": {"kind": "http", "status": 503}}}',
         "within [0, 1]"),
        ('{"method": "fail_publish", "args": {"fraction": 2}}', "within [0, 1]"),
        ('{"method": "reject_event_type", "args": {"event_type": ""}}', "non-empty"),
        ('{"method": "add_latency", "args": {"seconds": 1, "transport": "carrier-pigeon"}}', "transport"),
        ('{"method": "__init__"}', "unknown fault method"),
        ('{"method": "decide", "args": {"transport": "grpc"}}', "unknown fault method"),
        ('["add_latency"]', "expected"),
    ],
)
def test_fault_arguments_are_checked_and_the_error_says_what_is_valid(emu: RaccoonEmulator, body: str, why: str) -> None:
    answer = _post(emu, "/_emulator/faults", data=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    error = answer.json()
    assert why in error["error"], error["error"]
    assert set(error["fault_methods"]) == set(fault_methods())
    assert not emu.faults.active
    if "unknown fault method" in why:  # the error lists every method with its arguments
        assert "fail_next(n: int, outcome: Outcome, transport: Optional[str] = None)" in error["error"]


def test_the_index_lists_every_fault_method_from_its_signature(emu: RaccoonEmulator) -> None:
    listed = requests.get(emu.http_base_url + "/_emulator", timeout=10).json()["fault_methods"]
    assert {"fail_next", "fail_fraction", "add_latency", "drop_connection", "reject_event_type", "fail_publish",
            "clear_fraction", "clear_next", "clear_drops", "allow_event_type", "stop_publish_failures",
            "clear"} == set(listed)
    assert listed["add_latency"]["args"] == [
        {"name": "seconds", "type": "float", "required": True},
        {"name": "transport", "type": "Optional[str]", "required": False, "default": None},
    ]
    # Each method called as the listing says (required arguments only) is accepted: it cannot drift.
    samples = {"int": 1, "float": 0.5, "str": "click", "Outcome": HTTP_503, "bool": True}
    for name, spec in listed.items():
        args = {a["name"]: samples[a["type"]] for a in spec["args"] if a["required"]}
        answer = _post(emu, "/_emulator/faults", json={"method": name, "args": args})
        assert answer.json() == {"ok": True}, (name, answer.text)
        assert spec["description"]
    assert MAX_LATENCY == 3600.0


# ------------------------------------------------------------------ the token


def _start_cli(args, env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "raccoon_beam.emulator", "--grpc-port", "0", "--http-port", "0",
         "--stats-interval", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )


def _until_ready(proc: subprocess.Popen) -> str:
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if line.strip() == "ready":
            return "".join(lines)
    raise AssertionError("no ready line: " + "".join(lines))


def _cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as handle:
        return handle.read().replace(b"\0", b" ").decode()


@pytest.mark.parametrize("source", ["env", "file"])
def test_the_token_is_printed_once_and_never_on_a_command_line(source: str, tmp_path) -> None:
    token = "tok-" + source + "-Zq81xV"
    env = {k: v for k, v in os.environ.items() if k != CONSOLE_TOKEN_ENV}
    args = ["--host", "0.0.0.0"]
    if source == "env":
        env[CONSOLE_TOKEN_ENV] = token
    else:
        path = tmp_path / "token"
        path.write_text(token + "\n")
        path.chmod(0o600)
        args += ["--console-token-file", str(path)]
    proc = _start_cli(args, env)
    try:
        started = _until_ready(proc)
        assert token not in _cmdline(proc.pid)
        url = next(line.split("=", 1)[1] for line in started.splitlines() if line.startswith("console_url="))
        assert url.endswith(f"#token={token}")
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert (started + rest).count(token) == 1  # the start-up line, and nowhere else


def test_an_empty_token_beyond_loopback_stops_the_cli() -> None:
    env = {**os.environ, CONSOLE_TOKEN_ENV: ""}
    done = subprocess.run(
        [sys.executable, "-m", "raccoon_beam.emulator", "--host", "0.0.0.0", "--grpc-port", "0", "--http-port", "0"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode == 2 and "console_token is empty" in done.stderr


def test_emulator_process_passes_the_token_in_the_environment() -> None:
    token = "tok-process-4Rw9"
    with EmulatorProcess(host="0.0.0.0", console_token=token) as proc:
        assert proc.pid is not None and token not in _cmdline(proc.pid)
        assert proc.console_token == token
        proc.endpoints["control_url"] = proc.endpoints["control_url"].replace("0.0.0.0", "127.0.0.1")
        proc.fault("add_latency", seconds=0.0)  # the control calls carry it
        assert proc.counters().accepted() == 0
        refused = requests.get(proc.endpoints["control_url"] + "/counters", timeout=10)
        assert refused.status_code == 401


@pytest.mark.parametrize("body", ['{"gateway_retry_after": Infinity}', '{"capacity_events_per_second": NaN}'])
def test_overload_settings_must_be_strict_json(emu: RaccoonEmulator, body: str) -> None:
    before = requests.get(emu.http_base_url + "/_emulator/overload", timeout=10).json()
    answer = _post(emu, "/_emulator/overload", data=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and "is not JSON" in answer.json()["error"]
    assert requests.get(emu.http_base_url + "/_emulator/overload", timeout=10).json() == before
