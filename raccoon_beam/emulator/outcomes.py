"""What the emulator answers instead of a success: the injectable outcomes.

An :class:`Outcome` says *what* a failing server (or a proxy in front of it)
answers; each transport renders it its own way:

============== ===================================== ======================================== ==========================================
outcome        REST                                  gRPC                                     WebSocket
============== ===================================== ======================================== ==========================================
raccoon(code)  Raccoon's HTTP status for the code     OK call, ``STATUS_ERROR`` + code          ack frame with the code and req_guid
               (200/400/500), body in request wire
http(status)   that status, body, ``Retry-After``     429/502/503 UNAVAILABLE, 504              close 1011 (reason ``HTTP <status>``)
                                                      DEADLINE_EXCEEDED, others: gRPC's
                                                      HTTP-to-gRPC table
grpc(code)     grpc-gateway's HTTP status, text body  that status and details                  close 1011 (reason ``gRPC <NAME>``)
garbage()      200 with a body that is no response   OK call whose bytes do not parse         a frame (same type) that is no response
wrong_req_guid success naming another req_guid       same                                     same (not the ack of the request)
no_answer()    never answers                         never answers                            never acks that frame
============== ===================================== ======================================== ==========================================

None of them captures the batch.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, Optional, Union

import grpc

from raccoon_beam._proto import raccoon_pb2

__all__ = [
    "Outcome",
    "OUTCOME_KINDS",
    "DEFAULT_GARBAGE_BODY",
    "raccoon_http_status",
    "http_to_grpc_status",
    "grpc_to_http_status",
]

# Parses neither as protobuf (a length prefix past the end) nor as JSON.
DEFAULT_GARBAGE_BODY = b"\x0a\xff<html>not a raccoon response</html>"

OUTCOME_KINDS = ("raccoon", "http", "grpc", "garbage", "wrong_req_guid", "no_answer")

# Raccoon's REST handler only ever answers 200, 400 and 500.
_RACCOON_HTTP_STATUS: Dict[int, int] = {
    raccoon_pb2.CODE_OK: 200,
    raccoon_pb2.CODE_BAD_REQUEST: 400,
}

# gRPC's "HTTP to gRPC status code mapping", except 504: a gateway timeout
# means the deadline passed, and clients read RESOURCE_EXHAUSTED as "too large".
_HTTP_TO_GRPC: Dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INTERNAL,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.UNIMPLEMENTED,
    429: grpc.StatusCode.UNAVAILABLE,
    500: grpc.StatusCode.INTERNAL,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}

# grpc-gateway's mapping, as a proxy translating gRPC to HTTP would answer.
_GRPC_TO_HTTP: Dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}


def raccoon_http_status(code: int) -> int:
    """The HTTP status Raccoon's REST handler sends with a Raccoon ``Code``."""
    return _RACCOON_HTTP_STATUS.get(code, 500)


def http_to_grpc_status(status: int) -> grpc.StatusCode:
    """The gRPC status a client sees when a proxy answers HTTP ``status``."""
    return _HTTP_TO_GRPC.get(status, grpc.StatusCode.UNKNOWN)


def grpc_to_http_status(code: grpc.StatusCode) -> int:
    """The HTTP status standing for gRPC status ``code`` on REST."""
    return _GRPC_TO_HTTP.get(code, 500)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One non-success answer; build it with the class methods.

    Attributes:
      kind: one of :data:`OUTCOME_KINDS`.
      code: the Raccoon ``Code`` (kind ``raccoon``).
      reason: the response's reason (kind ``raccoon``).
      status: the HTTP status (kind ``http``).
      retry_after: the ``Retry-After`` header in seconds (kind ``http``).
      body: the body sent (kinds ``http`` and ``garbage``).
      content_type: the response's Content-Type; ``None`` echoes the request's.
      grpc_status: the gRPC status (kind ``grpc``).
      details: the gRPC status details (kind ``grpc``).
    """

    kind: str
    code: int = raccoon_pb2.CODE_UNSPECIFIED
    reason: str = ""
    status: int = 0
    retry_after: Optional[float] = None
    body: bytes = b""
    content_type: Optional[str] = None
    grpc_status: Optional[grpc.StatusCode] = None
    details: str = ""

    def __post_init__(self) -> None:
        # Also reached from JSON (the control route): nothing non-finite or out of range.
        if self.kind not in OUTCOME_KINDS:
            raise ValueError(f"outcome kind must be one of {OUTCOME_KINDS}, not {self.kind!r}")
        if self.kind == "http" and not (isinstance(self.status, int) and 100 <= self.status <= 599):
            raise ValueError(f"not an HTTP status: {self.status!r}")
        retry_after = self.retry_after
        if retry_after is not None and not (
            isinstance(retry_after, (int, float))
            and not isinstance(retry_after, bool)
            and math.isfinite(retry_after)
            and retry_after >= 0
        ):
            raise ValueError(f"retry_after must be a finite number of seconds >= 0, not {retry_after!r}")
        if not isinstance(self.code, int) or isinstance(self.code, bool):
            raise ValueError(f"code must be an integer Raccoon code, not {self.code!r}")

    @classmethod
    def raccoon(cls, code: Union[int, str], reason: str = "") -> "Outcome":
        """A Raccoon response with ``code`` (an int or a name such as ``"CODE_INTERNAL_ERROR"``)."""
        if isinstance(code, str):
            code = raccoon_pb2.Code.Value(code)
        return cls(kind="raccoon", code=int(code), reason=reason)

    @classmethod
    def http(
        cls,
        status: int,
        retry_after: Optional[float] = None,
        body: bytes = b"",
        content_type: Optional[str] = "text/plain",
    ) -> "Outcome":
        """An HTTP answer from Raccoon's front (429 with Retry-After, 503, a proxy's 502 page)."""
        if not 100 <= status <= 599:
            raise ValueError(f"not an HTTP status: {status}")
        return cls(
            kind="http", status=status, retry_after=retry_after, body=bytes(body), content_type=content_type
        )

    @classmethod
    def grpc(cls, status_code: Union[grpc.StatusCode, str], details: str = "") -> "Outcome":
        """A gRPC status (``grpc.StatusCode`` or its name such as ``"UNAVAILABLE"``)."""
        if isinstance(status_code, str):
            status_code = grpc.StatusCode[status_code.upper()]
        if status_code is grpc.StatusCode.OK:
            raise ValueError("Outcome.grpc needs a failing status")
        return cls(kind="grpc", grpc_status=status_code, details=details)

    @classmethod
    def garbage(cls, body: bytes = DEFAULT_GARBAGE_BODY, content_type: Optional[str] = None) -> "Outcome":
        """A success-looking answer whose body is not a Raccoon response."""
        return cls(kind="garbage", body=bytes(body), content_type=content_type)

    @classmethod
    def wrong_req_guid(cls) -> "Outcome":
        """A success response that carries another request's req_guid."""
        return cls(kind="wrong_req_guid")

    @classmethod
    def no_answer(cls) -> "Outcome":
        """The request is read and never answered."""
        return cls(kind="no_answer")

    def describe(self) -> str:
        """A short readable form, e.g. ``http 429 (Retry-After 1)`` (the console's reason column)."""
        if self.kind == "raccoon":
            name = raccoon_pb2.Code.Name(self.code) if self.code in raccoon_pb2.Code.values() else str(self.code)
            return f"raccoon {name}" + (f": {self.reason}" if self.reason else "")
        if self.kind == "http":
            retry = f" (Retry-After {self.retry_after:g})" if self.retry_after is not None else ""
            return f"http {self.status}{retry}"
        if self.kind == "grpc":
            assert self.grpc_status is not None
            return f"grpc {self.grpc_status.name}" + (f": {self.details}" if self.details else "")
        return self.kind.replace("_", " ")

    def to_dict(self) -> Dict[str, object]:
        """A JSON-friendly form (for the CLI and the control endpoint)."""
        return {
            "kind": self.kind,
            "code": self.code,
            "reason": self.reason,
            "status": self.status,
            "retry_after": self.retry_after,
            "body": self.body.decode("latin-1"),
            "content_type": self.content_type,
            "grpc_status": self.grpc_status.name if self.grpc_status is not None else None,
            "details": self.details,
        }

    @classmethod
    def from_dict(cls, value: Dict[str, object]) -> "Outcome":
        """The inverse of :meth:`to_dict`."""
        fields = dict(value)
        body = fields.get("body")
        if isinstance(body, str):
            fields["body"] = body.encode("latin-1")
        if fields.get("grpc_status") is not None:
            fields["grpc_status"] = grpc.StatusCode[str(fields["grpc_status"])]
        return cls(**fields)  # type: ignore[arg-type]
