"""The wire types, and the request a transport sends."""

from __future__ import annotations

import dataclasses
import enum
from typing import Dict, Optional

from raccoon_beam import protocol

__all__ = ["Wire", "CONTENT_TYPES", "EncodedRequest", "wire_for_content_type"]

class Wire(str, enum.Enum):
    """How a SendEventRequest itself is encoded (not the events inside it)."""

    PROTOBUF = "protobuf"
    JSON = "json"


CONTENT_TYPES: Dict[Wire, str] = {
    Wire.PROTOBUF: protocol.CONTENT_TYPE_PROTOBUF,
    Wire.JSON: protocol.CONTENT_TYPE_JSON,
}
_WIRE_BY_CONTENT_TYPE = {value: wire for wire, value in CONTENT_TYPES.items()}


@dataclasses.dataclass(frozen=True)
class EncodedRequest:
    """A request ready to send; the same object is resent on every retry.

    Attributes:
      body: the encoded SendEventRequest (ASCII bytes for the JSON wire).
      req_guid: the request's guid, which the server echoes in its ack.
      wire: the wire type of ``body``.
      event_count: how many events ``body`` carries.
    """

    body: bytes
    req_guid: str
    wire: Wire
    event_count: int

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.wire]


def wire_for_content_type(value: Optional[str]) -> Optional[Wire]:
    """The wire type of a Content-Type header; only Raccoon's exact values match."""
    return _WIRE_BY_CONTENT_TYPE.get(value) if value is not None else None
