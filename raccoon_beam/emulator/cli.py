"""``python -m raccoon_beam.emulator`` / ``raccoon-emulator``: the emulator as a server.

The settings' flags are generated from :class:`~raccoon_beam.emulator.config.EmulatorConfig`
(one flag per field, ``--grpc-port`` for ``grpc_port``, with the field's help
text, Raccoon setting and default; a Mapping field takes its flag once per
entry, ``--decode click=json --decode view=hex`` for ``decoders``); the fault
flags configure :class:`~raccoon_beam.emulator.faults.Faults` at start.

On start it prints one ``name=value`` line per endpoint (the console's URL,
with its token in the fragment when one is required: the only place the
token is printed), then ``ready``; while
running, a line of accepted events and batches: rewritten in place every
second on a terminal, otherwise (a log file, a pipe) written only when the
counts changed, at most every 10 seconds. On SIGTERM or Ctrl-C it stops
cleanly, prints a final ``total`` line and exits 0. A port that cannot be
listened on is one line on stderr and exit status 1.

Only the standard library and the settings are imported before the
arguments are parsed, so that ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import collections.abc
import dataclasses
import os
import select
import signal
import socket
import sys
import time
import typing
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, TextIO, Tuple

from raccoon_beam.emulator.config import (
    CONSOLE_TOKEN_ENV,
    TRANSPORTS,
    EmulatorConfig,
    has_flag,
    setting_default,
    setting_help,
)

if TYPE_CHECKING:
    from raccoon_beam.emulator.outcomes import Outcome
    from raccoon_beam.emulator.server import RaccoonEmulator

__all__ = [
    "main",
    "build_parser",
    "config_from_args",
    "config_to_argv",
    "setting_flag",
    "DEFAULT_STATS_INTERVAL",
    "DEFAULT_LOG_STATS_INTERVAL",
    "DEFAULT_FAIL_STATUS",
    "PORT_IN_USE_EXIT",
]

# On a terminal the line is rewritten in place, so a fresh one each second costs nothing.
DEFAULT_STATS_INTERVAL = 1.0
# Off a terminal every line stays in the log: one every 10 s, and only when a count moved.
DEFAULT_LOG_STATS_INTERVAL = 10.0
# A failure a client retries (Raccoon behind a proxy that is overloaded).
DEFAULT_FAIL_STATUS = 503
# Not a usage error (2): the command was right, the machine was not ready for it.
PORT_IN_USE_EXIT = 1

_PROG = "raccoon-emulator"


class _HelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: ...)`` to every option's help that does not state its default."""

    def _get_help_string(self, action: argparse.Action) -> Optional[str]:
        text = action.help or ""
        if "%(default)" in text or "(default:" in text or action.default is argparse.SUPPRESS:
            return text
        return f"{text} (default: %(default)s)"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def setting_flag(field: "dataclasses.Field[Any]") -> str:
    """The flag of an EmulatorConfig field: ``--grpc-port`` for ``grpc_port``, or its metadata's ``flag``.

    Args:
      field: a field of :class:`~raccoon_beam.emulator.config.EmulatorConfig`.
    """
    return _flag(field.metadata.get("flag") or field.name)


class _KeyValueAction(argparse.Action):
    """``KEY=VALUE``, once per entry: the flag of a Mapping setting (``--decode click=json``)."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: Any = None
    ) -> None:
        key, sep, value = str(values).partition("=")
        if not sep or not key:
            raise argparse.ArgumentError(self, f"expected {self.metavar or 'KEY=VALUE'}, not {values!r}")
        entries = dict(getattr(namespace, self.dest) or {})  # a copy: never the shared default
        entries[key] = value
        setattr(namespace, self.dest, entries)


def _add_setting(group: argparse._ArgumentGroup, field: "dataclasses.Field[Any]", hint: Any) -> None:
    """Adds the flag of one EmulatorConfig field, typed after its annotation."""
    default = setting_default(field, cli=True)
    help_text = setting_help(field).replace("%", "%%")  # argparse %-formats help
    args = typing.get_args(hint)
    if typing.get_origin(hint) is typing.Union and type(None) in args:  # Optional[X] -> X
        hint = next(a for a in args if a is not type(None))
    if hint is bool:
        action = group.add_argument(
            setting_flag(field), dest=field.name, action=argparse.BooleanOptionalAction, default=default
        )
        # Set after construction: Python < 3.12's BooleanOptionalAction appends its own default text.
        action.help = help_text
        return
    kwargs: Dict[str, Any] = {"dest": field.name, "default": default, "help": help_text}
    if typing.get_origin(hint) is tuple:  # Tuple[str, str]: that many words
        kwargs.update(nargs=len(typing.get_args(hint)), type=typing.get_args(hint)[0])
    elif typing.get_origin(hint) in (dict, collections.abc.Mapping):  # Mapping[str, str]: KEY=VALUE, repeated
        kwargs.update(action=_KeyValueAction)
        kwargs["help"] += "; repeatable"
    else:
        kwargs["type"] = hint
    if field.metadata.get("choices"):
        kwargs["choices"] = field.metadata["choices"]
    if field.metadata.get("metavar"):
        kwargs["metavar"] = field.metadata["metavar"]
    group.add_argument(setting_flag(field), **kwargs)


def build_parser() -> argparse.ArgumentParser:
    """The command line: the EmulatorConfig fields, the fault flags and the output flags."""
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="A Raccoon-compatible server (gRPC, REST, WebSocket) with capture and fault injection. "
        "[Raccoon: X] names the Raccoon setting an option stands for.",
        formatter_class=_HelpFormatter,
    )
    settings = parser.add_argument_group("settings")
    hints = typing.get_type_hints(EmulatorConfig)
    for field in dataclasses.fields(EmulatorConfig):
        if has_flag(field):
            _add_setting(settings, field, hints[field.name])
    settings.add_argument(
        "--console-token-file",
        metavar="PATH",
        help=f"file whose first line is the console token (default: ${CONSOLE_TOKEN_ENV} if set; else none on "
        "loopback and one generated elsewhere); the token itself never goes on a command line, which every "
        "user of the machine can read",
    )
    faults = parser.add_argument_group("faults", "rules set at start; the control routes change them later")
    faults.add_argument("--fail-fraction", type=float, default=0.0, help="fail this fraction of requests")
    faults.add_argument("--fail-next", type=int, default=0, help="fail the first N requests")
    how = faults.add_mutually_exclusive_group()
    how.add_argument(
        "--fail-status", type=int, default=DEFAULT_FAIL_STATUS, help="HTTP status of the failed requests"
    )
    how.add_argument(
        "--fail-code",
        help="answer failed requests with this Raccoon code instead, e.g. CODE_INTERNAL_ERROR (default: none)",
    )
    how.add_argument(
        "--fail-grpc", help="answer failed requests with this gRPC status instead, e.g. UNAVAILABLE (default: none)"
    )
    faults.add_argument(
        "--retry-after", type=float, help="Retry-After seconds sent with --fail-status (default: none sent)"
    )
    faults.add_argument(
        "--fail-transport", choices=TRANSPORTS, help="fail only this transport (default: every transport)"
    )
    faults.add_argument("--seed", type=int, default=0, help="seed of the random choices of the fraction rules")
    faults.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    faults.add_argument(
        "--reject-event-type",
        action="append",
        default=[],
        metavar="TYPE",
        help="reject every event of this type; repeatable (default: none)",
    )
    faults.add_argument(
        "--fail-publish-fraction", type=float, default=0.0, help="fraction of events whose publishing fails"
    )
    output = parser.add_argument_group("output")
    output.add_argument(
        "--stats-interval",
        type=float,
        default=None,
        help=f"seconds between count lines; 0: none (default: {DEFAULT_STATS_INTERVAL:g} on a terminal, "
        f"{DEFAULT_LOG_STATS_INTERVAL:g} otherwise, and then only when the counts changed)",
    )
    return parser


def config_from_args(args: argparse.Namespace, environ: Optional[Mapping[str, str]] = None) -> EmulatorConfig:
    """The EmulatorConfig of parsed arguments (each field from its flag; the token from a file or the environment).

    Args:
      args: the parsed arguments.
      environ: where ``$RACCOON_EMULATOR_CONSOLE_TOKEN`` is read (default: ``os.environ``).

    Raises:
      ValueError: a setting is invalid, or the token file cannot be read.
    """
    values = {field.name: getattr(args, field.name) for field in dataclasses.fields(EmulatorConfig) if has_flag(field)}
    return EmulatorConfig(**values, console_token=_console_token(args, os.environ if environ is None else environ))


def _console_token(args: argparse.Namespace, environ: Mapping[str, str]) -> Optional[str]:
    path = getattr(args, "console_token_file", None)
    if path:
        try:
            with open(path, encoding="utf-8") as handle:
                return handle.readline().strip()
        except OSError as exc:
            raise ValueError(f"--console-token-file: cannot read {path}: {exc.strerror or exc}") from None
    return environ.get(CONSOLE_TOKEN_ENV)


def config_to_argv(settings: Mapping[str, Any]) -> List[str]:
    """The flags that set these EmulatorConfig fields: the inverse of :func:`config_from_args`.

    Args:
      settings: field name -> value, e.g. ``{"ack": "sync", "dedup": True}``.

    Raises:
      TypeError: a name is not a field (the message names the closest one).
      ValueError: a value is invalid, or the setting has no flag (the token:
        pass it in ``$RACCOON_EMULATOR_CONSOLE_TOKEN`` or a file).
    """
    EmulatorConfig.build(None, settings)  # the same checks, and errors, as RaccoonEmulator(**settings)
    fields = {field.name: field for field in dataclasses.fields(EmulatorConfig)}
    argv: List[str] = []
    for name, value in settings.items():
        if not has_flag(fields[name]):
            raise ValueError(
                f"{name} never goes on a command line (every user of the machine can read it): "
                f"pass it in ${CONSOLE_TOKEN_ENV} or --console-token-file"
            )
        flag = setting_flag(fields[name])
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, (tuple, list)):
            argv += [flag, *(str(v) for v in value)]
        elif isinstance(value, Mapping):
            for key, entry in value.items():
                if "=" in str(key):
                    raise ValueError(f"{name}: a key cannot contain '=' ({key!r}) on the command line")
                argv += [flag, f"{key}={entry}"]
        elif value is not None:  # None: the default of the Optional fields
            argv += [flag, str(value)]
    return argv


def _outcome(args: argparse.Namespace) -> "Outcome":
    from raccoon_beam.emulator.outcomes import Outcome

    if args.fail_code:
        return Outcome.raccoon(args.fail_code)
    if args.fail_grpc:
        return Outcome.grpc(args.fail_grpc)
    return Outcome.http(args.fail_status, retry_after=args.retry_after)


def _configure_faults(emu: "RaccoonEmulator", args: argparse.Namespace) -> None:
    faults = emu.faults
    if args.fail_next:
        faults.fail_next(args.fail_next, _outcome(args), transport=args.fail_transport)
    if args.fail_fraction:
        faults.fail_fraction(args.fail_fraction, _outcome(args), seed=args.seed, transport=args.fail_transport)
    if args.latency:
        faults.add_latency(args.latency, transport=args.fail_transport)
    for event_type in args.reject_event_type:
        faults.reject_event_type(event_type)
    if args.fail_publish_fraction:
        faults.fail_publish(fraction=args.fail_publish_fraction, seed=args.seed)


class _StatsLine:
    """The running counts line, and whether they moved since the last one written."""

    def __init__(self, emu: "RaccoonEmulator") -> None:
        self._emu = emu
        self._events = self._batches = 0
        self._state = self._read()[1]
        self._at = time.monotonic()

    def _read(self) -> Tuple[Tuple[int, int], Tuple[int, ...]]:
        counters = self._emu.counters()
        events, batches = counters.total_events_accepted, counters.accepted()
        return (events, batches), (events, batches, counters.rejected(), counters.injected(), counters.connections_open)

    def next(self, only_on_change: bool) -> Optional[str]:
        """The line to write now, or None: ``only_on_change`` and nothing moved."""
        (events, batches), state = self._read()
        if only_on_change and state == self._state:
            return None
        now = time.monotonic()
        elapsed, self._at = now - self._at, now
        rate_events = (events - self._events) / elapsed if elapsed > 0 else 0.0
        rate_batches = (batches - self._batches) / elapsed if elapsed > 0 else 0.0
        self._events, self._batches, self._state = events, batches, state
        return (
            f"accepted {events} events ({rate_events:,.0f}/s) in {batches} batches ({rate_batches:,.1f}/s); "
            f"rejected {state[2]}; faults {state[3]}; websockets {state[4]}"
        )


class _StopSignals:
    """SIGTERM and SIGINT (Ctrl-C), waited for without a lock in a signal handler.

    Python runs a handler in the main thread between two bytecodes, possibly
    while that thread holds a lock: a handler calling ``Event.set()`` hangs
    for good when the signal lands inside ``Event.wait()`` (seen: SIGTERM
    right after ``ready``). Here the handler does nothing; the interpreter
    writes the signal's number to a socket (``signal.set_wakeup_fd``), and
    :meth:`wait` selects on it. Main thread only.
    """

    def __init__(self) -> None:
        self._reader, self._writer = socket.socketpair()
        self._stopped = False
        self._previous_handlers: Dict[int, Any] = {}
        self._previous_fd = -1

    def __enter__(self) -> "_StopSignals":
        for end in (self._reader, self._writer):
            end.setblocking(False)
        self._previous_fd = signal.set_wakeup_fd(self._writer.fileno())
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous_handlers[signum] = signal.signal(signum, _ignore_signal)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(self._previous_fd)
        self._reader.close()
        self._writer.close()

    def wait(self, timeout: Optional[float]) -> bool:
        """Whether a stop signal came, waiting for one up to ``timeout`` seconds (None: for good)."""
        if not self._stopped:
            readable, _, _ = select.select([self._reader], [], [], timeout)
            self._stopped = bool(readable)
        return self._stopped


def _ignore_signal(signum: int, frame: Any) -> None:
    """The handler of a stop signal: the wake-up socket tells :class:`_StopSignals`."""


def main(argv: Optional[Sequence[str]] = None, stdout: TextIO = sys.stdout) -> int:
    """Runs the emulator until SIGTERM or SIGINT; returns the exit status.

    Args:
      argv: the arguments (default: ``sys.argv[1:]``).
      stdout: where the endpoints and the counts go.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    # The servers are imported only now: --help and usage errors need none of them.
    from raccoon_beam.emulator.server import ListenError, RaccoonEmulator

    try:
        emu = RaccoonEmulator(config)
    except ValueError as exc:  # e.g. an empty token beyond loopback
        parser.error(str(exc))
    _configure_faults(emu, args)
    with _StopSignals() as stop:
        try:
            emu.start()
        except ListenError as exc:
            print(f"{_PROG}: {exc}; {_flag(exc.setting)} 0 picks a free port", file=sys.stderr)
            return PORT_IN_USE_EXIT
        return _serve(emu, args, stop, stdout)


def _serve(emu: "RaccoonEmulator", args: argparse.Namespace, stop: "_StopSignals", stdout: TextIO) -> int:
    """Prints the endpoints and the counts until ``stop``; stops the emulator and prints the totals."""
    from raccoon_beam.emulator.control import CONTROL_PREFIX

    interactive = stdout.isatty()
    interval = args.stats_interval
    if interval is None:
        interval = DEFAULT_STATS_INTERVAL if interactive else DEFAULT_LOG_STATS_INTERVAL
    try:
        print(f"grpc_endpoint={emu.grpc_endpoint}", file=stdout)
        print(f"rest_endpoint={emu.rest_endpoint}", file=stdout)
        print(f"ws_endpoint={emu.ws_endpoint}", file=stdout)
        print(f"control_url={emu.http_base_url}{CONTROL_PREFIX}", file=stdout)
        # With the token in its fragment when one is required: the one line that shows it.
        print(f"console_url={emu.console_url}", file=stdout)
        print("ready", file=stdout, flush=True)
        stats = _StatsLine(emu)
        while not stop.wait(interval if interval > 0 else None):
            line = stats.next(only_on_change=not interactive)
            if line is None:
                continue
            if interactive:
                print("\r\x1b[K" + line, end="", file=stdout, flush=True)
            else:
                print(line, file=stdout, flush=True)
    finally:
        emu.stop()
    counters = emu.counters()
    if interval > 0 and interactive:
        print(file=stdout)
    print(
        f"total events={counters.total_events_accepted} batches={counters.accepted()} "
        f"rejected={counters.rejected()}",
        file=stdout,
        flush=True,
    )
    return 0
