"""Standalone workers and `runstore status`, with real processes."""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runstore import Batch, Store
from runstore.errors import WorkerError
from runstore.worker import import_run_class, work

from .runs import Named, SlowCounting, Sweep

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, PYTHONPATH=str(ROOT))


def cli(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "runstore", *args], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kwargs)


def test_run_classes_are_found_by_module_path_or_by_imported_modules():
    assert import_run_class("tests.runs.Sweep") is Sweep
    assert import_run_class("lab.Named", ["tests.runs"]) is Named
    with pytest.raises(WorkerError, match=r"defined in the script.*\(__main__\).*module"):
        import_run_class("__main__.example_run")
    with pytest.raises(WorkerError, match="make its module importable.*--import"):
        import_run_class("no_such_module_here.Run")


def test_a_worker_computes_pending_runs_and_skips_what_it_cannot_import(tmp_path):
    batch = Batch("mixed", path=tmp_path)
    batch.add_factorial_runs(Sweep, {"A": [1, 2, 3]})
    with sqlite3.connect(batch.store.path) as db:  # a run of a class no one can import
        db.execute("UPDATE runs SET run_type = '__main__.Gone' WHERE key = 3")
    computed = work(batch.store.path, verbose=0)
    assert computed == {"mixed": 2}
    assert [r.state for r in Batch("mixed", path=tmp_path).run] == ["done", "done", "pending"]


COORDINATOR = """
import sys
sys.path.insert(0, sys.argv[1])
from runstore import Batch, Store
from tests.runs import SlowCounting
batch = Batch("shared", store=Store(sys.argv[2]))
batch.add_factorial_runs(SlowCounting, {"x": list(range(int(sys.argv[4]))), "log": sys.argv[3],
                                        "seconds": float(sys.argv[5])})
print("added", flush=True)
batch(verbose=0)
"""


@pytest.mark.slow
def test_a_coordinator_and_four_workers_compute_every_run_exactly_once(tmp_path):
    store, log, n = tmp_path / "s.db", tmp_path / "log", 2000
    coordinator = subprocess.Popen(
        [sys.executable, "-c", COORDINATOR, str(ROOT), str(store), str(log), str(n), "0.002"],
        stdout=subprocess.PIPE, text=True)
    assert coordinator.stdout.readline() == "added\n"
    workers = [cli("worker", str(store)) for _ in range(4)]
    said = {}
    for process in [coordinator, *workers]:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        assert "locked" not in (err or "")
        said[process.pid] = out
    assert sorted(map(int, log.read_text().split())) == list(range(n))
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT state, MAX(attempts), COUNT(*) FROM runs GROUP BY state"
                          ).fetchall() == [("done", 1, n)]
        by_pid = dict(db.execute("SELECT pid, COUNT(*) FROM runs GROUP BY pid"))
    assert len(by_pid) >= 2  # the work was shared
    # Each worker counts the runs it computed, not those the others finished meanwhile.
    for worker in workers:
        (count,) = re.findall(r"(\d+) computed", said[worker.pid])
        assert int(count) == by_pid.get(worker.pid, 0)


@pytest.mark.slow
def test_a_killed_worker_s_run_is_completed_exactly_once_by_another(tmp_path):
    store, log = tmp_path / "s.db", tmp_path / "log"
    batch = Batch("slow", store=Store(store))
    batch.add_factorial_runs(SlowCounting, {"x": list(range(6)), "log": str(log),
                                            "seconds": 0.6})
    victim = cli("worker", str(store))
    deadline = time.time() + 30
    while not batch.store.in_flight() and time.time() < deadline:
        time.sleep(0.05)
    (claimed,) = {row["pid"] for row in batch.store.in_flight()}
    assert claimed == victim.pid
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate()
    survivor = cli("worker", str(store))
    out, err = survivor.communicate(timeout=120)
    assert survivor.returncode == 0, err
    assert sorted(map(int, log.read_text().split())) == list(range(6))  # each once
    runs = list(Batch("slow", store=Store(store)).run)
    assert all(r.done for r in runs)
    assert max(r.provenance["attempts"] for r in runs) == 2


def test_status_shows_counts_and_runs_in_flight(tmp_path):
    batch = Batch("status", path=tmp_path)
    batch.add_factorial_runs(Sweep, {"A": [1, 2, 3]})
    batch.store.claim(batch._id, ["tests.runs.Sweep"], 1)  # one run in flight
    out = subprocess.run([sys.executable, "-m", "runstore", "status", batch.store.path],
                         env=ENV, capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert lines[0].split() == ["batch", "pending", "running", "done", "failed"]
    assert lines[1].split() == ["status", "2", "1", "0", "0"]
    assert "1 runs in flight:" in out and f"pid {os.getpid()}" in out


def test_runs_of_other_hosts_return_to_pending_only_when_their_lease_expires(tmp_path):
    batch = Batch("leases", path=tmp_path)
    batch.add_factorial_runs(Sweep, {"A": [1, 2]})
    now = time.time()
    with sqlite3.connect(batch.store.path) as db:
        for key, expires in ((1, now - 1), (2, now + 600)):
            db.execute("UPDATE runs SET state = 'running', owner = ?, host = 'elsewhere', "
                       "pid = 1, lease_expires = ? WHERE key = ?",
                       (f"elsewhere:1:{key}.000", expires, key))
    reopened = Batch("leases", path=tmp_path)  # opening recovers expired leases
    assert [r.state for r in reopened.run] == ["pending", "running"]
    reopened.add_factorial_runs(Sweep, {"A": [1, 2]})
    reopened(verbose=0)
    assert [r.state for r in reopened.run] == ["done", "running"]  # a live lease holds


MODULE = """
import runstore

class Beside(runstore.Run):
    def run(self, x=0):
        return {"y": 2 * x}
"""

MAKER = """
from beside import Beside
import runstore
batch = runstore.Batch("beside")
batch.add_factorial_runs(Beside, {"x": [1, 2, 3]})
"""


def test_the_installed_worker_imports_modules_beside_it_and_says_when_it_cannot(tmp_path):
    # The console script, as a user types it: unlike `python -m`, it does not put
    # the current folder on sys.path itself.
    command = shutil.which("runstore")
    assert command is not None, "pip install -e . installs the runstore command"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    (tmp_path / "beside.py").write_text(MODULE)
    subprocess.run([sys.executable, "-c", MAKER], cwd=tmp_path, env=env, check=True)
    (tmp_path / "beside.py").rename(tmp_path / "elsewhere.py")
    gone = subprocess.run([command, "worker"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert gone.returncode == 7, gone
    lines = gone.stderr.splitlines()
    assert lines[0].startswith("runstore worker: skipping runs of beside.Beside: cannot "
                               "import the run class beside.Beside"), lines
    assert lines[-1].startswith("runstore: error: 3 runs left pending: cannot import"), lines
    assert len(lines) == 2 and "Traceback" not in gone.stderr
    (tmp_path / "elsewhere.py").rename(tmp_path / "beside.py")
    done = subprocess.run([command, "worker"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done
    assert done.stdout.strip() == "0 of 3 runs from the store, 3 computed"
    with sqlite3.connect(tmp_path / "_res" / "beside.db") as db:
        assert sorted(db.execute("SELECT state, result FROM runs")) == [
            ("done", '["dict",[["y",2]]]'), ("done", '["dict",[["y",4]]]'),
            ("done", '["dict",[["y",6]]]')]
