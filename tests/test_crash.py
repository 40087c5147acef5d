"""Design invariant 3: killing a writer at any instant never corrupts committed results."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from runstore import Batch

from .runs import Sleepy

ROOT = Path(__file__).resolve().parent.parent
N_RUNS = 400
WRITER = """
import sys
sys.path.insert(0, sys.argv[1])
import runstore.batch
from runstore import Batch
from tests.runs import Sleepy
runstore.batch._FLUSH_SECONDS = 0.02  # commit often: more instants to be killed at
batch = Batch("crash", path=sys.argv[2])
batch.add_factorial_runs(Sleepy, {"i": list(range(%d)), "seconds": 0.004})
print("started", flush=True)
batch(verbose=0)
""" % N_RUNS


def _start_writer(folder: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(ROOT), str(folder)],
                            stdout=subprocess.PIPE, text=True)


def _check(folder: Path) -> int:
    """Reopen the store; every done run loads intact, every other run is pending."""
    batch = Batch("crash", path=folder)
    batch.add_factorial_runs(Sleepy, {"i": list(range(N_RUNS)), "seconds": 0.004})
    states = [run.state for run in batch.run]
    assert set(states) <= {"done", "pending"}, states
    for run in batch.run:
        if run.done:
            result = run.result
            i = run.parameters["i"]
            assert result["i"] == i and np.array_equal(result["data"], np.full(1000, float(i)))
    batch.store.close()
    return states.count("done")


@pytest.mark.slow
def test_sigkill_at_random_moments_never_corrupts_committed_results(tmp_path):
    rng = random.Random(20261122)
    done_counts = []
    for _ in range(12):
        with _start_writer(tmp_path) as writer:
            assert writer.stdout is not None and writer.stdout.readline() == "started\n"
            time.sleep(rng.uniform(0.0, 0.25))
            os.kill(writer.pid, signal.SIGKILL)
        done_counts.append(_check(tmp_path))
        # Killed, unless it had already finished everything.
        assert writer.returncode == -signal.SIGKILL or done_counts[-1] == N_RUNS
    assert done_counts == sorted(done_counts)  # committed results are never lost
    assert 0 < done_counts[-1] < N_RUNS, done_counts  # it was killed mid-batch
    with _start_writer(tmp_path) as writer:
        writer.communicate(timeout=120)
    assert writer.returncode == 0
    assert _check(tmp_path) == N_RUNS


TORTURE_RUNS = 2000
TORTURE_WRITER = """
import sys
sys.path.insert(0, sys.argv[1])
from runstore import Batch, Store
from tests.runs import Stamped
if __name__ == "__main__":
    batch = Batch("torture", store=Store(sys.argv[2]))
    batch.add_factorial_runs(Stamped, {"x": list(range(%d)), "log": sys.argv[3],
                                       "seconds": 0.02})
    print("started", flush=True)
    batch(verbose=0, processes=int(sys.argv[4]) or None)
""" % TORTURE_RUNS
MEDDLER = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
from runstore import Store
while not os.path.exists(sys.argv[3]):  # another script opening the store writable
    Store(sys.argv[2]).close()
    time.sleep(0.1)
"""


def _pending(store):
    import sqlite3

    with sqlite3.connect(store) as db:
        return db.execute("SELECT COUNT(*) FROM runs WHERE state != 'done'").fetchone()[0]


def _victim(kind, store, log):
    """Start a serial writer, a pool coordinator or a standalone worker."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if kind == "worker":
        return subprocess.Popen([sys.executable, "-m", "runstore", "worker", str(store)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    proc = subprocess.Popen([sys.executable, "-c", TORTURE_WRITER, str(ROOT), str(store),
                             str(log), "2" if kind == "pool" else "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "started\n"
    return proc


def _kill_some(kind, proc, rng):
    """Kill the process; for a pool, one or two of its workers first."""
    time.sleep(rng.uniform(0.3, 2.0))
    kills = 0
    if kind == "pool":
        for worker in psutil.Process(proc.pid).children()[: rng.choice([1, 2])]:
            worker.kill()
            kills += 1
        time.sleep(rng.uniform(0.2, 1.0))  # the coordinator replaces them, goes on
    proc.kill()
    try:
        proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:  # a hang is a failure, not a stuck CI job
        proc.kill()
        proc.communicate()
        raise
    return kills + 1


@pytest.mark.slow
def test_torture_killing_writers_pool_workers_and_workers_loses_and_duplicates_nothing(
        tmp_path):
    from .runs import Stamped

    rng = random.Random(20261201)
    store, log, stop = tmp_path / "t.db", tmp_path / "log", tmp_path / "stop"
    Batch("torture", store=store).add_factorial_runs(
        Stamped, {"x": list(range(TORTURE_RUNS)), "log": str(log), "seconds": 0.02})
    meddler = subprocess.Popen([sys.executable, "-c", MEDDLER, str(ROOT), str(store), str(stop)])
    kills, midway, started = 0, 0, time.monotonic()
    try:
        # At least 30 kills however loaded the machine is (a hang still ends it).
        while kills < 50 and time.monotonic() - started < (60 if kills >= 30 else 300):
            kind = rng.choice(["serial", "pool", "worker"])
            victim = _victim(kind, store, log)
            kills += _kill_some(kind, victim, rng)
            midway += victim.returncode == -signal.SIGKILL and _pending(store) > 0
    finally:
        stop.touch()
        meddler.communicate(timeout=60)
    assert kills >= 30 and midway >= 10, (kills, midway)
    batch = Batch("torture", store=store)  # opening recovers every killed owner's runs
    states = [run.state for run in batch.run]
    assert "running" not in states and states.count("done") > 0
    batch.add_factorial_runs(Stamped, {"x": list(range(TORTURE_RUNS)), "log": str(log),
                                       "seconds": 0.02})
    batch(verbose=0, processes=2)  # the final drain
    computed: dict[int, list[str]] = {}
    for line in log.read_text().splitlines():
        x, nonce, _ = line.split()
        computed.setdefault(int(x), []).append(nonce)
    report = batch.store.check()
    assert not (report.integrity or report.wrong_ids or report.missing_arrays), str(report)
    batch.store.gc(min_age=0)  # side files of killed writers are garbage, nothing more
    report = batch.store.check()
    assert report.ok, str(report)
    import sqlite3

    with sqlite3.connect(store) as db:
        typed = dict(db.execute("SELECT r.id, v.text FROM runs r JOIN result_values v "
                                "ON v.run_key = r.key AND v.key = 'nonce'"))
    for run in batch.run:
        assert run.done
        result, x = run.result, run.parameters["x"]
        assert result["x"] == x and np.array_equal(result["pad"], np.full(64, float(x)))
        assert computed[x].count(result["nonce"]) == 1  # the result of one computation
        assert typed[run.id] == result["nonce"]  # typed rows of the recorded result only
        assert len(computed[x]) <= run.provenance["attempts"]  # every computation claimed
