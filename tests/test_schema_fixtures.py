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


def _schema(db: Path) -> dict[str, str]:
    """The SQL of every table and index (batch views aside), whitespace folded."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT name, sql FROM sqlite_master WHERE type IN "
                            "('table', 'index') AND sql IS NOT NULL").fetchall()
    conn.close()
    # A renamed table's SQL names it quoted: the same table.
    return {name: " ".join(sql.replace(f'TABLE "{name}"', f"TABLE {name}").replace("(", " ( ")
                           .replace(")", " ) ").replace(",", " , ").split())
            for name, sql in rows}


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f.name for f in FIXTURES])
def test_an_upgraded_store_has_the_schema_of_a_new_one(fixture, tmp_path):
    shutil.copytree(fixture, tmp_path / "copy")
    Store(tmp_path / "copy" / "_res" / "fixture.db").close()
    Store(tmp_path / "new.db").close()
    assert _schema(tmp_path / "copy" / "_res" / "fixture.db") == _schema(tmp_path / "new.db")


def test_floats_stored_as_integers_before_revision_0005_are_floats_again(tmp_path):
    shutil.copytree(FIXTURES[0].with_name("store-0004"), tmp_path / "copy")
    db = tmp_path / "copy" / "_res" / "fixture.db"
    with sqlite3.connect(db) as conn:  # what a NUMERIC column made of 50.0 and 0.0
        conn.execute("UPDATE result_values SET num = 50.0, canonical = '50.0' "
                     "WHERE key = 'stats.mean' AND "
                     "run_key = (SELECT MIN(run_key) FROM result_values WHERE key = 'stats.mean')")
        conn.execute("UPDATE parameters SET kind = 'float', num = 0.0, canonical = '0.0' "
                     "WHERE name = 'seed'")
        assert {row[0] for row in conn.execute(
            "SELECT typeof(num) FROM parameters WHERE name = 'seed'")} == {"integer"}
    conn.close()
    batch = Batch("fixture", path=tmp_path / "copy")  # upgrades
    with sqlite3.connect(db) as conn:
        assert {row[0] for row in conn.execute(
            "SELECT typeof(num) FROM parameters WHERE name = 'seed'")} == {"real"}
        assert {row[0] for row in conn.execute(
            'SELECT typeof("stats.mean") FROM fixture WHERE "stats.mean" IS NOT NULL')} == {
                "real"}
        assert sorted(conn.execute(
            "SELECT source, name, kinds FROM batch_columns WHERE name IN "
            "('A', 'seed', 'stats.mean', 'stats.label', 'val')")) == [
            ("parameter", "A", "int"), ("parameter", "seed", "float"),
            ("result", "stats.label", "text"), ("result", "stats.mean", "float"),
            ("result", "val", "int")]
    conn.close()
    frame = batch.to_dataframe()
    assert str(frame["stats.mean"].dtype) == "float64" and 50.0 in set(frame["stats.mean"])


def _writer_record(db: Path, pid: int, schema: str | None) -> Path:
    """A writer record, as a runstore process writing ``db`` keeps beside it."""
    import json
    import socket
    import time

    import psutil

    started = psutil.Process(pid).create_time()
    record = db.with_name(f"{db.name}.writer-{socket.gethostname()}~{pid}~{started:.3f}")
    data = {"host": socket.gethostname(), "pid": pid, "started": started,
            "expires": time.time() + 600, "store": str(db)}
    if schema is not None:
        data["schema"] = schema
    record.write_text(json.dumps(data))
    return record


def test_a_store_open_in_a_process_of_an_earlier_runstore_is_not_upgraded(tmp_path):
    import subprocess
    import sys

    from runstore.errors import UpgradeBlockedError

    shutil.copytree(FIXTURES[-2], tmp_path / "copy")  # the revision before this one
    db = tmp_path / "copy" / "_res" / "fixture.db"
    older = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        record = _writer_record(db, older.pid, None)  # records said no schema before
        with pytest.raises(UpgradeBlockedError, match=f"process {older.pid} on .*Stop that"):
            Batch("fixture", path=tmp_path / "copy")
        with sqlite3.connect(db) as conn:  # nothing was changed
            assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == (
                FIXTURES[-2].name.removeprefix("store-"))
        conn.close()
        record.write_text(record.read_text().replace(
            '"store"', f'"schema": "{SCHEMA_REVISION}", "store"'))  # one of this runstore
        Batch("fixture", path=tmp_path / "copy").store.close()  # upgrades
    finally:
        older.kill()
        older.wait()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == (
            SCHEMA_REVISION)
    conn.close()


def test_a_dead_process_of_an_earlier_runstore_does_not_block_the_upgrade(tmp_path):
    import subprocess
    import sys

    shutil.copytree(FIXTURES[-2], tmp_path / "copy")
    db = tmp_path / "copy" / "_res" / "fixture.db"
    older = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    _writer_record(db, older.pid, "0001")
    older.kill()
    older.wait()
    batch = Batch("fixture", path=tmp_path / "copy")  # its record is left behind: ignored
    assert len(batch.get_runs_with(A=2)) == 4
    batch.store.close()
