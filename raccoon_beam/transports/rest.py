"""REST transport: ``POST /api/v1/events`` on a pooled aiohttp session.

One ``aiohttp.ClientSession`` per transport, whose connector keeps at most
``max_in_flight`` keep-alive connections. The Content-Type is exactly
``application/json`` or ``application/proto`` (Raccoon rejects anything
else, even with a charset), and the answer is decoded in the request's wire
type. Bodies that are not Raccoon's (a proxy's HTML 502, an empty,
truncated or oversized body, another content type) become malformed
failures with their HTTP status, never an exception of another kind.
"""

from __future__ import annotations

import asyncio
from typing import Any, Dict, Optional

import aiohttp

from raccoon_beam._proto import raccoon_pb2
from raccoon_beam.errors import FailureKind, SendFailure, WireFormatError
from raccoon_beam.transports import (
    Transport,
    TransportConfig,
    check_response,
    closed_failure,
    parse_retry_after,
    redact,
)
from raccoon_beam.transports._http import client_error_failure, new_session, request_options
from raccoon_beam.transports.mismatch import PortCheck
from raccoon_beam.wire import CONTENT_TYPES, EncodedRequest, decode_response, wire_for_content_type

__all__ = ["RestTransport", "MAX_RESPONSE_BYTES"]

# A Raccoon response is a few hundred bytes; a body past this is not one
# (a misrouted download, an endless stream) and is not read further.
MAX_RESPONSE_BYTES = 1024 * 1024
_CHUNK_BYTES = 64 * 1024


class _TooLarge(Exception):
    """The response body exceeded MAX_RESPONSE_BYTES."""


class RestTransport(Transport):
    """Sends each request as one HTTP POST.

    Args:
      config: the transport configuration.
    """

    def __init__(self, config: TransportConfig) -> None:
        super().__init__(config)
        self.conn_id = config.new_conn_id()
        # Built on first send, and again after the credentials' refresh.
        self._headers: Optional[Dict[str, str]] = None
        self._headers_generation = -1
        self._options = request_options(config)
        self._session: Optional[aiohttp.ClientSession] = None
        self._closed = False
        self._port_check = PortCheck(config)

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise closed_failure(self.endpoint)
        if self._session is None:
            self._session = new_session(self.config, limit=self.config.max_in_flight, total_timeout=True)
        return self._session

    async def send(self, request: EncodedRequest) -> raccoon_pb2.SendEventResponse:
        session = self._get_session()
        headers = self._headers
        if headers is None or self._headers_generation != self.credentials.generation:
            headers = self._headers = await self.request_headers(self.conn_id)
            self._headers_generation = self.credentials.generation
        headers = dict(headers)
        headers["Content-Type"] = CONTENT_TYPES[request.wire]
        status: Optional[int] = None
        retry_after: Optional[float] = None
        # Raised outside the except clause so that it does not keep the
        # library's exception (and the connection it references) alive.
        failure: Optional[SendFailure] = None
        disconnected = False  # hung up on before any answer: maybe another protocol on the port
        try:
            # No redirects: following one would hand the body and the user's
            # headers to another origin; Raccoon never redirects.
            async with session.post(
                self.endpoint.url, data=request.body, headers=headers, allow_redirects=False, **self._options
            ) as answer:
                status = answer.status
                retry_after = parse_retry_after(answer.headers.get("Retry-After"))
                content_type = answer.headers.get("Content-Type")
                body = await _read_capped(answer)
        except _TooLarge:
            failure = SendFailure(
                FailureKind.MALFORMED,
                f"HTTP {status} from {self.endpoint.redacted} with a body over {MAX_RESPONSE_BYTES} bytes: "
                "not a Raccoon response",
                http_status=status,
                retry_after=retry_after,
            )
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            failure = client_error_failure(exc, self.config, http_status=status, retry_after=retry_after)
            disconnected = isinstance(exc, aiohttp.ServerDisconnectedError) and status is None
        except RuntimeError:
            # aiohttp raises RuntimeError("Session is closed") when close() won the race.
            if not self._closed:
                raise
            failure = closed_failure(self.endpoint)
        if failure is not None and self._port_check.worth_asking(disconnected):
            failure = await self._port_check.failure() or failure
        if failure is not None:
            raise failure
        assert status is not None  # set with the body, before anything can fail
        return check_response(
            self._decode(body, status, content_type, request, retry_after),
            request,
            http_status=status,
            retry_after=retry_after,
            config=self.config,
        )

    def _decode(
        self,
        body: bytes,
        status: int,
        content_type: Optional[str],
        request: EncodedRequest,
        retry_after: Optional[float],
    ) -> raccoon_pb2.SendEventResponse:
        malformed = FailureKind.MALFORMED
        facts: Dict[str, Any] = {"http_status": status, "retry_after": retry_after}
        # Raccoon echoes the request's Content-Type; another media type
        # (text/html from a proxy) is not Raccoon answering. Parameters such
        # as a charset, which a proxy may add, do not change the body.
        media_type = content_type.split(";", 1)[0].strip().lower() if content_type is not None else None
        if media_type is not None and wire_for_content_type(media_type) is not request.wire:
            raise SendFailure(
                malformed,
                f"HTTP {status} from {self.endpoint.redacted} with Content-Type {content_type!r}: "
                f"not a Raccoon response{self._preview(body)}",
                **facts,
            )
        if not body:
            raise SendFailure(malformed, f"HTTP {status} from {self.endpoint.redacted} with an empty body", **facts)
        try:
            return decode_response(body, request.wire)
        except WireFormatError as exc:
            reason = str(exc)
        raise SendFailure(
            malformed,
            f"HTTP {status} from {self.endpoint.redacted}: not a Raccoon response ({reason})"
            f"{self._preview(body)}",
            **facts,
        )

    def _preview(self, body: bytes, limit: int = 80) -> str:
        """The start of a body for a failure message, redacted.

        A proxy's error page may echo the request's headers: the whole body
        is redacted before it is cut, so that no secret shows half cut.
        """
        if not body:
            return ""
        text = redact(body.decode("utf-8", "replace"), self.config)
        return f": {text[:limit]!r}{'...' if len(text) > limit else ''}"

    async def close(self) -> None:
        self._closed = True
        await self._port_check.close()
        session, self._session = self._session, None
        if session is not None:
            await session.close()


async def _read_capped(answer: aiohttp.ClientResponse) -> bytes:
    """The response body, or _TooLarge as soon as it exceeds MAX_RESPONSE_BYTES."""
    if answer.content_length is not None and answer.content_length > MAX_RESPONSE_BYTES:
        raise _TooLarge()
    body = bytearray()
    async for chunk in answer.content.iter_chunked(_CHUNK_BYTES):
        body += chunk
        if len(body) > MAX_RESPONSE_BYTES:
            raise _TooLarge()
    return bytes(body)
