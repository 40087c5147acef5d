"""Claims and leases: a live owner never loses its run, whatever its lease says (real processes, real time)."""

from __future__ import annotations

import concurrent.futures
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from runstore import Batch, Store
from runstore.errors import DuplicateResultWarning, LeaseError

from .runs import SlowCounting, Sweep

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, PYTHONPATH=str(ROOT))

FIRST = """
import sys
sys.path.insert(0, sys.argv[1])
from runstore import Batch, Store
from tests.runs import SlowCounting
if __name__ == "__main__":
    mode, path, log = sys.argv[2:5]
    batch = Batch("long", store=Store(path, lease=2))
    run = batch.add_run(SlowCounting, {"x": 0, "log": log, "seconds": 25})
    if mode == "single":
        print(run()["x"], flush=True)
    else:
        batch(verbose=0, processes=2 if mode == "pool" else None)
    print(batch.run[0].state, flush=True)
"""

SECOND = """
import os, sqlite3, sys, time
sys.path.insert(0, sys.argv[1])
from runstore import Store
path = sys.argv[2]
# Another script opens the store writable (which recovers runs of dead owners and
# expired leases): as it is; as a host whose clock runs an hour ahead; and after
# a heartbeat that stalled for 100 s.
seen = []
for case in ("now", "clock ahead", "stalled"):
    os.environ["RUNSTORE_TEST_CLOCK_OFFSET"] = "3600" if case == "clock ahead" else "0"
    if case == "stalled":
        with sqlite3.connect(path) as db:
            db.execute("UPDATE runs SET lease_expires = ?", (time.time() - 100,))
    store = Store(path)
    seen.append(f"{case.replace(' ', '-')}:{store.recover()}:{len(store.in_flight())}")
    store.close()
print(" ".join(seen))
"""


def _running(path):
    try:
        with sqlite3.connect(path) as db:
            return db.execute("SELECT owner, pid, lease_expires FROM runs "
                              "WHERE state = 'running'").fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []


def _start(mode, folder):
    path, log = folder / "s.db", folder / "log"
    if mode == "worker":
        batch = Batch("long", store=Store(path))
        batch.add_run(SlowCounting, {"x": 0, "log": str(log), "seconds": 25})
        batch.store.close()
        return subprocess.Popen([sys.executable, "-m", "runstore", "worker", str(path)],
                                env=dict(ENV, RUNSTORE_LEASE="2"), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    return subprocess.Popen([sys.executable, "-c", FIRST, str(ROOT), mode, str(path), str(log)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _meddle(mode, path, pid):
    """Once the run is claimed, other processes open the store while its lease has
    expired, or seems to. The run takes 25 s so that this meddling ends before it
    does even on a busy machine."""
    deadline = time.time() + 60
    while time.time() < deadline and not (path.exists() and _running(path)):
        time.sleep(0.05)
    ((_, owner_pid, _),) = _running(path)
    assert owner_pid == pid, mode  # the coordinator (or the worker) claims
    claimed_at = time.time()
    time.sleep(2.5)  # a 2 s lease: expired, but for the heartbeat
    ((_, _, expires),) = _running(path)
    assert expires > time.time(), f"{mode}: the heartbeat keeps the lease alive"
    out = subprocess.run([sys.executable, "-c", SECOND, str(ROOT), str(path)], env=ENV,
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["now:0:1", "clock-ahead:0:1", "stalled:0:1"], (mode, out)
    # A worker with its clock ahead does not take the run either.
    worker = subprocess.run([sys.executable, "-m", "runstore", "worker", str(path)],
                            env=dict(ENV, RUNSTORE_TEST_CLOCK_OFFSET="3600"),
                            capture_output=True, text=True, timeout=60)
    assert worker.returncode == 0, worker.stderr
    assert worker.stdout.endswith(", 0 computed, 1 being computed by other processes\n"), (
        mode, worker.stdout)


@pytest.mark.slow
def test_a_live_owner_keeps_its_run_whatever_its_lease_says_in_every_mode(tmp_path):
    modes = ["serial", "single", "pool", "worker"]
    folders = {mode: tmp_path / mode for mode in modes}
    for folder in folders.values():
        folder.mkdir()
    procs = {mode: _start(mode, folders[mode]) for mode in modes}
    try:
        with concurrent.futures.ThreadPoolExecutor(len(modes)) as pool:
            for future in [pool.submit(_meddle, mode, folders[mode] / "s.db", procs[mode].pid)
                           for mode in modes]:
                future.result()
        for mode in modes:
            out, err = procs[mode].communicate(timeout=60)
            assert procs[mode].returncode == 0, f"{mode}: {err}"
            if mode != "worker":
                assert out.split()[-1] == "done", (mode, out, err)
            path = folders[mode] / "s.db"
            assert (folders[mode] / "log").read_text().split() == ["0"], mode  # once
            with sqlite3.connect(path) as db:
                ((state, attempts, pid),) = db.execute(
                    "SELECT state, attempts, pid FROM runs").fetchall()
            assert (state, attempts) == ("done", 1), mode
            # The provenance names the process that computed the run: a pool's
            # worker, else the process that claimed it.
            store = Store(path)
            try:
                assert pid == Batch("long", store=store).run[0].result["pid"], mode
            finally:
                store.close()
            assert (pid != procs[mode].pid) if mode == "pool" else (pid == procs[mode].pid), mode
    finally:
        for mode, proc in procs.items():
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


def test_leases_are_set_by_option_or_environment_and_checked(tmp_path, monkeypatch):
    assert Store(tmp_path / "a.db").lease == 600
    assert Store(tmp_path / "a.db", lease=2.5).lease == 2.5
    monkeypatch.setenv("RUNSTORE_LEASE", "7")
    store = Store(tmp_path / "a.db")
    assert store.lease == 7
    batch = Batch("b", store=store)
    batch.add_run(Sweep, {"A": 1})
    before = time.time()
    (row,) = store.claim(batch._id, ["tests.runs.Sweep"], 1)
    (expires,) = [r["lease_expires"] for r in store.in_flight()]
    assert before + 7 <= expires <= time.time() + 7
    for bad in ("0", "-1", "nan", "inf", "ten"):
        monkeypatch.setenv("RUNSTORE_LEASE", bad)
        with pytest.raises(LeaseError, match="RUNSTORE_LEASE must be a positive"):
            Store(tmp_path / "a.db")
    monkeypatch.delenv("RUNSTORE_LEASE")
    for bad in (0, -3, float("nan"), True, "5"):
        with pytest.raises(LeaseError, match="lease= must be"):
            Store(tmp_path / "a.db", lease=bad)


def _set_owner(path, owner, expires):
    with sqlite3.connect(path) as db:
        db.execute("UPDATE runs SET state = 'running', owner = ?, lease_expires = ?",
                   (owner, expires))


def test_a_zombie_or_a_reused_pid_is_dead_and_a_live_local_owner_is_not(tmp_path):
    import socket

    batch = Batch("z", path=tmp_path)
    batch.add_run(Sweep, {"A": 1})
    host, later = socket.gethostname(), time.time() + 3600
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    while psutil.Process(zombie.pid).status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.01)
    try:
        started = psutil.Process(zombie.pid).create_time()
        _set_owner(batch.store.path, f"{host}:{zombie.pid}:{started:.3f}", later)
        assert Store(batch.store.path).in_flight() == []  # opening recovered it
    finally:
        zombie.wait()
    me = psutil.Process()
    _set_owner(batch.store.path, f"{host}:{me.pid}:{me.create_time() - 50:.3f}", later)
    assert Store(batch.store.path).in_flight() == []  # the pid now names another process
    parent = psutil.Process(os.getppid())
    _set_owner(batch.store.path, f"{host}:{parent.pid}:{parent.create_time():.3f}",
               time.time() - 3600)
    assert len(Store(batch.store.path).in_flight()) == 1  # alive: its lease does not matter
    _set_owner(batch.store.path, "elsewhere:1:1.000", time.time() - 1)
    assert Store(batch.store.path).in_flight() == []  # another host: its lease tells


STEAL = """
import sys
sys.path.insert(0, sys.argv[1])
from runstore import Batch, Store
from tests.runs import Stolen
batch = Batch("stolen", store=Store(sys.argv[2]))  # recovers the run: its lease expired
run = batch.add_run(Stolen, {"x": 1, "mode": sys.argv[3]})
if sys.argv[3] == "recompute":
    print(run()["who"])
"""


@pytest.mark.parametrize("mode", ["release", "recompute"])
def test_a_result_whose_claim_was_lost_is_recorded_or_discarded_with_a_warning(tmp_path, mode):
    from .runs import Stolen

    batch = Batch("stolen", path=tmp_path)
    run = batch.add_run(Stolen, {"x": 1, "mode": mode})
    if mode == "release":  # nobody else computed it: this result is recorded
        assert run()["who"] == "first"
    else:  # another process recorded it meanwhile: this duplicate is discarded
        with pytest.warns(DuplicateResultWarning, match="already recorded.*discarded"):
            assert run()["who"] == "second"
    with sqlite3.connect(batch.store.path) as db:
        assert db.execute("SELECT state, attempts FROM runs").fetchall() == [
            ("done", 1 if mode == "release" else 2)]
        typed = db.execute("SELECT text FROM result_values WHERE key = 'who'").fetchall()
    assert typed == [(run.result["who"],)]  # typed rows of the recorded result only
    assert np.array_equal(run.result["data"], np.arange(3.0))
