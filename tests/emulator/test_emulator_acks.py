"""Ack modes (EVENT_ACK), as Raccoon's own code handles them (docs/protocol.md)."""

from __future__ import annotations

import asyncio
import json

import pytest

from raccoon_beam._proto import raccoon_pb2
from raccoon_beam.wire import Wire


def test_async_ack_publish_failure_still_answers_success_and_loses_the_batch(kit, emulator):
    emulator.faults.fail_publish(n=3)
    req = kit.request([("click", b"x")], req_guid="a-1")
    assert kit.post(req.body, "application/proto").status_code == 200
    assert raccoon_pb2.SendEventResponse.FromString(kit.grpc(req.body)).code == raccoon_pb2.CODE_OK

    async def scenario(session):
        async with kit.connect(session) as ws:
            assert (await kit.ws_request(ws, req.body, Wire.PROTOBUF)).code == raccoon_pb2.CODE_OK

    kit.run(scenario)
    assert emulator.events() == []  # acked before publishing; publishing failed
    assert emulator.counters().injected("publish_failure") == 3


@pytest.mark.emulator(ack="sync")
def test_sync_ack_publish_failure_rest_is_500_with_reason(kit, emulator):
    emulator.faults.fail_publish(n=1)
    req = kit.request([("click", b"x")], Wire.JSON, req_guid="s-1")
    resp = kit.post(req.body, "application/json")
    assert resp.status_code == 500
    body = json.loads(resp.content)
    assert body["code"] == raccoon_pb2.CODE_INTERNAL_ERROR and body["status"] == raccoon_pb2.STATUS_ERROR
    assert body["reason"].startswith("cannot publish events: ")
    assert body["data"] == {"req_guid": "s-1"}
    assert emulator.events() == []
    assert kit.post(req.body, "application/json").status_code == 200  # countdown used up
    assert len(emulator.events()) == 1


@pytest.mark.emulator(ack="sync")
def test_sync_ack_publish_failure_grpc_is_ok_call_with_status_error_and_empty_reason(kit, emulator):
    emulator.faults.fail_publish(n=1)
    resp = raccoon_pb2.SendEventResponse.FromString(kit.grpc(kit.request([("c", b"x")], req_guid="g-1").body))
    assert (resp.status, resp.code, resp.reason) == (raccoon_pb2.STATUS_ERROR, raccoon_pb2.CODE_INTERNAL_ERROR, "")
    assert resp.data["req_guid"] == "g-1"


@pytest.mark.emulator(ack="sync", dedup=True)
def test_sync_ack_publish_failure_websocket_and_dedup_forgets_the_failed_batch(kit, emulator):
    emulator.faults.fail_publish(n=1)
    req = kit.request([("c", b"x")], req_guid="w-1")

    async def scenario(session):
        async with kit.connect(session) as ws:
            ack = await kit.ws_request(ws, req.body, Wire.PROTOBUF)
            assert ack.code == raccoon_pb2.CODE_INTERNAL_ERROR
            assert ack.reason.startswith("cannot publish events: ") and ack.data["req_guid"] == "w-1"
            ack = await kit.ws_request(ws, req.body, Wire.PROTOBUF)  # the retry is not a duplicate
            assert ack.code == raccoon_pb2.CODE_OK

    kit.run(scenario)
    assert len(emulator.events()) == 1
    assert emulator.counters().duplicates_dropped == 0


@pytest.mark.emulator(ack="sync")
def test_sync_ack_fraction_and_all(kit, emulator):
    emulator.faults.fail_publish(fraction=0.5, seed=3)
    statuses = [kit.post(kit.request([("c", b"x")]).body, "application/proto").status_code for _ in range(20)]
    assert set(statuses) == {200, 500}
    assert len(emulator.events()) == statuses.count(200)
    emulator.faults.clear()
    emulator.faults.fail_publish()
    assert kit.post(kit.request([("c", b"x")]).body, "application/proto").status_code == 500


@pytest.mark.emulator(ack="sync")
def test_sync_acks_on_websocket_can_arrive_out_of_order(kit, emulator):
    async def scenario(session):
        async with kit.connect(session) as ws:
            # The first request's publishing takes long; the second's does not.
            emulator.faults.add_latency(2.0, transport="websocket")
            await ws.send_bytes(kit.request([("c", b"slow")], req_guid="slow").body)
            while emulator.counters().received("websocket") < 1:
                await asyncio.sleep(0.01)
            emulator.faults.add_latency(0, transport="websocket")
            await ws.send_bytes(kit.request([("c", b"fast")], req_guid="fast").body)
            first = raccoon_pb2.SendEventResponse.FromString((await ws.receive(timeout=10)).data)
            second = raccoon_pb2.SendEventResponse.FromString((await ws.receive(timeout=10)).data)
            return first.data["req_guid"], second.data["req_guid"]

    assert kit.run(scenario) == ("fast", "slow")


def test_async_acks_on_websocket_are_in_order(kit, emulator):
    async def scenario(session):
        async with kit.connect(session) as ws:
            for i in range(20):
                await ws.send_bytes(kit.request([("c", b"x")], req_guid=f"r-{i}").body)
            guids = []
            for _ in range(20):
                guids.append(raccoon_pb2.SendEventResponse.FromString((await ws.receive(timeout=10)).data).data["req_guid"])
            return guids

    assert kit.run(scenario) == [f"r-{i}" for i in range(20)]


@pytest.mark.parametrize("event_type", ["has space", "new\nline", "x" * 300, "ü"])
def test_async_ack_a_type_kafka_refuses_as_a_topic_is_acked_counted_and_lost(kit, emulator, event_type):
    req = kit.request([("click", b"a"), (event_type, b"b")], req_guid="t-1")
    assert kit.post(req.body, "application/proto").status_code == 200  # acked before publishing
    assert emulator.events() == []  # the whole batch failed to publish
    assert emulator.counters().injected("invalid_topic") == 1
    (rejection,) = emulator._counters.recent_rejections()  # what the console lists
    assert "invalid topic" in rejection.reason and "the batch is lost" in rejection.reason


@pytest.mark.emulator(ack="sync")
def test_sync_ack_a_type_kafka_refuses_as_a_topic_is_an_error_answer(kit, emulator):
    req = kit.request([("bad type", b"x")], Wire.JSON, req_guid="t-2")
    resp = kit.post(req.body, "application/json")
    assert resp.status_code == 500
    body = json.loads(resp.content)
    assert body["code"] == raccoon_pb2.CODE_INTERNAL_ERROR
    assert "invalid topic 'clickstream-bad type-log'" in body["reason"]
    ok = kit.request([("good.type_1-x", b"x")], Wire.JSON, req_guid="t-3")
    assert kit.post(ok.body, "application/json").status_code == 200
    assert [event.topic for event in emulator.events()] == ["clickstream-good.type_1-x-log"]
