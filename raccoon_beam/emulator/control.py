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
  argument is an ``Outcome.to_dict()``. The methods and their arguments are
  read from the signatures of the methods marked
  :func:`~raccoon_beam.emulator.faults.fault_command` (:func:`fault_methods`),
  listed in the index, and every argument is checked against its annotation
  (finite numbers, ranges) before the call: a bad one is a 400 whose error
  names what is valid.
- ``GET  /_emulator/credential``: the header ``require_header`` asks for and
  its current value (404 without ``require_header``).
- ``POST /_emulator/credential/rotate``: draws a new value now.
- ``GET  /_emulator/overload``: the capacity, the gateway and the buffer's state.
- ``POST /_emulator/overload``: ``{"capacity_events_per_second": 5000, ...}``
  changes those settings (see :mod:`raccoon_beam.emulator.overload`).

Every ``POST`` needs ``Content-Type: application/json``, and every route
refuses requests from another origin (:mod:`raccoon_beam.emulator.access`).

The console (:mod:`raccoon_beam.emulator.console`) adds its routes under
``/_emulator/ui``; the index lists them too. Beyond loopback every route
needs the emulator's token (:mod:`raccoon_beam.emulator.access`).

Raccoon has no such paths; the real server answers them 404.
"""

from __future__ import annotations

import base64
import functools
import inspect
import math
import typing
from typing import Any, Callable, Dict, List, Mapping, Optional

import orjson
from aiohttp import web

from raccoon_beam.emulator.capture import Capture
from raccoon_beam.emulator.counters import Counters
from raccoon_beam.emulator.credential import RequiredHeader
from raccoon_beam.emulator.faults import Faults, is_fault_command
from raccoon_beam.emulator.outcomes import Outcome
from raccoon_beam.emulator.overload import Overload

__all__ = ["CONTROL_PREFIX", "add_control_routes", "control_index", "fault_methods", "call_fault"]

CONTROL_PREFIX = "/_emulator"


@functools.lru_cache(maxsize=1)
def fault_methods() -> Dict[str, Dict[str, Any]]:
    """The Faults methods the control route calls, read from their signatures.

    Returns:
      ``{name: {"description": first docstring line, "args": [{"name",
      "type", "required", "default"}]}}``; ``type`` is the annotation as
      written (``"Optional[int]"``), ``default`` present when not required.
    """
    methods: Dict[str, Dict[str, Any]] = {}
    for name, method in inspect.getmembers(Faults, predicate=inspect.isfunction):
        if not is_fault_command(method):
            continue
        args = []
        for parameter in list(inspect.signature(method).parameters.values())[1:]:  # without self
            arg: Dict[str, Any] = {
                "name": parameter.name,
                "type": str(parameter.annotation),
                "required": parameter.default is inspect.Parameter.empty,
            }
            if not arg["required"]:
                arg["default"] = parameter.default
            args.append(arg)
        doc = (inspect.getdoc(method) or "").split("\n", 1)[0]
        methods[name] = {"description": doc, "args": args}
    return methods


def _signature_text(name: str, spec: Mapping[str, Any]) -> str:
    """``fail_next(n: int, outcome: Outcome, transport: Optional[str] = None)``."""
    args = [
        f"{a['name']}: {a['type']}" + ("" if a["required"] else f" = {a['default']!r}") for a in spec["args"]
    ]
    return f"{name}({', '.join(args)})"


def _valid_methods() -> str:
    return "; ".join(_signature_text(name, spec) for name, spec in fault_methods().items())


def call_fault(faults: Faults, command: Any) -> None:
    """Checks ``{"method": ..., "args": {...}}`` against the method's signature, then calls it.

    Raises:
      ValueError: the method is unknown, an argument is unknown, missing or
        not of its annotated type (a number must be finite), or the method
        refuses the value (a range); the message says what is valid.
    """
    if not isinstance(command, dict) or not isinstance(command.get("method"), str):
        raise ValueError(f'expected {{"method": name, "args": {{...}}}}; methods: {_valid_methods()}')
    name = command["method"]
    spec = fault_methods().get(name)
    if spec is None:
        raise ValueError(f"unknown fault method {name!r}; methods: {_valid_methods()}")
    args = command.get("args") or {}
    if not isinstance(args, dict):
        raise ValueError(f"args must be an object: {_signature_text(name, spec)}")
    known = {a["name"] for a in spec["args"]}
    unknown = sorted(set(args) - known)
    missing = [a["name"] for a in spec["args"] if a["required"] and a["name"] not in args]
    if unknown or missing:
        problem = f"unknown argument(s) {unknown}" if unknown else f"missing argument(s) {missing}"
        raise ValueError(f"{problem}: {_signature_text(name, spec)}")
    method = getattr(faults, name)
    hints = typing.get_type_hints(getattr(Faults, name), globalns={"Outcome": Outcome, **vars(typing)})
    converted = {arg: _converted(name, arg, value, hints[arg]) for arg, value in args.items()}
    method(**converted)


def _converted(method: str, arg: str, value: Any, hint: Any) -> Any:
    """``value`` (from JSON) as the annotation ``hint`` wants it, or ValueError."""
    options = typing.get_args(hint) if typing.get_origin(hint) is typing.Union else (hint,)
    if value is None and type(None) in options:
        return None
    for option in options:
        if option is Outcome and isinstance(value, dict):
            return Outcome.from_dict(value)
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ValueError(f"{method}: {arg} must be a finite number, not {value!r}")
            return float(value)
        if option is str and isinstance(value, str):
            return value
    names = {type(None): "null", Outcome: "an Outcome object (Outcome.to_dict())"}
    wanted = " or ".join(names.get(o, getattr(o, "__name__", str(o))) for o in options)
    raise ValueError(f"{method}: {arg} must be {wanted}, not {value!r:.80}")


async def _json_body(request: web.Request) -> Any:
    """The request's JSON body; ValueError if it is not strict JSON.

    Not ``request.json()``: Python's json accepts ``NaN`` and ``Infinity``,
    which no setting or fault argument may be.
    """
    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"the body is not JSON ({exc})") from None


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
        """This list of the control routes, and of the fault methods with their arguments."""
        return web.json_response({"routes": control_index(request.app), "fault_methods": fault_methods()})

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
            try:
                command = await _json_body(request)
            except ValueError as exc:
                raise ValueError(f"{exc}; methods: {_valid_methods()}") from None
            call_fault(faults, command)
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response(
                {"ok": False, "error": str(exc), "fault_methods": fault_methods()}, status=400
            )
        return web.json_response({"ok": True})

    async def get_overload(_: web.Request) -> web.Response:
        """The capacity, the gateway and the buffer's state (requests blocked, buffered, publishing)."""
        return web.json_response(overload.describe())

    async def post_overload(request: web.Request) -> web.Response:
        """Changes the capacity or the gateway: {"capacity_events_per_second": 5000, "gateway_queue_depth": 50}."""
        try:
            changes = await _json_body(request)
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
