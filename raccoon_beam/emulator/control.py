"""The control endpoints, under ``/_emulator/`` on the HTTP port.

They let another process (a benchmark, :class:`~raccoon_beam.emulator.process.EmulatorProcess`)
read and steer an emulator running as a server:

- ``GET  /_emulator/counters``: the counters snapshot as JSON.
- ``GET  /_emulator/digest``: ``{type: {"count", "total_bytes", "digest"}}``.
- ``GET  /_emulator/events``: the captured events as JSON (bytes in base64).
- ``GET  /_emulator/faults``: the fault rules in force (``Faults.describe()``).
- ``POST /_emulator/reset``: clears captures, counters and faults.
- ``POST /_emulator/faults``: ``{"method": "fail_next", "args": {...}}`` calls
  that method of :class:`~raccoon_beam.emulator.faults.Faults`; an ``outcome``
  argument is an ``Outcome.to_dict()``.

Raccoon has no such paths; the real server answers them 404.
"""

from __future__ import annotations

import base64
from typing import Callable

from aiohttp import web

from raccoon_beam.emulator.capture import Capture
from raccoon_beam.emulator.counters import Counters
from raccoon_beam.emulator.faults import Faults
from raccoon_beam.emulator.outcomes import Outcome

__all__ = ["CONTROL_PREFIX", "add_control_routes"]

CONTROL_PREFIX = "/_emulator"
_FAULT_METHODS = (
    "fail_next",
    "fail_fraction",
    "add_latency",
    "drop_connection",
    "reject_event_type",
    "fail_publish",
    "clear_fraction",
    "stop_publish_failures",
    "clear",
)


def add_control_routes(
    app: web.Application, capture: Capture, counters: Counters, faults: Faults, reset: Callable[[], None]
) -> None:
    async def get_counters(_: web.Request) -> web.Response:
        return web.json_response(counters.snapshot().to_dict())

    async def get_digest(_: web.Request) -> web.Response:
        return web.json_response({t: d._asdict() for t, d in capture.digest().items()})

    async def get_events(_: web.Request) -> web.Response:
        events = []
        for event in capture.events():
            record = event._asdict()
            record["event_bytes"] = base64.b64encode(event.event_bytes).decode("ascii")
            events.append(record)
        return web.json_response(events)

    async def get_faults(_: web.Request) -> web.Response:
        return web.json_response(faults.describe())

    async def post_reset(_: web.Request) -> web.Response:
        reset()
        return web.json_response({"ok": True})

    async def post_faults(request: web.Request) -> web.Response:
        try:
            command = await request.json()
            method = command["method"]
            if method not in _FAULT_METHODS:
                raise ValueError(f"unknown fault method {method!r}")
            args = dict(command.get("args") or {})
            if "outcome" in args:
                args["outcome"] = Outcome.from_dict(args["outcome"])
            getattr(faults, method)(**args)
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"ok": False, "error": str(exc)}, status=400)
        return web.json_response({"ok": True})

    app.router.add_route("GET", f"{CONTROL_PREFIX}/counters", get_counters)
    app.router.add_route("GET", f"{CONTROL_PREFIX}/digest", get_digest)
    app.router.add_route("GET", f"{CONTROL_PREFIX}/events", get_events)
    app.router.add_route("GET", f"{CONTROL_PREFIX}/faults", get_faults)
    app.router.add_route("POST", f"{CONTROL_PREFIX}/reset", post_reset)
    app.router.add_route("POST", f"{CONTROL_PREFIX}/faults", post_faults)
