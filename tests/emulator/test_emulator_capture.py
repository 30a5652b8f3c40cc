"""Capture: events, digests, JSONL output, waiting, reset and restart on the same ports."""

from __future__ import annotations

import json
import threading

import pytest

from raccoon_beam.emulator import RaccoonEmulator, expected_digest
from raccoon_beam.wire import Wire

EVENTS = [("click", b"a"), ("click", b"bb"), ("view", b"\x00\xff"), ("click", b"a")]


def test_digest_matches_expected_digest_in_both_modes(kit, emulator):
    kit.post(kit.request(EVENTS[:2]).body, "application/proto")
    kit.grpc(kit.request(EVENTS[2:]).body)
    digest = emulator.digest()
    assert digest == expected_digest(EVENTS)
    assert digest["click"].count == 3 and digest["click"].total_bytes == 4
    # Order and batching do not matter; content does.
    assert expected_digest(list(reversed(EVENTS))) == digest
    assert expected_digest(EVENTS[:-1]) != digest
    assert expected_digest(EVENTS[:-1] + [("click", b"A")]) != digest


@pytest.mark.emulator(capture="digest")
def test_digest_mode_keeps_no_events(kit, emulator):
    kit.post(kit.request(EVENTS).body, "application/proto")
    assert emulator.events() == []
    assert emulator.digest() == expected_digest(EVENTS)
    assert emulator.counters().total_events_accepted == 4
    assert emulator.wait_for_events(4, timeout=1)


def test_output_jsonl(tmp_path):
    path = tmp_path / "events.jsonl"
    with RaccoonEmulator(output=str(path), capture="digest") as emu:
        from raccoon_beam.wire import encode_request

        import requests

        body = encode_request(EVENTS, wire=Wire.PROTOBUF, req_guid="o-1").body
        requests.post(emu.rest_endpoint, data=body, headers={"Content-Type": "application/proto"}, timeout=10)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["type"], r["event_bytes"]) for r in records] == [("click", "YQ=="), ("click", "YmI="),
                                                               ("view", "AP8="), ("click", "YQ==")]
    assert {r["req_guid"] for r in records} == {"o-1"} and records[0]["topic"] == "clickstream-click-log"


def test_wait_for_events(kit, emulator):
    assert not emulator.wait_for_events(1, timeout=0.05)
    sender = threading.Thread(target=kit.post, args=(kit.request(EVENTS).body, "application/proto"))
    sender.start()
    assert emulator.wait_for_events(4, timeout=30)
    sender.join()


def test_restart_reuses_the_ports_and_keeps_captures(kit, emulator):
    endpoints = (emulator.grpc_endpoint, emulator.rest_endpoint, emulator.ws_endpoint)
    kit.post(kit.request(EVENTS[:1]).body, "application/proto")
    emulator.stop()
    with pytest.raises(RuntimeError):  # a stopped emulator has no endpoints
        kit.post(b"", "application/proto", timeout=2)
    emulator.start()
    assert (emulator.grpc_endpoint, emulator.rest_endpoint, emulator.ws_endpoint) == endpoints
    kit.post(kit.request(EVENTS[1:2]).body, "application/proto")
    kit.grpc(kit.request(EVENTS[2:3]).body)
    assert len(emulator.events()) == 3


def test_endpoints_need_a_running_emulator():
    emu = RaccoonEmulator()
    with pytest.raises(RuntimeError):
        _ = emu.grpc_endpoint
    emu.stop()  # harmless


def test_invalid_settings():
    with pytest.raises(ValueError):
        RaccoonEmulator(ack="sometimes")
    with pytest.raises(ValueError):
        RaccoonEmulator(capture="all")


def test_control_endpoints(kit, emulator):
    import requests

    kit.post(kit.request(EVENTS).body, "application/proto")
    base = emulator.http_base_url + "/_emulator"
    assert requests.get(base + "/digest", timeout=10).json()["view"]["count"] == 1
    assert requests.get(base + "/counters", timeout=10).json()["events_accepted"] == {"rest": 4}
    assert len(requests.get(base + "/events", timeout=10).json()) == 4
    fault = {"method": "fail_next", "args": {"n": 1, "outcome": {"kind": "http", "status": 503}}}
    assert requests.post(base + "/faults", json=fault, timeout=10).status_code == 200
    assert kit.post(kit.request(EVENTS).body, "application/proto").status_code == 503
    assert requests.post(base + "/faults", json={"method": "nope"}, timeout=10).status_code == 400
    assert requests.post(base + "/reset", json={}, timeout=10).json() == {"ok": True}
    assert emulator.events() == [] and emulator.counters().received() == 0
