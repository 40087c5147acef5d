"""runstore.store, runstore.arrays and the schema: opening, versions, damage."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from runstore import Batch, Store
from runstore import migration
from runstore.errors import (
    ArrayFileError,
    BatchNotFound,
    DecodingError,
    NotAStoreError,
    ReadOnlyStoreError,
    SchemaOutdatedError,
    SchemaTooNewError,
)
from runstore.schema import SCHEMA_REVISION, Base

from .runs import Arrays, CustomId, Sweep


def test_new_store_is_wal_with_schema_at_head(tmp_path):
    store = Store(tmp_path / "deep" / "s.db")
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT version_num FROM alembic_version").fetchone()[0] == (
            SCHEMA_REVISION)
    assert migration.head() == SCHEMA_REVISION


def test_migrations_build_exactly_the_models_schema(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'migrated.db'}")
    migration.upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


@pytest.mark.parametrize("content, found", [
    (b"hello, not a database at all" * 10, "not a SQLite database"),
])
def test_a_file_that_is_not_sqlite_is_refused(tmp_path, content, found):
    path = tmp_path / "notes.db"
    path.write_bytes(content)
    with pytest.raises(NotAStoreError, match=found):
        Store(path)
    assert path.read_bytes() == content  # untouched


def test_a_sqlite_file_of_another_program_is_refused(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE people (name TEXT)")
    with pytest.raises(NotAStoreError, match=r"without runstore's tables \(it has \['people'\]\)"):
        Store(path)


def test_a_directory_or_missing_file_opened_readonly_is_refused(tmp_path):
    with pytest.raises(NotAStoreError, match="is a directory"):
        Store(tmp_path)
    with pytest.raises(NotAStoreError, match="does not exist"):
        Store(tmp_path / "missing.db", readonly=True)
    assert not (tmp_path / "missing.db").exists()


def test_a_store_from_a_newer_schema_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "s.db"
    Store(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(SchemaTooNewError, match="'9999', newer than.*pip install -U runstore"):
        Store(path)


def test_readonly_store_reads_but_refuses_writes(tmp_path):
    batch = Batch("ro", path=tmp_path)
    batch.add_factorial_runs(Sweep, {"A": [1, 2]})
    batch(verbose=0)
    batch.store.close()
    before = (tmp_path / "_res" / "ro.db").read_bytes()
    ro = Batch("ro", store=Store(tmp_path / "_res" / "ro.db", readonly=True))
    assert [r.result for r in ro.run] == [{"val": 0}, {"val": 0}]
    with pytest.raises(ReadOnlyStoreError, match="open read-only"):
        ro.add_run(Sweep, {"A": 3})
    with pytest.raises(BatchNotFound, match="has no batch 'unknown-batch'; it has 'ro'"):
        Batch("unknown-batch", store=Store(tmp_path / "_res" / "ro.db", readonly=True))


def _computed(tmp_path):
    batch = Batch("damaged", path=tmp_path)
    batch.add_factorial_runs(Arrays, {"n": [2, 3], "seed": [0]})
    batch(verbose=0)
    first = batch.run[0].filename
    batch.add_factorial_runs(Arrays, {"n": [4], "seed": [0]})
    batch(verbose=0)
    assert batch.run[2].filename != first  # a new side file, the old one untouched
    return batch


def test_a_missing_side_file_names_itself_and_other_runs_still_load(tmp_path):
    batch = _computed(tmp_path)
    Path(batch.run[0].filename).unlink()
    fresh = Batch("damaged", path=tmp_path)
    with pytest.raises(ArrayFileError, match="is missing.*runstore check"):
        fresh.run[0].result
    assert fresh.run[2].result["m"].shape == (4, 4)


def test_a_truncated_side_file_names_itself_and_other_runs_still_load(tmp_path):
    batch = _computed(tmp_path)
    path = Path(batch.run[2].filename)
    path.write_bytes(path.read_bytes()[:100])
    fresh = Batch("damaged", path=tmp_path)
    with pytest.raises(ArrayFileError, match="cannot be read"):
        fresh.run[2].result
    assert np.array_equal(fresh.run[0].result["m"], np.arange(4, dtype=np.int16).reshape(2, 2))


def test_side_file_names_cannot_leave_the_folder(tmp_path):
    store = Store(tmp_path / "s.db")
    for name in ("../../etc/passwd", "a/b.h5", "x.txt"):
        with pytest.raises(ArrayFileError, match="not the name of a side file"):
            store.arrays.path(name)


def test_changed_array_content_fails_its_checksum_on_load(tmp_path):
    import h5py

    batch = _computed(tmp_path)
    with h5py.File(batch.run[1].filename, "r+") as f:  # damage one run's array in place
        group = f[batch.run[1].id]
        name = sorted(group)[0]
        group[name][...] = np.zeros_like(group[name][...]) + 7
    fresh = Batch("damaged", path=tmp_path)
    with pytest.raises(DecodingError, match="does not match its checksum"):
        fresh.run[1].result
    assert fresh.run[0].result["m"].shape == (2, 2)


def test_paths_with_uri_characters_open_read_only(tmp_path):
    folder = tmp_path / "a dir?#%20x"
    batch = Batch("odd-path", path=folder)
    batch.add_factorial_runs(Sweep, {"A": [1, 2]})
    batch(verbose=0)
    batch.store.close()
    db = folder / "_res" / "odd-path.db"
    ro = Batch("odd-path", store=Store(db, readonly=True))
    assert [r.result for r in ro.run] == [{"val": 0}, {"val": 0}]


def test_check_finds_nothing_wrong_in_a_healthy_store(tmp_path):
    batch = _computed(tmp_path)
    batch.add_run(CustomId, {"k": 3})
    batch(verbose=0)
    report = batch.store.check()
    assert report.ok and report.custom_ids == 1
    assert str(report).endswith("no problems found\n  1 runs have ids from a custom "
                                "generate_id (not recomputed)")


def test_check_reports_and_fixes_damage(tmp_path):
    batch = _computed(tmp_path)
    folder = batch.store.arrays.directory
    Path(batch.run[0].filename).unlink()  # the arrays of runs 0 and 1
    # Side-file names as earlier runstores wrote them (no writer in the name):
    # their age decides.
    orphan = folder / "0000000000000001-0123456789ab.h5"
    orphan.write_bytes(b"junk")
    partial = folder / "0000000000000002-0123456789ab.h5.part"
    partial.write_bytes(b"half")
    recent = folder / "0000000000000003-0123456789ab.h5"
    recent.write_bytes(b"a writer's file, about to be committed")
    unrelated = folder / "0-notes.h5"
    unrelated.write_bytes(b"not runstore's")
    old = time.time() - 3600
    for path in (orphan, partial, unrelated):
        os.utime(path, (old, old))
    with sqlite3.connect(batch.store.path) as db:  # parameters changed outside runstore
        db.execute("UPDATE runs SET parameters = replace(parameters, '[\"n\",4]', "
                   "'[\"n\",5]') WHERE id = ?", (batch.run[2].id,))
    report = batch.store.check()
    assert not report.ok
    assert set(report.missing_arrays) == {batch.run[0].id, batch.run[1].id}
    assert report.wrong_ids == [batch.run[2].id]
    assert sorted(report.orphan_files) == [orphan.name, recent.name]
    assert report.partial_files == [partial.name]
    assert "runstore check --fix STORE" in str(report)
    fixed = batch.store.check(fix=True)
    assert set(fixed.reset) == {batch.run[0].id, batch.run[1].id}
    assert f"reset run {batch.run[0].id}: pending again" in str(fixed)
    assert not orphan.exists() and not partial.exists() and recent.exists()
    assert unrelated.exists()
    assert [r.state for r in batch.run] == ["pending", "pending", "done"]
    batch(verbose=0)  # computed again
    after = batch.store.check()
    assert after.wrong_ids == [batch.run[2].id] and not after.missing_arrays


def test_check_command_prints_the_report_and_fails_on_problems(tmp_path):
    import subprocess
    import sys

    batch = _computed(tmp_path)
    path = batch.store.path
    batch.store.close()
    ok = subprocess.run([sys.executable, "-m", "runstore", "check", path],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.strip() == f"{path}: no problems found"
    Path(Batch("damaged", path=tmp_path).run[0].filename).unlink()
    bad = subprocess.run([sys.executable, "-m", "runstore", "check", path],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "side file" in bad.stdout and "is missing" in bad.stdout
    fixed = subprocess.run([sys.executable, "-m", "runstore", "check", "--fix", path],
                           capture_output=True, text=True)
    assert fixed.returncode == 0 and "pending again" in fixed.stdout


@pytest.mark.parametrize("again", [range(10), [3], [4, 20, 30]])
def test_runs_added_again_are_found_by_a_scan_or_by_lookups_alike(tmp_path, again):
    """Many ids (most of the store, or of the batch) are found by one scan, few
    by lookups: either way a run is stored once and held by a batch once."""
    store = Store(tmp_path / "s.db")
    first = Batch("first", store=store)
    first.add_factorial_runs(Sweep, {"A": list(range(10))})
    ids = list(first.run.ids())
    first.add_factorial_runs(Sweep, {"A": list(again)})
    second = Batch("second", store=store)
    second.add_factorial_runs(Sweep, {"A": list(again)})
    expected = ids + [rid for rid in second.run.ids() if rid not in ids]
    assert list(first.run.ids()) == expected
    assert len(set(second.run.ids())) == len(second.run) == len(again)
    with sqlite3.connect(tmp_path / "s.db") as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == len(expected)
    store.close()


def test_a_claim_of_known_rows_takes_only_those_still_pending_and_theirs(tmp_path):
    batch = Batch("known", path=tmp_path)
    batch.add_factorial_runs(Sweep, {"A": list(range(6))})
    store = batch.store
    rows = store.rows(batch._id)
    (first,) = store.claim_ids([rows[0].id])  # claimed already: not taken again
    stranger = rows[1]._replace(id="f" * 40)  # its key holds another run now
    claimed = store.claim_rows([rows[0], stranger, *rows[2:]])
    assert [row.id for row in claimed] == [row.id for row in rows[2:]]
    assert store.states([row.id for row in rows]) == {
        rows[0].id: "running", rows[1].id: "pending",
        **{row.id: "running" for row in rows[2:]}}
    store.release_runs([first.key, *(row.key for row in claimed)])
    spread = store.claim_rows([rows[1], rows[3], rows[5]])  # keys not contiguous
    assert [row.key for row in spread] == [rows[1].key, rows[3].key, rows[5].key]


def test_plain_results_recorded_twice_are_recorded_once_with_a_warning(tmp_path):
    from runstore.errors import DuplicateResultWarning
    from runstore.run import compute

    batch = Batch("twice", path=tmp_path)
    batch.add_factorial_runs(Sweep, {"A": list(range(4)), "B": [2]})
    store = batch.store
    rows = store.claim(batch._id, [f"{Sweep.__module__}.Sweep"], 4)
    outcomes = [compute(Sweep, row, False) for row in rows]
    assert store.complete(outcomes[:2], batch._id) == 2
    with pytest.warns(DuplicateResultWarning):
        assert store.complete(outcomes, batch._id) == 2  # the other two
    with sqlite3.connect(store.path) as db:
        assert db.execute("SELECT count(*) FROM result_values").fetchone() == (4,)
        assert db.execute("SELECT DISTINCT state, owner FROM runs").fetchall() == [
            ("done", None)]
    assert [r.result["val"] for r in batch.run] == [0, 2, 4, 6]
