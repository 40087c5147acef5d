"""No run is stranded: dead pool workers, failed commits, full disks (real processes, real files)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from runstore import Batch, Store

ROOT = Path(__file__).resolve().parent.parent

SENDER_COORDINATOR = """
import sys
sys.path.insert(0, sys.argv[1])
from runstore import Batch
from runstore.errors import RunsFailedError
from tests.runs import BigSender
if __name__ == "__main__":
    batch = Batch("senders", path=sys.argv[2])
    batch.add_factorial_runs(BigSender, {"i": list(range(60)), "folder": sys.argv[3]})
    print("started", flush=True)
    try:
        batch(processes=2, verbose=0)
    except RunsFailedError as exc:  # a run whose worker died twice while it ran alone
        assert all("died each of the" in error for _, _, error in exc.failures), exc
    print("first", [r.state for r in batch.run].count("done"), flush=True)
    open(sys.argv[3] + "-stop", "w").close()  # no more kills
    batch(processes=2, verbose=0, retry_failed=True)
    states = [r.state for r in batch.run]
    ok = all(r.result["i"] == r.parameters["i"] and r.result["data"].size == 4 * 2**17
             for r in batch.run)
    print(states.count("done"), states.count("failed"), ok, flush=True)
"""


@pytest.mark.slow
def test_a_worker_killed_while_it_sends_its_result_never_hangs_the_pool(tmp_path):
    rng = random.Random(7)
    markers = tmp_path / "markers"
    markers.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", SENDER_COORDINATOR, str(ROOT),
                             str(tmp_path), str(markers)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed: set[str] = set()
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "started\n"
        deadline = time.monotonic() + 90
        while proc.poll() is None and time.monotonic() < deadline:
            for marker in sorted(os.listdir(markers)):
                run, pid = marker.split("-")
                if run in killed or len(killed) >= 10 or os.path.exists(f"{markers}-stop"):
                    continue
                killed.add(run)  # each run's worker is killed at most once
                time.sleep(rng.uniform(0.004, 0.03))  # encoding, or in the 4 MiB send
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.002)
        hung = proc.poll() is None
    finally:
        if proc.poll() is None:
            proc.kill()
        out, err = proc.communicate()
    assert not hung, f"the coordinator hung after {len(killed)} kills: {err[-2000:]}"
    assert proc.returncode == 0, err[-3000:]
    assert len(killed) >= 4
    first, last = out.splitlines()[-2:]
    assert int(first.split()[1]) >= 50, out  # at most a few runs failed the first time
    assert last.split() == ["60", "0", "True"], (out, err[-2000:])


@pytest.fixture
def small_disk(tmpfs):
    """A 24 MiB tmpfs."""
    return tmpfs("24m")


def _assert_intact(batch, n):
    """No run is running; every done run's result is its own."""
    states = [run.state for run in batch.run]
    assert "running" not in states, states.count("running")
    for run in batch.run:
        if run.done:
            assert run.result["i"] == run.parameters["i"]
            assert np.array_equal(run.result["data"], np.full(run.result["data"].size,
                                                               float(run.parameters["i"])))
    return states.count("done")


@pytest.mark.slow
def test_a_full_disk_fails_the_batch_loses_nothing_and_the_next_call_completes(
        small_disk, tmp_path):
    from runstore.errors import RunstoreError

    from .runs import FillsDisk

    ballast = small_disk / "ballast"
    batch = Batch("full", store=Store(small_disk / "full.db"))
    batch.add_factorial_runs(FillsDisk, {"i": list(range(1200)), "ballast": str(ballast),
                                         "once": str(tmp_path / "filled"),
                                         "at": 800, "seconds": 0.002})
    with pytest.raises((OSError, RunstoreError)) as info:
        batch(verbose=0)
    message = str(info.value)
    assert "full" in message.lower() or str(small_disk) in message, message
    done = _assert_intact(batch, 1200)
    assert 0 < done < 1200
    ballast.unlink()
    batch(verbose=0)  # the same process, the same objects
    assert _assert_intact(batch, 1200) == 1200
    report = batch.store.check()
    # The one side file the full disk cut short is garbage, which gc removes.
    assert len(report.partial_files) <= 2, str(report)
    report.partial_files = []
    assert report.ok, str(report)


@pytest.mark.slow
def test_when_even_the_release_fails_the_next_call_takes_its_stranded_runs_back(
        small_disk, tmp_path):
    from .runs import FillsDisk

    ballast = small_disk / "ballast"
    store = Store(small_disk / "full.db")
    batch = Batch("stranded", store=store)
    batch.add_factorial_runs(FillsDisk, {
        "i": list(range(600)), "ballast": str(ballast), "once": str(tmp_path / "filled"),
        "at": 400, "seconds": 0.002, "reserves": str(store.arrays.directory)})
    with pytest.raises(OSError) as info:
        batch(verbose=0)
    assert "full" in str(info.value).lower()
    states = [run.state for run in batch.run]
    assert "running" in states  # the full disk took the release too: stranded
    other = Store(small_disk / "full.db", readonly=True)
    assert {row["owner"] for row in other.in_flight()} == {store.owner}  # still ours
    ballast.unlink()
    batch(verbose=0)  # the same process takes its stranded runs back
    assert _assert_intact(batch, 600) == 600
    assert max(run.provenance["attempts"] for run in batch.run) == 2


def test_a_bad_result_fails_its_run_only_and_the_others_are_stored(tmp_path):
    from runstore.errors import RunsFailedError

    from .runs import Unbindable

    batch = Batch("unbindable", path=tmp_path)
    batch.add_factorial_runs(Unbindable, {"i": list(range(40)), "bad": 17})
    with pytest.raises(RunsFailedError, match="lone surrogate"):
        batch(verbose=0)
    states = [run.state for run in batch.run]
    assert states == ["done"] * 17 + ["failed"] + ["done"] * 22
    assert all(run.result["i"] == run.parameters["i"] for run in batch.run if run.done)
    assert "result key 'text'" in batch.store.run_record(batch.run[17].id)["error_message"]


def test_a_commit_that_fails_for_one_run_s_data_keeps_the_others(tmp_path):
    """Below the encoder's checks: the store isolates a completion SQLite refuses."""
    from runstore.encoding import indexed
    from runstore.schema import RunState
    from runstore.store import Completion

    from .runs import Sweep

    batch = Batch("isolating", path=tmp_path)
    batch.add_factorial_runs(Sweep, {"A": list(range(12)), "B": 1, "C": 0})
    rows = batch.store.claim(batch._id, ["tests.runs.Sweep"], 12)
    assert len(rows) == 12
    completions = [Completion(row.id, row.key, RunState.DONE,
                              result_json=('["dict",[["val",%d]]]' % i if i != 5
                                           else '["dict",[["val","\ud800"]]]'),
                              scalars={"val": indexed(i)} if i != 5 else None)
                   for i, row in enumerate(rows)]
    assert batch.store.complete(completions, batch._id) == 12
    states = [run.state for run in batch.run]
    assert states == ["done"] * 5 + ["failed"] + ["done"] * 6
    record = batch.store.run_record(batch.run[5].id)
    assert "could not be stored" in record["error_message"]
    assert "UnicodeEncodeError" in record["traceback"]
    assert [run.result["val"] for run in batch.run if run.done] == [*range(5), *range(6, 12)]
    assert batch.store.in_flight() == []
    assert batch.store.check().ok


def test_a_failed_commit_of_side_files_releases_every_claimed_run(tmp_path):
    from .runs import MovesFolder

    batch = Batch("moved", path=tmp_path)
    folder = batch.store.arrays.directory
    batch.add_factorial_runs(MovesFolder, {"i": list(range(30)), "folder": str(folder),
                                           "at": 5})
    batch.run[0]()  # the folder exists
    with pytest.raises(OSError, match=str(folder.parent)):
        batch(verbose=0)
    assert [run.state for run in batch.run] == ["done"] + ["pending"] * 29
    folder.unlink()
    Path(str(folder) + "-aside").rename(folder)
    batch(verbose=0)  # the same process
    assert [run.state for run in batch.run] == ["done"] * 30
    assert all(run.result["i"] == run.parameters["i"] for run in batch.run)


FILLS_ITS_DISK = """
import subprocess, sys
sys.path.insert(0, sys.argv[1])
import runstore
from tests.runs import FillsDisk
batch = runstore.Batch("fills", path=sys.argv[2])
batch.add_factorial_runs(FillsDisk, {"i": list(range(1200)), "seconds": 0.003})
try:
    batch(verbose=0)
except runstore.errors.StorageFullError as exc:
    print("full:", exc, flush=True)
states = [run.state for run in batch.run]
print("running", states.count("running"), "done", states.count("done"), flush=True)
subprocess.run(["mount", "-o", "remount,size=64m", sys.argv[2]], check=True)
batch(verbose=0)
print("then done", [run.state for run in batch.run].count("done"), flush=True)
"""


@pytest.mark.slow
def test_a_sweep_that_fills_its_disk_stops_cleanly_and_finishes_after_room_is_made(tmpfs):
    """The arrays themselves fill the disk (no ballast): a clean error, never a crash."""
    mount = tmpfs("12m")
    out = subprocess.run([sys.executable, "-c", FILLS_ITS_DISK, str(ROOT), str(mount)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]  # not killed by a signal (HDF5 on ENOSPC)
    lines = out.stdout.splitlines()
    assert lines[0].startswith("full:") and str(mount) in lines[0] and "free" in lines[0]
    running, done_before = int(lines[1].split()[1]), int(lines[1].split()[3])
    assert running == 0 and 0 < done_before < 1200, lines
    assert lines[2] == "then done 1200"
