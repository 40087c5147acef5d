"""runstore.pool: batches on local processes and executors, with real processes."""

from __future__ import annotations

import concurrent.futures
from collections import Counter
import os
import socket
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

import runstore
from runstore import Batch
from runstore.errors import PoolError, RunsFailedError

from .runs import Counting, Flaky, KillsWorkerAlways, KillsWorkerOnce, Sleepy, Sweep

ROOT = Path(__file__).resolve().parent.parent


def test_processes_compute_every_run_once_with_the_serial_results(in_tmp):
    log = str(in_tmp / "log")
    batch = Batch("pool")
    batch.add_factorial_runs(Counting, {"x": list(range(40)), "log": log})
    batch(processes=2, verbose=0)
    assert [r.result for r in batch.run] == [{"x": x} for x in range(40)]
    assert sorted(map(int, Path(log).read_text().split())) == list(range(40))
    # The coordinator claims and records; the provenance names the workers that computed.
    pids = {r.provenance["pid"] for r in batch.run}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    assert {r.provenance["host"] for r in batch.run} == {socket.gethostname()}


def test_runs_really_run_in_other_processes(in_tmp):
    batch = Batch("where")
    # Long enough that a worker process started late on a loaded machine still
    # finds runs left to take.
    batch.add_factorial_runs(Sleepy, {"i": list(range(8)), "seconds": 0.3})
    batch(processes=2, verbose=0)
    pids = {r.result["pid"] for r in batch.run}
    assert os.getpid() not in pids and len(pids) == 2


def test_failures_are_recorded_as_in_serial_mode(in_tmp):
    batch = Batch("flaky")
    batch.add_factorial_runs(Flaky, {"x": list(range(6))})
    with pytest.raises(RunsFailedError, match="3 of 6 runs") as info:
        batch(processes=2, verbose=0)
    assert [p for _, p, _ in info.value.failures] == [{"x": 1}, {"x": 3}, {"x": 5}]
    assert "Traceback" in batch.run[1].error and batch.run[2].result == {"y": 2}


@pytest.mark.parametrize("make", [
    lambda: concurrent.futures.ProcessPoolExecutor(2),
    lambda: concurrent.futures.ThreadPoolExecutor(2),
], ids=["process-pool", "thread-pool"])
def test_any_executor_drains_the_batch(in_tmp, make):
    batch = Batch("executor")
    batch.add_factorial_runs(Sweep, {"A": list(range(30)), "B": [2]})
    with make() as executor:
        batch(executor=executor, verbose=0)
    assert [r.result["val"] for r in batch.run] == [2 * a for a in range(30)]


def test_a_killed_worker_is_replaced_and_its_run_completed_exactly_once(in_tmp):
    flag, log = in_tmp / "flag", str(in_tmp / "log")
    flag.touch()
    batch = Batch("killed")
    batch.add_factorial_runs(KillsWorkerOnce, {"x": list(range(8)), "flag": str(flag),
                                               "log": log})
    batch(processes=2, verbose=0)
    assert all(r.done for r in batch.run) and not flag.exists()
    assert [r.result["x"] for r in batch.run] == list(range(8))  # each committed once
    computed = Counter(map(int, Path(log).read_text().split()))
    # The killer computed once (it died before logging the first time); a run the
    # other worker finished as the pool broke may have been computed again.
    assert set(computed) == set(range(8)) and computed[3] == 1
    assert max(computed.values()) <= 2
    assert batch.run[3].provenance["attempts"] == 2


def test_a_run_that_always_kills_its_worker_fails_alone(in_tmp):
    batch = Batch("killer")
    batch.add_factorial_runs(KillsWorkerAlways, {"x": list(range(12))})
    with pytest.raises(RunsFailedError, match="(?s)1 of 12 runs.*died each of the 3 times"):
        batch(processes=2, verbose=0)
    assert [r.state for r in batch.run] == ["done"] + ["failed"] + ["done"] * 10


def test_a_dead_worker_of_a_given_executor_leaves_its_runs_pending(in_tmp):
    batch = Batch("given")
    batch.add_factorial_runs(KillsWorkerAlways, {"x": [0, 1, 2]})
    with concurrent.futures.ProcessPoolExecutor(2) as executor:
        with pytest.raises(PoolError, match="pending again. Restart the executor"):
            batch(executor=executor, verbose=0)
    assert "running" not in [r.state for r in batch.run]
    assert batch.run[1].state == "pending"


def test_a_class_workers_cannot_import_fails_its_runs_clearly(in_tmp):
    class Local(runstore.Run):
        def run(self, x=0):
            return {"x": x}

    batch = Batch("local")
    batch.add_factorial_runs(Local, {"x": [1, 2]})
    with pytest.raises(RunsFailedError, match="(?s)could not be sent between processes.*importable"):
        batch(processes=2, verbose=0)
    batch(verbose=0, retry_failed=True)  # in this process the class is at hand
    assert [r.result for r in batch.run] == [{"x": 1}, {"x": 2}]


COORDINATOR = """
import sys
sys.path.insert(0, sys.argv[1])
from runstore import Batch
from tests.runs import Sleepy
if __name__ == "__main__":
    batch = Batch("interrupted", path=sys.argv[2])
    batch.add_factorial_runs(Sleepy, {"i": list(range(200)), "seconds": 0.05})
    print("started", flush=True)
    batch(processes=2, verbose=0)
"""


def _until_some_done(db: Path, timeout: float = 120.0) -> None:
    """Wait until the coordinator has committed results (however loaded the machine is)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                if conn.execute("SELECT COUNT(*) FROM runs WHERE state = 'done'").fetchone()[0]:
                    return
        except sqlite3.OperationalError:  # not created yet
            pass
        time.sleep(0.05)
    raise AssertionError(f"no result was committed to {db} within {timeout} s")


@pytest.mark.slow
def test_ctrl_c_in_the_coordinator_keeps_results_and_leaves_no_processes(tmp_path):
    script = tmp_path / "coordinator.py"
    script.write_text(COORDINATOR)
    # SIGINT at its default, so that Python turns it into KeyboardInterrupt even
    # if the test process inherited it ignored.
    with subprocess.Popen([sys.executable, str(script), str(ROOT), str(tmp_path)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)
                          ) as proc:
        assert proc.stdout.readline() == "started\n"
        _until_some_done(tmp_path / "_res" / "interrupted.db")
        workers = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    assert len(workers) >= 2
    time.sleep(0.5)
    assert not [pid for pid in workers if psutil.pid_exists(pid)
                and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    batch = Batch("interrupted", path=tmp_path)
    states = [r.state for r in batch.run]
    assert "running" not in states and 0 < states.count("done") < 200
    for run in batch.run:
        if run.done:
            assert run.result["i"] == run.parameters["i"]


def test_worker_processes_limit_their_threads(in_tmp):
    from .runs import ThreadCount

    batch = Batch("threads")
    batch.add_factorial_runs(ThreadCount, {"i": [0, 1]})
    batch(processes=2, verbose=0)
    share = max(1, (os.cpu_count() or 1) // 2)
    for run in batch.run:
        assert run.result["fftw"] == share
        assert all(n <= share for n in run.result["blas"])


@pytest.mark.slow
def test_a_killed_coordinator_leaves_no_workers_and_a_restart_resumes(tmp_path):
    script = tmp_path / "coordinator.py"
    script.write_text(COORDINATOR.replace('"interrupted"', '"killed"'))
    # SIGINT at its default, so that Python turns it into KeyboardInterrupt even
    # if the test process inherited it ignored.
    with subprocess.Popen([sys.executable, str(script), str(ROOT), str(tmp_path)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)
                          ) as proc:
        assert proc.stdout.readline() == "started\n"
        _until_some_done(tmp_path / "_res" / "killed.db")
        workers = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        proc.kill()
    assert len(workers) >= 2
    deadline = time.time() + 30
    while time.time() < deadline and [p for p in workers if psutil.pid_exists(p)
                                      and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]:
        time.sleep(0.2)
    assert not [p for p in workers if psutil.pid_exists(p)
                and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    batch = Batch("killed", path=tmp_path)  # the restart: dead owner's runs are pending
    before = [r.state for r in batch.run]
    assert "running" not in before and before.count("done") > 0
    batch.add_factorial_runs(Sleepy, {"i": list(range(200)), "seconds": 0.05})
    batch(processes=2, verbose=0)
    for run in batch.run:
        assert run.done and run.result["i"] == run.parameters["i"]


SECOND_SWEEP = """
import json, sys
sys.path.insert(0, sys.argv[1])
from runstore import Batch, Store
from tests.runs import Spectral
batch = Batch("second", store=Store(sys.argv[2]))
batch.add_factorial_runs(Spectral, {"n": [2048, 3000], "seed": [2, 3]})
batch(processes=2, verbose=0)
print(json.dumps([[r.parameters["n"], r.parameters["seed"], r.result["had_wisdom"],
                   r.result["peak"]] for r in batch.run]))
"""


@pytest.mark.slow
def test_fftw_wisdom_is_kept_in_the_store_and_reused_by_new_workers(tmp_path):
    import json

    import numpy as np

    from .runs import Spectral

    first = Batch("first", store=tmp_path / "shared.db")
    first.add_factorial_runs(Spectral, {"n": [2048, 3000], "seed": [0, 1]})
    first(processes=2, verbose=0)
    assert first.store.fftw_wisdom(), "the workers' wisdom reached the store"

    def sweep(store):
        # A new coordinator process: its workers know only what the store gives them.
        out = subprocess.run([sys.executable, "-c", SECOND_SWEEP, str(ROOT), str(store)],
                             capture_output=True, text=True, check=True).stdout
        return json.loads(out)

    reused = sweep(tmp_path / "shared.db")
    assert all(had for _, _, had, _ in reused)
    for n, seed, _, peak in reused:
        x = np.random.default_rng(seed).normal(size=n)
        assert np.isclose(peak, np.abs(np.fft.fft(x)).max())
    # The control: with a store that has no wisdom, the first transform of each
    # size in each worker is planned without it.
    fresh = sweep(tmp_path / "fresh.db")
    assert not all(had for _, _, had, _ in fresh)


def test_serial_batches_keep_and_take_wisdom_too(tmp_path):
    from .runs import Spectral

    batch = Batch("serial", path=tmp_path)
    batch.add_run(Spectral, {"n": 2560})
    batch(verbose=0)
    kept = batch.store.fftw_wisdom()
    assert kept
    script = (
        "import sys, runstore, pyfftw\n"
        "from runstore.performance import fft\n"
        "store = runstore.Store(sys.argv[1], readonly=True)\n"
        "assert fft.import_wisdom(store.fftw_wisdom())\n"
        "a = pyfftw.empty_aligned(2560, dtype='complex128')\n"
        "pyfftw.FFTW(a, a.copy(), flags=('FFTW_MEASURE', 'FFTW_WISDOM_ONLY'), threads=1)\n"
        "print('planned from the store')\n")
    out = subprocess.run([sys.executable, "-c", script, batch.store.path],
                         capture_output=True, text=True)
    assert out.stdout.strip() == "planned from the store", out.stderr
