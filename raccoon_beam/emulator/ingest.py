"""The transport-neutral part of handling a request: faults, dedup, publish, capture.

Each server decodes its request, hands it to :meth:`Ingest.handle` and
renders the :class:`Answer` it gets back in its own protocol.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from typing import NamedTuple, Optional, Set, cast

from raccoon_beam._proto import raccoon_pb2
from raccoon_beam.emulator.capture import Capture
from raccoon_beam.emulator.config import EmulatorConfig
from raccoon_beam.emulator.counters import Counters
from raccoon_beam.emulator.credential import UNAUTHENTICATED_REASON, RequiredHeader
from raccoon_beam.emulator.faults import (
    DROP_AFTER_CAPTURE,
    DROP_BEFORE_CAPTURE,
    LATENCY,
    PUBLISH_FAILURE,
    REJECT_EVENT_TYPE,
    Faults,
)
from raccoon_beam.emulator.outcomes import Outcome, raccoon_http_status
from raccoon_beam.emulator.overload import GATEWAY, STOPPED, Overload
from raccoon_beam.protocol import topic_problem

__all__ = ["Ingest", "Answer", "success_response", "error_response", "PUBLISH_ERROR", "INVALID_TOPIC"]

# The error text in "cannot publish events: <error>".
PUBLISH_ERROR = "emulated publisher failure"
# The counter of batches Kafka refused for a topic an event type made.
INVALID_TOPIC = "invalid_topic"


class Answer(NamedTuple):
    """How to answer one request.

    Exactly one of: ``response`` (a SendEventResponse, with the HTTP status
    REST uses for it), ``outcome`` (an injected transport-level answer:
    kinds http, grpc, garbage, no_answer) or ``drop`` (abort the connection).
    """

    response: Optional[raccoon_pb2.SendEventResponse] = None
    http_status: int = 200
    outcome: Optional[Outcome] = None
    drop: bool = False


def success_response(req_guid: str) -> raccoon_pb2.SendEventResponse:
    return raccoon_pb2.SendEventResponse(
        status=raccoon_pb2.STATUS_SUCCESS,
        code=raccoon_pb2.CODE_OK,
        sent_time=int(time.time()),
        data={"req_guid": req_guid},
    )


def error_response(code: int, reason: str = "", req_guid: Optional[str] = None) -> raccoon_pb2.SendEventResponse:
    response = raccoon_pb2.SendEventResponse(
        status=raccoon_pb2.STATUS_SUCCESS if code == raccoon_pb2.CODE_OK else raccoon_pb2.STATUS_ERROR,
        code=cast("raccoon_pb2.Code", code),  # proto3 enums are open: an injected code need not be named
        sent_time=int(time.time()),
        reason=reason,
    )
    if req_guid is not None:
        response.data["req_guid"] = req_guid
    return response


class Ingest:
    """Applies faults, dedup, the overload model and the ack mode to decoded requests, and captures them."""

    def __init__(
        self,
        config: EmulatorConfig,
        capture: Capture,
        faults: Faults,
        counters: Counters,
        overload: Overload,
    ) -> None:
        self.config = config
        self.capture = capture
        self.faults = faults
        self.counters = counters
        self.overload = overload
        self.required_header: Optional[RequiredHeader] = None
        if config.require_header is not None:
            self.required_header = RequiredHeader(*config.require_header, rotate_every=config.rotate_header_every)

    def authenticate(self, transport: str, given: Optional[str], conn_id: str = "") -> bool:
        """Whether a request carrying ``given`` in the required header passes (counted as rejected if not).

        Args:
          transport: "grpc", "rest" or "websocket".
          given: the request's value of ``required_header.name``, if any.
          conn_id: the connection id, when known.
        """
        required = self.required_header
        if required is None or required.admit(given):
            return True
        self.bad_request(transport, UNAUTHENTICATED_REASON, conn_id)
        return False

    def gateway_refusal(self, transport: str, conn_id: str = "", upgrade: bool = False) -> Optional[Outcome]:
        """The gateway's answer when it sheds this request (counted as rejected), else None.

        Args:
          transport: "grpc", "rest" or "websocket".
          conn_id: the connection id, when known.
          upgrade: a WebSocket upgrade, not yet counted as a request received.
        """
        overload = self.overload
        if not overload.gateway_refuses():
            return None
        if upgrade:
            self.counters.received(transport, conn_id)
        settings = overload.settings
        reason = f"gateway: {overload.waiting} requests wait for the publisher (depth {settings.gateway_queue_depth})"
        self.counters.rejected(transport, GATEWAY, reason, conn_id)
        return Outcome.http(
            settings.gateway_status, retry_after=settings.gateway_retry_after, body=f"{reason}\n".encode()
        )

    def bad_request(self, transport: str, reason: str = "bad request", conn_id: str = "") -> None:
        """Counts a request that did not decode (or lacked its connection id).

        Args:
          transport: "grpc", "rest" or "websocket".
          reason: what was wrong, as the console lists it.
          conn_id: the connection id, when known.
        """
        self.counters.received(transport, conn_id)
        self.counters.rejected(transport, reason=reason, conn_id=conn_id)

    async def handle(
        self,
        request: raccoon_pb2.SendEventRequest,
        conn_id: str,
        group: str,
        transport: str,
        seen: Optional[Set[str]] = None,
    ) -> Answer:
        """Processes one decoded request.

        Args:
          request: the decoded request.
          conn_id: the connection id header's value ("" when absent).
          group: the connection group.
          transport: "grpc", "rest" or "websocket".
          seen: the req_guids of this WebSocket connection, when dedup is on.
        """
        counters = self.counters
        counters.received(transport, conn_id)
        guid = request.req_guid
        if transport != "websocket":  # a gateway sheds WebSocket upgrades, not frames
            refusal = self.gateway_refusal(transport, conn_id)
            if refusal is not None:
                return Answer(outcome=refusal)
        decision = self.faults.decide(transport)
        if decision.latency:
            counters.fault(LATENCY, transport)
            await asyncio.sleep(decision.latency)
        if decision.drop == DROP_BEFORE_CAPTURE:
            counters.rejected(transport, DROP_BEFORE_CAPTURE, "connection dropped", conn_id)
            return Answer(drop=True)
        outcome = decision.outcome
        if outcome is not None:
            counters.rejected(transport, outcome.kind, outcome.describe(), conn_id)
            if outcome.kind == "raccoon":
                response = error_response(outcome.code, outcome.reason, guid)
                return Answer(response, raccoon_http_status(outcome.code))
            if outcome.kind == "wrong_req_guid":
                return Answer(success_response(f"{guid}-not-{uuid.uuid4()}"))
            return Answer(outcome=outcome)

        rejected_type = self.faults.rejected_type(e.type for e in request.events)
        if rejected_type is not None:
            reason = f"event type rejected: {rejected_type}"
            counters.rejected(transport, REJECT_EVENT_TYPE, reason, conn_id)
            return Answer(error_response(raccoon_pb2.CODE_BAD_REQUEST, reason, guid), 400)

        if seen is not None:
            if guid in seen:
                counters.deduplicated(transport, len(request.events))
                return Answer(success_response(guid))
            seen.add(guid)

        publish = functools.partial(self._publish, request, conn_id, group, transport, seen, decision.drop)
        sync_ack = self.config.sync_ack
        if self.overload.active:
            # Raccoon's handler: push into the buffer (blocking while it is
            # full); with sync acks, wait for the publish too.
            answer = await self.overload.submit(len(request.events), publish, wait=sync_ack)
            if answer is STOPPED:
                return Answer(drop=True)
            if answer is None:  # async ack: answered once in the buffer
                return Answer(drop=True) if decision.drop == DROP_AFTER_CAPTURE else Answer(success_response(guid))
            return cast(Answer, answer)
        if sync_ack:
            # The ack waits for the publisher; let other requests run meanwhile.
            await asyncio.sleep(0)
        return publish()

    def _refused_topic(self, request: raccoon_pb2.SendEventRequest) -> Optional[str]:
        """Why Kafka refuses the topic of one of the request's event types, or None."""
        for event_type in {event.type for event in request.events}:
            topic = self.capture.topic(event_type)
            problem = topic_problem(topic)
            if problem is not None:
                return f"invalid topic {topic!r:.100}: it {problem}"
        return None

    def _publish(
        self,
        request: raccoon_pb2.SendEventRequest,
        conn_id: str,
        group: str,
        transport: str,
        seen: Optional[Set[str]],
        drop: Optional[str],
    ) -> Answer:
        """Publishes (captures) a request, or fails to; returns the answer a sync ack gives."""
        counters = self.counters
        guid = request.req_guid
        # Kafka refuses a topic an event type makes (as a real Raccoon's producer would).
        refused = self._refused_topic(request)
        if refused is not None or self.faults.publish_fails():
            error = PUBLISH_ERROR if refused is None else refused
            lost = "" if self.config.sync_ack else " (acked already: the batch is lost)"
            kind = PUBLISH_FAILURE if refused is None else INVALID_TOPIC
            counters.rejected(transport, kind, f"cannot publish events: {error}{lost}", conn_id)
            if seen is not None:
                seen.discard(guid)  # Raccoon forgets a batch whose publish failed.
            if not self.config.sync_ack:
                return Answer(success_response(guid))  # acked already; the batch is lost
            # Raccoon's gRPC handler leaves the reason empty; REST and WebSocket fill it.
            reason = "" if transport == "grpc" else f"cannot publish events: {error}"
            return Answer(error_response(raccoon_pb2.CODE_INTERNAL_ERROR, reason, guid), 500)

        count = self.capture.add(request, conn_id, group, transport)
        counters.accepted(transport, count, guid)
        if drop == DROP_AFTER_CAPTURE:
            counters.fault(DROP_AFTER_CAPTURE, transport)
            return Answer(drop=True)
        return Answer(success_response(guid))
