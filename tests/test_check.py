"""runstore.check: checks that do not vouch for damage; gc and check --fix know what they are given.

Every test damages real files (HDF5 bytes, SQLite pages, rows edited with
sqlite3) and runs the real command line in a subprocess.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from runstore import Batch, Store
from runstore.arrays import PARTIAL_FILE_PATTERN, SIDE_FILE_PATTERN, ArrayStore
from runstore.check import BUNDLE_MARK, bundle_evidence
from runstore.errors import BundleRepairError

from .runs import Arrays, Sweep

ROOT = Path(__file__).resolve().parent.parent
HOUR_AGO = time.time() - 3600


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    # A timeout: a check that opened a FIFO would block for ever.
    return subprocess.run([sys.executable, "-m", "runstore", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def snapshot(folder: Path) -> dict[str, str]:
    """Digest of every regular file under a folder (SQLite's -wal/-shm left out)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()
            and not p.name.endswith(("-wal", "-shm"))}


def arrays_batch(tmp_path: Path, ns=(2, 3, 4)) -> Batch:
    batch = Batch("arr", path=tmp_path)
    batch.add_factorial_runs(Arrays, {"n": list(ns), "seed": [0]})
    batch(verbose=0)
    return batch


def sweep_batch(tmp_path: Path, count: int = 4) -> Batch:
    batch = Batch("sweep", path=tmp_path)
    batch.add_factorial_runs(Sweep, {"A": list(range(1, count + 1)), "B": [2]})
    batch(verbose=0)
    return batch


def flip_data_byte(path: Path, key: str) -> None:
    """Flip one byte of a dataset's data in the raw HDF5 file (not through h5py)."""
    with h5py.File(path, "r") as f:
        offset = f[key].id.get_offset()
    assert offset is not None
    with open(path, "r+b") as raw:
        raw.seek(offset)
        byte = raw.read(1)
        raw.seek(offset)
        raw.write(bytes([byte[0] ^ 0xFF]))


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr


# -- check verifies -----------------------------------------------------------------------


def test_a_flipped_data_byte_fails_check_and_fix_resets_only_that_run(tmp_path):
    batch = arrays_batch(tmp_path)
    damaged, healthy = batch.run[1], batch.run[0]
    flip_data_byte(Path(damaged.filename), f"{damaged.id}/x")
    path = batch.store.path
    batch.store.close()
    result = cli("check", path)
    assert result.returncode == 1, result.stdout
    assert f"run {damaged.id}: arrays" in result.stdout and "checksum" in result.stdout
    assert healthy.id not in result.stdout
    fixed = cli("check", "--fix", path)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert f"reset run {damaged.id}: pending again" in fixed.stdout
    fresh = Batch("arr", path=tmp_path)
    assert [r.state for r in fresh.run] == ["done", "pending", "done"]
    fresh.add_factorial_runs(Arrays, {"n": [2, 3, 4], "seed": [0]})
    fresh(verbose=0)
    assert fresh.store.check().ok


def test_wrong_dtype_or_shape_in_the_result_is_reported(tmp_path):
    batch = arrays_batch(tmp_path, ns=(2, 3))
    path = batch.store.path
    with sqlite3.connect(path) as db:
        db.execute("UPDATE runs SET result = replace(result, '\"shape\":[3,3]', "
                   "'\"shape\":[9]') WHERE id = ?", (batch.run[1].id,))
        db.execute("UPDATE runs SET result = replace(result, '\"dtype\":\"<i2\"', "
                   "'\"dtype\":\"<i4\"') WHERE id = ?", (batch.run[0].id,))
    report = batch.store.check()
    assert set(report.missing_arrays) == {batch.run[0].id, batch.run[1].id}
    assert "expected <i4" in report.missing_arrays[batch.run[0].id]
    assert "(9,)" in report.missing_arrays[batch.run[1].id]


def test_a_tampered_parameter_row_is_found_and_rebuilt(tmp_path):
    batch = sweep_batch(tmp_path)
    one = batch.get_runs_with(A=1)[0]
    with sqlite3.connect(batch.store.path) as db:
        db.execute("UPDATE parameters SET num = 99 WHERE name = 'A' AND run_key = "
                   "(SELECT key FROM runs WHERE id = ?)", (one.id,))
        db.execute("UPDATE result_values SET num = -5 WHERE key = 'val' AND run_key = "
                   "(SELECT key FROM runs WHERE id = ?)", (batch.run[3].id,))
        db.execute("DELETE FROM parameters WHERE name = 'B' AND run_key = "
                   "(SELECT key FROM runs WHERE id = ?)", (batch.run[2].id,))
    # Queries on numbers read their copies in the batch's entries (slots), which
    # the tampering missed: the damage shows in check, as rows and slots that differ.
    assert [r.id for r in batch.get_runs_with(A=1)] == [one.id]
    report = batch.store.check()
    assert not report.ok
    assert report.wrong_slots == 2  # A of one run, B of another
    assert set(report.wrong_rows) == {one.id, batch.run[2].id, batch.run[3].id}
    assert "in parameters differ" in report.wrong_rows[one.id] and "'A'" in (
        report.wrong_rows[one.id])
    assert "in result_values differ" in report.wrong_rows[batch.run[3].id]
    dry = batch.store.check(fix=True, dry_run=True)
    assert batch.store.check().wrong_slots == 2  # a dry run changes nothing
    assert "would repair: typed query rows of 3 runs rebuilt" in str(dry)
    fixed = batch.store.check(fix=True)
    assert not fixed.reset
    assert batch.get_runs_with(A=99) == []
    assert [r.id for r in batch.get_runs_with(A=1)] == [one.id]
    assert [r.id for r in batch.get_runs_with(B=2)] == [r.id for r in batch.run]
    assert batch.store.check().ok
    with sqlite3.connect(batch.store.path) as db:
        assert db.execute("SELECT num FROM result_values WHERE key = 'val' AND run_key = "
                          "(SELECT key FROM runs WHERE id = ?)",
                          (batch.run[3].id,)).fetchone() == (8,)


def test_typed_rows_of_no_run_are_found_and_deleted(tmp_path):
    batch = sweep_batch(tmp_path, 2)
    with sqlite3.connect(batch.store.path) as db:
        db.execute("INSERT INTO parameters (run_key, name, kind, num, text, canonical) "
                   "VALUES (999, 'A', 'int', 1, NULL, '1')")
    report = batch.store.check()
    assert report.stray_rows == {"parameters": 1} and not report.ok
    batch.store.check(fix=True)
    assert batch.store.check().ok


def test_a_tampered_document_makes_its_id_wrong_and_its_rows_are_not_rebuilt(tmp_path):
    batch = sweep_batch(tmp_path, 2)
    rid = batch.run[0].id
    with sqlite3.connect(batch.store.path) as db:
        db.execute("UPDATE runs SET parameters = replace(parameters, '[\"A\",1]', "
                   "'[\"A\",7]') WHERE id = ?", (rid,))
    report = batch.store.check(fix=True)
    assert report.wrong_ids == [rid] and rid in report.wrong_rows and not report.reset
    assert [r.id for r in batch.get_runs_with(A=1)] == [rid]  # rows kept as they were


@pytest.mark.parametrize("column, value, state", [
    ("parameters", "[" * 100_000 + "]" * 100_000, "done"),
    ("result", "[" * 100_000 + "]" * 100_000, "done"),
    ("result", '{"values": not json', "done"),
    ("result", '["dict", [["val\x00", 1]]]\x00junk', "done"),
    ("parameters", '{"values": [["A", 1]], "x": "\x00"}', "pending"),
    ("result", '["ndarray", {"dtype": "|O", "shape": [1], "name": "0"}]', "done"),
    ("result", '["ndarray", {"dtype": "<f8", "shape": "x", "name": "../up"}]', "done"),
    ("parameters", '{"values": 5}', "done"),
], ids=["deep-parameters", "deep-result", "not-json", "nuls", "nul-parameters",
        "object-dtype", "bad-payload", "bad-values"])
def test_documents_that_cannot_be_read_are_reported_not_crashed_on(tmp_path, column, value,
                                                                   state):
    batch = sweep_batch(tmp_path, 3)
    rid = batch.run[1].id
    path = batch.store.path
    batch.store.close()
    with sqlite3.connect(path) as db:
        db.execute(f"UPDATE runs SET {column} = ?, state = ? WHERE id = ?", (value, state, rid))
    result = cli("check", path)
    no_traceback(result)
    assert result.returncode == 1 and f"run {rid}" in result.stdout, result.stdout
    assert batch.run[0].id not in result.stdout
    store = Store(path)
    fixed = store.check(fix=True)
    if column == "result":  # the result is lost: the run is computed again
        assert list(fixed.reset) == [rid] and store.check().ok
        assert Batch("sweep", store=store).run[1].state == "pending"
    else:  # the parameters define the run: only reported
        assert not fixed.reset and rid in store.check().unreadable
    store.close()


@pytest.fixture(scope="module")
def big_store(tmp_path_factory) -> Path:
    """A store of 300 runs with arrays (its SQLite file spans many pages), closed."""
    folder = tmp_path_factory.mktemp("big")
    batch = Batch("big", path=folder)
    batch.add_factorial_runs(Arrays, {"n": [1, 2], "seed": list(range(150))})
    batch(verbose=0)
    batch.store.close()
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("fraction", [0.35, 0.5, 0.65, 0.8])
def test_a_corrupted_page_is_reported_and_no_file_is_deleted(tmp_path, big_store, fraction):
    import shutil

    shutil.copytree(big_store, tmp_path, dirs_exist_ok=True)
    path = tmp_path / "_res" / "big.db"
    folder = tmp_path / "_res" / "big.arrays"
    orphan = folder / "0000000000000001-0123456789ab.h5"
    orphan.write_bytes(b"old orphan")
    os.utime(orphan, (HOUR_AGO, HOUR_AGO))
    size = path.stat().st_size
    assert size > 40 * 4096
    with open(path, "r+b") as raw:  # garbage over one page in the middle of the file
        page = int(size * fraction) // 4096 * 4096
        raw.seek(page + 100)
        raw.write(os.urandom(3000))
    sides = sorted(p.name for p in folder.iterdir())
    result = cli("check", str(path))
    no_traceback(result)
    assert result.returncode in (1, 4)  # problems found, or damaged
    assert "problems found" in result.stdout or result.stderr.startswith("runstore: error:")
    for command in (("check", "--fix"), ("gc", "--min-age", "0")):
        done = cli(*command, str(path))
        no_traceback(done)
        assert done.returncode != 0, done.stdout
    assert sorted(p.name for p in folder.iterdir()) == sides  # the orphan too: unproven


def test_missing_foreign_directory_and_fifo_side_files_are_reported(tmp_path):
    batch = Batch("arr", path=tmp_path)
    for n in (2, 3, 4, 5):  # one side file per run
        batch.add_run(Arrays, {"n": n})
        batch(verbose=0)
    files = [Path(r.filename) for r in batch.run]
    assert len(set(files)) == 4
    files[0].unlink()
    files[1].write_bytes(b"not HDF5 at all" * 100)
    files[2].unlink()
    files[2].mkdir()
    files[3].unlink()
    os.mkfifo(files[3])
    path = batch.store.path
    batch.store.close()
    result = cli("check", path)
    no_traceback(result)
    assert result.returncode == 1
    out = result.stdout
    assert f"run {batch.run[0].id}: arrays side file {files[0].name} is missing" in out
    assert f"run {batch.run[1].id}: arrays" in out and "damaged" in out
    assert f"{files[2].name} is a folder" in out and f"{files[3].name} is a FIFO" in out
    fixed = cli("check", "--fix", path)
    no_traceback(fixed)
    assert fixed.stdout.count("pending again") == 4
    assert files[2].is_dir() and files[3].exists()  # reported, never deleted
    assert [r.state for r in Batch("arr", path=tmp_path).run] == ["pending"] * 4


# -- only what belongs to the store --------------------------------------------------------


def make_bundle(tmp_path: Path) -> tuple[Path, Path, Path]:
    batch = arrays_batch(tmp_path / "src", ns=(2, 3))
    db, h5 = batch.export(tmp_path / "share" / "shared")
    batch.store.close()
    unrelated = db.parent / "my-notes.h5"
    other = db.parent / "0000000000000001-0123456789ab.h5"  # named like a side file
    for path in (unrelated, other):
        with h5py.File(path, "w") as f:
            f["x"] = np.arange(3)
        os.utime(path, (HOUR_AGO, HOUR_AGO))
    return db, h5, unrelated


def test_seal_marks_bundles_and_stores_stay_unmarked(tmp_path):
    db, _, _ = make_bundle(tmp_path)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (BUNDLE_MARK,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    store = tmp_path / "src" / "_res" / "arr.db"
    with sqlite3.connect(store) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (0,)
    assert bundle_evidence(str(db)) is not None and bundle_evidence(str(store)) is None


@pytest.mark.slow
@pytest.mark.parametrize("legacy", [False, True])
def test_fix_and_gc_refuse_a_bundle_and_change_nothing(tmp_path, legacy):
    db, h5, unrelated = make_bundle(tmp_path)
    if legacy:  # as earlier runstores wrote bundles: no mark
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA user_version = 0")
        assert "earlier runstore" in bundle_evidence(str(db))
    before = snapshot(db.parent)
    for command in (("check", "--fix"), ("gc",), ("gc", "--min-age", "0")):
        result = cli(*command, str(db))
        no_traceback(result)
        assert result.returncode == 5  # refused
        assert "it is a bundle" in result.stderr and "--bundle" in result.stderr
    assert snapshot(db.parent) == before
    plain = cli("check", str(db))  # a check without --fix reads only
    assert plain.returncode == 0 and "no problems found" in plain.stdout, plain.stdout
    dry = cli("gc", "--dry-run", str(db))
    assert dry.returncode == 0 and "would delete 0 side files" in dry.stdout
    assert snapshot(db.parent) == before
    with pytest.raises(BundleRepairError, match="--bundle"):  # from Python too
        Store(db, arrays=db.parent).gc()
    assert unrelated.exists() and h5.exists()


@pytest.mark.slow
def test_a_declared_bundle_is_repaired_touching_only_its_own_h5(tmp_path):
    db, h5, unrelated = make_bundle(tmp_path)
    before = snapshot(db.parent)
    healthy = cli("check", "--fix", "--bundle", str(db))
    assert healthy.returncode == 0 and "pending again" not in healthy.stdout, healthy.stdout
    gc = cli("gc", "--bundle", "--min-age", "0", str(db))
    assert gc.returncode == 0, gc.stderr
    assert "deleted 0 side files" in gc.stdout
    after = snapshot(db.parent)
    assert {k: v for k, v in after.items() if k != db.name} == {
        k: v for k, v in before.items() if k != db.name}
    with sqlite3.connect(db) as conn:  # still a sealed bundle
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        assert conn.execute("PRAGMA user_version").fetchone() == (BUNDLE_MARK,)
    flip_data_byte(h5, f"{sorted(h5py.File(h5, 'r'))[0]}/x")
    damaged = cli("check", "--fix", "--bundle", str(db))
    assert damaged.stdout.count("pending again") == 1 and unrelated.exists()
    store = tmp_path / "src" / "_res" / "arr.db"
    wrong = cli("gc", "--bundle", str(store))
    assert wrong.returncode == 5 and "is a store, not a bundle" in wrong.stderr


@pytest.mark.slow
def test_dry_runs_change_no_byte_and_say_what_would_be_done(tmp_path):
    batch = arrays_batch(tmp_path)
    folder = batch.store.arrays.directory
    flip_data_byte(Path(batch.run[0].filename), f"{batch.run[0].id}/m")
    orphan = folder / "0000000000000001-0123456789ab.h5"
    orphan.write_bytes(b"orphan")
    os.utime(orphan, (HOUR_AGO, HOUR_AGO))
    batch.run[2].clear()
    path = batch.store.path
    batch.store.close()
    before = snapshot(tmp_path)
    fix = cli("check", "--fix", "--dry-run", path)
    assert fix.returncode == 1
    assert f"would reset run {batch.run[0].id}: pending again" in fix.stdout
    assert f"would delete {orphan.name}" in fix.stdout and "dry run" in fix.stdout
    gc = cli("gc", "--dry-run", "--min-age", "0", path)
    assert gc.returncode == 0 and f"    {orphan.name}" in gc.stdout
    assert "would rewrite 1 side files" in gc.stdout
    assert snapshot(tmp_path) == before
    done = cli("check", "--fix", path)
    assert f"delete {orphan.name}" in done.stdout and not orphan.exists()
    assert f"reset run {batch.run[0].id}: pending again" in done.stdout


# -- live writers ------------------------------------------------------------------------------

WRITER = """
import sys, time
sys.path.insert(0, sys.argv[1])
import h5py
from runstore.arrays import ArrayStore
arrays = ArrayStore(sys.argv[2])
name = arrays._new_name()
f = h5py.File(arrays.directory / (name + ".part"), "w")  # as ArrayStore.write does
f["x"] = list(range(10))
f.flush()
print(name, flush=True)
sys.stdin.read()  # hold the half-written file until told to stop
"""


@pytest.mark.slow
def test_a_live_writers_part_file_is_kept_whatever_min_age_and_removed_when_it_dies(tmp_path):
    batch = arrays_batch(tmp_path, ns=(2,))
    folder = batch.store.arrays.directory
    path = batch.store.path
    batch.store.close()
    with subprocess.Popen([sys.executable, "-c", WRITER, str(ROOT), str(folder)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as writer:
        _hold_and_check(writer, folder, path)
    assert writer.returncode == -signal.SIGKILL
    partial = next(folder.glob("*.part"))
    os.utime(partial)  # young: a dead writer's file goes whatever its age
    gone = cli("gc", path)
    assert gone.returncode == 0, gone.stderr
    assert not list(folder.glob("*.part")) and len(list(folder.iterdir())) == 1, gone.stdout


def _hold_and_check(writer: subprocess.Popen[str], folder: Path, path: str) -> None:
    try:
        name = writer.stdout.readline().strip()
        partial = folder / (name + ".part")
        assert SIDE_FILE_PATTERN.fullmatch(name) and PARTIAL_FILE_PATTERN.fullmatch(
            partial.name) and partial.exists()
        os.utime(partial, (HOUR_AGO, HOUR_AGO))  # old: only its writer protects it
        final = folder / name  # as if renamed, moments before its rows are committed
        final.write_bytes(partial.read_bytes())
        os.utime(final, (HOUR_AGO, HOUR_AGO))
        for command in (("gc", "--min-age", "0"), ("check", "--fix")):
            result = cli(*command, path)
            no_traceback(result)
            assert partial.exists() and final.exists(), result.stdout
        assert "its writer is alive" in cli("gc", "--min-age", "0", path).stdout
        check = cli("check", path)
        assert check.returncode == 0 and "live writer" in check.stdout
    finally:
        writer.kill()
        writer.wait()


def test_files_of_other_hosts_go_by_age(tmp_path):
    batch = arrays_batch(tmp_path, ns=(2,))
    folder = batch.store.arrays.directory
    young = folder / "18e0000000000000-0123456789ab-elsewhere~123~1700000000.000.h5.part"
    old = folder / "18e0000000000001-0123456789ab-elsewhere~123~1700000000.000.h5"
    for p in (young, old):
        p.write_bytes(b"x")
    os.utime(old, (HOUR_AGO, HOUR_AGO))
    report = batch.store.gc()
    assert report.orphan_files == [old.name] and young.name in report.kept
    assert young.exists() and not old.exists()


def test_links_and_folders_in_the_arrays_folder_are_never_followed_nor_deleted(tmp_path):
    batch = arrays_batch(tmp_path, ns=(2, 3))
    folder = batch.store.arrays.directory
    outside = tmp_path / "precious.h5"
    outside.write_bytes(b"precious")
    link = folder / "0000000000000001-0123456789ab.h5"
    link.symlink_to(outside)
    part_link = folder / "0000000000000002-0123456789ab.h5.part"
    part_link.symlink_to(outside)
    sub = folder / "0000000000000003-0123456789ab.h5"
    sub.mkdir()
    (sub / "inner.h5").write_bytes(b"inner")
    (folder / "subfolder").mkdir()
    for p in (outside, sub):
        os.utime(p, (HOUR_AGO, HOUR_AGO))
    os.utime(link, (HOUR_AGO, HOUR_AGO), follow_symlinks=False)
    report = batch.store.check()
    assert sorted(report.strange_files) == sorted([link.name, part_link.name, sub.name])
    batch.store.check(fix=True)
    batch.store.gc(min_age=0)
    assert outside.read_bytes() == b"precious" and link.is_symlink() and part_link.is_symlink()
    assert (sub / "inner.h5").exists() and (folder / "subfolder").is_dir()
    with pytest.raises(Exception, match="not the name of a side file"):
        ArrayStore(folder).remove("my-notes.h5")
    ArrayStore(folder).remove(link.name)  # a link is never removed (nor followed)
    assert link.is_symlink() and outside.exists()
    assert [r.state for r in batch.run] == ["done", "done"]
