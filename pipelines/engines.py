"""Local engines beyond one process: Beam's external worker pool, and a Dask cluster.

Two ways to run a pipeline on workers that are other processes, on one
machine, with the same code that runs on a cluster:

* :class:`WorkerPool`: Beam's portable runner with an external worker pool
  (``apache_beam.runners.worker.worker_pool_main``). The runner asks the pool
  for SDK workers and sends them bundles over the Fn API, which is how Flink
  and Spark run Python. :meth:`WorkerPool.portable_options` gives the
  ``PortableRunner`` flags (embedded job service: one SDK worker);
  :meth:`WorkerPool.runner` a Fn API runner that drives ``workers`` SDK
  workers of the same pool at once.
* :class:`DaskCluster`: a ``distributed.LocalCluster`` of worker processes for
  ``apache_beam.runners.dask.dask_runner.DaskRunner`` (``pip install
  'raccoon-beam[dask]'``).

Both listen on 127.0.0.1 only, on free ports, and :meth:`stop` leaves no
process behind (it raises if one is). As a command, an engine runs a sample
pipeline on itself::

    python pipelines/engines.py portable -- pipelines/clickstream.py --transport websocket
    python pipelines/engines.py dask --workers 2 -- pipelines/clickstream.py
"""

from __future__ import annotations

import argparse
import multiprocessing.resource_tracker
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, TypeVar

import psutil

__all__ = [
    "WorkerPool",
    "DaskCluster",
    "EngineError",
    "free_port",
    "DASK_RUNNER",
    "DEFAULT_START_TIMEOUT",
    "DEFAULT_STOP_TIMEOUT",
    "LOOPBACK",
]

LOOPBACK = "127.0.0.1"
DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"
# Importing apache-beam alone takes seconds on a busy 2-core machine.
DEFAULT_START_TIMEOUT = 60.0
# Beam gives a worker 10 s to exit after SIGTERM before it kills it.
DEFAULT_STOP_TIMEOUT = 30.0


class EngineError(RuntimeError):
    """An engine did not start, or left a process behind when it stopped."""


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free a moment ago (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _descendants(pid: int) -> List[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _reap(processes: Sequence[psutil.Process], timeout: float, engine: str) -> None:
    """Waits for ``processes`` to exit, kills the rest, and raises EngineError if any had to be killed."""
    _, alive = psutil.wait_procs(list(processes), timeout=timeout)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)
    if alive:
        raise EngineError(f"{engine} left processes behind: {sorted(p.pid for p in alive)}")


_E = TypeVar("_E", bound="_Engine")


class _Engine:
    """A local engine started and stopped around a ``with`` block."""

    def start(self) -> "_Engine":
        raise NotImplementedError

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        raise NotImplementedError

    def __enter__(self: _E) -> _E:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class WorkerPool(_Engine):
    """Beam's external SDK worker pool, in a process of its own.

    The pool starts each SDK worker as ``python -c ...`` with ``python`` taken
    from ``PATH``, so the directory of ``python`` comes first on the pool's
    ``PATH``: its workers run the same interpreter and packages as this process.

    Args:
      python: the interpreter of the pool and of its workers.
      env: variables added to the pool's environment (e.g. ``PYTHONPATH`` for
        DoFns defined in modules the workers must import).
      start_timeout: seconds to wait until the pool accepts connections.
    """

    def __init__(
        self,
        *,
        python: str = sys.executable,
        env: Optional[Mapping[str, str]] = None,
        start_timeout: float = DEFAULT_START_TIMEOUT,
    ) -> None:
        self._python = python
        self._extra_env = dict(env or {})
        self._start_timeout = start_timeout
        self._proc: Optional[subprocess.Popen] = None
        self._seen: Dict[int, psutil.Process] = {}
        self.port = 0

    @property
    def address(self) -> str:
        """``localhost:PORT``: the ``--environment_config`` of an ``EXTERNAL`` environment."""
        return f"localhost:{self.port}"

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> "WorkerPool":
        if self._proc is not None:
            return self
        self.port = free_port()
        env = dict(os.environ)
        env.update(self._extra_env)
        env["PATH"] = os.pathsep.join([os.path.dirname(os.path.abspath(self._python)), env.get("PATH", "")])
        self._proc = subprocess.Popen(
            [self._python, "-m", "apache_beam.runners.worker.worker_pool_main", f"--service_port={self.port}"],
            env=env,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + self._start_timeout
        while True:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise EngineError(f"the worker pool exited with status {code} before it listened")
            try:
                socket.create_connection((LOOPBACK, self.port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise EngineError(
                        f"the worker pool did not listen on port {self.port} in {self._start_timeout} s"
                    ) from None
                time.sleep(0.1)

    def workers(self) -> List[psutil.Process]:
        """The pool's SDK worker processes alive now (each is remembered for :meth:`stop`)."""
        if self._proc is None:
            return []
        found = _descendants(self._proc.pid)
        for process in found:
            self._seen.setdefault(process.pid, process)
        return found

    def worker_cpu_seconds(self) -> float:
        """CPU seconds (user + system) of every SDK worker of this pool so far, running or exited.

        Beam's runners never ask the pool to stop a worker: a worker exits
        when its runner goes away, and the pool reaps it only when the pool
        stops. Until then an exited worker is a zombie whose CPU account the
        kernel still shows, so the sum is exact.
        """
        self.workers()
        total = 0.0
        for process in self._seen.values():
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Stops the pool and its workers.

        Raises:
          EngineError: a worker was still running after the pool exited.
        """
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for process in _descendants(proc.pid):
            self._seen.setdefault(process.pid, process)
        if proc.poll() is None:
            # SIGINT, not SIGTERM: the pool's KeyboardInterrupt path stops its
            # server and its exit handler stops the workers it started.
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        seen, self._seen = list(self._seen.values()), {}
        _reap(seen, timeout, "the worker pool")

    def portable_options(self) -> List[str]:
        """The ``PortableRunner`` flags: embedded job service, this pool as the environment.

        The embedded job service drives one SDK worker per environment
        (``--sdk_worker_parallelism`` is for Flink and Spark); use
        :meth:`runner` for more.
        """
        return [
            "--runner=PortableRunner",
            "--job_endpoint=embed",
            "--environment_type=EXTERNAL",
            f"--environment_config={self.address}",
        ]

    def runner(self) -> Any:
        """A Fn API runner whose SDK workers come from this pool.

        It is the engine behind the embedded job service, given the pool as
        its environment; with ``--direct_num_workers=N`` it asks the pool for
        N SDK workers and splits every stage's input among them.
        """
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner
        from apache_beam.transforms.environments import ExternalEnvironment

        return FnApiRunner(default_environment=ExternalEnvironment(self.address))


class DaskCluster(_Engine):
    """A ``distributed.LocalCluster`` of worker processes on 127.0.0.1.

    Args:
      workers: worker processes.
      threads_per_worker: threads of each worker process.
    """

    def __init__(self, workers: int = 2, *, threads_per_worker: int = 1) -> None:
        self.workers = workers
        self.threads_per_worker = threads_per_worker
        self._cluster: Any = None
        self._processes: List[psutil.Process] = []

    @property
    def address(self) -> str:
        """The scheduler's ``tcp://`` address: the ``--dask_client_address``."""
        if self._cluster is None:
            raise EngineError("the Dask cluster is not running")
        return str(self._cluster.scheduler_address)

    def start(self) -> "DaskCluster":
        if self._cluster is not None:
            return self
        try:
            from distributed import LocalCluster
        except ImportError as exc:  # pragma: no cover - depends on the extra
            raise EngineError("the Dask runner needs the dask extra: pip install 'raccoon-beam[dask]'") from exc
        before = {p.pid for p in _descendants(os.getpid())}
        self._cluster = LocalCluster(
            n_workers=self.workers,
            threads_per_worker=self.threads_per_worker,
            processes=True,
            host=LOOPBACK,
            scheduler_port=0,
            dashboard_address=None,
            worker_dashboard_address=None,
        )
        # Not multiprocessing's resource tracker: it serves this whole process and exits with it.
        tracker = getattr(multiprocessing.resource_tracker._resource_tracker, "_pid", None)
        self._processes = [p for p in _descendants(os.getpid()) if p.pid not in before and p.pid != tracker]
        return self

    def worker_pids(self) -> List[int]:
        """The process ids of the Dask worker processes."""
        return sorted(p.pid for p in self._processes)

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Closes the cluster.

        Raises:
          EngineError: a worker or nanny process was still running afterwards.
        """
        cluster, self._cluster = self._cluster, None
        if cluster is None:
            return
        cluster.close(timeout=timeout)
        processes, self._processes = self._processes, []
        _reap(processes, timeout, "the Dask cluster")

    def options(self) -> List[str]:
        """The ``DaskRunner`` flags for this cluster."""
        return [f"--runner={DASK_RUNNER}", f"--dask_client_address={self.address}"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], usage="%(prog)s {portable,dask} [--workers N] -- SCRIPT [ARGS]"
    )
    parser.add_argument("engine", choices=("portable", "dask"))
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes")
    # Split at "--" by hand: argparse would hand the engine's own flags to the script too.
    argv = list(sys.argv[1:] if argv is None else argv)
    own, script = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    args = parser.parse_args(own)
    if not script:
        parser.error("name the pipeline to run after --")
    engine: Any = WorkerPool() if args.engine == "portable" else DaskCluster(args.workers)
    with engine:
        flags = engine.portable_options() if args.engine == "portable" else engine.options()
        command = [sys.executable, *script, *flags]
        print("running", " ".join(command), flush=True)
        return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main())
