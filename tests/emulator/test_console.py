"""The console's stream, its payload decoders and the token on the /_emulator routes (no browser)."""

from __future__ import annotations

import io
import json
import time
from typing import Any, Dict, Iterator, List

import fastavro
import pytest
import requests
from google.protobuf import descriptor_pb2, struct_pb2

from raccoon_beam._proto import raccoon_pb2
from raccoon_beam.emulator import Outcome, RaccoonEmulator
from raccoon_beam.emulator.console import DEFAULT_UPDATE_INTERVAL, STREAM_PATH
from raccoon_beam.emulator.payloads import PayloadDecoders

from tests.emulator.conftest import PROTO, Kit

AVRO_SCHEMA = {"type": "record", "name": "Click", "fields": [{"name": "id", "type": "long"}, {"name": "page", "type": "string"}]}


def _updates(url: str, n: int, timeout: float = 10.0, **kwargs: Any) -> Iterator[Dict[str, Any]]:
    """The first ``n`` updates of the stream at ``url``."""
    with requests.get(url, stream=True, timeout=timeout, **kwargs) as response:
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"].startswith("text/event-stream")
        count = 0
        for line in response.iter_lines():
            if line.startswith(b"data: "):
                yield json.loads(line[6:])
                count += 1
                if count == n:
                    return


def _state_when(emu: RaccoonEmulator, condition, timeout: float = 10.0) -> Dict[str, Any]:
    deadline = time.monotonic() + timeout
    for state in _updates(emu.http_base_url + STREAM_PATH, 1000, timeout=timeout):
        if condition(state):
            return state
        assert time.monotonic() < deadline, f"never: last state {state}"
    raise AssertionError("the stream ended")


def _avro(record: Dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(AVRO_SCHEMA), record)
    return buffer.getvalue()


def _descriptor_set(tmp_path) -> str:
    files = descriptor_pb2.FileDescriptorSet()
    struct_pb2.DESCRIPTOR.CopyToProto(files.file.add())
    path = tmp_path / "struct.desc"
    path.write_bytes(files.SerializeToString())
    return str(path)


def test_stream_shows_counts_connections_rejections_and_decoded_payloads(tmp_path) -> None:
    struct = struct_pb2.Struct()
    struct.update({"page": "/home", "n": 3})
    decoders = {"proto_ev": "proto:google.protobuf.Struct", "clickstream-avro_ev-log": "avro:" + json.dumps(AVRO_SCHEMA)}
    with RaccoonEmulator(decoders=decoders, descriptor_set=_descriptor_set(tmp_path)) as emu:
        kit = Kit(emu)
        events = [
            ("json_ev", b'{"a": 1, "b": [true, null]}'),
            ("proto_ev", struct.SerializeToString()),
            ("avro_ev", _avro({"id": 7, "page": "/cart"})),
            ("raw_ev", b"\x00\xffnot json"),
            ("proto_ev", b"\xff\xff\xff"),  # not a Struct: hex, with the error
        ]
        assert kit.post(kit.request(events).body, PROTO, headers={"X-User-ID": "u-7"}).status_code == 200
        assert kit.post(b"garbage", PROTO, headers={"X-User-ID": "u-7"}).status_code == 400
        emu.faults.fail_next(1, Outcome.http(429, retry_after=2), transport="rest")
        assert kit.post(kit.request(events[:1]).body, PROTO, headers={"X-User-ID": "u-8"}).status_code == 429

        state = _state_when(emu, lambda s: s["transports"].get("rest", {}).get("rejected") == 2)
        assert {t["type"]: t["count"] for t in state["topics"]} == {"json_ev": 1, "proto_ev": 2, "avro_ev": 1, "raw_ev": 1}
        assert state["transports"]["rest"] == {"received": 3, "accepted": 1, "rejected": 2, "deduplicated": 0, "duplicated": 0, "events": 5}
        assert {(c["conn_id"], c["requests"]) for c in state["connections"]} == {("u-7", 2), ("u-8", 1)}
        assert state["rejected_by_kind"] == {"http": {"rest": 1}, "bad_request": {"rest": 1}}
        newest, older = state["recent_rejections"]
        assert (newest["kind"], newest["reason"], newest["conn_id"]) == ("http", "http 429 (Retry-After 2)", "u-8")
        assert older["kind"] == "bad_request" and older["reason"].startswith("deserialization failure")
        assert state["fault_counters"] == {"http": {"rest": 1}}

        latest = state["latest"]
        shown = latest["json_ev"][0]
        assert shown["format"] == "json" and json.loads(shown["payload"]) == {"a": 1, "b": [True, None]}
        assert "\n" in shown["payload"]  # pretty-printed
        captured = emu.events()[0]
        assert (shown["req_guid"], shown["conn_id"], shown["group"], shown["topic"]) == (
            captured.req_guid, "u-7", captured.group, "clickstream-json_ev-log")
        assert shown["captured_at"] == captured.captured_at
        bad, good = latest["proto_ev"]  # newest first
        assert good["format"] == "protobuf" and json.loads(good["payload"]) == {"page": "/home", "n": 3.0}
        assert bad["format"] == "hex" and bad["payload"] == "ff ff ff" and bad["error"]
        assert latest["avro_ev"][0]["format"] == "avro"
        assert json.loads(latest["avro_ev"][0]["payload"]) == {"id": 7, "page": "/cart"}
        assert latest["raw_ev"][0] == {**latest["raw_ev"][0], "format": "hex", "payload": "00 ff 6e 6f 74 20 6a 73 6f 6e"}


def test_stream_in_digest_mode_has_counts_and_no_events() -> None:
    with RaccoonEmulator(capture="digest") as emu:
        kit = Kit(emu)
        kit.grpc(kit.request([("a", b"{}"), ("a", b"{}"), ("b", b"1")]).body)
        state = _state_when(emu, lambda s: s["total_events"] == 3)
        assert state["events_kept"] is False and state["latest"] == {}
        assert {t["type"]: t["count"] for t in state["topics"]} == {"a": 2, "b": 1}
        assert state["transports"]["grpc"]["accepted"] == 1


def test_stream_updates_a_few_times_a_second_whatever_the_load() -> None:
    with RaccoonEmulator(capture="digest") as emu:
        kit = Kit(emu)
        body = kit.request([("a", b"x" * 10)] * 50).body
        start = time.monotonic()
        updates = 0
        with requests.Session() as session:
            for _ in _updates(emu.http_base_url + STREAM_PATH, 1000, timeout=10):
                updates += 1
                for _ in range(20):  # load between updates: it must not make more of them
                    session.post(emu.rest_endpoint, data=body, headers={"Content-Type": PROTO, "X-User-ID": "u"})
                if time.monotonic() - start > 2.0:
                    break
        elapsed = time.monotonic() - start
        assert emu.counters().accepted("rest") >= 20
        # One at connection, then one per interval (the sampler coalesces; a slow reader skips).
        assert updates <= elapsed / DEFAULT_UPDATE_INTERVAL + 2


def test_fault_switch_routes_set_show_and_clear() -> None:
    with RaccoonEmulator() as emu:
        url = emu.http_base_url + "/_emulator/faults"
        outcome = Outcome.http(503).to_dict()
        for command in (
            {"method": "fail_fraction", "args": {"fraction": 0.25, "outcome": outcome, "transport": "grpc"}},
            {"method": "add_latency", "args": {"seconds": 0.1, "transport": "rest"}},
            {"method": "drop_connection", "args": {"n": 3, "transport": "websocket"}},
            {"method": "fail_publish", "args": {"fraction": 0.5}},
        ):
            assert requests.post(url, json=command, timeout=10).json() == {"ok": True}
        rules = requests.get(url, timeout=10).json()
        assert [(r["transport"], r["fraction"], r["describe"]) for r in rules["fractions"]] == [("grpc", 0.25, "http 503")]
        assert rules["latency"] == {"rest": 0.1}
        assert rules["drops"] == [{"transport": "websocket", "remaining": 3, "kind": "drop_before_capture"}]
        assert rules["publish"]["fraction"] == 0.5
        for command in (
            {"method": "clear_fraction", "args": {"outcome": outcome, "transport": "grpc"}},
            {"method": "add_latency", "args": {"seconds": 0, "transport": "rest"}},
            {"method": "stop_publish_failures", "args": {}},
        ):
            assert requests.post(url, json=command, timeout=10).json() == {"ok": True}
        rules = requests.get(url, timeout=10).json()
        assert rules["fractions"] == [] and rules["latency"] == {} and rules["publish"]["fraction"] == 0.0
        assert emu.faults.active  # the drop countdown is still there
        # Every kind of rule can be removed by the route, as the console's switches do.
        for command in (
            {"method": "fail_next", "args": {"n": 4, "outcome": outcome}},
            {"method": "reject_event_type", "args": {"event_type": "bad"}},
        ):
            assert requests.post(url, json=command, timeout=10).json() == {"ok": True}
        rules = requests.get(url, timeout=10).json()
        assert [(r["transport"], r["remaining"], r["outcome"]) for r in rules["next"]] == [("all", 4, outcome)]
        assert rules["rejected_types"] == ["bad"]
        for command in (
            {"method": "clear_next", "args": {}},
            {"method": "clear_drops", "args": {"transport": "websocket"}},
            {"method": "allow_event_type", "args": {"event_type": "bad"}},
        ):
            assert requests.post(url, json=command, timeout=10).json() == {"ok": True}
        rules = requests.get(url, timeout=10).json()
        assert rules["next"] == [] and rules["drops"] == [] and rules["rejected_types"] == []
        assert not emu.faults.active
        assert requests.post(url, json={"method": "nope"}, timeout=10).status_code == 400


def test_off_loopback_every_control_route_needs_the_token() -> None:
    # Bound to every address, reached only through 127.0.0.1.
    with RaccoonEmulator(host="0.0.0.0") as emu:
        token = emu.console_token
        assert token and emu.console_url.endswith(f"/_emulator/ui#token={token}")  # a fragment: never sent
        base = f"http://127.0.0.1:{emu.http_port}"
        routes: List[tuple] = [
            ("GET", "/_emulator", None),
            ("GET", "/_emulator/counters", None),
            ("GET", "/_emulator/digest", None),
            ("GET", "/_emulator/events", None),
            ("GET", "/_emulator/faults", None),
            ("POST", "/_emulator/faults", {"method": "add_latency", "args": {"seconds": 0}}),
            ("POST", "/_emulator/reset", {}),
            ("GET", STREAM_PATH, None),
        ]
        with requests.Session() as session:
            for method, path, payload in routes:
                call = dict(json=payload, timeout=10, stream=path == STREAM_PATH)
                refused = session.request(method, base + path, **call)
                assert refused.status_code == 401, (method, path)
                wrong = session.request(method, base + path, headers={"X-Emulator-Token": token + "x"}, **call)
                assert wrong.status_code == 401, (method, path)
                # Not in a query (it would land in logs): refused there.
                by_query = session.request(method, base + path, params={"token": token}, **call)
                assert by_query.status_code == 401, (method, path)
                by_header = session.request(method, base + path, headers={"X-Emulator-Token": token}, **call)
                assert by_header.status_code == 200, (method, path)
                bearer = session.request(method, base + path, headers={"Authorization": f"Bearer {token}"}, **call)
                assert bearer.status_code == 200, (method, path)
                for response in (refused, wrong, by_query, by_header, bearer):
                    response.close()
            # The page and its files are the same for everyone: no token (the page presents it).
            assert session.get(base + "/_emulator/ui", timeout=10).status_code == 200
            assert session.get(base + "/_emulator/ui/static/console.js", timeout=10).status_code == 200
            # Ingest is Raccoon's API: never a token.
            ok = session.post(base + "/api/v1/events", data=Kit.request([("a", b"{}")]).body,
                              headers={"Content-Type": PROTO, "X-User-ID": "u"}, timeout=10)
            assert ok.status_code == 200
            assert raccoon_pb2.SendEventResponse.FromString(ok.content).status == raccoon_pb2.STATUS_SUCCESS
        # What the page does: the token (from its URL's fragment) traded for a cookie its stream sends.
        with requests.Session() as page:
            assert page.post(base + "/_emulator/ui/session", json={}, timeout=10).status_code == 401
            login = page.post(base + "/_emulator/ui/session", json={}, headers={"X-Emulator-Token": token}, timeout=10)
            assert login.status_code == 200
            cookie = login.headers["Set-Cookie"]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/_emulator" in cookie
            state = next(_updates(base + STREAM_PATH, 1, cookies=page.cookies))
        assert state["total_events"] == 1


def test_on_loopback_no_token_unless_one_is_set() -> None:
    with RaccoonEmulator() as emu:
        assert emu.console_token is None
        assert requests.get(emu.http_base_url + "/_emulator/counters", timeout=10).status_code == 200
    with RaccoonEmulator(console_token="s3cret") as emu:
        assert requests.get(emu.http_base_url + "/_emulator/counters", timeout=10).status_code == 401
        assert requests.get(emu.console_url, timeout=10).status_code == 200


@pytest.mark.parametrize("token", ["", "  "])
def test_an_empty_token_is_refused_beyond_loopback(token: str) -> None:
    with pytest.raises(ValueError, match="console_token is empty"):
        RaccoonEmulator(host="0.0.0.0", console_token=token)


def test_bad_decoder_specs_are_refused_clearly(tmp_path) -> None:
    with pytest.raises(ValueError, match="expected json, hex"):
        PayloadDecoders({"a": "yaml"})
    with pytest.raises(ValueError, match="needs a descriptor set"):
        PayloadDecoders({"a": "proto:google.protobuf.Struct"})
    with pytest.raises(ValueError, match="no such message"):
        PayloadDecoders({"a": "proto:no.Such"}, _descriptor_set(tmp_path))
    with pytest.raises(ValueError, match="cannot load the schema"):
        PayloadDecoders({"a": "avro:/nonexistent.avsc"})


@pytest.mark.parametrize("flag", ["--host", "--http-host"])
def test_cli_prints_the_console_url_and_token_and_process_control_uses_it(flag: str) -> None:
    import subprocess
    import sys

    from raccoon_beam.emulator.process import EmulatorProcess

    with EmulatorProcess([flag, "0.0.0.0"]) as proc:
        token = proc.console_token  # generated by the process, read from the console URL's fragment
        assert token and proc.console_url.endswith(f"/_emulator/ui#token={token}")
        assert "console_token" not in proc.endpoints  # printed once: in that URL only
        # Rewritten to loopback: the test connects through 127.0.0.1 only.
        proc.endpoints["control_url"] = proc.endpoints["control_url"].replace("0.0.0.0", "127.0.0.1")
        assert proc.counters().accepted() == 0  # EmulatorProcess sends the token it read
        assert requests.get(proc.endpoints["control_url"] + "/counters", timeout=10).status_code == 401
        page = requests.get(proc.console_url.replace("0.0.0.0", "127.0.0.1"), timeout=10)
        assert page.status_code == 200 and "Raccoon emulator" in page.text
    bad = subprocess.run([sys.executable, "-m", "raccoon_beam.emulator", "--decode", "a=proto:x.Y"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "needs a descriptor set" in bad.stderr


def test_reset_clears_what_the_console_shows() -> None:
    with RaccoonEmulator() as emu:
        kit = Kit(emu)
        kit.grpc(kit.request([("old", b"{}")]).body)
        _state_when(emu, lambda s: "old" in s["latest"])
        emu.reset()
        kit.grpc(kit.request([("new", b"{}")]).body)
        state = _state_when(emu, lambda s: "new" in s["latest"])
        assert list(state["latest"]) == ["new"] and [t["type"] for t in state["topics"]] == ["new"]


def test_reset_clears_the_chart() -> None:
    with RaccoonEmulator() as emu:
        kit = Kit(emu)
        for _ in range(3):
            kit.grpc(kit.request([("old", b"{}")] * 50).body)
        _state_when(emu, lambda s: any(rate > 0 for _, rate in s["rate"]))
        reset_at = time.time()
        emu.reset()
        # The next point is a new chart: nothing from before the reset, no rate from the old events.
        state = _state_when(emu, lambda s: len(s["rate"]) >= 1 and s["rate"][0][0] >= reset_at, timeout=15)
        assert all(rate == 0 for _, rate in state["rate"])
