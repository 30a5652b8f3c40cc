"""REST: ``POST /api/v1/events`` exactly as Raccoon's ``RESTAPIHandler`` answers.

One departure: a body over ``max_body_bytes`` gets 413 with a plain-text
body. Raccoon itself (Go's net/http) reads any size; the limit a real
deployment has is its proxy's (nginx ``client_max_body_size``, a cloud load
balancer), which answers 413 before Raccoon sees the request. The emulator's
limit stands for that proxy, so it answers as the proxy does, letting
clients exercise the path they meet in production (split the batch).
"""

from __future__ import annotations

import asyncio
from typing import Optional

from aiohttp import web

from raccoon_beam._proto import raccoon_pb2
from raccoon_beam.emulator.config import EmulatorConfig
from raccoon_beam.emulator.ingest import Ingest, Answer, error_response
from raccoon_beam.emulator.outcomes import Outcome, grpc_to_http_status
from raccoon_beam.errors import WireFormatError
from raccoon_beam.protocol import REASON_DESERIALIZATION_FAILURE, REASON_INVALID_CONTENT_TYPE
from raccoon_beam.wire import Wire, decode_request, encode_response, wire_for_content_type

__all__ = ["RestHandler", "outcome_response"]

# What nginx answers over client_max_body_size (as text, not its HTML page).
_TOO_LARGE_TEXT = "413 Request Entity Too Large"
# A body not read in full within read_timeout (a slow client holding the connection).
_SLOW_BODY_TEXT = "408 Request Timeout: the body did not arrive within read_timeout"
# What a gateway answers a missing or stale bearer token.
_UNAUTHORIZED_TEXT = "401 Unauthorized"
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="raccoon"'}


class RestHandler:
    """The aiohttp handler of ``POST /api/v1/events``.

    Args:
      config: the emulator's settings.
      ingest: where decoded requests go.
      stopping: set when the emulator stops (releases never-answered requests).
    """

    def __init__(self, config: EmulatorConfig, ingest: Ingest, stopping: asyncio.Event) -> None:
        self._config = config
        self._ingest = ingest
        self._stopping = stopping

    async def handle(self, request: web.Request) -> web.StreamResponse:
        # Raccoon echoes the request's Content-Type, even an unsupported one.
        content_type = request.headers.get("Content-Type", "")
        headers = {"Content-Type": content_type}
        wire = wire_for_content_type(content_type)
        conn_id = request.headers.get(self._config.conn_id_header, "")
        required = self._ingest.required_header
        if required is not None and not self._ingest.authenticate("rest", request.headers.get(required.name), conn_id):
            # The gateway's answer, before Raccoon sees the request.
            return web.Response(status=401, text=_UNAUTHORIZED_TEXT, headers=_CHALLENGE)
        if wire is None:
            self._ingest.bad_request("rest", f"{REASON_INVALID_CONTENT_TYPE} ({content_type or 'none'})", conn_id)
            body = encode_response(
                error_response(raccoon_pb2.CODE_BAD_REQUEST, REASON_INVALID_CONTENT_TYPE), Wire.JSON
            )
            return web.Response(status=400, body=body, headers=headers)
        try:
            # Bounded: a declared body that never comes must not hold the connection.
            raw = await asyncio.wait_for(request.read(), self._config.read_timeout)
        except asyncio.TimeoutError:
            self._ingest.bad_request("rest", _SLOW_BODY_TEXT, conn_id)
            return web.Response(
                status=408, text=_SLOW_BODY_TEXT, content_type="text/plain", headers={"Connection": "close"}
            )
        except web.HTTPRequestEntityTooLarge:
            # The proxy's size limit (see the module docstring); counted as a
            # request received and rejected.
            self._ingest.bad_request("rest", _TOO_LARGE_TEXT, conn_id)
            return web.Response(status=413, text=_TOO_LARGE_TEXT, content_type="text/plain")
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            # Go's io.ReadAll failing: 500 (with Raccoon's odd reason).
            self._ingest.bad_request("rest", "body not read in full", conn_id)
            body = encode_response(
                error_response(raccoon_pb2.CODE_INTERNAL_ERROR, REASON_DESERIALIZATION_FAILURE), wire
            )
            return web.Response(status=500, body=body, headers=headers)
        try:
            event_request = decode_request(raw, wire)
        except WireFormatError as exc:
            self._ingest.bad_request("rest", f"{REASON_DESERIALIZATION_FAILURE}: {exc}", conn_id)
            response = error_response(raccoon_pb2.CODE_BAD_REQUEST, REASON_DESERIALIZATION_FAILURE)
            body = encode_response(response, wire)
            return web.Response(status=400, body=body, headers=headers)
        group = request.headers.get(self._config.group_header, "") or self._config.default_group
        answer = await self._ingest.handle(event_request, conn_id, group, "rest")
        return await self._render(answer, request, wire, headers)

    async def _render(
        self, answer: Answer, request: web.Request, wire: Wire, headers: dict
    ) -> web.StreamResponse:
        if answer.response is not None:
            return web.Response(
                status=answer.http_status, body=encode_response(answer.response, wire), headers=headers
            )
        if answer.drop:
            _abort(request)
            raise asyncio.CancelledError()
        outcome = answer.outcome
        assert outcome is not None
        if outcome.kind == "no_answer":
            await self._stopping.wait()
            _abort(request)
            raise asyncio.CancelledError()
        return outcome_response(outcome, headers)


def _abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


def outcome_response(outcome: Outcome, request_headers: dict) -> web.Response:
    """The HTTP answer of an injected outcome (kinds http, garbage, grpc).

    Args:
      outcome: what to answer.
      request_headers: holds the request's Content-Type, echoed when the outcome names none.
    """
    content_type: Optional[str] = outcome.content_type
    if content_type is None:
        content_type = request_headers["Content-Type"]
    headers = {"Content-Type": content_type}
    if outcome.kind == "garbage":
        return web.Response(status=200, body=outcome.body, headers=headers)
    if outcome.kind == "http":
        if outcome.retry_after is not None:
            retry_after = outcome.retry_after
            headers["Retry-After"] = str(int(retry_after) if float(retry_after).is_integer() else retry_after)
        return web.Response(status=outcome.status, body=outcome.body, headers=headers)
    # kind "grpc": what a gRPC-to-HTTP proxy would answer.
    assert outcome.grpc_status is not None
    headers["Content-Type"] = "text/plain"
    return web.Response(
        status=grpc_to_http_status(outcome.grpc_status),
        body=(outcome.details or outcome.grpc_status.name).encode("utf-8"),
        headers=headers,
    )
