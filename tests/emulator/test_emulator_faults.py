"""Every fault and outcome over every transport it applies to, and the counters that reconcile them."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Dict

import aiohttp
import grpc
import pytest
import requests

from raccoon_beam._proto import raccoon_pb2
from raccoon_beam.errors import WireFormatError
from raccoon_beam.emulator import Outcome
from raccoon_beam.wire import Wire, decode_response

TRANSPORTS = ("rest", "grpc", "websocket")


def _send(kit, transport: str, req, wire: Wire = Wire.PROTOBUF) -> Dict[str, Any]:
    """Sends one request; returns what the client observed, transport-neutrally."""
    if transport == "rest":
        try:
            resp = kit.post(req.body, req.content_type, timeout=3)
        except requests.exceptions.RequestException as exc:
            return {"kind": "network", "error": exc}
        return {"kind": "http", "status": resp.status_code, "headers": resp.headers, "body": resp.content}
    if transport == "grpc":
        try:
            return {"kind": "ok", "body": kit.grpc(req.body, timeout=3)}
        except grpc.RpcError as exc:
            return {"kind": "grpc_error", "code": exc.code(), "details": exc.details()}

    async def scenario(session):
        async with kit.connect(session, "f") as ws:
            if wire is Wire.PROTOBUF:
                await ws.send_bytes(req.body)
            else:
                await ws.send_str(req.body.decode())
            try:
                msg = await ws.receive(timeout=1.5)
            except asyncio.TimeoutError:
                return {"kind": "timeout"}
            if msg.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                return {"kind": "frame", "type": msg.type, "body": msg.data}
            return {"kind": "closed", "code": ws.close_code, "extra": msg.extra}

    return kit.run(scenario)


def _response(observed: Dict[str, Any], wire: Wire = Wire.PROTOBUF) -> raccoon_pb2.SendEventResponse:
    return decode_response(observed["body"], wire)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_raccoon_outcome(kit, emulator, transport):
    emulator.faults.fail_next(1, Outcome.raccoon(raccoon_pb2.CODE_INTERNAL_ERROR, "kafka down"))
    req = kit.request([("c", b"x")], req_guid="r-1")
    observed = _send(kit, transport, req)
    if transport == "rest":
        assert observed["status"] == 500
    resp = _response(observed)
    assert (resp.status, resp.code, resp.reason) == (raccoon_pb2.STATUS_ERROR, raccoon_pb2.CODE_INTERNAL_ERROR,
                                                      "kafka down")
    assert resp.data["req_guid"] == "r-1"
    assert emulator.events() == []
    # The next request is not affected.
    assert _response(_send(kit, transport, req)).code == raccoon_pb2.CODE_OK
    counters = emulator.counters()
    assert counters.injected("raccoon", transport) == 1
    assert counters.received(transport) == 2 and counters.accepted(transport) == 1 and counters.rejected(transport) == 1


def test_raccoon_bad_request_outcome_is_400_on_rest(kit, emulator):
    emulator.faults.fail_next(1, Outcome.raccoon("CODE_BAD_REQUEST"))
    assert kit.post(kit.request([("c", b"x")]).body, "application/proto").status_code == 400


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_http_429_with_retry_after(kit, emulator, transport):
    emulator.faults.fail_next(1, Outcome.http(429, retry_after=3, body=b"slow down"), transport=transport)
    observed = _send(kit, transport, kit.request([("c", b"x")]))
    if transport == "rest":
        assert observed["status"] == 429
        assert observed["headers"]["Retry-After"] == "3"
        assert observed["body"] == b"slow down"
    elif transport == "grpc":
        assert observed["code"] is grpc.StatusCode.UNAVAILABLE
    else:
        assert observed == {"kind": "closed", "code": 1011, "extra": "HTTP 429"}
    assert emulator.counters().injected("http", transport) == 1
    assert emulator.events() == []


@pytest.mark.parametrize("status,grpc_code", [(503, grpc.StatusCode.UNAVAILABLE), (502, grpc.StatusCode.UNAVAILABLE),
                                              (504, grpc.StatusCode.DEADLINE_EXCEEDED)])
def test_http_statuses_map_to_grpc(kit, emulator, status, grpc_code):
    emulator.faults.fail_next(2, Outcome.http(status))
    assert _send(kit, "grpc", kit.request([("c", b"x")]))["code"] is grpc_code
    assert _send(kit, "rest", kit.request([("c", b"x")]))["status"] == status


def test_proxy_html_502_page_on_rest(kit, emulator):
    page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    emulator.faults.fail_next(1, Outcome.http(502, body=page, content_type="text/html"))
    observed = _send(kit, "rest", kit.request([("c", b"x")]))
    assert (observed["status"], observed["body"], observed["headers"]["Content-Type"]) == (502, page, "text/html")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_grpc_outcome(kit, emulator, transport):
    emulator.faults.fail_next(1, Outcome.grpc(grpc.StatusCode.UNAVAILABLE, "backend gone"))
    observed = _send(kit, transport, kit.request([("c", b"x")]))
    if transport == "grpc":
        assert (observed["code"], observed["details"]) == (grpc.StatusCode.UNAVAILABLE, "backend gone")
    elif transport == "rest":
        assert observed["status"] == 503
    else:
        assert (observed["kind"], observed["code"]) == ("closed", 1011)
    assert emulator.counters().injected("grpc", transport) == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_garbage_outcome(kit, emulator, transport):
    emulator.faults.fail_next(1, Outcome.garbage())
    observed = _send(kit, transport, kit.request([("c", b"x")]))
    if transport == "rest":
        assert observed["status"] == 200
        assert observed["headers"]["Content-Type"] == "application/proto"
    elif transport == "websocket":
        assert observed["type"] == aiohttp.WSMsgType.BINARY
    with pytest.raises(WireFormatError):
        _response(observed)
    assert emulator.events() == []


def test_garbage_with_wrong_content_type_on_rest(kit, emulator):
    emulator.faults.fail_next(1, Outcome.garbage(b'{"status":1', content_type="text/html"))
    observed = _send(kit, "rest", kit.request([("c", b"x")], Wire.JSON))
    assert observed["headers"]["Content-Type"] == "text/html" and observed["body"] == b'{"status":1'


def test_garbage_on_websocket_text_frame(kit, emulator):
    emulator.faults.fail_next(1, Outcome.garbage(b"not json"))
    observed = _send(kit, "websocket", kit.request([("c", b"x")], Wire.JSON), Wire.JSON)
    assert observed["type"] == aiohttp.WSMsgType.TEXT and observed["body"] == "not json"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_wrong_req_guid_outcome(kit, emulator, transport):
    emulator.faults.fail_next(1, Outcome.wrong_req_guid())
    resp = _response(_send(kit, transport, kit.request([("c", b"x")], req_guid="mine")))
    assert resp.code == raccoon_pb2.CODE_OK
    assert resp.data["req_guid"] != "mine"
    assert emulator.events() == []
    assert emulator.counters().injected("wrong_req_guid", transport) == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_no_answer_outcome_and_stop_is_not_blocked(kit, emulator, transport):
    emulator.faults.fail_next(1, Outcome.no_answer())
    observed = _send(kit, transport, kit.request([("c", b"x")]))
    if transport == "rest":
        assert observed["kind"] == "network"  # the client's read timeout
    elif transport == "grpc":
        assert observed["code"] is grpc.StatusCode.DEADLINE_EXCEEDED
    else:
        assert observed["kind"] == "timeout"
    assert emulator.events() == []
    assert emulator.counters().injected("no_answer", transport) == 1


def test_no_answer_pending_while_stopping(emulator, kit):
    emulator.faults.fail_next(2, Outcome.no_answer())
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        pending = [pool.submit(_send, kit, "rest", kit.request([("c", b"x")])),
                   pool.submit(kit.grpc, kit.request([("c", b"x")]).body, timeout=30)]
        while emulator.counters().received() < 2:
            time.sleep(0.01)
        emulator.stop()  # must return although two requests wait for an answer
        assert pending[0].result(timeout=30)["kind"] in ("network", "http")
        with pytest.raises(grpc.RpcError):
            pending[1].result(timeout=30)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("after_capture", [False, True])
def test_drop_connection(kit, emulator, transport, after_capture):
    emulator.faults.drop_connection(1, after_capture=after_capture, transport=transport)
    observed = _send(kit, transport, kit.request([("c", b"x")]))
    if transport == "rest":
        assert observed["kind"] == "network"
    elif transport == "grpc":
        assert observed["code"] is grpc.StatusCode.UNAVAILABLE
    else:
        assert observed["kind"] == "closed"
    assert len(emulator.events()) == (1 if after_capture else 0)
    counters = emulator.counters()
    kind = "drop_after_capture" if after_capture else "drop_before_capture"
    assert counters.injected(kind, transport) == 1
    assert counters.accepted(transport) == (1 if after_capture else 0)
    assert counters.received(transport) == counters.accepted(transport) + counters.rejected(transport)
    assert kit.ping() == "pong"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_reject_event_type(kit, emulator, transport):
    emulator.faults.reject_event_type("poison")
    resp = _response(_send(kit, transport, kit.request([("ok", b"1"), ("poison", b"2")], req_guid="p")))
    assert (resp.code, resp.data["req_guid"]) == (raccoon_pb2.CODE_BAD_REQUEST, "p")
    assert emulator.events() == []  # nothing of that batch
    assert _response(_send(kit, transport, kit.request([("ok", b"1")]))).code == raccoon_pb2.CODE_OK
    assert [e.type for e in emulator.events()] == ["ok"]
    assert emulator.counters().injected("reject_event_type", transport) == 1


def test_reject_event_type_is_400_on_rest(kit, emulator):
    emulator.faults.reject_event_type("poison")
    assert kit.post(kit.request([("poison", b"")]).body, "application/proto").status_code == 400


def test_transport_scoped_rules_leave_other_transports_alone(kit, emulator):
    emulator.faults.fail_next(1, Outcome.http(503), transport="grpc")
    assert kit.post(kit.request([("c", b"x")]).body, "application/proto").status_code == 200
    assert _send(kit, "grpc", kit.request([("c", b"x")]))["code"] is grpc.StatusCode.UNAVAILABLE
    assert kit.grpc(kit.request([("c", b"x")]).body)


def test_fail_next_counts_down_and_rules_stack_in_order(kit, emulator):
    emulator.faults.fail_next(2, Outcome.http(503))
    emulator.faults.fail_next(1, Outcome.http(429))
    statuses = [kit.post(kit.request([("c", b"x")]).body, "application/proto").status_code for _ in range(4)]
    assert statuses == [503, 503, 429, 200]
    counters = emulator.counters()
    assert counters.injected("http", "rest") == 3 and counters.faults == {"http": {"rest": 3}}


def test_fail_fraction_is_seeded_and_reconciles(kit, emulator):
    def run() -> list:
        emulator.reset()
        emulator.faults.fail_fraction(0.3, Outcome.http(503), seed=7)
        return [kit.post(kit.request([("c", b"x")]).body, "application/proto").status_code for _ in range(40)]

    first, second = run(), run()
    assert first == second  # same seed, same requests failed
    assert 0 < first.count(503) < 40
    counters = emulator.counters()
    assert counters.injected("http") == first.count(503)
    assert counters.accepted("rest") == len(emulator.events()) == first.count(200)
    assert counters.received("rest") == 40


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_latency(kit, emulator, transport):
    emulator.faults.add_latency(0.05, transport=transport)
    assert _response(_send(kit, transport, kit.request([("c", b"x")]))).code == raccoon_pb2.CODE_OK
    assert emulator.counters().injected("latency", transport) == 1
    assert len(emulator.events()) == 1


def test_clear_and_reset(kit, emulator):
    emulator.faults.fail_next(5, Outcome.http(503))
    emulator.faults.clear()
    assert kit.post(kit.request([("c", b"x")]).body, "application/proto").status_code == 200
    emulator.faults.fail_next(5, Outcome.http(503))
    emulator.reset()
    assert emulator.events() == [] and emulator.counters().received() == 0
    assert kit.post(kit.request([("c", b"x")]).body, "application/proto").status_code == 200


def test_invalid_arguments():
    from raccoon_beam.emulator import Faults

    faults = Faults()
    with pytest.raises(ValueError):
        faults.fail_next(1, Outcome.http(503), transport="smtp")
    with pytest.raises(ValueError):
        faults.fail_fraction(1.5, Outcome.http(503))
    with pytest.raises(ValueError):
        Outcome.http(42)
    with pytest.raises(ValueError):
        Outcome.grpc(grpc.StatusCode.OK)


def test_outcome_round_trips_through_dict():
    for outcome in (Outcome.raccoon(3, "r"), Outcome.http(429, retry_after=1.5, body=b"\xff"),
                    Outcome.grpc("unavailable", "d"), Outcome.garbage(), Outcome.wrong_req_guid(),
                    Outcome.no_answer()):
        assert Outcome.from_dict(json.loads(json.dumps(outcome.to_dict()))) == outcome
