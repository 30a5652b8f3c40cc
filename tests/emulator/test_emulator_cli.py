"""The CLI in a subprocess, and EmulatorProcess (the emulator in a process of its own)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import requests

from raccoon_beam.emulator import Outcome, expected_digest
from raccoon_beam.emulator.process import EmulatorProcess
from raccoon_beam.wire import Wire, encode_request


def _read_until_ready(proc):
    endpoints = {}
    for line in proc.stdout:
        line = line.strip()
        if line == "ready":
            return endpoints
        name, _, value = line.partition("=")
        endpoints[name] = value
    raise AssertionError("no ready line")


def test_cli_prints_endpoints_counts_and_stops_on_sigterm(tmp_path):
    output = tmp_path / "events.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "raccoon_beam.emulator", "--grpc-port", "0", "--http-port", "0",
         "--stats-interval", "0.2", "--capture", "events", "--output", str(output), "--ack", "sync",
         "--conn-id-header", "X-Id", "--topic-pattern", "t-%s", "--max-connections", "5",
         "--fail-next", "1", "--fail-status", "429", "--retry-after", "2", "--fail-transport", "rest"],
        stdout=subprocess.PIPE, text=True, env=dict(os.environ),
    )
    try:
        endpoints = _read_until_ready(proc)
        assert endpoints["grpc_endpoint"].startswith("grpc://127.0.0.1:")
        assert endpoints["ws_endpoint"].startswith("ws://127.0.0.1:")
        rest = endpoints["rest_endpoint"]
        assert rest.startswith("http://127.0.0.1:") and rest.endswith("/api/v1/events")
        body = encode_request([("click", b"x")], wire=Wire.PROTOBUF).body
        headers = {"Content-Type": "application/proto", "X-Id": "cli"}
        first = requests.post(rest, data=body, headers=headers, timeout=10)
        assert (first.status_code, first.headers["Retry-After"]) == (429, "2")
        assert requests.post(rest, data=body, headers=headers, timeout=10).status_code == 200
        # A live counts line shows the accepted event.
        for line in proc.stdout:
            if line.startswith("accepted 1 events"):
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        rest_of_output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert rest_of_output.strip().splitlines()[-1].startswith("total events=1 batches=1 rejected=1")
    assert '"topic":"t-click"' in output.read_text() and '"conn_id":"cli"' in output.read_text()


def test_cli_help_lists_the_flags():
    out = subprocess.run([sys.executable, "-m", "raccoon_beam.emulator", "--help"], capture_output=True,
                         text=True, timeout=60).stdout
    for flag in ("--grpc-port", "--http-port", "--host", "--conn-id-header", "--group-header", "--ack",
                 "--dedup", "--max-connections", "--capture", "--output", "--topic-pattern",
                 "--fail-fraction", "--fail-status", "--seed", "--latency", "--reject-event-type"):
        assert flag in out


def test_emulator_process_counters_digest_and_faults():
    events = [("click", b"one"), ("view", b"two")]
    with EmulatorProcess(["--ack", "sync"]) as emu:
        rest = emu.rest_endpoint
        body = encode_request(events, wire=Wire.PROTOBUF).body
        emu.fault("fail_next", n=1, outcome=Outcome.raccoon(3, "boom"))
        assert requests.post(rest, data=body, headers={"Content-Type": "application/proto"}, timeout=10).status_code == 500
        assert requests.post(rest, data=body, headers={"Content-Type": "application/proto"}, timeout=10).status_code == 200
        assert emu.digest() == expected_digest(events)
        counters = emu.counters()
        assert counters.injected("raccoon", "rest") == 1 and counters.total_events_accepted == 2
        emu.reset()
        assert emu.digest() == {}
    assert emu.final_line.startswith("total events=")


def test_a_stop_signal_is_seen_even_when_it_lands_while_the_main_thread_holds_a_lock():
    """The CLI's wait for SIGTERM/SIGINT takes no lock in a signal handler.

    Its old handler called ``Event.set()``: a SIGTERM landing inside
    ``Event.wait()`` (right after ``ready``) hung the emulator for good,
    about once in 40 starts on a loaded machine.
    """
    from raccoon_beam.emulator.cli import _StopSignals

    before = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    for signum in (signal.SIGTERM, signal.SIGINT):
        held = threading.Lock()
        with _StopSignals() as stop:
            assert not stop.wait(0)
            with held:  # the handler runs here, in this thread, with a lock held
                signal.raise_signal(signum)
            assert stop.wait(5) and stop.wait(0)
    assert {signum: signal.getsignal(signum) for signum in before} == before
