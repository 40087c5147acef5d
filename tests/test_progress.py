"""runstore.progress: what a batch call and a worker say, when they finish and on Ctrl-C.

Ctrl-C is a real SIGINT sent to a real process group, as a terminal sends it.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runstore import Batch, Store
from runstore.errors import RunsFailedError, UncomputedRunsWarning
from runstore.progress import summary

from .runs import Flaky, Sleepy, Sweep
from .test_pool import _until_some_done

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(
    [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))


def test_a_call_that_computes_nothing_says_so_in_one_line(in_tmp, capfd):
    batch = Batch("cached")
    batch.add_factorial_runs(Sweep, {"A": list(range(6)), "B": list(range(6))})
    batch(verbose=0)
    assert capfd.readouterr() == ("", "")
    batch()  # batchpy's default: verbose=1
    assert capfd.readouterr() == ("", "36 of 36 runs from the store, 0 computed\n")
    batch(-1, 1, 2)  # batchpy's positional runs, verbose, processes
    assert capfd.readouterr() == ("", "36 of 36 runs from the store, 0 computed\n")
    batch([0, 3])
    assert capfd.readouterr() == ("", "2 of 2 runs from the store, 0 computed\n")
    batch(verbose=0)
    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize("processes", [None, 2], ids=["serial", "processes"])
def test_a_call_that_computes_ends_with_the_same_line_after_its_bar(in_tmp, capfd, processes):
    batch = Batch("partly")
    batch.add_factorial_runs(Sweep, {"A": list(range(4)), "B": [1, 2, 3]})
    batch(verbose=0)
    batch.add_factorial_runs(Sweep, {"A": list(range(4)), "B": [1, 2, 3, 4, 5]})
    batch(processes=processes)
    out, err = capfd.readouterr()
    assert out == "" and err.endswith("\n12 of 20 runs from the store, 8 computed\n")
    assert "8/8" in err.splitlines()[-2]  # the bar, ended at 100%, just before


def test_the_line_counts_failures_and_says_how_to_retry_them(in_tmp, capfd):
    batch = Batch("flaky")
    batch.add_factorial_runs(Flaky, {"x": list(range(6))})
    with pytest.raises(RunsFailedError):
        batch()
    assert capfd.readouterr().err.endswith(
        "\n0 of 6 runs from the store, 6 computed (3 failed)\n")
    batch()
    assert capfd.readouterr().err == (
        "3 of 6 runs from the store, 0 computed, 3 failed before "
        "(batch(retry_failed=True) runs them again)\n")


def test_the_line_says_how_many_runs_are_left_pending(in_tmp, capfd):
    batch = Batch("mixed")
    batch.add_factorial_runs(Flaky, {"x": [0, 2]})
    batch.add_factorial_runs(Sweep, {"A": [1, 2, 3]})
    reopened = Batch("mixed")  # knows only the class of the runs it adds
    reopened.add_run(Sweep, {"A": 1})
    with pytest.warns(UncomputedRunsWarning, match="tests.runs.Flaky"):
        reopened()
    assert capfd.readouterr().err.endswith(
        "\n0 of 5 runs from the store, 3 computed, 2 still pending\n")


def test_runs_other_processes_compute_are_named():
    assert summary({"done": 4, "running": 2}, 0) == (
        "4 of 6 runs from the store, 0 computed, 2 being computed by other processes")


INTERRUPTED = """
import sys
from runstore import Batch
from tests.runs import Sleepy
batch = Batch("interrupted", path=sys.argv[1])
batch.add_factorial_runs(Sleepy, {"i": list(range(36)), "seconds": 0.1})
batch(verbose=0, processes=None if sys.argv[2] == "serial" else 2)
"""


def _start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    """Start a process in a group of its own, SIGINT at its default, as at a terminal."""
    return subprocess.Popen(args, cwd=cwd, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _ctrl_c(proc: subprocess.Popen[str], db: Path) -> tuple[str, str]:
    """Once results are committed, SIGINT to the whole group (Ctrl-C); its output."""
    _until_some_done(db)
    os.killpg(proc.pid, signal.SIGINT)
    return proc.communicate(timeout=120)


def _done(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        states = dict(conn.execute("SELECT state, COUNT(*) FROM runs GROUP BY state"))
    assert "running" not in states, states  # runs in flight are pending again
    return int(states.get("done", 0))


@pytest.mark.parametrize("mode", ["serial", "processes"])
def test_ctrl_c_says_in_one_line_how_many_results_were_kept(tmp_path, mode):
    script = tmp_path / "sweep.py"
    script.write_text(INTERRUPTED)
    proc = _start([sys.executable, str(script), str(tmp_path), mode], tmp_path)
    _, err = _ctrl_c(proc, tmp_path / "_res" / "interrupted.db")
    # Python ends as Ctrl-C ends it, by SIGINT, which shells look for.
    assert proc.returncode == -signal.SIGINT, err
    found = re.findall(r"^KeyboardInterrupt: interrupted: (\d+) of 36 results kept; "
                       r"call batch\(\) again to resume$", err, re.M)
    assert len(found) == 1, err
    assert int(found[0]) == _done(tmp_path / "_res" / "interrupted.db") > 0
    # The traceback ends at the user's call: nothing from inside the run or the
    # drain, and no worker process's traceback.
    assert err.count("Traceback") == 1 and err.count('  File "') == 2, err
    assert "batch(verbose=0" in err and "runs.py" not in err and "sleep" not in err
    assert "pool.py" not in err and "store.py" not in err
    batch = Batch("interrupted", path=tmp_path)  # calling again resumes
    batch.add_factorial_runs(Sleepy, {"i": list(range(36)), "seconds": 0.1})
    batch(verbose=0)
    assert all(run.done for run in batch.run)
    kept = [run for run in batch.run if run.result["pid"] != os.getpid()]
    assert len(kept) == int(found[0])  # what was kept was not computed again


def worker_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runstore", "worker", *args], cwd=cwd,
                          env=ENV, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_a_worker_says_what_it_computed_in_one_line(tmp_path):
    batch = Batch("work", path=tmp_path)
    batch.add_factorial_runs(Sweep, {"A": [1, 2, 3], "B": [1, 2]})
    batch.store.close()
    first = worker_cli("_res/work.db", cwd=tmp_path)
    assert (first.returncode, first.stdout, first.stderr) == (
        0, "0 of 6 runs from the store, 6 computed\n", "")
    again = worker_cli("_res/work.db", cwd=tmp_path)
    assert (again.returncode, again.stdout, again.stderr) == (
        0, "6 of 6 runs from the store, 0 computed\n", "")
    verbose = worker_cli("-v", "--processes", "2", cwd=tmp_path)
    assert (verbose.returncode, verbose.stdout, verbose.stderr) == (
        0, "6 of 6 runs from the store, 0 computed\n", "")
    more = Batch("more", path=tmp_path / "b")
    more.add_factorial_runs(Sweep, {"A": [1, 2, 3, 4], "B": [1]})
    more.store.close()
    shared = worker_cli("--processes", "2", "_res/more.db", cwd=tmp_path / "b")
    assert (shared.returncode, shared.stdout, shared.stderr) == (
        0, "0 of 4 runs from the store, 4 computed\n", "")


@pytest.mark.slow
def test_ctrl_c_while_worker_processes_start_prints_no_traceback(tmp_path):
    # Each delay lands in another stage of starting: the parent importing,
    # its processes importing what limiting threads needs, their first claims.
    for delay in (0.3, 0.6, 0.9, 1.2, 1.6):
        db = tmp_path / f"s{delay}.db"
        batch = Batch("work", store=Store(db))
        batch.add_factorial_runs(Sleepy, {"i": list(range(40)), "seconds": 0.1})
        batch.store.close()
        proc = _start([sys.executable, "-m", "runstore", "worker", str(db), "--processes",
                       "2"], tmp_path)
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        assert "Traceback" not in err and err.count("\n") <= 1, (delay, err)
        assert proc.returncode in (130, -signal.SIGINT), (delay, err)
        assert err == "" or err.startswith("runstore: error: interrupted"), (delay, err)


@pytest.mark.slow
@pytest.mark.parametrize("processes", ["1", "2"])
def test_ctrl_c_stops_a_worker_with_one_error_line_and_exit_130(tmp_path, processes):
    db = tmp_path / "s.db"
    batch = Batch("work", store=Store(db))
    batch.add_factorial_runs(Sleepy, {"i": list(range(40)), "seconds": 0.1})
    batch.store.close()
    proc = _start([sys.executable, "-m", "runstore", "worker", str(db), "--processes",
                   processes], tmp_path)
    out, err = _ctrl_c(proc, db)
    kept = _done(db)
    assert (proc.returncode, out) == (130, "")
    assert err == (f"runstore: error: interrupted: {kept} of 40 results kept; run the "
                   "worker again to resume\n")
    resumed = worker_cli(str(db), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout == f"{kept} of 40 runs from the store, {40 - kept} computed\n"
    assert _done(db) == 40
