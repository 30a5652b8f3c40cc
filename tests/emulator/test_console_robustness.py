"""The console's stream survives any payload, and pages that go away mid-write.

Deep JSON (past orjson's 254 levels and past its 1,024), huge payloads
(five of 2.6 MB: each update stays small), a header that cannot be encoded
(a placeholder), and pages closed while the emulator writes to them (no
traceback in the log).
"""

from __future__ import annotations

import json
import logging
import socket
import struct
import time
from typing import Any, Dict

import orjson
import pytest
import requests

from raccoon_beam.emulator import RaccoonEmulator
from raccoon_beam.emulator.console import STREAM_PATH, UNENCODABLE
from raccoon_beam.emulator.payloads import (
    DEFAULT_MAX_DECODED_BYTES,
    DEFAULT_MAX_HEX_BYTES,
    DEFAULT_MAX_TEXT_CHARS,
    PayloadDecoders,
)
from raccoon_beam.wire import Wire, encode_request

from tests.emulator.conftest import PROTO, Kit

BIG = 2_600_000


def _deep(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def _wide(size: int) -> bytes:
    item = b'{"k":"' + b"x" * 90 + b'"},'
    return b"[" + item * (size // len(item)) + b"1]"


@pytest.mark.parametrize("depth", [200, 256, 1024, 5000])
@pytest.mark.parametrize("spec", [None, "json"], ids=["guessed", "json-spec"])
def test_deep_json_never_raises_and_is_shown(depth: int, spec: Any) -> None:
    decoders = PayloadDecoders({"deep": spec} if spec else {})
    payload = _deep(depth)
    decoded = decoders.decode("deep", "topic", payload)
    assert len(decoded.text) <= DEFAULT_MAX_TEXT_CHARS + 200
    if depth <= 254:
        assert decoded.format == "json" and decoded.text.startswith('{\n  "a": {')
    elif depth <= 1024:
        # orjson reads it, but does not write it this deep: shown as sent, with a note.
        assert decoded.format == "json" and decoded.text.startswith('{"a":{"a":') and "shown as sent" in decoded.error
    else:
        assert decoded.format == "hex"  # not JSON orjson reads at all


def test_huge_payloads_are_cut_or_not_decoded_with_a_note() -> None:
    decoders = PayloadDecoders({})
    large = _wide(DEFAULT_MAX_DECODED_BYTES - 1000)
    decoded = decoders.decode("t", "topic", large)
    assert decoded.format == "json" and "cut: the first" in decoded.error
    assert len(decoded.text) < DEFAULT_MAX_TEXT_CHARS + 200 and decoded.text.endswith("characters)")
    huge = decoders.decode("t", "topic", _wide(BIG))
    assert huge.format == "hex" and "over the" in huge.error
    assert len(huge.text) < 4 * DEFAULT_MAX_HEX_BYTES and huge.text.endswith(f"({len(_wide(BIG))} bytes)")


def _state(url: str, timeout: float = 15.0, **kwargs: Any) -> Dict[str, Any]:
    with requests.get(url, stream=True, timeout=timeout, **kwargs) as response:
        assert response.status_code == 200
        for line in response.iter_lines(chunk_size=1 << 20):
            if line.startswith(b"data: "):
                return {"size": len(line), **json.loads(line[6:])}
    raise AssertionError("no update")


def _state_when(emu: RaccoonEmulator, condition, timeout: float = 20.0) -> Dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        state = _state(emu.http_base_url + STREAM_PATH)
        if condition(state) or time.monotonic() > deadline:
            return state
        time.sleep(0.3)


def test_the_stream_survives_deep_huge_and_unencodable_input() -> None:
    with RaccoonEmulator() as emu:
        kit = Kit(emu)
        events = [("huge", _wide(BIG)) for _ in range(5)]
        events += [("deep256", _deep(256)), ("deep1024", _deep(1024)), ("deep5000", _deep(5000))]
        assert kit.post(kit.request(events).body, PROTO, headers={"X-User-ID": "u"}, timeout=60).status_code == 200
        # A connection id that is not UTF-8: aiohttp keeps it as a lone surrogate, which no JSON encoder takes.
        body = encode_request([("odd", b"{}")], wire=Wire.PROTOBUF).body
        head = (b"POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: " + PROTO.encode()
                + b"\r\nX-User-ID: bad-\xff\xfe-id\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        with socket.create_connection(("127.0.0.1", emu.http_port), timeout=10) as sock:
            sock.sendall(head + body)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        state = _state_when(emu, lambda s: {"huge", "deep256", "deep1024", "deep5000", "odd"} <= set(s["latest"]))
        latest = state["latest"]
        assert state["size"] < 200_000, state["size"]  # five 2.6 MB payloads, one small update
        assert all(e["format"] == "hex" and "over the" in e["error"] for e in latest["huge"])
        assert latest["deep256"][0]["format"] == "json" and "shown as sent" in latest["deep256"][0]["error"]
        assert latest["deep5000"][0]["format"] == "hex"
        assert UNENCODABLE in [e["conn_id"] for e in latest["odd"]]
        assert state["total_events"] == 9


def test_pages_closed_mid_write_leave_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with RaccoonEmulator() as emu:
        kit = Kit(emu)
        # Large updates (each page gets the latest events), so that writes are in flight when pages go.
        events = [(f"t{i}", _wide(DEFAULT_MAX_DECODED_BYTES - 1000)) for i in range(20)]
        assert kit.post(kit.request(events).body, PROTO, headers={"X-User-ID": "u"}, timeout=60).status_code == 200
        request = (f"GET {STREAM_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").encode()
        for i in range(40):
            sock = socket.create_connection(("127.0.0.1", emu.http_port), timeout=10)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(request)
            if i % 2:
                sock.recv(1024)  # gone mid-update; the others go before the answer's headers
            # Reset, not a polite close: the server's next write fails.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        time.sleep(1.0)  # a few updates go out to the pages that are gone
        state = _state(emu.http_base_url + STREAM_PATH)
        assert state["total_events"] == 20  # the stream still serves
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert not noisy, [(r.name, r.getMessage(), r.exc_info) for r in noisy]
    assert orjson.dumps({"ok": True})  # (orjson imported for the deep tests' limits)
