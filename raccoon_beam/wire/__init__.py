"""SendEventRequest/SendEventResponse <-> bytes, in Raccoon's two wire types.

* ``Wire.PROTOBUF``: protobuf bytes, Content-Type ``application/proto``.
* ``Wire.JSON``: what Raccoon's Go ``encoding/json`` reads and writes on its
  generated structs, Content-Type ``application/json``. This is *not*
  protobuf-JSON: keys are the snake_case proto field names, ``event_bytes`` is
  standard padded base64, ``sent_time`` is ``{"seconds": s, "nanos": n}`` and
  enums are integers. Raccoon silently ignores camelCase keys and rejects
  RFC 3339 times, so ``json_format`` must never produce this wire.

Two sides: :mod:`~raccoon_beam.wire.encoding` is the client's hot path
(requests out); :mod:`~raccoon_beam.wire.go_json` follows Go's rules for
what the server reads and writes (used by the emulator, and by the client to
read responses).
"""

from raccoon_beam.wire.encoding import (
    REQUEST_OVERHEAD_BYTES,
    EventSizer,
    encode_batch,
    encode_request,
    encoded_event_size,
    new_req_guid,
)
from raccoon_beam.wire.go_json import decode_request, decode_response, encode_response
from raccoon_beam.wire.types import CONTENT_TYPES, EncodedRequest, Wire, wire_for_content_type

__all__ = [
    "Wire",
    "CONTENT_TYPES",
    "EncodedRequest",
    "REQUEST_OVERHEAD_BYTES",
    "EventSizer",
    "wire_for_content_type",
    "new_req_guid",
    "encode_request",
    "encode_batch",
    "decode_request",
    "encode_response",
    "decode_response",
    "encoded_event_size",
]
