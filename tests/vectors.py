"""Loads the golden vectors produced by Raccoon's own Go code (tests/data)."""

from __future__ import annotations

import base64
import json
import pathlib
from typing import Any, Dict, List, Optional

from raccoon_beam._proto import raccoon_pb2

VECTORS_PATH = pathlib.Path(__file__).parent / "data" / "raccoon_go_vectors.json"

VECTORS: Dict[str, Any] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))


def encode_vectors(message: str) -> List[Dict[str, Any]]:
    return [v for v in VECTORS["encode"] if v["message"] == message]


def decode_vectors() -> List[Dict[str, Any]]:
    return VECTORS["decode_json_request"]


def request_fields(request: raccoon_pb2.SendEventRequest) -> Dict[str, Any]:
    """A request in the vectors' ``parsed`` form (bytes as base64, no sent_time as None)."""
    sent_time: Optional[Dict[str, int]] = None
    if request.HasField("sent_time"):
        sent_time = {"seconds": request.sent_time.seconds, "nanos": request.sent_time.nanos}
    return {
        "req_guid": request.req_guid,
        "sent_time": sent_time,
        "events": [
            {
                "event_bytes_base64": base64.b64encode(e.event_bytes).decode("ascii"),
                "type": e.type,
            }
            for e in request.events
        ],
    }


def response_fields(response: raccoon_pb2.SendEventResponse) -> Dict[str, Any]:
    """A response in the vectors' ``fields`` form (empty data as None)."""
    return {
        "status": response.status,
        "code": response.code,
        "sent_time": response.sent_time,
        "reason": response.reason,
        "data": dict(response.data) or None,
    }
