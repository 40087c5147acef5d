"""Taking runs out of a batch (batches persist), and the batchpy helpers around it."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

import runstore
from runstore import Batch, Store
from runstore.errors import ReadOnlyStoreError, RunNotFound

from .runs import Arrays, Counting, Sweep
from .test_cli import runstore_cli

ROOT = Path(__file__).resolve().parent.parent


def _positions(db: Path, batch: str) -> list[int]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute(
            "SELECT e.position FROM entries e JOIN batches b ON b.id = e.batch_id "
            "WHERE b.name = ? ORDER BY e.position", (batch,))]


def _run_count(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])


@pytest.fixture
def swept(in_tmp):
    """A computed batch of 6 runs, and a second batch sharing runs 2 and 3."""
    store = Store(in_tmp / "s.db")
    batch = Batch("sweep", store=store)
    batch.add_factorial_runs(Sweep, {"A": [0, 1, 2, 3, 4, 5]})
    batch(verbose=0)
    other = Batch("other", store=store)
    other.add_resultrun([batch.run[2].id, batch.run[3].id])
    return batch, other


def test_a_reopened_batch_has_its_runs_and_remove_takes_them_out(swept):
    batch, other = swept
    ids = list(batch.run.ids())
    again = Batch("sweep", store=batch.store)  # batches persist in their store
    assert list(again.run.ids()) == ids
    done = again.remove([again.run[1], ids[3], -1])  # a run, an id, a position
    assert (done.removed, done.shared, done.deleted, done.missing) == (3, 1, 0, [])
    assert list(batch.run.ids()) == [ids[0], ids[2], ids[4]]
    assert [r.index for r in batch.run] == [0, 1, 2]  # the runs after move up
    assert _positions(Path(batch.store.path), "sweep") == [0, 1, 2]
    # Results are kept: the other batch still has run 3, and adding removed
    # runs back finds their results without computing them.
    assert other.run[1].id == ids[3] and other.run[1].result == {"val": 0 * 3 + 0}
    back = batch.add_run(Sweep, {"A": 5})
    assert back.id == ids[5] and back.done and back.result == {"val": 0}
    assert batch.remove(batch.run).removed == 4 and batch.run == []


def test_delete_unheld_deletes_only_what_no_batch_holds_and_gc_frees_its_arrays(in_tmp):
    store = Store(in_tmp / "a.db")
    batch = Batch("arrays", store=store)
    batch.add_factorial_runs(Arrays, {"n": [3, 4, 5], "seed": 1})
    batch(verbose=0)
    keep = Batch("keep", store=store)
    keep.add_resultrun(batch.run[0].id)
    kept_x = keep.run[0].result["x"].copy()
    done = batch.remove(batch.run, delete_unheld=True)
    assert (done.removed, done.shared, done.deleted, done.running) == (3, 1, 2, 0)
    assert _run_count(in_tmp / "a.db") == 1
    with sqlite3.connect(in_tmp / "a.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM parameters").fetchone()[0] == 2  # n, seed
    report = store.gc(min_age=0)
    assert sum(report.rewritten.values()) == 2  # the side file, without the two runs
    (side,) = (in_tmp / "a.arrays").glob("*.h5")
    with h5py.File(side, "r") as f:
        assert list(f) == [keep.run[0].id]
    assert store.check().ok
    np.testing.assert_array_equal(keep.run[0].result["x"], kept_x)


def test_a_run_being_computed_is_not_deleted(in_tmp):
    db = in_tmp / "s.db"
    batch = Batch("b", store=db)
    batch.add_factorial_runs(Sweep, {"A": [1, 2]})
    worker = Store(db)  # another process's claim, as a worker makes it
    (claimed,) = worker.claim_ids([batch.run[0].id])
    done = batch.remove(batch.run, delete_unheld=True)
    assert (done.removed, done.deleted, done.running) == (2, 1, 1)
    assert worker.states([claimed.id]) == {claimed.id: "running"}
    worker.close()


def test_bad_selections_are_refused_and_nothing_is_removed(swept, tmp_path):
    batch, other = swept
    ids = list(batch.run.ids())
    stranger = Batch("stranger", store=batch.store)
    stranger.add_run(Sweep, {"A": 99})
    with pytest.raises(RunNotFound, match="belongs to another batch"):
        batch.remove([batch.run[0], stranger.run[0]])
    with pytest.raises(RunNotFound, match="1 of 2 runs are not in the batch; none was removed"):
        batch.remove([ids[0], "f" * 40])
    with pytest.raises(IndexError, match="run index 6 out of range: the batch has 6 runs"):
        batch.remove([0, 6])
    with pytest.raises(TypeError, match="give runs, run ids or positions"):
        batch.remove([1.5])
    assert list(batch.run.ids()) == ids
    reader = Batch("sweep", store=Store(batch.store.path, readonly=True))
    with pytest.raises(ReadOnlyStoreError):
        reader.remove(0)
    assert list(batch.run.ids()) == ids


def test_calls_after_a_removal_compute_by_the_new_positions(in_tmp):
    log = in_tmp / "log"
    batch = Batch("c")
    batch.add_factorial_runs(Counting, {"x": [0, 1, 2, 3], "log": str(log)})
    batch.remove(0)
    batch(0, verbose=0)  # the run now first: x=1
    assert [r.state for r in batch.run] == ["done", "pending", "pending"]
    assert batch.run[0].parameters["x"] == 1 and log.read_text() == "1\n"


def test_removing_while_another_process_adds_runs_keeps_positions_whole(in_tmp):
    db = in_tmp / "race.db"
    batch = Batch("race", store=db)
    batch.add_factorial_runs(Sweep, {"A": list(range(200))})
    started = in_tmp / "started"
    adder = textwrap.dedent(f"""
        import pathlib, sys
        sys.path.insert(0, {str(ROOT)!r})
        from runstore import Batch
        from tests.runs import Sweep
        batch = Batch("race", store={str(db)!r})
        pathlib.Path({str(started)!r}).touch()
        for a in range(1000, 1150):
            batch.add_run(Sweep, {{"A": a}})
    """)
    proc = subprocess.Popen([sys.executable, "-c", adder])
    while not started.exists() and proc.poll() is None:
        time.sleep(0.01)
    removed = 0
    while proc.poll() is None and removed < 200:  # removing while the other adds
        removed += batch.remove(0).removed
    assert proc.wait() == 0 and removed > 0
    assert _positions(db, "race") == list(range(200 + 150 - removed))
    ids = list(batch.run.ids())
    assert len(set(ids)) == len(ids)
    assert sorted(r.parameters["A"] for r in batch.run if r.parameters["A"] >= 1000) \
        == list(range(1000, 1150))


def test_cli_remove(swept):
    batch, other = swept
    db = batch.store.path
    ids = list(batch.run.ids())
    result = runstore_cli("remove", db, "--batch", "sweep")
    assert result.returncode == 2 and "say which runs to remove" in result.stderr
    result = runstore_cli("remove", db, "--batch", "sweep", "A>=4", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("would remove 2 of the 6 runs of batch 'sweep'")
    assert list(batch.run.ids()) == ids
    result = runstore_cli("remove", db, "--batch", "sweep", "A>=4", "--run", ids[3][:10])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:2] == [
        f"removed 3 runs from batch 'sweep' of {db}; 3 remain",
        "  1 of them are still held by other batches"]
    assert list(batch.run.ids()) == ids[:3]
    result = runstore_cli("remove", db, "--batch", "sweep", "--all", "--delete-unheld")
    assert result.returncode == 0, result.stderr
    assert "deleted 2 runs no batch held" in result.stdout  # run 2 is the other batch's
    assert batch.run == [] and [r.id for r in other.run] == ids[2:4]
    result = runstore_cli("remove", db, "--batch", "other", "--run", "f" * 12)
    assert result.returncode == 3 and "no run with id 'ffffffffffff'" in result.stderr


def test_cli_remove_refuses_a_bundle(swept, tmp_path):
    batch, _ = swept
    db, _ = batch.export(tmp_path / "shared")
    result = runstore_cli("remove", str(db), "--all")
    assert result.returncode == 5 and "is a bundle" in result.stderr
    assert len(runstore.open_bundle(db).run) == 6


def test_add_resultrun_folder_takes_this_batch_s_runs_from_stores_and_bundles(in_tmp):
    elsewhere = Batch("sweep", path="lab")  # lab/_res/sweep.db
    elsewhere.add_factorial_runs(Sweep, {"A": [1, 2]})
    elsewhere(verbose=0)
    elsewhere.export("lab/_res/shared")  # the same runs again, as a bundle
    extra = Batch("sweep", store="lab/_res/extra.db")
    extra.add_run(Sweep, {"A": 3})
    extra(verbose=0)
    Batch("unrelated", store="lab/_res/other.db").add_run(Sweep, {"A": 4})
    mine = Batch("sweep")
    report = mine.add_resultrun_folder("lab/_res")
    assert (report.added, report.present) == (3, 2)
    assert sorted(r.parameters["A"] for r in mine.run) == [1, 2, 3]
    assert all(r.done for r in mine.run)
    # The default folder is the batch's own _res, whose store is its own.
    assert mine.add_resultrun_folder().added == 0 and len(mine.run) == 3
    with pytest.raises(FileNotFoundError, match="no folder .nowhere..*batchpy"):
        mine.add_resultrun_folder("nowhere")


def test_convert_run_to_newstyle_is_a_check_that_the_run_is_stored(in_tmp):
    batch = Batch("conv")
    run = batch.add_run(Sweep, {"A": 1})
    assert runstore.convert_run_to_newstyle(run) is run
    batch.remove(run, delete_unheld=True)
    with pytest.raises(RunNotFound, match=run.id):
        runstore.convert_run_to_newstyle(run)


def test_add_resultrun_folder_reads_batchpy_files_of_its_batch_only_when_allowed(in_tmp):
    import shutil

    from runstore.errors import BatchpyPickleRefusedError

    shutil.copytree(Path(__file__).parent / "fixtures" / "batchpy" / "batchpy-1.3.0", "_res")
    batch = Batch("example")  # its store is _res/example.db, beside batchpy's files
    with pytest.raises(BatchpyPickleRefusedError, match="holds 5 batchpy result files"):
        batch.add_resultrun_folder()
    assert len(batch.run) == 0
    report = batch.add_resultrun_folder(allow_pickle=True)
    assert (report.added, report.present) == (5, 0)
    saved = [str(i) for i in np.load("_res/example_ids.npy")]
    assert list(batch.run.ids()) == saved  # batchpy's ids, in batchpy's order
    assert all(run.done for run in batch.run) and "signal_sweep" not in batch.store.batch_names()
    assert batch.add_resultrun_folder(allow_pickle=True).present == 5
