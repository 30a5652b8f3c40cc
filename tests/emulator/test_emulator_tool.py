"""The emulator as a tool: settings written once, the generated command line, and its behaviour as a server.

The command line runs in subprocesses (as a user runs it), on free ports.
"""

from __future__ import annotations

import dataclasses
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import time
from typing import Dict, List, Tuple

import grpc
import pytest
import requests

import raccoon_beam
import raccoon_beam.emulator
from raccoon_beam.emulator import EmulatorConfig, RaccoonEmulator
from raccoon_beam.emulator.cli import build_parser, config_from_args, config_to_argv, setting_flag
from raccoon_beam.emulator.config import CONSOLE_TOKEN_ENV, has_flag, setting_default
from raccoon_beam.emulator.process import EmulatorProcess
from raccoon_beam.wire import Wire, encode_request

EMULATOR = [sys.executable, "-m", "raccoon_beam.emulator"]
FIELDS = dataclasses.fields(EmulatorConfig)
CONTROL_ROUTES = {
    ("GET", "/_emulator"),
    ("GET", "/_emulator/counters"),
    ("GET", "/_emulator/digest"),
    ("GET", "/_emulator/events"),
    ("POST", "/_emulator/reset"),
    ("POST", "/_emulator/faults"),
}
CONSOLE_ROUTES = {("GET", "/_emulator/ui"), ("GET", "/_emulator/ui/stream"), ("GET", "/_emulator/faults")}


def _cli_default(field: "dataclasses.Field") -> object:
    return setting_default(field, cli=True)


def _help_entries() -> Dict[str, str]:
    """``--help`` of the real command, as {first flag: its whole entry on one line}."""
    env = {**os.environ, "COLUMNS": "400"}  # no wrapping inside values such as X-User-Group
    out = subprocess.run(EMULATOR + ["--help"], capture_output=True, text=True, timeout=60, env=env, check=True).stdout
    entries: List[List[str]] = []
    for line in out.splitlines():
        if re.match(r"^  -", line):
            entries.append([line])
        elif entries and line.startswith("    "):
            entries[-1].append(line)
        elif entries and not line.strip():
            entries.append([])  # a blank line ends an entry
    joined = (" ".join(" ".join(e).split()) for e in entries if e)
    return {entry.split()[0].rstrip(","): entry for entry in joined}


def test_help_shows_every_setting_with_its_help_raccoon_setting_and_default():
    entries = _help_entries()
    for field in FIELDS:
        if not has_flag(field):  # the token: read from a file or the environment, never argv
            assert field.name == "console_token" and "--console-token" not in entries
            continue
        flag = setting_flag(field)
        assert flag == "--" + field.metadata.get("flag", field.name).replace("_", "-")
        assert flag in entries, f"{field.name} has no flag"
        entry = entries[flag]
        assert f"{field.metadata['help']}" in entry
        assert f"(default: {_cli_default(field)})" in entry, entry
        if field.metadata["raccoon"]:
            assert f"[Raccoon: {field.metadata['raccoon']}]" in entry
    # Every option of the command (fault and output flags too) states its default.
    for flag, entry in entries.items():
        if flag != "-h":
            assert "(default: " in entry, entry


def test_the_cli_defaults_are_the_library_defaults_but_the_ports():
    parsed = config_from_args(build_parser().parse_args([]))
    library = EmulatorConfig()
    differing = {f.name for f in FIELDS if getattr(parsed, f.name) != getattr(library, f.name)}
    assert differing == {"grpc_port", "http_port"}  # Raccoon's 8081 and 8080 on the command line
    assert (parsed.grpc_port, parsed.http_port) == (8081, 8080)
    assert parsed.capture == library.capture == "events"


def test_every_setting_goes_through_the_command_line_and_back():
    settings = {
        "host": "127.0.0.2", "http_host": "127.0.0.3", "grpc_port": 1, "http_port": 2, "conn_id_header": "X-Id",
        "group_header": "X-G", "default_group": "g", "ack": "sync", "dedup": True, "max_connections": 3,
        "capture": "digest", "output": "/tmp/out.jsonl", "topic_pattern": "t-%s", "check_origin": False,
        "ping_interval": 0.5, "pong_timeout": 1.5, "tls": ("cert.pem", "key.pem"), "max_body_bytes": 99,
        "decoders": {"click": "json", "clickstream-view-log": "hex"},
        "descriptor_set": "/tmp/set.pb", "read_timeout": 7.5, "max_http_connections": 99, "require_header": ("Authorization", "Bearer t"), "rotate_header_every": 4,
        "capacity_events_per_second": 2500.0, "worker_buffer_size": 10,
        "worker_pool_size": 2, "gateway_queue_depth": 4, "gateway_status": 429, "gateway_retry_after": 0.5,
    }
    # The token never goes on a command line: from the environment (or a file).
    assert set(settings) | {"console_token"} == {f.name for f in FIELDS}  # a new setting joins this test
    parsed = config_from_args(build_parser().parse_args(config_to_argv(settings)), {CONSOLE_TOKEN_ENV: "t0ken"})
    assert parsed == EmulatorConfig(**settings, console_token="t0ken")
    with pytest.raises(ValueError, match="never goes on a command line"):
        config_to_argv({"console_token": "t0ken"})


def test_a_mapping_setting_takes_its_flag_once_per_entry(capsys):
    parser = build_parser()
    parsed = config_from_args(parser.parse_args(["--decode", "click=json", "--decode", 'view=avro:"string"']))
    assert parsed.decoders == {"click": "json", "view": 'avro:"string"'}
    assert config_from_args(parser.parse_args([])).decoders == {}  # the shared default left untouched
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["--decode", "click"])
    assert info.value.code == 2
    assert "argument --decode: expected TYPE=SPEC, not 'click'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="cannot load the schema"):
        EmulatorConfig(decoders={"view": 'avro:{"a": 1}'})
    with pytest.raises(ValueError, match="cannot load it"):
        EmulatorConfig(decoders={"view": "proto:a.B"}, descriptor_set="/nonexistent.pb")
    with pytest.raises(ValueError, match="cannot contain '='"):
        config_to_argv({"decoders": {"a=b": "json"}})


def test_settings_by_keyword_over_a_config():
    base = EmulatorConfig(ack="sync", max_connections=2)
    emu = RaccoonEmulator(base, dedup=True)
    assert (emu.config.ack, emu.config.max_connections, emu.config.dedup) == ("sync", 2, True)
    assert RaccoonEmulator(tls=["c", "k"]).config.tls == ("c", "k")
    assert RaccoonEmulator().config == EmulatorConfig()


def test_an_unknown_setting_is_a_type_error_naming_the_closest_one():
    with pytest.raises(TypeError, match="'max_connection' is not an emulator setting; did you mean 'max_connections'"):
        RaccoonEmulator(max_connection=5)
    with pytest.raises(TypeError, match="did you mean 'ack'"):
        EmulatorProcess(acks="sync")
    with pytest.raises(TypeError, match="settings go by keyword"):
        RaccoonEmulator("127.0.0.1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_body_bytes"):
        RaccoonEmulator(max_body_bytes=0)


def test_the_emulator_does_not_import_beam_and_its_command_line_not_even_the_servers():
    code = (
        "import sys\n"
        "import raccoon_beam.emulator.cli, raccoon_beam.emulator.__main__\n"
        "cli = sorted(m for m in ('apache_beam', 'aiohttp', 'grpc') if m in sys.modules)\n"
        "from raccoon_beam.emulator import RaccoonEmulator, Outcome, EmulatorConfig\n"
        "import raccoon_beam.emulator.process\n"
        "with RaccoonEmulator():\n"
        "    pass\n"
        "print(cli, 'apache_beam' in sys.modules, 'aiohttp' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split("\n")[0] == "[] False True"


def test_the_package_imports_its_public_names_on_first_use():
    code = (
        "import sys, raccoon_beam\n"
        "before = 'apache_beam' in sys.modules\n"
        "from raccoon_beam import WriteToRaccoon\n"
        "print(before, 'apache_beam' in sys.modules, WriteToRaccoon.__module__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["False", "True", "raccoon_beam.io"]
    for package in (raccoon_beam, raccoon_beam.emulator):
        for name in package.__all__:
            assert getattr(package, name) is not None
            assert name in dir(package)
        with pytest.raises(AttributeError, match="no attribute 'nothing'"):
            package.nothing  # noqa: B018


def _free_port_taken() -> socket.socket:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    return holder


@pytest.mark.parametrize("busy", ["--http-port", "--grpc-port"])
def test_a_busy_port_is_one_line_on_stderr(busy):
    other = "--grpc-port" if busy == "--http-port" else "--http-port"
    with _free_port_taken() as holder:
        port = holder.getsockname()[1]
        result = subprocess.run(EMULATOR + [busy, str(port), other, "0"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"127.0.0.1:{port}" in lines[0] and "in use" in lines[0] and f"{busy} 0" in lines[0]
    assert "ready" not in result.stdout


def test_control_index_lists_the_routes(emulator):
    index = requests.get(emulator.http_base_url + "/_emulator", timeout=10).json()
    routes = {(r["method"], r["path"]) for r in index["routes"]}
    assert CONTROL_ROUTES | CONSOLE_ROUTES <= routes
    assert all(r["description"] for r in index["routes"])


def _start(args: List[str], **kwargs) -> Tuple[subprocess.Popen, Dict[str, str]]:
    proc = subprocess.Popen(EMULATOR + ["--grpc-port", "0", "--http-port", "0"] + args, text=True, **kwargs)
    endpoints: Dict[str, str] = {}
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.strip()
        if line == "ready":
            return proc, endpoints
        name, _, value = line.partition("=")
        endpoints[name] = value
    proc.kill()
    raise AssertionError("no ready line")


def _port(url: str) -> int:
    return int(url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])


def _exchange(port: int, data: bytes) -> bytes:
    """Sends raw bytes and reads what comes back until the server closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        received = b""
        try:
            while len(received) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                received += chunk
        except (socket.timeout, ConnectionResetError):
            pass
        return received


HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000")  # + empty SETTINGS
TLS_HELLO_START = bytes.fromhex("160301") + b"\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(32)


def test_a_request_of_the_wrong_protocol_is_answered_or_closed_without_a_traceback():
    proc, endpoints = _start(["--stats-interval", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        grpc_port, http_port = _port(endpoints["grpc_endpoint"]), _port(endpoints["rest_endpoint"])
        # HTTP/1.1 to the gRPC port: grpc answers with HTTP/2 frames, never an HTTP/1.1 response.
        answer = _exchange(grpc_port, b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        assert not answer.startswith(b"HTTP/1.1 200")
        _exchange(grpc_port, b"\x00\xffnot a protocol\r\n\r\n" * 20)
        # An HTTP/2 preface, a TLS hello and garbage to the HTTP port.
        for data in (HTTP2_PREFACE, TLS_HELLO_START, bytes(range(256)) * 2):
            answer = _exchange(http_port, data)
            assert answer == b"" or re.match(rb"HTTP/1\.[01] 400 ", answer), answer
        # A real gRPC call to the HTTP port fails on the client, not in the emulator.
        with grpc.insecure_channel(f"127.0.0.1:{http_port}") as channel:
            with pytest.raises(grpc.RpcError) as info:
                channel.unary_unary("/raystack.raccoon.v1beta1.EventService/SendEvent")(b"", timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        # ... and the emulator still serves, its control index at the control_url it printed.
        body = encode_request([("click", b"x")], wire=Wire.PROTOBUF).body
        headers = {"Content-Type": "application/proto", "X-User-ID": "u"}
        assert requests.post(endpoints["rest_endpoint"], data=body, headers=headers, timeout=10).status_code == 200
        index = requests.get(endpoints["control_url"], timeout=10).json()
        assert CONTROL_ROUTES <= {(r["method"], r["path"]) for r in index["routes"]}
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "Traceback" not in err and "Error handling request" not in err, err
    assert "total events=1" in out


def test_off_a_terminal_a_counts_line_is_written_only_when_the_counts_change():
    proc, endpoints = _start(["--stats-interval", "0.05"], stdout=subprocess.PIPE)
    try:
        time.sleep(0.5)  # ~10 intervals with nothing happening: no line
        body = encode_request([("click", b"x")], wire=Wire.PROTOBUF).body
        headers = {"Content-Type": "application/proto", "X-User-ID": "u"}
        assert requests.post(endpoints["rest_endpoint"], data=body, headers=headers, timeout=10).status_code == 200
        time.sleep(0.5)  # the one change, then ~10 quiet intervals
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    counts = [line for line in out.splitlines() if line.startswith("accepted ")]
    assert len(counts) == 1 and counts[0].startswith("accepted 1 events"), out
    assert out.strip().splitlines()[-1].startswith("total events=1")


def test_on_a_terminal_the_counts_line_is_rewritten_in_place():
    main, child = pty.openpty()
    try:
        proc = subprocess.Popen(
            EMULATOR + ["--grpc-port", "0", "--http-port", "0", "--stats-interval", "0.05"],
            stdout=child, stderr=subprocess.DEVNULL,
        )
        os.close(child)
        child = -1
        seen = b""
        deadline = time.monotonic() + 30
        while seen.count(b"\r\x1b[K") < 3 and time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 1)
            if ready:
                seen += os.read(main, 4096)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if child >= 0:
            os.close(child)
        os.close(main)
    assert seen.count(b"\r\x1b[Kaccepted 0 events") >= 3, seen  # repeated although nothing changed
