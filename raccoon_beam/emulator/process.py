"""EmulatorProcess: the emulator in a process of its own (for benchmarks).

It runs ``python -m raccoon_beam.emulator`` with free ports, reads the
endpoints it prints, and talks to it through the control endpoints
(``/_emulator/...``, see :mod:`raccoon_beam.emulator.control`) with the
standard library only.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from typing import Any, Dict, List, Optional, Sequence

from raccoon_beam.emulator.access import TOKEN_FRAGMENT, TOKEN_HEADER
from raccoon_beam.emulator.capture import CapturedEvent, TypeDigest
from raccoon_beam.emulator.cli import config_to_argv
from raccoon_beam.emulator.config import CONSOLE_TOKEN_ENV
from raccoon_beam.emulator.counters import CountersSnapshot
from raccoon_beam.emulator.outcomes import Outcome

__all__ = ["EmulatorProcess", "DEFAULT_START_TIMEOUT", "DEFAULT_PROCESS_SETTINGS"]

# It starts in well under a second; a loaded CI machine (2 cores, many jobs) can take far longer.
DEFAULT_START_TIMEOUT = 60.0
# Free ports, so that processes run side by side; digest capture, because an
# emulator in a process of its own serves benchmarks that send millions of
# events (EmulatorConfig's own default, "events", keeps them all).
DEFAULT_PROCESS_SETTINGS: Dict[str, Any] = {"grpc_port": 0, "http_port": 0, "capture": "digest"}


class EmulatorProcess:
    """Starts ``python -m raccoon_beam.emulator`` and exposes its endpoints and results.

    Args:
      args: extra CLI arguments (e.g. ``["--fail-next", "1"]``), after the settings.
      start_timeout: seconds to wait for the ``ready`` line.
      env: environment of the child process (default: this one's).
      **settings: EmulatorConfig fields, as for ``RaccoonEmulator`` (e.g.
        ``ack="sync"``), over DEFAULT_PROCESS_SETTINGS (free ports, digest capture).
    """

    def __init__(
        self,
        args: Sequence[str] = (),
        *,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        env: Optional[Dict[str, str]] = None,
        **settings: Any,
    ) -> None:
        settings = {**DEFAULT_PROCESS_SETTINGS, **settings}
        # Never on the command line (every user of the machine can read it): in the child's environment.
        self._token: Optional[str] = settings.pop("console_token", None)
        self._args = config_to_argv(settings) + list(args)
        self._start_timeout = start_timeout
        self._env = env
        self._proc: Optional[subprocess.Popen] = None
        self.endpoints: Dict[str, str] = {}
        self.final_line = ""

    def start(self) -> "EmulatorProcess":
        command = [
            sys.executable, "-m", "raccoon_beam.emulator",
            *self._args,
            "--stats-interval", "0",  # nobody reads the pipe while it runs
        ]
        self._proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=None,
            text=True,
            env=self._child_env(),
        )
        deadline = time.monotonic() + self._start_timeout
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            line = line.strip()
            if line == "ready":
                return self
            if "=" in line:
                name, value = line.split("=", 1)
                self.endpoints[name] = value
            if time.monotonic() > deadline:
                break
        self.stop()
        raise RuntimeError("the emulator process did not start")

    def _child_env(self) -> Dict[str, str]:
        env = dict(self._env if self._env is not None else os.environ)
        if self._token is not None:
            env[CONSOLE_TOKEN_ENV] = self._token
        else:
            env.pop(CONSOLE_TOKEN_ENV, None)  # not one inherited by accident
        return env

    @property
    def console_token(self) -> Optional[str]:
        """The token the control routes require: the one given, or the one the process generated (else None)."""
        if self._token is not None:
            return self._token
        fragment = self.endpoints.get("console_url", "").partition("#")[2]
        return urllib.parse.parse_qs(fragment).get(TOKEN_FRAGMENT, [None])[0]

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERMs the process and waits; returns its exit status."""
        proc, self._proc = self._proc, None
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        self.final_line = (out or "").strip().splitlines()[-1] if (out or "").strip() else ""
        return proc.returncode

    def __enter__(self) -> "EmulatorProcess":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def pid(self) -> Optional[int]:
        """The process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    # ------------------------------------------------------------ endpoints

    @property
    def grpc_endpoint(self) -> str:
        return self.endpoints["grpc_endpoint"]

    @property
    def rest_endpoint(self) -> str:
        return self.endpoints["rest_endpoint"]

    @property
    def ws_endpoint(self) -> str:
        return self.endpoints["ws_endpoint"]

    @property
    def console_url(self) -> str:
        """The console page (with its token when one is required)."""
        return self.endpoints["console_url"]

    # ------------------------------------------------------------ control

    def _call(self, method: str, path: str, payload: Optional[Dict[str, Any]] = None) -> Any:
        data = json.dumps(payload).encode("utf-8") if payload is not None else None
        headers = {"Content-Type": "application/json"}
        token = self.console_token
        if token:  # given, or generated and printed (in the console URL's fragment) beyond loopback
            headers[TOKEN_HEADER] = token
        request = urllib.request.Request(
            self.endpoints["control_url"] + path, data=data, method=method, headers=headers
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (loopback)
            return json.loads(response.read())

    def counters(self) -> CountersSnapshot:
        return CountersSnapshot.from_dict(self._call("GET", "/counters"))

    def digest(self) -> Dict[str, TypeDigest]:
        return {t: TypeDigest(**d) for t, d in self._call("GET", "/digest").items()}

    def events(self) -> List[CapturedEvent]:
        """The captured events (only with ``--capture events``)."""
        return [
            CapturedEvent(**{**e, "event_bytes": base64.b64decode(e["event_bytes"])})
            for e in self._call("GET", "/events")
        ]

    def reset(self) -> None:
        self._call("POST", "/reset")

    def fault(self, method: str, **args: Any) -> None:
        """Calls ``Faults.<method>(**args)`` in the emulator process."""
        if isinstance(args.get("outcome"), Outcome):
            args["outcome"] = args["outcome"].to_dict()
        self._call("POST", "/faults", {"method": method, "args": args})



