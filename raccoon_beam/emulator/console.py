"""The emulator's console: a live page at ``/_emulator/ui`` on the HTTP port.

The page (``static/``: plain HTML, CSS and JavaScript, no build step, no
library) shows per-topic counts, a chart of accepted events/s over the last
minutes, requests per transport and per connection, rejected requests with
their reasons, the latest events of each type with their payloads decoded
(:mod:`raccoon_beam.emulator.payloads`), and switches for the faults.

It is fed by one server-sent-events stream, ``/_emulator/ui/stream``. One
task on the emulator's loop samples the existing counters, digests and the
tail of the captured events every ``DEFAULT_UPDATE_INTERVAL`` seconds,
encodes the state once and hands the same bytes to every open page; a page
that reads slowly misses updates rather than queueing them. So the cost is a
few samples per second whatever the ingest rate, and the ingest path does no
work for the console beyond the counters it keeps anyway.

The switches post to ``/_emulator/faults`` (see :mod:`raccoon_beam.emulator.control`).
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import logging
import time
from importlib import resources
from typing import Any, Deque, Dict, List, Optional, Tuple

import orjson
from aiohttp import web

from raccoon_beam.emulator.capture import Capture, CapturedEvent
from raccoon_beam.emulator.config import EmulatorConfig
from raccoon_beam.emulator.control import CONTROL_PREFIX
from raccoon_beam.emulator.counters import Counters
from raccoon_beam.emulator.faults import DROP_AFTER_CAPTURE, LATENCY, Faults
from raccoon_beam.emulator.overload import Overload
from raccoon_beam.emulator.payloads import PayloadDecoders

__all__ = [
    "Console",
    "CONSOLE_PATH",
    "STREAM_PATH",
    "STATIC_PATH",
    "DEFAULT_UPDATE_INTERVAL",
    "DEFAULT_HISTORY_SECONDS",
    "DEFAULT_LATEST_PER_TYPE",
    "DEFAULT_TAIL_LIMIT",
    "DEFAULT_EVENTS_INTERVAL",
    "DEFAULT_TOP_CONNECTIONS",
]

CONSOLE_PATH = f"{CONTROL_PREFIX}/ui"
STREAM_PATH = f"{CONSOLE_PATH}/stream"
STATIC_PATH = f"{CONSOLE_PATH}/static"
# 4 updates/s: smooth to the eye, and a handful of snapshots per second
# costs the emulator nothing measurable at any ingest rate.
DEFAULT_UPDATE_INTERVAL = 0.25
# The chart's span: "the last few minutes", one point per second.
DEFAULT_HISTORY_SECONDS = 300
# Latest events shown per event type.
DEFAULT_LATEST_PER_TYPE = 5
# Captured events read per refresh of the latest events at most (the newest);
# bounds its cost when millions arrive in between. Types rarer than that keep
# the events shown before.
DEFAULT_TAIL_LIMIT = 500
# Seconds between refreshes of the latest events (decoding is the costly part
# of an update, and nobody reads payloads faster); counts refresh every update.
DEFAULT_EVENTS_INTERVAL = 1.0
# Connections listed (the busiest); the page stays readable and the update small.
DEFAULT_TOP_CONNECTIONS = 50
# Fault kinds counted that are not rejections (the request still went through).
_NOT_REJECTIONS = (LATENCY, DROP_AFTER_CAPTURE)
_STATIC_FILES = {"console.js": "text/javascript", "console.css": "text/css"}
_log = logging.getLogger(__name__)


# What the page shows for a value that cannot be encoded.
UNENCODABLE = "(not displayable)"


def _encodable(value: Any) -> Any:
    """``value`` with every part orjson cannot encode replaced by :data:`UNENCODABLE`."""
    if isinstance(value, dict):
        return {(k if isinstance(k, str) and _encodes(k) else UNENCODABLE): _encodable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encodable(v) for v in value]
    return value if _encodes(value) else UNENCODABLE


def _encodes(value: Any) -> bool:
    try:
        orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError):
        return False
    return True


def _static(name: str) -> bytes:
    return (resources.files("raccoon_beam.emulator") / "static" / name).read_bytes()


class _Latest:
    """The latest captured events per type, decoded once each."""

    def __init__(self, decoders: PayloadDecoders) -> None:
        self._decoders = decoders
        self._cursor = 0
        self._resets_seen = 0
        self._by_type: Dict[str, Deque[Tuple[CapturedEvent, Dict[str, Any]]]] = {}

    def update(self, capture: Capture) -> None:
        if capture.resets != self._resets_seen:  # what is shown was cleared
            self._by_type.clear()
            self._cursor = 0
            self._resets_seen = capture.resets
        events, self._cursor = capture.tail(self._cursor, DEFAULT_TAIL_LIMIT)
        fresh: Dict[str, List[CapturedEvent]] = {}
        for event in events[::-1]:  # newest first; stop filling a type at the limit
            bucket = fresh.setdefault(event.type, [])
            if len(bucket) < DEFAULT_LATEST_PER_TYPE:
                bucket.append(event)
        for event_type, newest_first in fresh.items():
            shown = self._by_type.setdefault(event_type, collections.deque(maxlen=DEFAULT_LATEST_PER_TYPE))
            for event in reversed(newest_first):
                shown.append((event, self._render(event)))

    def _render(self, event: CapturedEvent) -> Dict[str, Any]:
        decoded = self._decoders.decode(event.type, event.topic, event.event_bytes)
        return {
            "req_guid": event.req_guid,
            "conn_id": event.conn_id,
            "group": event.group,
            "transport": event.transport,
            "topic": event.topic,
            "captured_at": event.captured_at,
            "bytes": len(event.event_bytes),
            "format": decoded.format,
            "payload": decoded.text,
            "error": decoded.error,
        }

    def to_dict(self) -> Dict[str, List[Dict[str, Any]]]:
        return {t: [rendered for _, rendered in reversed(shown)] for t, shown in sorted(self._by_type.items())}


class Console:
    """The console's routes and its sampling task, on the emulator's loop.

    Args:
      config: the emulator's settings (capture mode, ack mode, decoders).
      capture: what was captured.
      counters: the request counters.
      faults: the fault rules (shown; switched through the control routes).
      overload: the capacity model (shown; set through ``/_emulator/overload``).
    """

    def __init__(
        self, config: EmulatorConfig, capture: Capture, counters: Counters, faults: Faults, overload: Overload
    ) -> None:
        self._config = config
        self._capture = capture
        self._counters = counters
        self._faults = faults
        self._overload = overload
        self._latest = _Latest(PayloadDecoders(config.decoders, config.descriptor_set))
        self._latest_at = float("-inf")
        self._history: Deque[Tuple[float, float]] = collections.deque(maxlen=DEFAULT_HISTORY_SECONDS)
        self._last_point: Optional[Tuple[float, int]] = None
        self._resets_seen = capture.resets
        self._payload = b""
        self._tick = asyncio.Event()
        self._subscribers = 0
        self._task: Optional[asyncio.Task] = None
        self._closed = False
        self._index = _static("index.html")
        self._files = {name: _static(name) for name in _STATIC_FILES}

    def add_routes(self, app: web.Application) -> None:
        """Adds the page, its stream and its files to ``app`` (listed by ``GET /_emulator``)."""
        app.router.add_route("GET", CONSOLE_PATH, self._page)
        app.router.add_route("GET", STREAM_PATH, self._stream)
        app.router.add_route("GET", f"{STATIC_PATH}/{{name}}", self._static_file)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Starts sampling (call on the emulator's loop)."""
        self._closed = False
        self._tick = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stops sampling and ends every open stream."""
        self._closed = True
        self._tick.set()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        next_point = 0.0
        while True:
            now = time.monotonic()
            if now >= next_point:
                self._add_point(now)
                next_point = now + 1.0
            if self._subscribers:
                try:
                    self._payload = self._update()
                except Exception:  # a bug here must not stop the page for good
                    _log.exception("the console's update failed")
                else:
                    tick, self._tick = self._tick, asyncio.Event()
                    tick.set()
            await asyncio.sleep(DEFAULT_UPDATE_INTERVAL)

    def _update(self) -> bytes:
        """One server-sent event of the state; a value that cannot be encoded becomes a placeholder."""
        state = self.state()
        try:
            encoded = orjson.dumps(state)
        except (orjson.JSONEncodeError, TypeError):
            # A string no encoder takes (a lone surrogate in a header or a
            # reason): the rest of the page still updates.
            encoded = orjson.dumps(_encodable(state))
        return b"data: " + encoded + b"\n\n"

    def _add_point(self, now: float) -> None:
        if self._capture.resets != self._resets_seen:  # POST /_emulator/reset: the chart starts again
            self._resets_seen = self._capture.resets
            self._history.clear()
            self._last_point = None
        total = self._counters.snapshot().total_events_accepted
        last = self._last_point
        if last is not None and now > last[0]:
            # A reset makes the total drop: that second counts from zero.
            self._history.append((time.time(), max(0, total - last[1]) / (now - last[0])))
        self._last_point = (now, total)

    # ------------------------------------------------------------ state

    def state(self) -> Dict[str, Any]:
        """What one update carries (the page's whole state; JSON-friendly)."""
        snapshot = self._counters.snapshot()
        digest = self._capture.digest()
        keep = self._capture.mode == "events"
        now = time.monotonic()
        if keep and now - self._latest_at >= DEFAULT_EVENTS_INTERVAL:
            self._latest.update(self._capture)
            self._latest_at = now
        transports = sorted(set(snapshot.requests_received) | set(snapshot.events_accepted))
        by_connection = [
            (count, transport, conn_id)
            for transport, per_connection in snapshot.requests_by_connection.items()
            for conn_id, count in per_connection.items()
        ]
        busiest = heapq.nlargest(DEFAULT_TOP_CONNECTIONS, by_connection, key=lambda c: c[0])
        rejected_by_kind: Dict[str, Dict[str, int]] = {}
        for transport in transports:
            by_fault = 0
            for kind, per_transport in snapshot.faults.items():
                if kind not in _NOT_REJECTIONS and per_transport.get(transport):
                    rejected_by_kind.setdefault(kind, {})[transport] = per_transport[transport]
                    by_fault += per_transport[transport]
            bad = snapshot.rejected(transport) - by_fault
            if bad > 0:
                rejected_by_kind.setdefault("bad_request", {})[transport] = bad
        return {
            "now": time.time(),
            "capture": self._capture.mode,
            "events_kept": keep,
            "ack": self._config.ack,
            "total_events": snapshot.total_events_accepted,
            "topics": [
                {"type": t, "topic": self._capture.topic(t), "count": d.count, "bytes": d.total_bytes}
                for t, d in sorted(digest.items())
            ],
            "rate": list(self._history),
            "transports": {
                t: {
                    "received": snapshot.received(t),
                    "accepted": snapshot.accepted(t),
                    "rejected": snapshot.rejected(t),
                    "deduplicated": snapshot.requests_deduplicated.get(t, 0),
                    "duplicated": snapshot.requests_duplicated.get(t, 0),
                    "events": snapshot.events_accepted.get(t, 0),
                }
                for t in transports
            },
            "connections": [{"transport": t, "conn_id": c, "requests": n} for n, t, c in busiest],
            "connection_count": len(by_connection),
            "connections_open": snapshot.connections_open,
            "connections_refused": snapshot.connections_refused,
            "rejected_by_kind": rejected_by_kind,
            "recent_rejections": [r._asdict() for r in reversed(self._counters.recent_rejections())],
            "fault_counters": snapshot.faults,
            "faults": self._faults.describe(),
            "overload": self._overload.describe(),
            "events_duplicated": snapshot.events_duplicated,
            "latest": self._latest.to_dict() if keep else {},
        }

    # ------------------------------------------------------------ handlers

    async def _page(self, _: web.Request) -> web.Response:
        """The console page: counts, connections, rejections, latest events, fault switches."""
        return web.Response(body=self._index, content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-store"})

    async def _static_file(self, request: web.Request) -> web.Response:
        """The console page's script and style (served without the token)."""
        name = request.match_info["name"]
        if name not in self._files:
            raise web.HTTPNotFound()
        return web.Response(body=self._files[name], content_type=_STATIC_FILES[name], charset="utf-8")

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        """The console's state as server-sent events: one update at once, then on each change."""
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )
        try:
            await response.prepare(request)
            self._subscribers += 1
            try:
                # The first update at once, not after an interval.
                await response.write(self._update())
                while not self._closed:
                    tick = self._tick
                    await tick.wait()
                    if self._closed:
                        break
                    await response.write(self._payload)
            finally:
                self._subscribers -= 1
        except (ConnectionError, OSError):
            pass  # the page went away, even before its headers (aiohttp's ClientConnectionResetError included)
        return response
