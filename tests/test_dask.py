"""runstore.pool on a real Dask cluster: batch(executor=client.get_executor()).

Each test starts a ``distributed.LocalCluster`` of worker processes (each
under a nanny, which restarts a worker that dies) and kills workers with
SIGKILL while they compute. Every wait is bounded: the batch is called in a
thread that must end within ``LIMIT`` seconds.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import runstore
from runstore import Batch
from runstore.errors import RunsFailedError

from .runs import KillsWorkerAlways, Sweep

dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")

ROOT = Path(__file__).resolve().parent.parent
#: Seconds a batch may take before the test calls it hung.
LIMIT = 120.0


class Announced(runstore.Run):
    """Writes "x pid" to ``started`` before it sleeps and to ``log`` when done."""

    def run(self, x=0, started="", log="", seconds=0.0):
        with open(started, "a") as f:
            f.write(f"{x} {os.getpid()}\n")
        time.sleep(seconds)
        with open(log, "a") as f:
            f.write(f"{x}\n")
        return {"x": x, "pid": os.getpid()}


@pytest.fixture
def cluster(in_tmp, monkeypatch, request) -> Iterator[Any]:
    """A client of a LocalCluster of 2 single-threaded worker processes.

    ``@pytest.mark.parametrize("cluster", [{config}], indirect=True)`` sets
    Dask configuration for the scheduler.
    """
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the workers import tests.test_dask
    config = getattr(request, "param", {})
    with dask.config.set(config):
        local = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                         dashboard_address=None)
        client = distributed.Client(local)
    try:
        client.wait_for_workers(2, timeout=60)
        yield client
    finally:
        client.close(timeout=30)
        local.close(timeout=30)


def call(batch: Batch, executor: Any) -> BaseException | None:
    """Call the batch in a thread; fail if it does not return within LIMIT seconds."""
    raised: list[BaseException] = []

    def target() -> None:
        try:
            batch(executor=executor, verbose=0)
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(LIMIT)
    assert not thread.is_alive(), f"the batch did not return within {LIMIT} s"
    return raised[0] if raised else None


def kill_when_started(started: Path, victim: int, seconds: float = 30.0) -> threading.Thread:
    """SIGKILL ``victim`` once it has started a run (in a thread; bounded)."""

    def target() -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if started.exists() and f" {victim}\n" in started.read_text():
                os.kill(victim, signal.SIGKILL)
                return
            time.sleep(0.02)

    killer = threading.Thread(target=target, daemon=True)
    killer.start()
    return killer


@pytest.mark.slow
def test_a_batch_drains_on_a_dask_cluster_and_survives_a_killed_worker(in_tmp, cluster):
    executor = cluster.get_executor()
    batch = Batch("dask")
    batch.add_factorial_runs(Sweep, {"A": list(range(40)), "B": [3]})
    assert call(batch, executor) is None
    assert [r.result["val"] for r in batch.run] == [3 * a for a in range(40)]

    started, log = in_tmp / "started", in_tmp / "log"
    slow = Batch("slow")
    slow.add_factorial_runs(Announced, {"x": list(range(8)), "started": str(started),
                                        "log": str(log), "seconds": 0.5})
    pids = set(cluster.run(os.getpid).values())
    victim = min(pids)
    killer = kill_when_started(started, victim)
    assert call(slow, executor) is None
    killer.join(5)
    assert not killer.is_alive()
    runs = list(slow.run)
    assert all(r.done for r in runs)
    assert [r.result["x"] for r in runs] == list(range(8))  # right, each committed once
    assert all(r.provenance["attempts"] == 1 for r in runs)  # Dask ran it again, not us
    # The run the victim was computing when it was killed completed elsewhere.
    cut = [int(line.split()[0]) for line in started.read_text().splitlines()
           if line.split()[1] == str(victim)]
    assert cut and runs[cut[-1]].result["pid"] != victim
    computed = Counter(map(int, log.read_text().split()))
    assert set(computed) == set(range(8)) and computed[cut[-1]] == 1
    # A run can be computed twice only if its worker died after computing it.
    assert max(computed.values()) <= 2


@pytest.mark.slow
@pytest.mark.parametrize("cluster", [{"distributed.scheduler.allowed-failures": 0}],
                         indirect=True)
def test_runs_dask_gave_up_on_run_again_alone(in_tmp, cluster):
    # With no failures allowed, Dask gives up (KilledWorker) on every task that
    # was on the killed worker: their runs are requeued and computed again.
    started, log = in_tmp / "started", in_tmp / "log"
    batch = Batch("gave-up")
    batch.add_factorial_runs(Announced, {"x": list(range(6)), "started": str(started),
                                         "log": str(log), "seconds": 0.5})
    victim = min(cluster.run(os.getpid).values())
    killer = kill_when_started(started, victim)
    assert call(batch, cluster.get_executor()) is None
    killer.join(5)
    runs = list(batch.run)
    assert all(r.done for r in runs)
    assert [r.result["x"] for r in runs] == list(range(6))
    assert max(r.provenance["attempts"] for r in runs) == 2  # requeued once by runstore
    assert all(r.result["pid"] != victim for r in runs
               if r.provenance["attempts"] == 2)
    assert set(Counter(map(int, log.read_text().split()))) == set(range(6))


@pytest.mark.slow
@pytest.mark.parametrize("cluster", [{"distributed.scheduler.allowed-failures": 0}],
                         indirect=True)
def test_a_run_that_kills_every_dask_worker_fails_with_a_clear_message(in_tmp, cluster):
    batch = Batch("killer")
    batch.add_factorial_runs(KillsWorkerAlways, {"x": list(range(6))})
    raised = call(batch, cluster.get_executor())
    assert isinstance(raised, RunsFailedError)
    assert "1 of 6 runs" in str(raised) and "Dask gave up on it, running alone" in str(raised)
    assert [r.state for r in batch.run] == ["done", "failed"] + ["done"] * 4
    assert "workers died while running it" in str(raised)  # Dask's own words
