"""REST behaviour, as Raccoon's own code serves it (docs/protocol.md), over real sockets."""

from __future__ import annotations

import base64
import json

import pytest

from raccoon_beam._proto import raccoon_pb2
from raccoon_beam.wire import Wire, decode_response
from tests.vectors import decode_vectors

JSON = "application/json"
PROTO = "application/proto"



def test_ping_answers_pong(kit):
    assert kit.ping() == "pong"


@pytest.mark.parametrize("wire", [Wire.PROTOBUF, Wire.JSON])
def test_success_is_200_in_the_request_wire_with_req_guid(kit, emulator, wire):
    req = kit.request([("click", b"\x00\x01payload"), ("view", b"{}")], wire=wire, req_guid="r-1")
    resp = kit.post(req.body, content_type=req.content_type, headers={"X-User-ID": "user-7"})
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == req.content_type
    decoded = decode_response(resp.content, wire)
    assert (decoded.status, decoded.code) == (raccoon_pb2.STATUS_SUCCESS, raccoon_pb2.CODE_OK)
    assert decoded.data["req_guid"] == "r-1"
    assert decoded.sent_time > 1_600_000_000
    events = emulator.events()
    assert [(e.type, e.event_bytes) for e in events] == [("click", b"\x00\x01payload"), ("view", b"{}")]
    assert {(e.req_guid, e.conn_id, e.group, e.transport) for e in events} == {
        ("r-1", "user-7", "--default--", "rest")
    }
    assert [e.topic for e in events] == ["clickstream-click-log", "clickstream-view-log"]


def test_json_success_body_layout(kit):
    req = kit.request([("click", b"x")], wire=Wire.JSON, req_guid="r-1")
    body = json.loads(kit.post(req.body).content)
    assert set(body) == {"status", "code", "sent_time", "data"}  # reason omitted when empty
    assert body["status"] == 1 and body["code"] == 1 and body["data"] == {"req_guid": "r-1"}
    assert isinstance(body["sent_time"], int)


def test_group_header_and_missing_id_are_accepted(kit, emulator):
    req = kit.request([("click", b"x")])
    assert kit.post(req.body, PROTO, headers={"X-User-Group": "mobile"}).status_code == 200
    (event,) = emulator.events()
    assert (event.conn_id, event.group) == ("", "mobile")


@pytest.mark.emulator(conn_id_header="X-Conn", group_header="X-Grp", default_group="dflt",
                      topic_pattern="events.%s")
def test_configured_headers_and_topic_pattern(kit, emulator):
    req = kit.request([("click", b"x")])
    kit.post(req.body, PROTO, headers={"X-Conn": "c-1", "X-User-ID": "ignored"})
    (event,) = emulator.events()
    assert (event.conn_id, event.group, event.topic) == ("c-1", "dflt", "events.click")


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/json; charset=utf-8", "APPLICATION/JSON", "application/protobuf",
     "application/x-protobuf", ""],
)
def test_invalid_content_type_is_400_json_echoing_the_content_type(kit, emulator, content_type):
    req = kit.request([("click", b"x")], wire=Wire.JSON)
    resp = kit.post(req.body, content_type=content_type)
    assert resp.status_code == 400
    assert resp.headers.get("Content-Type", "") == (content_type or "")
    body = json.loads(resp.content)  # always JSON, whatever the request's type
    assert body["status"] == raccoon_pb2.STATUS_ERROR
    assert body["code"] == raccoon_pb2.CODE_BAD_REQUEST
    assert body["reason"] == "invalid content type"
    assert "data" not in body
    assert emulator.events() == []


@pytest.mark.parametrize(
    "content_type,body",
    [(JSON, b"{not json"), (JSON, b""), (JSON, b'{"events":[]} x'), (PROTO, b"\x0a\xff\xff"),
     (PROTO, b"\xff\xff\xff\xff")],
)
def test_undecodable_body_is_400_in_the_request_wire_without_req_guid(kit, emulator, content_type, body):
    resp = kit.post(body, content_type=content_type)
    assert resp.status_code == 400
    assert resp.headers["Content-Type"] == content_type
    wire = Wire.JSON if content_type == JSON else Wire.PROTOBUF
    decoded = decode_response(resp.content, wire)
    assert (decoded.status, decoded.code) == (raccoon_pb2.STATUS_ERROR, raccoon_pb2.CODE_BAD_REQUEST)
    assert decoded.reason == "deserialization failure"
    assert "req_guid" not in decoded.data
    if wire is Wire.JSON:
        assert "data" not in json.loads(resp.content)
    assert emulator.events() == []
    counters = emulator.counters()
    assert (counters.received("rest"), counters.rejected("rest"), counters.accepted("rest")) == (1, 1, 0)


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
def test_other_methods_are_405(kit, emulator, method):
    import requests

    resp = requests.request(method, emulator.rest_endpoint, timeout=10)
    assert resp.status_code == 405


def test_get_without_upgrade_is_400_plain_text(kit, emulator):
    import requests

    resp = requests.get(emulator.rest_endpoint, timeout=10)
    assert resp.status_code == 400
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert resp.text.strip() == "Bad Request"


@pytest.mark.emulator(max_body_bytes=1024)
@pytest.mark.parametrize("content_type", [JSON, "application/proto"])
def test_body_over_the_read_limit_is_413_as_a_proxy_answers(kit, emulator, content_type):
    """E1: the limit stands for a proxy's (Raccoon has none), so the proxy's 413 it is."""
    resp = kit.post(b"x" * 4096, content_type=content_type)
    assert resp.status_code == 413
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert "Too Large" in resp.text
    counters = emulator.counters()
    assert counters.received("rest") == 1 and counters.rejected("rest") == 1
    assert counters.accepted("rest") == 0 and emulator.events() == []
    assert kit.ping() == "pong"


@pytest.mark.parametrize("vector", decode_vectors(), ids=lambda v: v["name"])
def test_go_json_decode_vectors(kit, emulator, vector):
    body = vector["json_body"].encode("utf-8")
    resp = kit.post(body, content_type=JSON)
    decoded = decode_response(resp.content, Wire.JSON)
    if not vector["accepted"]:
        assert resp.status_code == 400
        assert decoded.code == raccoon_pb2.CODE_BAD_REQUEST
        assert decoded.reason == "deserialization failure"
        assert emulator.events() == []
        return
    parsed = vector["parsed"]
    assert resp.status_code == 200
    assert decoded.data["req_guid"] == parsed["req_guid"]
    events = emulator.events()
    assert [(e.type, base64.b64encode(e.event_bytes).decode()) for e in events] == [
        (e["type"], e["event_bytes_base64"]) for e in parsed["events"]
    ]
    assert all(e.req_guid == parsed["req_guid"] for e in events)
