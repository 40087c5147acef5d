"""Stores written by every schema revision open with this runstore, results intact."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from runstore import Batch, Store
from runstore.errors import SchemaOutdatedError
from runstore.schema import SCHEMA_REVISION

from .runs import Arrays

FIXTURES = sorted((Path(__file__).parent / "fixtures").glob("store-*"))


def test_the_current_revision_has_a_fixture():
    assert f"store-{SCHEMA_REVISION}" in [f.name for f in FIXTURES], (
        "run python tests/fixtures/make_store.py and commit its output")


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f.name for f in FIXTURES])
def test_fixture_store_opens_upgraded_with_results_intact(fixture, tmp_path):
    shutil.copytree(fixture, tmp_path / "copy")
    db = tmp_path / "copy" / "_res" / "fixture.db"
    revision = fixture.name.removeprefix("store-")
    if revision != SCHEMA_REVISION:
        with pytest.raises(SchemaOutdatedError, match=f"runstore upgrade {db}"):
            Store(db, readonly=True)
    batch = Batch("fixture", path=tmp_path / "copy")  # writable: upgrades
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == (
            SCHEMA_REVISION)
    with sqlite3.connect(db) as conn:  # every revision's data reaches batch_columns
        columns = set(conn.execute("SELECT source, name FROM batch_columns"))
    assert {("parameter", "A"), ("parameter", "seed"), ("result", "val"),
            ("result", "stats.mean")} <= columns
    runs = list(batch.run)
    assert len(runs) == 10 and all(run.done for run in runs)
    assert [r.result["val"] for r in batch.get_runs_with(A=2, operator=max)] == [16, 18]
    for run in batch.get_runs_with(seed=0):
        expected = Arrays.run(None, **run.parameters)
        assert np.array_equal(run.result["m"], expected["m"])
        assert np.array_equal(run.result["x"], expected["x"])
