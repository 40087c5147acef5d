"""Bundles: .db + .h5 pairs that open elsewhere, read-only, without the code."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import runstore
from runstore import Batch, open_bundle
from runstore.errors import BundleError, ReadOnlyStoreError

from .runs import Arrays, ExampleRun

OPEN_ELSEWHERE = """
import json, sys
import runstore
batch = runstore.open_bundle(sys.argv[1])
print(json.dumps({
    "types": sorted({type(r).__name__ for r in batch.run}),
    "m": [r.result["m"].tolist() for r in batch.run],
    "operator": [repr(r.parameters.get("operator")) for r in batch.run],
    "queried": [r.parameters["n"] for r in batch.get_runs_with(n__ge=3)],
    "tests_importable": "tests" in sys.modules,
}))
"""


def digests(*paths: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


@pytest.fixture
def shared(in_tmp):
    batch = Batch("share")
    batch.add_factorial_runs(Arrays, {"n": [2, 3, 4], "seed": [0]})
    batch(verbose=0)
    return batch


def test_a_bundle_opens_in_another_process_without_the_code_and_stays_unchanged(shared, tmp_path):
    db, h5 = shared.export("out/share")
    assert (db.name, h5.name) == ("share.db", "share.h5")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(db, elsewhere)
    shutil.copy(h5, elsewhere)
    before = digests(elsewhere / "share.db", elsewhere / "share.h5")
    out = subprocess.run([sys.executable, "-c", OPEN_ELSEWHERE, "share"], cwd=elsewhere,
                         capture_output=True, text=True, check=True).stdout
    found = json.loads(out)
    assert found["types"] == ["ResultRun"] and not found["tests_importable"]
    assert found["m"] == [Arrays.run(None, n=n)["m"].tolist() for n in (2, 3, 4)]
    assert found["queried"] == [3, 4]
    assert digests(elsewhere / "share.db", elsewhere / "share.h5") == before
    assert sorted(p.name for p in elsewhere.iterdir()) == ["share.db", "share.h5"]


def test_its_arrays_read_with_h5py_and_its_table_with_sqlite3(shared):
    db, h5 = shared.export("share-bundle")
    run = shared.run[1]
    with h5py.File(h5, "r") as f:
        assert sorted(f) == sorted(r.id for r in shared.run)
        group = f[run.id]
        stored = {name: group[name][()] for name in group}
    tree = json.loads(sqlite3.connect(db).execute(
        "SELECT result FROM runs WHERE id = ?", (run.id,)).fetchone()[0])
    names = {k: v[1]["name"] for k, v in tree[1] if isinstance(v, list) and v[0] == "ndarray"}
    assert np.array_equal(stored[names["m"]], run.result["m"])
    rows = subprocess.run(["sqlite3", "-readonly", str(db), "select n, seed from share order by n"],
                          capture_output=True, text=True, check=True).stdout.split()
    assert rows == ["2|0", "3|0", "4|0"]


def test_a_bundle_of_selected_runs(in_tmp):
    batch = Batch("example")
    batch.add_factorial_runs(ExampleRun, {"A": [1, 2, 3, 4], "operator": [min, max]})
    batch(verbose=0)
    picked = batch.get_runs_with(A__ge=3, operator=max)
    batch.export("picked", runs=picked)
    bundle = open_bundle("picked.db")
    assert [r.index for r in bundle.run] == [0, 1]
    assert [r.result["val"] for r in bundle.run] == [9, 12]
    assert bundle.run[0].parameters["operator"] == max  # a FunctionRef equal to max
    with pytest.raises(ReadOnlyStoreError, match="open read-only"):
        bundle.add_run(ExampleRun, {"A": 9})


def test_export_refuses_to_overwrite_and_foreign_runs(shared):
    shared.export("once")
    with pytest.raises(BundleError, match="exists; remove it or choose another"):
        shared.export("once")
    other = Batch("other", store=shared.store)
    other.add_run(ExampleRun, {"A": 1})
    with pytest.raises(BundleError, match="not in batch 'share'"):
        shared.export("mixed", runs=[other.run[0]])


def test_a_store_with_several_batches_is_not_a_bundle(shared):
    Batch("second", store=shared.store)
    with pytest.raises(BundleError, match="holds 2 batches"):
        open_bundle(shared.store.path)
