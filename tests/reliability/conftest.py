"""The reliability harness: run a pipeline under a fault, reconcile, check for leaks.

One function does the work for every fault x transport cell of the matrix,
:func:`run_case`: it starts an emulator, arms the fault (up front, or from a
"chaos" thread that acts while the pipeline runs: stop/start the server,
inject bursts, clear a slow spell), runs ``WriteToRaccoon`` on the
DirectRunner over events with unique ids, collects the dead letters through a
side channel (a JSONL file written by a DoFn), and reconciles:

* captured ids (the emulator) together with dead-lettered ids equal the input;
* duplicates (an id captured more than once) are counted, and allowed only
  for faults that are ambiguous by nature (the server captured the batch but
  the client never learnt it);
* the run finished within a stated bound;
* no client thread or socket is left after the pipeline.

When ``RACCOON_RELIABILITY_REPORT`` names a file, every result row is appended
to it as one JSON line; ``python -m tests.reliability.report`` renders those
rows as the markdown table of ``docs/reliability.md``.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional

import apache_beam as beam
import pytest

from raccoon_beam import RaccoonDeadLetter, RetryPolicy, WriteToRaccoon
from raccoon_beam.delivery import shared
from raccoon_beam.emulator import RaccoonEmulator

from tests.reliability.report import record_row
from tests.transports.helpers import client_sockets, eventually

TRANSPORTS = ("grpc", "rest", "websocket")
EVENT_TYPES = ("page_view", "click", "add_to_cart", "checkout", "search")

# Retries that never wait long: faults in the matrix last seconds, not minutes.
FAST_RETRY = RetryPolicy(max_attempts=1000, initial_backoff=0.001, max_backoff=0.05, deadline=90.0)

# Threads that are process-wide and not the sink's: gRPC's asyncio poller and
# the DirectRunner's own worker/status servers.
_FOREIGN_THREADS = ("_poll_wrapper", "_serve", "raccoon-emulator", "ThreadPoolExecutor", "Thread-")


def endpoint_of(emulator: RaccoonEmulator, transport: str) -> str:
    return {
        "grpc": emulator.grpc_endpoint,
        "rest": emulator.rest_endpoint,
        "websocket": emulator.ws_endpoint,
    }[transport]


def make_event(i: int) -> Dict[str, Any]:
    return {"id": i, "event_name": EVENT_TYPES[i % len(EVENT_TYPES)], "user": f"u-{i % 97}", "page": f"/p/{i}"}


def event_type_of(element: Dict[str, Any]) -> str:
    return element["event_name"]


# ------------------------------------------------------------------ side channel


class RecordDeadLetters(beam.DoFn):
    """Appends every dead letter to a JSONL file (works across bundles and processes)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._handle = None

    def start_bundle(self) -> None:
        self._handle = open(self._path, "a", encoding="utf-8")

    def process(self, letter: RaccoonDeadLetter) -> None:
        assert isinstance(letter, RaccoonDeadLetter), letter
        element = letter.element
        record = {
            "id": element.get("id") if isinstance(element, dict) else None,
            "element": repr(element)[:200],
            "event_type": letter.event_type,
            "stage": letter.stage,
            "error": letter.error,
            "code": letter.code if isinstance(letter.code, (int, str, type(None))) else repr(letter.code),
            "attempts": letter.attempts,
            "req_guid": letter.req_guid,
            "repr": repr(letter)[:2000],
        }
        self._handle.write(json.dumps(record) + "\n")

    def finish_bundle(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def read_dead_letters(path: str) -> List[Dict[str, Any]]:
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def run_pipeline(
    elements: Iterable[Any],
    letters_path: str,
    prepare: Optional[Callable[[Any], Any]] = None,
    **write_kwargs: Any,
) -> List[Dict[str, Any]]:
    """Runs ``Create(elements) | Map(prepare) | WriteToRaccoon(**write_kwargs)``; returns the dead letters.

    ``prepare`` builds elements that ``Create`` cannot hold (e.g. circular ones).
    """
    with beam.Pipeline() as pipeline:
        source = pipeline | beam.Create(list(elements), reshuffle=False)
        if prepare is not None:
            source = source | "Prepare" >> beam.Map(prepare)
        result = source | WriteToRaccoon(**write_kwargs)
        _ = result.failed | "RecordDeadLetters" >> beam.ParDo(RecordDeadLetters(letters_path))
    return read_dead_letters(letters_path)


def run_generated_pipeline(
    n_events: int,
    make: Callable[[int], Any],
    letters_path: str,
    chunk: int = 10_000,
    read_letters: bool = True,
    **write_kwargs: Any,
) -> List[Dict[str, Any]]:
    """Like :func:`run_pipeline`, but the elements are generated on the worker, chunk by chunk.

    Nothing of size ``n_events`` is ever held in memory (the soak test); with
    ``read_letters=False`` the dead letters stay in their file, unread.
    """
    starts = list(range(0, n_events, chunk))

    def expand(start: int) -> Iterable[Any]:
        for i in range(start, min(start + chunk, n_events)):
            yield make(i)

    with beam.Pipeline() as pipeline:
        result = (
            pipeline
            | beam.Create(starts, reshuffle=False)
            | "Generate" >> beam.FlatMap(expand)
            | WriteToRaccoon(**write_kwargs)
        )
        _ = result.failed | "RecordDeadLetters" >> beam.ParDo(RecordDeadLetters(letters_path))
    return read_dead_letters(letters_path) if read_letters else []


# ------------------------------------------------------------------ leak checks


def sink_threads() -> set:
    """Live threads that may belong to the sink (its client loops and helpers)."""
    return {
        t
        for t in threading.enumerate()
        if t.is_alive()
        and t is not threading.current_thread()
        and (t.name.startswith("raccoon-beam") or not t.name.startswith(_FOREIGN_THREADS))
    }


def assert_no_leaks(threads_before: set, ports: Iterable[int], bound: float = 15.0) -> None:
    """No client socket to ``ports`` and no new sink thread (bound absorbs a loaded machine).

    The pipeline's shared sender lingers for a next user; with none to come,
    it is closed here, as it would be a few seconds later.
    """
    shared.close_idle_senders()
    ports = list(ports)
    assert eventually(lambda: not client_sockets(ports), timeout=bound), f"sockets left: {client_sockets(ports)}"
    assert eventually(lambda: not (sink_threads() - threads_before), timeout=bound), (
        f"threads left: {sorted(t.name for t in sink_threads() - threads_before)}"
    )


# ------------------------------------------------------------------ the matrix


class Chaos:
    """A background thread that misbehaves while the pipeline runs.

    ``action(emulator, stop_event, notes)`` runs once on the thread; it must
    return soon after ``stop_event`` is set, and may count what it injected
    in ``notes["injected"]``. Exceptions are kept and re-raised by :meth:`join`.
    """

    def __init__(self, action: Callable[..., None], emulator: RaccoonEmulator) -> None:
        self._stop = threading.Event()
        self._error: Optional[BaseException] = None
        self.notes: Dict[str, Any] = {}

        def run() -> None:
            try:
                action(emulator, self._stop, self.notes)
            except BaseException as exc:  # re-raised in the test's thread
                self._error = exc

        self._thread = threading.Thread(target=run, name="reliability-chaos", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float = 60.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the chaos thread did not stop"
        if self._error is not None:
            raise self._error


@dataclasses.dataclass(frozen=True)
class Fault:
    """One row family of the matrix.

    Attributes:
      name: the fault's id (pytest id and table row).
      description: what is injected, for the report.
      transports: where it applies.
      emulator: RaccoonEmulator keyword arguments.
      arm: called with the started emulator before the pipeline runs.
      chaos: a Chaos action run while the pipeline runs.
      down_at_start: the emulator is stopped before the pipeline starts.
      ambiguous: the transports on which the fault can make the server capture
        a batch whose ack the client never sees, so duplicates are allowed
        (and counted); True for all.
      all_dead: every event must be dead-lettered (server down for good).
      write: extra WriteToRaccoon arguments (retry policy, timeout).
      bound: seconds within which the pipeline must finish.
      injected_kinds: emulator fault counters that prove the fault happened.
    """

    name: str
    description: str
    transports: tuple = TRANSPORTS
    emulator: Dict[str, Any] = dataclasses.field(default_factory=dict)
    arm: Optional[Callable[[RaccoonEmulator], None]] = None
    chaos: Optional[Callable[[RaccoonEmulator, threading.Event, Dict[str, Any]], None]] = None
    down_at_start: bool = False
    ambiguous: Any = False
    all_dead: bool = False
    write: Dict[str, Any] = dataclasses.field(default_factory=dict)
    bound: float = 120.0
    injected_kinds: tuple = ()
    patch_conn_ids: bool = False

    def ambiguous_on(self, transport: str) -> bool:
        if isinstance(self.ambiguous, bool):
            return self.ambiguous
        return transport in self.ambiguous


@dataclasses.dataclass
class CaseResult:
    """One row of the table."""

    fault: str
    transport: str
    events_in: int
    captured: int  # distinct input ids the server captured
    captured_total: int  # events the server captured, duplicates included
    dead_lettered: int  # distinct ids dead-lettered
    duplicates: int  # captured_total - captured
    captured_and_dead: int  # ids both captured and dead-lettered (ambiguous sends)
    lost: int  # input ids neither captured nor dead-lettered
    unexpected: int  # captured/dead-lettered ids that were not in the input
    seconds: float
    injected: int  # requests the emulator's faults hit
    dead_stages: Dict[str, int]
    ambiguous: bool

    def as_row(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def reconcile(
    fault: str,
    transport: str,
    input_ids: List[int],
    captured_ids: List[int],
    letters: List[Dict[str, Any]],
    seconds: float,
    injected: int,
    ambiguous: bool,
) -> CaseResult:
    wanted = set(input_ids)
    counts = collections.Counter(captured_ids)
    dead = {letter["id"] for letter in letters}
    captured = set(counts)
    return CaseResult(
        fault=fault,
        transport=transport,
        events_in=len(input_ids),
        captured=len(captured & wanted),
        captured_total=sum(counts.values()),
        dead_lettered=len(dead & wanted),
        duplicates=sum(counts.values()) - len(counts),
        captured_and_dead=len(captured & dead),
        lost=len(wanted - captured - dead),
        unexpected=len((captured | dead) - wanted),
        seconds=round(seconds, 2),
        injected=injected,
        dead_stages=dict(collections.Counter(letter["stage"] for letter in letters)),
        ambiguous=ambiguous,
    )


class ConnIdPlan:
    """Replaces ``TransportConfig.new_conn_id`` so that the first ids are known.

    The WebSocket duplicate-id case needs the client to use an id a squatter
    already holds; the sink draws its ids at random, so the test hands out
    ``squat-0``, ``squat-1``, ... first, then random ones.
    """

    def __init__(self, squatted: int) -> None:
        self.squatted = [f"squat-{i}" for i in range(squatted)]
        self._lock = threading.Lock()
        self._next = 0

    def __call__(self, config) -> str:
        import uuid

        if config.conn_id is not None:
            return config.conn_id
        with self._lock:
            index, self._next = self._next, self._next + 1
        if index < len(self.squatted):
            return self.squatted[index]
        return f"{config.conn_id_prefix}-{uuid.uuid4().hex}"


class Squatters:
    """Raw WebSocket connections that hold connection ids, on their own loop."""

    def __init__(self, url: str, ids: List[str], header: str = "X-User-ID") -> None:
        from raccoon_beam._loop import EventLoopThread

        self._loop = EventLoopThread(name="reliability-squatters").start()
        self._url, self._ids, self._header = url, ids, header
        self._session = None
        self._sockets: List[Any] = []
        self._loop.run(self._open(), timeout=30)

    async def _open(self) -> None:
        import aiohttp

        self._session = aiohttp.ClientSession()
        for conn_id in self._ids:
            self._sockets.append(await self._session.ws_connect(self._url, headers={self._header: conn_id}))

    async def _close(self) -> None:
        for ws in self._sockets:
            await ws.close()
        if self._session is not None:
            await self._session.close()

    def close(self) -> None:
        try:
            self._loop.run(self._close(), timeout=30)
        finally:
            self._loop.stop()


def run_case(fault: Fault, transport: str, tmp_path, monkeypatch, n_events: int = 20_000) -> CaseResult:
    """Runs ``n_events`` through WriteToRaccoon under ``fault``; reconciles; checks leaks and time."""
    letters_path = str(tmp_path / f"dead-{fault.name}-{transport}.jsonl")
    emulator = RaccoonEmulator(**fault.emulator).start()
    squatters: Optional[Squatters] = None
    chaos: Optional[Chaos] = None
    try:
        endpoint = endpoint_of(emulator, transport)
        ports = (emulator.grpc_port, emulator.http_port)
        if fault.patch_conn_ids:
            from raccoon_beam.transports import TransportConfig

            plan = ConnIdPlan(squatted=3)
            squatters = Squatters(emulator.ws_endpoint, plan.squatted)
            assert eventually(lambda: emulator.counters().connections_open == len(plan.squatted))
            monkeypatch.setattr(TransportConfig, "new_conn_id", lambda config: plan(config))
        if fault.arm is not None:
            fault.arm(emulator)
        if fault.down_at_start:
            emulator.stop()
        events = [make_event(i) for i in range(n_events)]
        write = {"retry": FAST_RETRY, "max_batch_size": 500, **fault.write}
        threads_before = sink_threads()
        if fault.chaos is not None:
            chaos = Chaos(fault.chaos, emulator)
            chaos.start()
        started = time.monotonic()
        letters = run_pipeline(
            events, letters_path, endpoint=endpoint, event_type=event_type_of, **write
        )
        seconds = time.monotonic() - started
        chaos_injected = 0
        if chaos is not None:
            chaos.join()
            chaos_injected = chaos.notes.get("injected", 0)
            chaos = None
        refused = emulator.counters().connections_refused if emulator.running else 0
        if squatters is not None:  # their sockets are the test's, not the sink's
            squatters.close()
            squatters = None
        assert_no_leaks(threads_before, ports)
        if not emulator.running:
            emulator.start()  # to read what it captured before it went down
        captured_ids = [json.loads(e.event_bytes)["id"] for e in emulator.events()]
        counters = emulator.counters()
        injected = chaos_injected + sum(counters.injected(kind) for kind in fault.injected_kinds)
        if fault.patch_conn_ids:
            injected += refused
        result = reconcile(
            fault.name,
            transport,
            [e["id"] for e in events],
            captured_ids,
            letters,
            seconds,
            injected,
            fault.ambiguous_on(transport),
        )
        record_row(result.as_row())
        # Every letter of the matrix comes from sending, with a readable reason.
        for letter in letters:
            assert letter["stage"] == "send", letter
            assert letter["error"] and "Traceback" not in letter["error"], letter
            assert letter["req_guid"], letter
            # Held behind an outage that outlasted the policy: not sent at all, and said so.
            assert letter["attempts"] >= 1 or letter["error"].startswith("not sent: "), letter
        return result
    finally:
        if chaos is not None:
            chaos.join()
        if squatters is not None:
            squatters.close()
        emulator.stop()


def check_case(result: CaseResult, fault: Fault) -> None:
    """The assertions every row must pass."""
    ambiguous = fault.ambiguous_on(result.transport)
    assert result.lost == 0, result
    assert result.unexpected == 0, result
    assert result.captured + result.dead_lettered - result.captured_and_dead == result.events_in, result
    assert result.seconds < fault.bound, f"took {result.seconds} s, bound {fault.bound} s: {result}"
    if not ambiguous:
        assert result.duplicates == 0, result
        assert result.captured_and_dead == 0, result
    if fault.all_dead:
        assert result.dead_lettered == result.events_in and result.captured == 0, result
    elif not ambiguous:
        # Transient faults heal within the retry policy: nothing should be dead-lettered.
        assert result.dead_lettered == 0, result


@pytest.fixture
def letters_path(tmp_path) -> str:
    return str(tmp_path / "dead_letters.jsonl")


# ------------------------------------------------------------------ hand-made misbehaving servers


class TinyServer:
    """A misbehaving server on its own loop thread, for what the emulator cannot do.

    Either an aiohttp application (``routes``: ``{(method, path): handler}``,
    handlers are coroutines taking an ``aiohttp.web.Request``) or a raw TCP
    server (``on_connect(reader, writer)`` coroutine). Listens on 127.0.0.1
    on an ephemeral port; :meth:`close` leaves no thread or socket.
    """

    def __init__(self, *, routes=None, on_connect=None, ssl_context=None) -> None:
        from raccoon_beam._loop import EventLoopThread

        assert (routes is None) != (on_connect is None)
        self._loop = EventLoopThread(name="reliability-tiny-server").start()
        self._runner = None
        self._server = None
        self._writers: set = set()
        self.requests: List[Dict[str, Any]] = []
        try:
            self.port = self._loop.run(self._start(routes, on_connect, ssl_context), timeout=30)
        except BaseException:
            self._loop.stop()
            raise

    async def _start(self, routes, on_connect, ssl_context) -> int:
        import asyncio

        from aiohttp import web

        if routes is not None:
            app = web.Application()

            def recorded(handler):
                async def wrapper(request):
                    self.requests.append({"path": request.path, "headers": dict(request.headers)})
                    return await handler(request)

                return wrapper

            for (method, path), handler in routes.items():
                app.router.add_route(method, path, recorded(handler))
            self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5, handle_signals=False)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ssl_context)
            await site.start()
            return site._server.sockets[0].getsockname()[1]

        async def handle(reader, writer):
            self._writers.add(writer)
            try:
                await on_connect(reader, writer)
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                self._writers.discard(writer)
                writer.close()

        self._server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ssl_context)
        return self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            await self._server.wait_closed()

    def close(self) -> None:
        try:
            self._loop.run(self._stop(), timeout=30)
        finally:
            self._loop.stop()

    def __enter__(self) -> "TinyServer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
