"""What counts as an ack, and the server's wish to be left alone (Retry-After).

:func:`check_response` is the only place that decides what counts as an ack:
every transport calls it on the response it decoded.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from typing import Any, Dict, Optional

from raccoon_beam._proto import raccoon_pb2
from raccoon_beam.errors import FailureKind, SendFailure
from raccoon_beam.transports.config import TransportConfig
from raccoon_beam.transports.redaction import redact
from raccoon_beam.wire import EncodedRequest

__all__ = ["check_response", "parse_retry_after"]


def check_response(
    response: raccoon_pb2.SendEventResponse,
    request: EncodedRequest,
    *,
    http_status: Optional[int] = None,
    retry_after: Optional[float] = None,
    config: Optional[TransportConfig] = None,
) -> raccoon_pb2.SendEventResponse:
    """Returns a successful response for ``request``; raises SendFailure otherwise.

    Shared by every transport so that "what counts as an ack" is decided once:
    STATUS_SUCCESS (with a 2xx status over HTTP) whose ``data.req_guid``, when
    present, is the request's. A response without a known status (e.g. an
    empty protobuf body) is not Raccoon's and is reported as malformed.

    Args:
      response: the decoded response.
      request: the request it answers.
      http_status: the HTTP status it came with (REST).
      retry_after: the server's Retry-After, in seconds, if any.
      config: the transport's configuration; the server's reason text is
        redacted with it.
    """
    status: Dict[str, Any] = {"http_status": http_status, "retry_after": retry_after}
    echoed = response.data.get("req_guid")
    if response.status == raccoon_pb2.STATUS_SUCCESS:
        if echoed and echoed != request.req_guid:
            raise SendFailure(
                FailureKind.MALFORMED,
                f"acknowledgement for request {echoed!r} received for request {request.req_guid!r}",
                **status,
            )
        if http_status is None or 200 <= http_status < 300:
            return response
        raise SendFailure(FailureKind.REFUSED, f"HTTP {http_status} with a success body", **status)
    if response.status != raccoon_pb2.STATUS_ERROR:
        raise SendFailure(
            FailureKind.MALFORMED,
            f"not a Raccoon response (status {response.status}){_http_suffix(http_status)}",
            **status,
        )
    code_name = (
        raccoon_pb2.Code.Name(response.code)
        if response.code in raccoon_pb2.Code.values()
        else str(response.code)
    )
    shown = redact(response.reason, config) if config is not None else response.reason
    reason = f": {shown}" if shown else ""
    raccoon_code = response.code if response.code != raccoon_pb2.CODE_UNSPECIFIED else None
    raise SendFailure(
        FailureKind.REFUSED,
        f"Raccoon answered {code_name}{reason}{_http_suffix(http_status)}",
        raccoon_code=raccoon_code,
        reason=response.reason or None,
        **status,
    )


def _http_suffix(http_status: Optional[int]) -> str:
    return f" (HTTP {http_status})" if http_status is not None else ""


def parse_retry_after(value: Optional[str], *, now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date).

    Args:
      value: the header value, or None.
      now: the current Unix time (for tests); defaults to ``time.time()``.

    Returns:
      A non-negative number of seconds, or None when absent or unreadable;
      it never raises.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DELTA_SECONDS.fullmatch(text):
        # Decimals are not RFC 9110, but some servers send them; harmless.
        seconds = float(text)
        return seconds if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
        if when is None or when.tzinfo is None:
            return None
        timestamp = when.timestamp()
    except (TypeError, ValueError, IndexError, OverflowError, OSError):
        return None
    current = time.time() if now is None else now
    return max(0.0, timestamp - current)


# delta-seconds, as ASCII digits only (str.isdigit would accept "²" or "٣").
_DELTA_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")
