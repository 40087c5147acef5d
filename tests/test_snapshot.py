"""Exports and imports beside a writer that completes, clears and recomputes runs.

A bundle is one consistent snapshot of its store, and an import decides and
writes in one transaction: neither ever yields a done run without its arrays.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import runstore
from runstore import Batch

from .runs import Arrays

ROOT = Path(__file__).resolve().parent.parent
N_RUNS = 40
#: Clears a few random runs and recomputes them, over and over, until killed.
CHURN = """
import random, sys
sys.path.insert(0, sys.argv[1])
from runstore import Batch
from tests.runs import Arrays
batch = Batch("live", path=sys.argv[2])
batch.add_factorial_runs(Arrays, {"n": list(range(1, %d + 1)), "seed": 0})
batch(verbose=0)
print("ready", flush=True)
rng = random.Random(7)
while True:
    for i in rng.sample(range(%d), 5):
        batch.run[i].clear()
    batch(verbose=0)
""" % (N_RUNS, N_RUNS)


def _expected(n: int) -> dict[str, object]:
    return Arrays().run(n=n, seed=0)


def _start_churn(folder: Path) -> subprocess.Popen[str]:
    churn = subprocess.Popen([sys.executable, "-c", CHURN, str(ROOT), str(folder)],
                             stdout=subprocess.PIPE, text=True)
    assert churn.stdout is not None and churn.stdout.readline() == "ready\n"
    return churn


def _assert_loads(batch: Batch) -> int:
    """Every done run of the batch loads, with the arrays its parameters give."""
    done = 0
    for run in batch.run:
        if run.state == "done":
            result = run.result
            expected = _expected(run.parameters["n"])
            assert np.array_equal(result["x"], expected["x"])
            assert np.array_equal(result["m"], expected["m"])
            done += 1
    return done


@pytest.mark.slow
def test_bundles_exported_beside_a_writer_all_load(tmp_path):
    churn = _start_churn(tmp_path)
    try:
        batch = Batch("live", path=tmp_path)
        done_seen = []
        for i in range(25):
            db, h5 = batch.export(tmp_path / "bundles" / f"b{i}")
            opened = runstore.open_bundle(db)
            done_seen.append(_assert_loads(opened))
            opened.store.close()
            assert not db.with_name(db.name + ".part").exists()
        assert churn.poll() is None, "the writer stopped: the test did not race it"
    finally:
        churn.kill()
        churn.communicate()
    assert sum(done_seen) > 0
    assert sorted(p.name for p in (tmp_path / "bundles").iterdir() if p.suffix == ".part") == []
    report = batch.store.check()
    # The killed writer leaves garbage (side files of cleared runs), never damage.
    assert not (report.integrity or report.wrong_ids or report.missing_arrays), report


@pytest.mark.slow
def test_imports_beside_a_writer_never_leave_a_done_run_without_arrays(tmp_path):
    source = Batch("live", store=tmp_path / "src.db")
    source.add_factorial_runs(Arrays, {"n": list(range(1, N_RUNS + 1)), "seed": 0})
    source(verbose=0)
    db, _ = source.export(tmp_path / "share")
    churn = _start_churn(tmp_path)
    completed = 0
    try:
        for round_ in range(100):  # at least 15 rounds, and until one raced a clear
            report = runstore.import_bundle(db, tmp_path / "_res" / "live.db", batch="live")
            completed += report.completed
            if completed and round_ >= 15:
                break
        assert churn.poll() is None, "the writer stopped: the test did not race it"
    finally:
        churn.kill()
        churn.communicate()
    batch = Batch("live", path=tmp_path)
    assert len(batch.run) == N_RUNS
    _assert_loads(batch)
    report = batch.store.check()
    assert not (report.integrity or report.wrong_ids or report.missing_arrays), report
    assert completed > 0, "no import found a cleared run to complete: no race was run"
