"""WriteToRaccoon on Beam's Dask runner, on a distributed LocalCluster of 2 worker processes.

The Dask runner runs each ParDo once per partition of a Dask bag, setting a
DoFn instance up and tearing it down for every partition; the input is cut
into ``--dask_npartitions`` partitions, which the scheduler spreads over the
worker processes. ``Reshuffle`` is a no-op there.

What is not checked here: windows. Beam's Dask runner (2.77) hands a ParDo's
main output to the next ParDo without its windows and timestamps (only
tagged outputs keep them), so events reach the sink in the global window
whatever ``WindowInto`` said; the sink's keeping of windows is checked on the
portable runner (test_portable.py).
"""

from __future__ import annotations

import json
import time
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import engines
from pipelines.engines import DaskCluster
from raccoon_beam.emulator import Outcome, RaccoonEmulator

from tests.runners import harness, sample

pytestmark = pytest.mark.timeout(600)

N_EVENTS = 50_000
N_BAD = 40
WORKERS = 2
# Many more partitions than worker processes, as with any real input: without
# one shared client per process, each partition would open a connection.
PARTITIONS = 40
# At most this many connections per worker process.
MAX_CONNECTIONS_PER_WORKER = 4


def run_on_cluster(cluster: DaskCluster, emulator: RaccoonEmulator, tmp_path: Any, **write_kwargs: Any) -> harness.Reconciliation:
    letters = tmp_path / "dead"
    letters.mkdir()
    pipeline = beam.Pipeline(options=PipelineOptions([*cluster.options(), f"--dask_npartitions={PARTITIONS}"]))
    harness.build_delivery(pipeline, N_EVENTS, N_BAD, emulator.ws_endpoint, str(letters), **write_kwargs)
    result = pipeline.run()
    try:
        result.wait_until_finish()
    finally:
        result.client.close()  # the runner's client of the cluster, which it leaves open
    input_ids = {event["id"] for event in harness.make_events(N_EVENTS, N_BAD)}
    rec = harness.reconcile(emulator, input_ids, str(letters))
    print(rec.summary(), emulator.counters())
    return rec


def bad_ids() -> set:
    return set(range(N_EVENTS, N_EVENTS + N_BAD))


def check_workers(cluster: DaskCluster, rec: harness.Reconciliation) -> None:
    """The sink ran in both worker processes, and none is left when the cluster stops."""
    worker_pids = set(cluster.worker_pids())
    assert len(worker_pids) == WORKERS, worker_pids
    letter_pids = {record["pid"] for record in rec.dead}
    assert letter_pids <= worker_pids, "dead letters were made outside the Dask workers"
    assert len(letter_pids) == WORKERS, "the work did not spread over both worker processes"
    cluster.stop()
    assert harness.alive(iter(worker_pids)) == [], "Dask workers outlived their cluster"


@pytest.mark.slow
def test_two_worker_processes_deliver_exactly(dask_cluster: DaskCluster, emulator: RaccoonEmulator, tmp_path: Any) -> None:
    rec = run_on_cluster(dask_cluster, emulator, tmp_path)

    rec.assert_exact(bad_ids())
    assert "send" not in {r["stage"] for r in rec.dead}, "a good event was dead-lettered"
    # Measured from the emulator's capture: the distinct connection ids that
    # delivered events (a connection id names one connection at a time; the
    # emulator refuses a second connection with an id already connected).
    assert emulator.counters().connections_refused == 0
    assert len(rec.conn_ids) >= WORKERS, f"one connection id for {WORKERS} worker processes: {rec.conn_ids}"
    assert len(rec.conn_ids) <= MAX_CONNECTIONS_PER_WORKER * WORKERS, (
        f"{len(rec.conn_ids)} connection ids for {WORKERS} worker processes and {PARTITIONS} partitions: "
        "the DoFn instances of a process do not share their client"
    )
    check_workers(dask_cluster, rec)


@pytest.mark.slow
def test_two_worker_processes_lose_nothing_under_transient_failures(
    dask_cluster: DaskCluster, emulator: RaccoonEmulator, tmp_path: Any
) -> None:
    # As on the portable runner: 20% of requests fail transiently.
    emulator.faults.fail_fraction(0.10, Outcome.raccoon("CODE_INTERNAL_ERROR"), seed=23)
    emulator.faults.fail_fraction(0.11, Outcome.http(503), seed=24)

    rec = run_on_cluster(dask_cluster, emulator, tmp_path, retry=harness.FAST_RETRY, max_batch_size=100)

    rec.assert_exact(bad_ids(), allow_duplicates=True)
    counters = emulator.counters()
    assert counters.injected() >= 0.1 * counters.received(), "the faults did not fire"
    check_workers(dask_cluster, rec)


def test_dask_loses_no_dead_letter(dask_cluster: DaskCluster, emulator: RaccoonEmulator, tmp_path: Any) -> None:
    # Beam's Dask runner drops what finish_bundle emits; the sink's Dask
    # expansion delivers whole groups inside process. Bad elements last in the
    # input, and a closed port: harness.check_straight.
    live, closed = tmp_path / "live", tmp_path / "closed"
    live.mkdir()
    closed.mkdir()
    # One pipeline per run: Beam's Dask runner computes only the branch of
    # the last transform applied.
    started = time.monotonic()
    for endpoint, letters in ((emulator.ws_endpoint, live), (harness.closed_endpoint(), closed)):
        pipeline = beam.Pipeline(options=PipelineOptions([*dask_cluster.options(), "--dask_npartitions=4"]))
        harness.build_straight(pipeline, endpoint, str(letters))
        result = pipeline.run()
        try:
            result.wait_until_finish()
        finally:
            result.client.close()
    harness.check_straight(emulator, str(live), str(closed), "DaskRunner", time.monotonic() - started)


@pytest.mark.slow
def test_sample_runs_on_dask(dask_cluster: DaskCluster, emulator: RaccoonEmulator, tmp_path: Any) -> None:
    dead_letters = tmp_path / "dead_letters.jsonl"
    output = sample.run_sample(dask_cluster.options(), emulator.ws_endpoint, dead_letters)
    sample.check_sample_run(output, emulator, dead_letters)
    # The runner has no metrics: the counts are the pipeline's outputs', and the summary says so.
    assert f"clickstream summary (this runner reports no metrics: counted from {dead_letters} and" in output


def test_engine_flags_are_not_the_scripts(tmp_path: Any) -> None:
    # `engines.py dask --workers 1 -- SCRIPT ARGS`: the script gets ARGS and the runner's flags only.
    script = tmp_path / "argv.py"
    seen = tmp_path / "argv.json"
    script.write_text(f"import json, sys; json.dump(sys.argv[1:], open({str(seen)!r}, 'w'))\n")

    assert engines.main(["dask", "--workers", "1", "--", str(script), "--flag", "x"]) == 0

    argv = json.loads(seen.read_text())
    assert argv[:2] == ["--flag", "x"]
    assert [flag.split("=")[0] for flag in argv[2:]] == ["--runner", "--dask_client_address"]
