"""Runs a command (a Beam YAML pipeline) against an embedded Raccoon emulator.

Usage::

    python -m raccoon_beam.yaml_sample [--transport grpc|rest|websocket] -- \\
        python -m apache_beam.yaml.main --yaml_pipeline_file=pipelines/clickstream.yaml --runner=FnApiRunner

It starts a :class:`~raccoon_beam.emulator.RaccoonEmulator` on free
127.0.0.1 ports, adds ``--jinja_variables`` with its ``endpoint`` (merged into
any the command already has) to the command, runs it, prints what the
emulator received as one JSON line (``{"events": N, "by_type": {...}}``),
stops the emulator, and exits with the command's status.
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
from typing import List, Optional, Sequence

from raccoon_beam.emulator import RaccoonEmulator

__all__ = ["main", "with_jinja_variable"]

_JINJA_FLAG = "--jinja_variables"


def with_jinja_variable(command: Sequence[str], name: str, value: str) -> List[str]:
    """``command`` with ``name=value`` in its ``--jinja_variables`` JSON (added if absent).

    Args:
      command: the command line.
      name: the variable's name.
      value: its value.

    Returns:
      The new command line; the command's own value of ``name`` wins.
    """
    out = list(command)
    for index, argument in enumerate(out):
        if argument.startswith(_JINJA_FLAG + "="):
            variables = json.loads(argument.split("=", 1)[1])
            variables.setdefault(name, value)
            out[index] = f"{_JINJA_FLAG}={json.dumps(variables)}"
            return out
        if argument == _JINJA_FLAG and index + 1 < len(out):
            variables = json.loads(out[index + 1])
            variables.setdefault(name, value)
            out[index + 1] = json.dumps(variables)
            return out
    return out + [f"{_JINJA_FLAG}={json.dumps({name: value})}"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the command line's command against an emulator; returns its exit status.

    Args:
      argv: the arguments (``sys.argv[1:]`` by default).

    Returns:
      The command's exit status.
    """
    parser = argparse.ArgumentParser(prog="python -m raccoon_beam.yaml_sample", description=__doc__.split("\n")[0])
    parser.add_argument("--transport", choices=("grpc", "rest", "websocket"), default="grpc")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    with RaccoonEmulator() as emulator:
        endpoint = {
            "grpc": emulator.grpc_endpoint,
            "rest": emulator.rest_endpoint,
            "websocket": emulator.ws_endpoint,
        }[args.transport]
        status = subprocess.call(with_jinja_variable(command, "endpoint", endpoint))
        by_type = collections.Counter(event.type for event in emulator.events())
    print(json.dumps({"events": sum(by_type.values()), "by_type": dict(sorted(by_type.items()))}), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
