"""Overload as Raccoon has it: capacity, a blocking buffer, sync acks, published timeouts, a gateway."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import aiohttp
import grpc
import pytest
import requests

from raccoon_beam._proto import raccoon_pb2
from raccoon_beam.emulator import EmulatorConfig, RaccoonEmulator
from raccoon_beam.emulator.cli import build_parser, config_from_args
from raccoon_beam.emulator.counters import Counters
from raccoon_beam.wire import Wire

from tests.emulator.conftest import PROTO
from tests.transports.helpers import eventually

pytestmark = pytest.mark.timeout(60)


def _events(n: int, tag: str = "e"):
    return [("click", f"{tag}-{i}".encode()) for i in range(n)]


def _in_threads(*calls):
    """Runs the calls at once, each in a thread; returns their results (or exceptions)."""
    results = [None] * len(calls)

    def run(index, call):
        try:
            results[index] = call()
        except Exception as exc:  # noqa: BLE001 (the test inspects it)
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


# ------------------------------------------------------------ settings


def test_settings_are_validated():
    with pytest.raises(ValueError, match="capacity_events_per_second must be > 0"):
        EmulatorConfig(capacity_events_per_second=0)
    with pytest.raises(ValueError, match="gateway_queue_depth needs capacity_events_per_second"):
        EmulatorConfig(gateway_queue_depth=10)
    with pytest.raises(ValueError, match="gateway_status must be one of"):
        EmulatorConfig(capacity_events_per_second=10, gateway_queue_depth=1, gateway_status=500)
    with pytest.raises(ValueError, match="worker_buffer_size and worker_pool_size"):
        EmulatorConfig(worker_pool_size=0)
    defaults = EmulatorConfig()
    # Raccoon's defaults: WORKER_BUFFER_CHANNEL_SIZE=100, WORKER_POOL_SIZE=5; no capacity, no gateway.
    assert (defaults.worker_buffer_size, defaults.worker_pool_size) == (100, 5)
    assert defaults.capacity_events_per_second is None and defaults.gateway_queue_depth is None


def test_the_gateway_status_flag_takes_its_choices_only():
    assert config_from_args(build_parser().parse_args(["--gateway-status", "429"])).gateway_status == 429
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--gateway-status", "500"])


def test_set_overload_at_run_time_checks_like_the_config():
    emu = RaccoonEmulator()
    assert emu.set_overload(capacity_events_per_second=100).capacity_events_per_second == 100
    with pytest.raises(ValueError, match="capacity_events_per_second must be > 0"):
        emu.set_overload(capacity_events_per_second=-1)
    with pytest.raises(TypeError, match="not overload settings: capacity"):
        emu.set_overload(capacity=1)
    assert emu.overload.settings.capacity_events_per_second == 100  # unchanged by the failed calls


# ------------------------------------------------------------ the model


@pytest.mark.emulator(ack="sync", capacity_events_per_second=1000)
def test_sync_acks_wait_for_the_paced_publisher(kit, emulator):
    bodies = [kit.request(_events(100, f"r{i}")).body for i in range(6)]
    started = time.monotonic()
    responses = _in_threads(*[lambda b=b: kit.post(b, PROTO) for b in bodies])
    elapsed = time.monotonic() - started
    assert [r.status_code for r in responses] == [200] * 6
    assert emulator.counters().total_events_accepted == 600
    # 600 events at 1000/s: the publisher cannot have taken them in much less than 0.6 s.
    assert elapsed >= 0.5, elapsed


@pytest.mark.emulator(ack="async", capacity_events_per_second=100)
def test_async_acks_answer_once_buffered_and_publish_later(kit, emulator):
    response = kit.post(kit.request(_events(200)).body, PROTO)  # 2 s of the publisher: a margin for a slow machine
    assert response.status_code == 200
    assert emulator.counters().total_events_accepted == 0  # acked, not yet published
    assert emulator.wait_for_events(200, timeout=20)


@pytest.mark.emulator(ack="sync", capacity_events_per_second=100, worker_buffer_size=2, worker_pool_size=1)
def test_handlers_block_on_a_full_buffer(kit, emulator):
    bodies = [kit.request(_events(10, f"b{i}")).body for i in range(6)]  # 0.1 s each
    results = []
    threads = [threading.Thread(target=lambda b=b: results.append(kit.post(b, PROTO))) for b in bodies]
    for thread in threads:
        thread.start()
    states = []
    assert eventually(lambda: states.append(emulator.overload.describe()) or states[-1]["blocked"] > 0, timeout=20)
    state = states[-1]
    assert state["buffered"] <= 2 and state["publishing"] <= 1  # the buffer's size, the pool's
    for thread in threads:
        thread.join(30)
    assert [r.status_code for r in results] == [200] * 6
    assert emulator.overload.describe()["waiting"] == 0


@pytest.mark.emulator(ack="sync", capacity_events_per_second=100)
@pytest.mark.parametrize("transport", ["rest", "grpc", "websocket"])
def test_a_request_whose_client_gave_up_is_still_published_and_its_retry_is_a_duplicate(
    transport, kit, emulator
):
    request = kit.request(_events(100), req_guid="retried-1")  # 1 s of the publisher, 10 x the client's timeout

    def give_up_once():
        if transport == "rest":
            with pytest.raises(requests.Timeout):
                kit.post(request.body, PROTO, timeout=0.1)
            return kit.post(request.body, PROTO).status_code == 200
        if transport == "grpc":
            error = kit.grpc_error(request.body, timeout=0.1)
            assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            return raccoon_pb2.SendEventResponse.FromString(kit.grpc(request.body)).code == raccoon_pb2.CODE_OK

        async def scenario(session):
            async with kit.connect(session, conn_id="first") as ws:
                await ws.send_bytes(request.body)
                with pytest.raises(asyncio.TimeoutError):
                    await ws.receive(timeout=0.1)
            # A new connection (dedup never spans connections): the retry.
            async with kit.connect(session, conn_id="second") as ws:
                return (await kit.ws_request(ws, request.body, Wire.PROTOBUF)).code == raccoon_pb2.CODE_OK

        return kit.run(scenario)

    assert give_up_once()
    assert emulator.wait_for_events(200, timeout=20)
    counters = emulator.counters()
    assert counters.requests_duplicated == {transport: 1}
    assert counters.events_duplicated == 100
    assert [e.req_guid for e in emulator.events()] == ["retried-1"] * 200


@pytest.mark.emulator(
    ack="sync", capacity_events_per_second=10, gateway_queue_depth=1, gateway_status=429, gateway_retry_after=2
)
def test_the_gateway_sheds_load_beyond_its_depth(kit, emulator):
    # 5 s of the publisher: the three refused requests below fit in it on a slow machine.
    slow = threading.Thread(target=lambda: kit.post(kit.request(_events(50, "slow")).body, PROTO))
    slow.start()
    assert eventually(lambda: emulator.overload.waiting >= 1, timeout=20)
    shed = kit.post(kit.request(_events(1)).body, PROTO)
    assert shed.status_code == 429 and shed.headers["Retry-After"] == "2"
    assert "wait for the publisher" in shed.text
    error = kit.grpc_error(kit.request(_events(1)).body)
    assert error.code() == grpc.StatusCode.UNAVAILABLE  # gRPC's reading of a proxy's 429

    async def upgrade(session):
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            async with kit.connect(session):
                pass
        return info.value.status

    assert kit.run(upgrade) == 429
    slow.join(30)
    counters = emulator.counters()
    assert counters.injected("gateway") == 3
    assert counters.rejected() == 3 and counters.received() == 4  # the upgrade counts as a request
    assert counters.total_events_accepted == 50
    assert kit.post(kit.request(_events(1)).body, PROTO).status_code == 200  # room again


@pytest.mark.emulator(capacity_events_per_second=100)
def test_control_route_reads_and_changes_the_overload_settings(emulator):
    url = emulator.http_base_url + "/_emulator/overload"
    with requests.Session() as session:
        state = session.get(url, timeout=10).json()
        assert state["capacity_events_per_second"] == 100 and state["worker_buffer_size"] == 100
        changed = session.post(url, json={"capacity_events_per_second": 5000, "gateway_queue_depth": 20}, timeout=10)
        assert changed.status_code == 200 and changed.json()["gateway_queue_depth"] == 20
        bad = session.post(url, json={"capacity_events_per_second": "fast"}, timeout=10)
        assert bad.status_code == 400 and "capacity_events_per_second" in bad.json()["error"]
    assert emulator.overload.settings.capacity_events_per_second == 5000


@pytest.mark.emulator(ack="sync", capacity_events_per_second=10)
def test_stop_releases_requests_blocked_on_the_publisher(kit, emulator):
    outcome = []
    client = threading.Thread(
        target=lambda: outcome.append(_in_threads(lambda: kit.post(kit.request(_events(100)).body, PROTO))[0])
    )
    client.start()  # 10 s of the publisher
    assert eventually(lambda: emulator.overload.waiting == 1, timeout=20)
    started = time.monotonic()
    emulator.stop()
    client.join(30)
    assert time.monotonic() - started < 10  # not after the publish (a bound, far from the 10 s)
    assert isinstance(outcome[0], requests.ConnectionError)  # the connection dropped, no answer
    assert emulator.counters().total_events_accepted == 0


def test_duplicates_are_counted_by_req_guid_within_a_bound(monkeypatch):
    from raccoon_beam.emulator import counters as counters_module

    monkeypatch.setattr(counters_module, "DEFAULT_MAX_TRACKED_GUIDS", 2)
    counters = Counters()
    for guid in ("a", "b", "a", "c", "a", ""):
        counters.accepted("rest", 5, guid)
    snapshot = counters.snapshot()
    # "a" again after "b": a duplicate; after "c" it was forgotten (the bound is 2); "" is never tracked.
    assert snapshot.requests_duplicated == {"rest": 1} and snapshot.events_duplicated == 5
    assert json.loads(json.dumps(snapshot.to_dict()))["events_duplicated"] == 5


def test_unlimited_capacity_publishes_before_answering(kit, emulator):
    assert kit.post(kit.request(_events(3)).body, PROTO).status_code == 200
    assert emulator.counters().total_events_accepted == 3  # the answer came after the capture
    assert emulator.overload.describe()["waiting"] == 0
