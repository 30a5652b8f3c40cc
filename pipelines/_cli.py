"""What the sample pipelines share as command-line programs.

* :class:`SampleParser`: the sample's own flags, parsed with argparse; every
  remaining flag must be one of Beam's pipeline options, and an unknown one is
  an error that names the closest known flag (:func:`parse_args`).
* User errors (a bad value, a bad endpoint, a missing input) are one line on
  stderr and exit status 2, never a traceback.
* :func:`counter` and :func:`distribution`: the pipeline's Beam metrics, read
  from ``result.metrics()`` so that a summary is right on every runner, not
  only on one that runs in this process.
* :class:`Progress`: a progress line while a pipeline runs.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import logging
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, NoReturn, Optional, Sequence, TextIO, Tuple, TypeVar



# Notices apache-beam logs on the root logger at import time, on every run: without its gcp
# extra ("apitools not found"), and older ones (2.72) without crcmod (tfrecordio). A user error must
# stay one line on stderr.
_BEAM_IMPORT_NOTICES = ("apitools not found", "crcmod package not found")


def _not_a_beam_import_notice(record: logging.LogRecord) -> bool:
    return not any(notice in record.getMessage() for notice in _BEAM_IMPORT_NOTICES)


logging.getLogger().addFilter(_not_a_beam_import_notice)

from apache_beam.io.filesystems import FileSystems  # noqa: E402 (after the filter)
from apache_beam.metrics.metric import MetricsFilter  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions  # noqa: E402
from apache_beam.runners.runner import PipelineResult, PipelineState, create_runner  # noqa: E402

from raccoon_beam.batching import DEFAULT_MAX_BATCH_SIZE  # noqa: E402
from raccoon_beam.emulator import RaccoonEmulator  # noqa: E402
from raccoon_beam.io import METRICS_NAMESPACE as SINK_NAMESPACE  # noqa: E402

__all__ = [
    "SampleParser",
    "parse_args",
    "positive_int",
    "positive_float",
    "check",
    "check_input",
    "counter",
    "delivery_metrics",
    "DELIVERY_ROWS",
    "distribution",
    "count_lines",
    "has_metrics",
    "read_jsonl",
    "create_empty",
    "Progress",
    "call_with_deep_stack",
    "EXIT_USAGE",
    "EXIT_DEAD_LETTERS",
    "DEFAULT_PROGRESS_DELAY",
    "DEFAULT_MAX_BATCH_SIZE",
    "SINK_NAMESPACE",
]

# argparse's own status for a usage error; shells and CI read 2 as "called wrongly".
EXIT_USAGE = 2
# The run finished but events were not delivered (dead-lettered at stage send).
EXIT_DEAD_LETTERS = 1
# A run shorter than this prints no progress: its summary comes soon enough.
DEFAULT_PROGRESS_DELAY = 3.0
# The FnApiRunner chains each bundle's metrics onto the previous ones lazily,
# so reading the metrics of a stage that ran N bundles recurses N deep, and a
# PeriodicImpulse stage runs ~150 bundles a second. 512 MiB of stack holds
# more than 100,000 levels (the 8 MiB main thread crashes below 50,000): over
# 10 minutes of streaming. Only the pages used are committed.
DEEP_STACK_BYTES = 512 * 1024 * 1024
DEEP_RECURSION_LIMIT = 120_000

T = TypeVar("T")


class SampleParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit status 2.

    Abbreviations are off: a prefix of a sample flag is not silently taken
    for it, and is reported with the flag it resembles instead.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(**kwargs)

    def error(self, message: str) -> NoReturn:
        # argparse prints the whole usage first; one line is easier to read and to grep.
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _load_runner_options(beam_args: Sequence[str]) -> str:
    """Imports the runner that ``--runner`` names, so that its own options are known.

    Some runners define their options in their own module (the Dask runner's
    ``--dask_client_address``), and Beam knows an options class only once it
    is imported.

    Returns:
      Why the runner could not be loaded, or ``""``.
    """
    name = PipelineOptions(list(beam_args)).view_as(StandardOptions).runner
    if isinstance(name, str):
        try:
            create_runner(name)
        except Exception as exc:  # noqa: BLE001 - reported with an unknown flag, or when the pipeline is built
            return f"runner {name} could not be loaded: {exc}"
    return ""


def _beam_parser() -> argparse.ArgumentParser:
    """Beam's own parser of every pipeline option, through its public API."""
    captured: List[argparse.ArgumentParser] = []
    PipelineOptions([]).get_all_options(add_extra_args_fn=captured.append)
    return captured[0]


def _flags(parser: argparse.ArgumentParser) -> List[str]:
    return [flag for action in parser._actions for flag in action.option_strings if flag.startswith("--")]


def parse_args(parser: SampleParser, argv: Optional[Sequence[str]] = None) -> Tuple[argparse.Namespace, List[str]]:
    """Parses the sample's flags; checks that every other one is a Beam pipeline option.

    Args:
      parser: the sample's parser.
      argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
      The sample's arguments, and the remaining ones for ``PipelineOptions``.
    """
    args, rest = parser.parse_known_args(argv)
    runner_problem = _load_runner_options(rest)
    beam = _beam_parser()
    # Beam's parser exits with its usage on a bad value; report it as the sample's one line.
    beam.error = parser.error  # type: ignore[method-assign]
    _, unknown = beam.parse_known_args(rest)
    for arg in unknown:
        if arg == "--":
            break
        if not arg.startswith("-"):
            parser.error(f"unexpected argument {arg!r}")
        name = arg.split("=", 1)[0]
        close = difflib.get_close_matches(name, _flags(parser) + _flags(beam), n=1)
        hint = f"; did you mean {close[0]}?" if close else " (see --help; Beam's pipeline options are accepted too)"
        if runner_problem:
            hint += f" ({runner_problem})"
        parser.error(f"unknown flag {name}{hint}")
    return args, rest


def positive_int(text: str) -> int:
    """An argparse type: an integer above zero."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a number above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def check(parser: SampleParser, flag: str, make: Callable[[], T]) -> T:
    """Calls ``make``; a ``ValueError`` (bad configuration) becomes a usage error about ``flag``.

    Only for constructors that validate their settings, such as
    ``WriteToRaccoon(...)`` and ``PipelineOptions(...)``: a ``ValueError``
    there is the user's setting, never a bug of the run.
    """
    try:
        return make()
    except ValueError as exc:
        # Some of Beam's messages list one problem per line: keep the error on one line.
        parser.error(f"{flag}: " + "; ".join(line.strip(" :.") for line in str(exc).splitlines() if line.strip(" :.")))


def check_input(parser: SampleParser, pattern: str) -> List[str]:
    """The files ``pattern`` (a path or glob, local or remote) matches; a usage error if none."""
    try:
        found = FileSystems.match([pattern])[0].metadata_list
    except Exception as exc:  # noqa: BLE001 - any file system's reason is the user's to read
        parser.error(f"--input {pattern}: {exc}")
    if not found:
        parser.error(f"--input {pattern}: no such file")
    return sorted(metadata.path for metadata in found)


def has_metrics(result: PipelineResult) -> bool:
    """Whether the runner reports the pipeline's metrics (Beam's Dask runner, 2.77, does not)."""
    try:
        result.metrics()
    except NotImplementedError:
        return False
    return True


def _query(result: PipelineResult, kind: str, namespace: str, name: str) -> list:
    return result.metrics().query(MetricsFilter().with_namespace(namespace).with_name(name))[kind]


def _value(metric: Any) -> Any:
    # Runners that commit metrics report committed values; others only attempted ones.
    return metric.committed if metric.committed is not None else metric.attempted


def counter(result: PipelineResult, namespace: str, name: str) -> int:
    """A Beam counter's value, summed over the steps that update it (0 if none did)."""
    return sum(_value(metric) or 0 for metric in _query(result, "counters", namespace, name))


def distribution(result: PipelineResult, namespace: str, name: str) -> Tuple[int, int]:
    """A Beam distribution's ``(sum, count)``, over the steps that update it."""
    values = [_value(metric) for metric in _query(result, "distributions", namespace, name)]
    return sum(v.sum for v in values if v is not None), sum(v.count for v in values if v is not None)


# The sink's delivery metrics a summary shows when they are not zero: the
# count's key, its label and a note.
DELIVERY_ROWS = (
    ("retries", "retries", ""),
    ("requests_timed_out", "timed out", "requests whose outcome is unknown"),
    ("throttled_requests", "throttled", "requests held back (overload, rate limit, outage)"),
    ("throttled_seconds", "held back (s)", "wall clock: cumulativeThrottlingSeconds"),
    ("blocked_seconds", "waited for a slot (s)", "wall clock, max_in_flight full"),
    ("attempt_latency_ms", "latency per attempt (ms)", "mean, failures included"),
)


def delivery_metrics(result: PipelineResult) -> Dict[str, int]:
    """The sink's delivery metrics of :data:`DELIVERY_ROWS`, from the pipeline's Beam metrics."""
    total, count = distribution(result, SINK_NAMESPACE, "request_latency_ms")
    return {
        "retries": counter(result, SINK_NAMESPACE, "retries"),
        "requests_timed_out": counter(result, SINK_NAMESPACE, "requests_timed_out"),
        "throttled_requests": counter(result, SINK_NAMESPACE, "throttled_requests"),
        "throttled_seconds": counter(result, SINK_NAMESPACE, "cumulativeThrottlingSeconds"),
        "blocked_seconds": counter(result, SINK_NAMESPACE, "max_in_flight_blocked_seconds"),
        "attempt_latency_ms": round(total / count) if count else 0,
    }


def read_jsonl(path: str) -> List[Any]:
    """The records of a JSONL file (none if there is no file), through Beam's file systems."""
    if not FileSystems.exists(path):
        return []
    with FileSystems.open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def create_empty(path: str) -> None:
    """Creates an empty file at ``path`` (replacing any), through Beam's file systems."""
    FileSystems.create(path).close()


def count_lines(pattern: str) -> int:
    """Lines in the files matching ``pattern`` (0 if none), through Beam's file systems."""
    total = 0
    matched = FileSystems.match([pattern])[0].metadata_list
    for metadata in matched:
        with FileSystems.open(metadata.path) as handle:
            total += sum(1 for _ in handle)
    return total


def call_with_deep_stack(fn: Callable[[], T]) -> T:
    """Calls ``fn`` on a thread with a deep stack (see :data:`DEEP_STACK_BYTES`) and returns its result.

    Exceptions of ``fn`` are raised here. The recursion limit is raised for
    the call and restored after it.
    """
    outcome: List[Any] = []

    def target() -> None:
        try:
            outcome.append((True, fn()))
        except BaseException as exc:  # noqa: B036 - re-raised on the caller's thread
            outcome.append((False, exc))

    previous_stack, previous_limit = threading.stack_size(), sys.getrecursionlimit()
    threading.stack_size(DEEP_STACK_BYTES)
    try:
        thread = threading.Thread(target=target, name="sample-pipeline")
        thread.start()
    finally:
        threading.stack_size(previous_stack)
    sys.setrecursionlimit(max(previous_limit, DEEP_RECURSION_LIMIT))
    try:
        thread.join()
    finally:
        sys.setrecursionlimit(previous_limit)
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


class Progress:
    """Prints ``<elapsed> s: <n> events acknowledged, <rate> events/s`` while a pipeline runs.

    The count comes from the first source that has one: ``direct`` (e.g. the
    embedded emulator's count of accepted events, exact on every runner),
    else the Beam metrics of a runner that runs the pipeline in the
    background (``result.metrics()`` while ``result.state`` is not
    terminal). A runner that runs the pipeline inside ``pipeline.run()``
    (the local FnApiRunner) reports its metrics only at the end; with no
    direct count the line then says so.

    Args:
      direct: returns the events acknowledged so far, or ``None``.
      label: what ``direct`` counts.
      interval: seconds between lines.
      delay: no line before this many seconds (short runs print none).
      stream: where the lines go (stderr: stdout is the summary's).
    """

    def __init__(
        self,
        direct: Optional[Callable[[], Optional[int]]] = None,
        *,
        label: str = "events acknowledged",
        interval: float = 1.0,
        delay: float = DEFAULT_PROGRESS_DELAY,
        stream: Optional[TextIO] = None,
    ) -> None:
        self._direct = direct
        self._label = label
        self._interval = interval
        self._delay = delay
        self._stream = stream if stream is not None else sys.stderr
        self._result: Optional[PipelineResult] = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sample-progress", daemon=True)
        self._started = 0.0
        self.lines = 0

    def watch(self, result: PipelineResult) -> None:
        """Reads the counts from ``result``'s metrics from now on, while it runs."""
        self._result = result

    def __enter__(self) -> "Progress":
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _count(self) -> Tuple[Optional[int], str]:
        if self._direct is not None:
            count = self._direct()
            if count is not None:
                return count, self._label
        result = self._result
        if result is not None and not PipelineState.is_terminal(result.state):
            try:
                return counter(result, SINK_NAMESPACE, "events_acknowledged"), "events acknowledged"
            except Exception:  # noqa: BLE001 - a runner without live metrics
                pass
        return None, ""

    def _run(self) -> None:
        if self._stop.wait(self._delay):
            return
        last_time, last_count = time.monotonic(), None
        while True:
            now = time.monotonic()
            count, label = self._count()
            elapsed = now - self._started
            if count is None:
                line = f"{elapsed:5.0f} s: running"
                if not self.lines:
                    line += " (this runner reports its counts when the pipeline ends)"
            else:
                rate = (count - last_count) / (now - last_time) if last_count is not None else count / elapsed
                line = f"{elapsed:5.0f} s: {count:,} {label}, {rate:,.0f} events/s"
                last_time, last_count = now, count
            print(line, file=self._stream, flush=True)
            self.lines += 1
            if self._stop.wait(self._interval):
                return


@contextlib.contextmanager
def raccoon_endpoint(endpoint: Optional[str], transport: str = "grpc") -> Iterator[Tuple[str, Optional[RaccoonEmulator]]]:
    """Yields ``(endpoint, emulator or None)``: ``endpoint`` when given, else an embedded emulator's.

    Args:
      endpoint: a Raccoon endpoint URL (``--endpoint``), or None for the embedded emulator.
      transport: which of the emulator's endpoints: ``grpc``, ``rest`` or ``websocket``.
    """
    if endpoint:
        yield endpoint, None
        return
    with RaccoonEmulator() as emulator:
        endpoints = {
            "grpc": emulator.grpc_endpoint,
            "rest": emulator.rest_endpoint,
            "websocket": emulator.ws_endpoint,
        }
        yield endpoints[transport], emulator
