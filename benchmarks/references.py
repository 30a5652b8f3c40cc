"""The references the sink is measured against, written here without raccoon-beam.

A reference must be something outside the package, never the
package with a part removed, so nothing here imports ``raccoon_beam``: the
Raccoon messages are built from their own descriptor (the field numbers of
``proto/raystack/raccoon/v1beta1/raccoon.proto``; the hand-written sink's
verified digests show the bytes are Raccoon's).

- :class:`NoOpFn`: a DoFn that does nothing. The runner and the generator
  alone: no sink on the same pipeline can be faster.
- :class:`IdealEncodeFn`: the ideal sink minus its I/O, hand-tuned: one
  ``orjson.dumps`` per event and a ``SendEventRequest`` of 500 events built
  and serialized. What any sink of this protocol must at least do.
- :class:`HandWrittenRaccoonFn`: what a user would write without this
  package: ``json_format`` to build each request, ``requests`` to POST it
  (protobuf wire), one request at a time.
- :class:`WindowedNoOpFn` and :class:`WindowedIdealEncodeFn`: the first two,
  taking each element's ``WindowedValueParam`` as a sink whose dead letters
  keep their elements' windows must (and keeping nothing of it): what Beam
  charges for that parameter alone.
- :class:`IdealGrpcSinkFn`: the ideal sink, the performance reference of
  the sink on every transport: :class:`WindowedIdealEncodeFn`'s work plus
  real I/O, each request sent with a grpcio stub's ``future`` on a sync
  channel, 4 in flight. Hand-tuned, no retries, no dead letters.
"""

from __future__ import annotations

import base64
import datetime
import json
import collections
import uuid
from typing import Any, Deque, Dict, List, Optional, Tuple

import apache_beam as beam
import grpc
import orjson
import requests
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory, timestamp_pb2

__all__ = [
    "BATCH",
    "SendEventRequest",
    "SendEventResponse",
    "STATUS_SUCCESS",
    "NoOpFn",
    "IdealEncodeFn",
    "HandWrittenRaccoonFn",
    "WindowedNoOpFn",
    "WindowedIdealEncodeFn",
    "IdealGrpcSinkFn",
]

# Events per request for the references, as the sink's default batch size
# and the measurement.
BATCH = 500
STATUS_SUCCESS = 1  # raccoon.proto: Status.STATUS_SUCCESS
# Requests the ideal sink keeps in flight: the sink's default max_in_flight.
IN_FLIGHT = 4
# raccoon.proto's service and method, as a generated stub names them.
SEND_EVENT_METHOD = "/raystack.raccoon.v1beta1.EventService/SendEvent"
# Raccoon's connection-id header of its sample configuration (gRPC metadata keys are lower case).
CONN_ID_METADATA = "x-user-id"

_F = descriptor_pb2.FieldDescriptorProto


def _message_classes() -> Tuple[Any, Any]:
    """``(SendEventRequest, SendEventResponse)`` classes, in a descriptor pool of their own.

    The response leaves out ``data`` (field 5, a map): the hand-written sink
    reads only the status, and protobuf keeps a field it does not know.
    """
    proto = descriptor_pb2.FileDescriptorProto(
        name="benchmarks/raccoon_reference.proto",
        package="benchmarks.raccoon",
        syntax="proto3",
        dependency=["google/protobuf/timestamp.proto"],
    )
    event = proto.message_type.add(name="Event")
    event.field.add(name="event_bytes", number=1, type=_F.TYPE_BYTES, label=_F.LABEL_OPTIONAL)
    event.field.add(name="type", number=2, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    request = proto.message_type.add(name="SendEventRequest")
    request.field.add(name="req_guid", number=1, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    request.field.add(name="sent_time", number=2, type=_F.TYPE_MESSAGE, label=_F.LABEL_OPTIONAL,
                      type_name=".google.protobuf.Timestamp")
    request.field.add(name="events", number=3, type=_F.TYPE_MESSAGE, label=_F.LABEL_REPEATED,
                      type_name=".benchmarks.raccoon.Event")
    response = proto.message_type.add(name="SendEventResponse")
    response.field.add(name="status", number=1, type=_F.TYPE_INT32, label=_F.LABEL_OPTIONAL)
    response.field.add(name="code", number=2, type=_F.TYPE_INT32, label=_F.LABEL_OPTIONAL)
    response.field.add(name="sent_time", number=3, type=_F.TYPE_INT64, label=_F.LABEL_OPTIONAL)
    response.field.add(name="reason", number=4, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(proto)
    request_class, response_class = (
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"benchmarks.raccoon.{name}"))
        for name in ("SendEventRequest", "SendEventResponse")
    )
    return request_class, response_class


SendEventRequest, SendEventResponse = _message_classes()


class NoOpFn(beam.DoFn):
    """Does nothing with each element: the runner's cost of one DoFn, the generator's and nothing else."""

    def process(self, element: Any) -> None:
        pass


class IdealEncodeFn(beam.DoFn):
    """Encodes the events as the ideal sink would, then drops the request: no I/O.

    Per event, the event type (a field read) and ``orjson.dumps``; per 500
    events, a ``SendEventRequest`` with a fresh ``req_guid`` and the current
    ``sent_time``, serialized. Written for speed: a list append per event and
    protobuf's repeated-field ``add`` per event of a request.

    Args:
      event_type_field: the element's field that holds the event type.
    """

    def __init__(self, event_type_field: str = "event_name") -> None:
        self._type_field = event_type_field
        self._events: List[Tuple[str, bytes]] = []
        self.bytes_encoded = 0

    def start_bundle(self) -> None:
        self._events = []

    def process(self, element: Dict[str, Any]) -> None:
        events = self._events
        events.append((element[self._type_field], orjson.dumps(element)))
        if len(events) >= BATCH:
            self._encode()

    def finish_bundle(self) -> None:
        if self._events:
            self._encode()

    def _request(self) -> Any:
        """The buffered events as a ``SendEventRequest`` (fresh ``req_guid``, current ``sent_time``); empties the buffer."""
        request = SendEventRequest(req_guid=uuid.uuid4().hex)
        request.sent_time.GetCurrentTime()
        add = request.events.add
        for event_type, payload in self._events:
            add(event_bytes=payload, type=event_type)
        self._events = []
        return request

    def _encode(self) -> None:
        self.bytes_encoded += len(self._request().SerializeToString())


class WindowedNoOpFn(beam.DoFn):
    """:class:`NoOpFn`, taking each element's WindowedValue as a sink with dead letters must."""

    def process(self, element: Any, windowed: Any = beam.DoFn.WindowedValueParam) -> None:
        pass


class WindowedIdealEncodeFn(IdealEncodeFn):
    """:class:`IdealEncodeFn`, taking each element's WindowedValue (and keeping nothing of it)."""

    def process(self, element: Dict[str, Any], windowed: Any = beam.DoFn.WindowedValueParam) -> None:
        super().process(element)


class IdealGrpcSinkFn(IdealEncodeFn):
    """The ideal sink: :class:`WindowedIdealEncodeFn`'s work, and each request sent over gRPC.

    Takes each element's ``WindowedValueParam`` as a sink that keeps its
    elements' windows must (that parameter puts the DoFn on Beam's
    per-window invoker), and keeps nothing of it. Per event, the event type
    and ``orjson.dumps``; per 500 events, a ``SendEventRequest`` (fresh
    ``req_guid``, current ``sent_time``) sent with a grpcio stub's
    ``future`` on a sync channel, with the ``x-user-id`` metadata: 4
    requests in flight (when 4 are out, it waits for the oldest), every one
    awaited in ``finish_bundle``. Hand-tuned: no retries, no dead letters;
    an error or a status other than success fails the bundle.

    Args:
      endpoint: ``grpc://host:port`` (or ``host:port``).
      event_type_field: the element's field that holds the event type.
    """

    def __init__(self, endpoint: str, event_type_field: str = "event_name") -> None:
        super().__init__(event_type_field)
        self._target = endpoint.split("://", 1)[-1]
        self._channel: Optional[grpc.Channel] = None
        self._send: Any = None
        self._metadata = ((CONN_ID_METADATA, f"ideal-sink-{uuid.uuid4()}"),)
        self._in_flight: Deque[Any] = collections.deque()

    def setup(self) -> None:
        self._channel = grpc.insecure_channel(self._target)
        self._send = self._channel.unary_unary(
            SEND_EVENT_METHOD,
            request_serializer=SendEventRequest.SerializeToString,
            response_deserializer=SendEventResponse.FromString,
        )

    def start_bundle(self) -> None:
        super().start_bundle()
        self._in_flight = collections.deque()

    def process(self, element: Dict[str, Any], windowed: Any = beam.DoFn.WindowedValueParam) -> None:
        # IdealEncodeFn.process's body inline: hand-tuned, no extra call per event.
        events = self._events
        events.append((element[self._type_field], orjson.dumps(element)))
        if len(events) >= BATCH:
            self._encode()

    def finish_bundle(self) -> None:
        super().finish_bundle()
        while self._in_flight:
            self._wait_oldest()

    def _encode(self) -> None:
        if len(self._in_flight) >= IN_FLIGHT:
            self._wait_oldest()
        self._in_flight.append(self._send.future(self._request(), metadata=self._metadata))

    def _wait_oldest(self) -> None:
        response = self._in_flight.popleft().result()
        if response.status != STATUS_SUCCESS:
            raise RuntimeError(f"Raccoon answered {json_format.MessageToJson(response)}")

    def teardown(self) -> None:
        if self._channel is not None:
            self._channel.close()


class HandWrittenRaccoonFn(beam.DoFn):
    """What a user would write without this package.

    Buffers up to 500 elements per bundle, builds each request with
    protobuf's ``json_format`` helpers, and POSTs it (protobuf wire) with
    ``requests``, one request at a time, on one keep-alive session. Any
    failure fails the bundle: no retry, no dead letters.

    Args:
      url: the REST endpoint (``http://host:port/api/v1/events``).
      event_type_field: the element's field that holds the event type.
    """

    def __init__(self, url: str, event_type_field: str = "event_name") -> None:
        self._url = url
        self._type_field = event_type_field
        self._session: Optional[requests.Session] = None
        self._buffer: List[Dict[str, Any]] = []

    def setup(self) -> None:
        self._session = requests.Session()
        self._session.headers.update({"Content-Type": "application/proto", "X-User-ID": f"hand-written-{uuid.uuid4()}"})

    def start_bundle(self) -> None:
        self._buffer = []

    def process(self, element: Dict[str, Any]) -> None:
        self._buffer.append(element)
        if len(self._buffer) >= BATCH:
            self._send()

    def finish_bundle(self) -> None:
        if self._buffer:
            self._send()

    def _send(self) -> None:
        assert self._session is not None
        document = {
            "req_guid": str(uuid.uuid4()),
            "sent_time": datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z"),
            "events": [
                {
                    "event_bytes": base64.b64encode(
                        json.dumps(element, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
                    ).decode("ascii"),
                    "type": element[self._type_field],
                }
                for element in self._buffer
            ],
        }
        request = json_format.ParseDict(document, SendEventRequest())
        answer = self._session.post(self._url, data=request.SerializeToString(), timeout=30)
        response = SendEventResponse.FromString(answer.content)
        if answer.status_code != 200 or response.status != STATUS_SUCCESS:
            raise RuntimeError(f"Raccoon answered HTTP {answer.status_code}: {json_format.MessageToJson(response)}")
        self._buffer = []

    def teardown(self) -> None:
        if self._session is not None:
            self._session.close()
