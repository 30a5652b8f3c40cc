"""``require_header``: the emulator as an authenticating gateway, with a token that expires."""

from __future__ import annotations

import aiohttp
import grpc
import pytest
import requests

from raccoon_beam.emulator import RaccoonEmulator
from raccoon_beam.emulator.cli import build_parser, config_from_args, config_to_argv
from raccoon_beam.wire import Wire

from tests.emulator.conftest import PROTO

TOKEN = ("Authorization", "Bearer t0ken")
REQUIRED = pytest.mark.emulator(require_header=TOKEN)


@REQUIRED
def test_rest_answers_401_to_a_missing_or_wrong_value(kit, emulator):
    body = kit.request([("click", b"x")]).body
    assert kit.post(body, PROTO).status_code == 401
    refused = kit.post(body, PROTO, headers={"Authorization": "Bearer wrong"})
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert kit.post(body, PROTO, headers={"authorization": "Bearer t0ken"}).status_code == 200  # any case
    assert len(emulator.events()) == 1
    counters = emulator.counters()
    assert (counters.rejected("rest"), counters.accepted("rest")) == (2, 1)


@REQUIRED
def test_grpc_answers_unauthenticated(kit, emulator):
    body = kit.request([("click", b"x")]).body
    error = kit.grpc_error(body)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    kit.grpc(body, metadata=(("x-user-id", "u"), ("authorization", "Bearer t0ken")))
    assert len(emulator.events()) == 1


@REQUIRED
def test_websocket_refuses_the_upgrade_and_an_open_connection_keeps_working(kit, emulator):
    body = kit.request([("click", b"x")]).body

    async def scenario(session):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await kit.connect(session)
        assert refused.value.status == 401
        async with kit.connect(session, headers={"Authorization": "Bearer t0ken"}) as ws:
            emulator.rotate_required_header()  # headers are seen at the upgrade only
            return await kit.ws_request(ws, body, Wire.PROTOBUF)

    assert kit.run(scenario).code == 1  # CODE_OK
    assert len(emulator.events()) == 1


@pytest.mark.emulator(require_header=TOKEN, rotate_header_every=2)
def test_the_value_rotates_after_n_requests_and_the_old_one_gets_401(kit, emulator):
    body = kit.request([("click", b"x")]).body
    first = emulator.required_header_value
    assert first == "Bearer t0ken"
    statuses = [kit.post(body, PROTO, headers={"Authorization": first}).status_code for _ in range(3)]
    assert statuses == [200, 200, 401]
    current = requests.get(f"{emulator.http_base_url}/_emulator/credential", timeout=10).json()
    assert current == {"header": "Authorization", "value": emulator.required_header_value, "rotate_every": 2,
                       "rotations": 1}
    assert current["value"] != first and current["value"].startswith("Bearer t0ken-")
    assert kit.post(body, PROTO, headers={"Authorization": current["value"]}).status_code == 200
    rotated = requests.post(f"{emulator.http_base_url}/_emulator/credential/rotate", json={}, timeout=10).json()
    assert rotated["rotations"] == 2 and rotated["value"] == emulator.required_header_value != current["value"]


def test_without_require_header_nothing_is_asked_and_the_route_says_so(kit, emulator):
    assert kit.post(kit.request([("click", b"x")]).body, PROTO).status_code == 200
    assert requests.get(f"{emulator.http_base_url}/_emulator/credential", timeout=10).status_code == 404
    with pytest.raises(RuntimeError, match="requires no header"):
        _ = emulator.required_header_value


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"rotate_header_every": 3}, "needs require_header"),
        ({"require_header": ("Authorization",)}, "two non-empty strings"),
        ({"require_header": TOKEN, "rotate_header_every": -1}, ">= 0"),
    ],
)
def test_bad_settings_fail_at_construction(settings, message):
    with pytest.raises(ValueError, match=message):
        RaccoonEmulator(**settings)


def test_the_command_line_sets_both():
    settings = {"require_header": TOKEN, "rotate_header_every": 5}
    argv = config_to_argv(settings)
    assert argv == ["--require-header", "Authorization", "Bearer t0ken", "--rotate-header-every", "5"]
    parsed = config_from_args(build_parser().parse_args(argv))
    assert (parsed.require_header, parsed.rotate_header_every) == (TOKEN, 5)
    assert "--require-header NAME VALUE" in build_parser().format_help()
