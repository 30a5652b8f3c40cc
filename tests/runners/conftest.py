"""Fixtures of the runner tests: an engine per test, started on free ports and stopped with no process left."""

from __future__ import annotations

import os
import pathlib
from typing import Iterator

import pytest

from pipelines.engines import DaskCluster, WorkerPool

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def worker_pool() -> Iterator[WorkerPool]:
    """Beam's external worker pool; its SDK workers import this checkout's tests (the DoFns)."""
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    pool = WorkerPool(env={"PYTHONPATH": pythonpath}).start()
    try:
        yield pool
    finally:
        pool.stop()  # raises if a worker was left behind


@pytest.fixture
def dask_cluster() -> Iterator[DaskCluster]:
    """A Dask LocalCluster of 2 single-threaded worker processes."""
    cluster = DaskCluster(workers=2).start()
    try:
        yield cluster
    finally:
        cluster.stop()  # raises if a worker was left behind
