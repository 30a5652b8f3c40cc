"""The control endpoints, under ``/_emulator/`` on the HTTP port.

They let another process (a benchmark, :class:`~raccoon_beam.emulator.process.EmulatorProcess`)
read and steer an emulator running as a server:

- ``GET  /_emulator``: this list, as JSON ``{"routes": [{"method", "path", "description"}]}``.
- ``GET  /_emulator/counters``: the counters snapshot as JSON.
- ``GET  /_emulator/digest``: ``{type: {"count", "total_bytes", "digest"}}``.
- ``GET  /_emulator/events``: the captured events as JSON (bytes in base64).
- ``GET  /_emulator/faults``: the fault rules in force (``Faults.describe()``).
- ``POST /_emulator/reset``: clears captures, counters and faults.
- ``POST /_emulator/faults``: ``{"method": "fail_next", "args": {...}}`` calls
  that method of :class:`~raccoon_beam.emulator.faults.Faults`; an ``outcome``
  argument is an ``Outcome.to_dict()``.
- ``GET  /_emulator/credential``: the header ``require_header`` asks for and
  its current value (404 without ``require_header``).
- ``POST /_emulator/credential/rotate``: draws a new value now.
- ``GET  /_emulator/overload``: the capacity, the gateway and the buffer's state.
- ``POST /_emulator/overload``: ``{"capacity_events_per_second": 5000, ...}``
  changes those settings (see :mod:`raccoon_beam.emulator.overload`).

The console (:mod:`raccoon_beam.emulator.console`) adds its routes under
``/_emulator/ui``; the index lists them too. Beyond loopback every route
needs the emulator's token (:mod:`raccoon_beam.emulator.access`).

Raccoon has no such paths; the real server answers them 404.
"""

from __future__ import annotations

import base64
import inspect
from typing import Callable, Dict, List, Optional

from aiohttp import web

from raccoon_beam.emulator.capture import Capture
from raccoon_beam.emulator.counters import Counters
from raccoon_beam.emulator.credential import RequiredHeader
from raccoon_beam.emulator.faults import Faults
from raccoon_beam.emulator.outcomes import Outcome
from raccoon_beam.emulator.overload import Overload

__all__ = ["CONTROL_PREFIX", "add_control_routes", "control_index"]

CONTROL_PREFIX = "/_emulator"
_FAULT_METHODS = (
    "fail_next",
    "fail_fraction",
    "add_latency",
    "drop_connection",
    "reject_event_type",
    "fail_publish",
    "clear_fraction",
    "clear_next",
    "clear_drops",
    "allow_event_type",
    "stop_publish_failures",
    "clear",
)


def control_index(app: web.Application) -> List[Dict[str, str]]:
    """Every route of ``app`` under CONTROL_PREFIX: method, path and its handler's first docstring line.

    Read from the router at request time, so routes added by other modules
    (the console) are listed as well.
    """
    routes = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter") or ""
        if path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/"):
            doc = inspect.getdoc(route.handler) or ""
            routes.append({"method": route.method, "path": path, "description": doc.split("\n", 1)[0]})
    return sorted(routes, key=lambda r: (r["path"], r["method"]))


def add_control_routes(
    app: web.Application,
    capture: Capture,
    counters: Counters,
    faults: Faults,
    reset: Callable[[], None],
    overload: Overload,
    required: Optional[RequiredHeader] = None,
) -> None:
    async def get_index(request: web.Request) -> web.Response:
        """This list of the control routes."""
        return web.json_response({"routes": control_index(request.app)})

    async def get_counters(_: web.Request) -> web.Response:
        """Request, event, connection and fault counters, per transport."""
        return web.json_response(counters.snapshot().to_dict())

    async def get_digest(_: web.Request) -> web.Response:
        """Per event type: count, total bytes and order-independent digest."""
        return web.json_response({t: d._asdict() for t, d in capture.digest().items()})

    async def get_events(_: web.Request) -> web.Response:
        """The captured events (event_bytes in base64; empty with --capture digest)."""
        events = []
        for event in capture.events():
            record = event._asdict()
            record["event_bytes"] = base64.b64encode(event.event_bytes).decode("ascii")
            events.append(record)
        return web.json_response(events)

    async def get_faults(_: web.Request) -> web.Response:
        """The fault rules in force."""
        return web.json_response(faults.describe())

    async def post_reset(_: web.Request) -> web.Response:
        """Clears captures, counters and faults."""
        reset()
        return web.json_response({"ok": True})

    async def post_faults(request: web.Request) -> web.Response:
        """Calls a Faults method: {"method": "fail_next", "args": {"n": 1, "outcome": {...}}}."""
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

    async def get_overload(_: web.Request) -> web.Response:
        """The capacity, the gateway and the buffer's state (requests blocked, buffered, publishing)."""
        return web.json_response(overload.describe())

    async def post_overload(request: web.Request) -> web.Response:
        """Changes the capacity or the gateway: {"capacity_events_per_second": 5000, "gateway_queue_depth": 50}."""
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise TypeError("expected a JSON object of settings")
            overload.configure(**changes)
        except (ValueError, TypeError) as exc:
            return web.json_response({"ok": False, "error": str(exc)}, status=400)
        return web.json_response({"ok": True, **overload.describe()})

    async def get_credential(_: web.Request) -> web.Response:
        """The header require_header asks for and its current value."""
        if required is None:
            return web.json_response({"ok": False, "error": "the emulator requires no header"}, status=404)
        return web.json_response(required.describe())

    async def post_rotate_credential(_: web.Request) -> web.Response:
        """Draws a new value of the required header (the old one gets 401)."""
        if required is None:
            return web.json_response({"ok": False, "error": "the emulator requires no header"}, status=404)
        required.rotate()
        return web.json_response(required.describe())

    app.router.add_route("GET", f"{CONTROL_PREFIX}/credential", get_credential)
    app.router.add_route("POST", f"{CONTROL_PREFIX}/credential/rotate", post_rotate_credential)
    app.router.add_route("GET", CONTROL_PREFIX, get_index)
    app.router.add_route("GET", f"{CONTROL_PREFIX}/overload", get_overload)
    app.router.add_route("POST", f"{CONTROL_PREFIX}/overload", post_overload)
    app.router.add_route("GET", f"{CONTROL_PREFIX}/counters", get_counters)
    app.router.add_route("GET", f"{CONTROL_PREFIX}/digest", get_digest)
    app.router.add_route("GET", f"{CONTROL_PREFIX}/events", get_events)
    app.router.add_route("GET", f"{CONTROL_PREFIX}/faults", get_faults)
    app.router.add_route("POST", f"{CONTROL_PREFIX}/reset", post_reset)
    app.router.add_route("POST", f"{CONTROL_PREFIX}/faults", post_faults)
