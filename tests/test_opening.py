"""Opening stores: several handles in one process, the marker, what is not a store, options.

Real files and real processes throughout: the lock problem (closing a
descriptor drops POSIX locks) only shows between processes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from runstore import Batch, Store
from runstore.bundle import export
from runstore.errors import (
    BatchNameError,
    NotAStoreError,
    SchemaOutdatedError,
    StoreLogUnreadableError,
    StoreOptionError,
)
from runstore.schema import APPLICATION_ID, SCHEMA_REVISION

from .runs import Sweep

ENV = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = sorted((Path(__file__).parent / "fixtures").glob("store-*"))
SIDE = ("-wal", "-shm", "-journal")


def cli(*args: object, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the runstore command in its own process (a hang fails, it does not block)."""
    return subprocess.run([sys.executable, "-m", "runstore", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sides(db: Path) -> list[str]:
    return [s for s in SIDE if os.path.lexists(db.with_name(db.name + s))]


def marker(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return int(conn.execute("PRAGMA application_id").fetchone()[0])


# -- 1. two handles in one process, other processes in between --------------------------

SESSION = """
import sys
sys.path.insert(0, sys.argv[2])
from runstore import Batch
from tests.runs import Sweep

first = Batch("b", path=sys.argv[1])
first.add_factorial_runs(Sweep, {"A": [1, 2]})
first(verbose=0)
second = Batch("b", path=sys.argv[1])  # a notebook cell run again
print("ready", flush=True)
sys.stdin.readline()  # meanwhile: runstore check, runstore import
first.add_factorial_runs(Sweep, {"A": [3, 4]})  # the older handle: its pages are cached
first(verbose=0)
second.add_run(Sweep, {"A": 5})
second(verbose=0)
print("done", flush=True)
sys.stdin.readline()
"""


@pytest.mark.slow
def test_two_handles_in_one_process_lose_nothing_to_check_and_import(tmp_path):
    source = Batch("b", path=tmp_path / "elsewhere")
    source.add_factorial_runs(Sweep, {"A": [10, 11, 12]})
    source(verbose=0)
    bundle, _ = export(source, tmp_path / "shared")
    source.store.close()
    db = tmp_path / "work" / "_res" / "b.db"
    with subprocess.Popen([sys.executable, "-c", SESSION, tmp_path / "work", ROOT],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as session:
        try:
            _two_handles_meet_check_and_import(session, db, bundle)
        finally:
            if session.poll() is None:
                session.kill()
    batch = Batch("b", path=tmp_path / "work")
    params = sorted(run.parameters["A"] for run in batch.run)
    assert params == [1, 2, 3, 4, 5, 10, 11, 12]
    assert all(run.done for run in batch.run)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 8


def _two_handles_meet_check_and_import(session: subprocess.Popen[str], db: Path,
                                       bundle: Path) -> None:
    assert session.stdin is not None and session.stdout is not None
    assert session.stdout.readline().strip() == "ready"
    checked = cli("check", db)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert sides(db) == ["-wal", "-shm"]  # still in use here: check must not remove them
    imported = cli("import", bundle, db)
    assert "3 runs added" in imported.stdout, imported.stdout + imported.stderr
    session.stdin.write("\n")
    session.stdin.flush()
    assert session.stdout.readline().strip() == "done"
    # The session still holds its store open: another process reads all of it.
    after = cli("check", db)
    assert after.returncode == 0, after.stdout + after.stderr
    session.stdin.write("\n")
    session.stdin.flush()
    assert session.wait(timeout=60) == 0


def test_the_package_opens_no_db_file_outside_sqlite():
    """Closing a descriptor of the .db drops the locks: no open() of it anywhere."""
    # Modules that open files of their own, never a store's: batchpy's .npy
    # results (legacy) and FFTW wisdom files (performance.fft).
    elsewhere = {"legacy.py", "fft.py"}
    offenders = []
    for module in (ROOT / "runstore").rglob("*.py"):
        if module.name in elsewhere:
            assert "sqlite" not in module.read_text().lower(), module
            continue
        text = module.read_text()
        for needle in ("_SQLITE_HEADER", "open(db", "open(self.path", "open(path, \"rb\")",
                       "read_bytes()"):
            if needle in text:
                offenders.append(f"{module.name}: {needle}")
    assert offenders == []


# -- 2. the marker -------------------------------------------------------------------


def test_stores_and_bundles_carry_the_marker(tmp_path):
    batch = Batch("m", path=tmp_path)
    batch.add_run(Sweep, {"A": 1})
    batch(verbose=0)
    db, _ = export(batch, tmp_path / "bundle")
    assert marker(tmp_path / "_res" / "m.db") == APPLICATION_ID
    assert marker(db) == APPLICATION_ID


def _foreign(path: Path, application_id: int = 0, wal: bool = False,
             tables: tuple[str, ...] = ("people",), revision: str | None = None) -> str:
    with sqlite3.connect(path) as conn:
        if wal:
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA application_id = {application_id}")
        for table in tables:
            conn.execute(f'CREATE TABLE "{table}" (x)')
        if revision is not None:
            conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
            conn.execute("INSERT INTO alembic_version VALUES (?)", (revision,))
    conn.close()
    assert sides(path) == []
    return sha(path)


FOREIGN = {
    "other-application": dict(application_id=0x1234ABCD),
    "other-application-with-runstore-tables": dict(
        application_id=0x1234ABCD, tables=("runs", "entries", "batches", "parameters"),
        revision=SCHEMA_REVISION),
    "own-alembic": dict(revision="c0ffee12"),
    "own-alembic-runstore-like-tables": dict(
        tables=("runs", "entries", "batches", "parameters"), revision="c0ffee12"),
    "runstore-like-tables-no-revision": dict(tables=("runs", "entries", "batches",
                                                     "parameters")),
    "some-runstore-tables": dict(tables=("runs", "entries"), revision=SCHEMA_REVISION),
    "wal-mode": dict(wal=True),
    "wal-mode-own-alembic": dict(wal=True, revision="0001"[::-1]),
    "marked-by-another-and-empty": dict(application_id=7, tables=()),
}


@pytest.mark.parametrize("kind", FOREIGN)
@pytest.mark.parametrize("how", ["Store", "readonly", "Batch", "revision_of"])
def test_a_sqlite_file_of_another_application_is_refused_unchanged(tmp_path, kind, how):
    path = tmp_path / "other.db"
    before = _foreign(path, **FOREIGN[kind])
    with pytest.raises(NotAStoreError, match="left unchanged|another application"):
        if how == "Store":
            Store(path)
        elif how == "readonly":
            Store(path, readonly=True)
        elif how == "Batch":
            Batch("b", store=path)
        else:
            from runstore import migration

            migration.revision_of(str(path))
    assert sha(path) == before
    assert sides(path) == []


@pytest.mark.parametrize("command", ["status", "check", "runs", "upgrade", "gc"])
def test_the_command_line_refuses_a_foreign_file_unchanged(tmp_path, command):
    path = tmp_path / "other.db"
    before = _foreign(path, revision="c0ffee12", wal=True)
    done = cli(command, path)
    assert done.returncode == 4 and "not a runstore store" in done.stderr, done.stderr
    assert sha(path) == before and sides(path) == []


def test_importing_into_a_foreign_file_is_refused_unchanged(tmp_path):
    batch = Batch("b", path=tmp_path)
    batch.add_run(Sweep, {"A": 1})
    bundle, _ = export(batch, tmp_path / "bundle")
    path = tmp_path / "other.db"
    before = _foreign(path, revision="c0ffee12")
    done = cli("import", bundle, path)
    assert done.returncode == 4 and "not a runstore store" in done.stderr
    assert sha(path) == before and sides(path) == []


def test_a_foreign_file_stays_in_its_journal_mode(tmp_path):
    path = tmp_path / "other.db"
    _foreign(path, revision="abc")
    with pytest.raises(NotAStoreError):
        Store(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == "abc"


def _unmark(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA application_id = 0")
    conn.close()


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f.name for f in FIXTURES])
def test_stores_of_earlier_versions_open_and_get_the_marker_when_writable(fixture, tmp_path):
    shutil.copytree(fixture, tmp_path / "copy")
    db = tmp_path / "copy" / "_res" / "fixture.db"
    found = marker(db)  # stores before revision 0005 were written without the marker
    assert found == (0 if fixture.name <= "store-0004" else APPLICATION_ID)
    before = sha(db)
    if fixture.name == f"store-{SCHEMA_REVISION}":
        assert len(Batch("fixture", store=Store(db, readonly=True)).run) == 10
    else:
        with pytest.raises(SchemaOutdatedError):
            Store(db, readonly=True)
    assert sha(db) == before and marker(db) == found  # read-only: not marked
    batch = Batch("fixture", path=tmp_path / "copy")
    assert marker(db) == APPLICATION_ID
    assert len(batch.run) == 10 and all(run.done for run in batch.run)


def test_an_unmarked_current_store_and_bundle_open(tmp_path):
    batch = Batch("u", path=tmp_path)
    batch.add_factorial_runs(Sweep, {"A": [1, 2]})
    batch(verbose=0)
    bundle, _ = export(batch, tmp_path / "bundle")
    batch.store.close()
    db = tmp_path / "_res" / "u.db"
    for path in (db, bundle):
        _unmark(path)
    from runstore import open_bundle

    assert len(open_bundle(bundle).run) == 2 and marker(bundle) == 0
    assert len(Batch("u", store=Store(db)).run) == 2
    assert marker(db) == APPLICATION_ID


def test_a_marked_file_without_its_tables_is_called_damaged(tmp_path):
    path = tmp_path / "s.db"
    Store(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE entries")
    conn.close()
    with pytest.raises(NotAStoreError, match="damaged"):
        Store(path)


@pytest.mark.parametrize("setup", ["missing", "zero-bytes", "empty-sqlite"])
def test_nothing_or_an_empty_file_becomes_a_store_when_writable(tmp_path, setup):
    path = tmp_path / "new.db"
    if setup == "zero-bytes":
        path.write_bytes(b"")
    elif setup == "empty-sqlite":
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA user_version = 0")
            conn.execute("VACUUM")
        conn.close()
    if setup != "missing":
        with pytest.raises(NotAStoreError):
            Store(path, readonly=True)
        assert sides(path) == []
    Batch("b", store=Store(path)).add_run(Sweep, {"A": 1})
    assert marker(path) == APPLICATION_ID
    assert len(Batch("b", store=Store(path, readonly=True)).run) == 1


@pytest.mark.parametrize("content", [b"not a database" * 100, b"SQLite format 3\x00" + b"\xff" * 200,
                                     b"\x00" * 4096])
def test_a_file_that_is_not_a_database_is_refused_unchanged(tmp_path, content):
    path = tmp_path / "x.db"
    path.write_bytes(content)
    for readonly in (False, True):
        with pytest.raises(NotAStoreError, match="not a SQLite database"):
            Store(path, readonly=readonly)
    assert path.read_bytes() == content and sides(path) == []


# -- 3. what is not a regular file -----------------------------------------------------


def _make(kind: str, path: Path) -> object:
    """Put a non-regular file at ``path``; return what to keep alive."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        return sock
    elif kind == "directory":
        path.mkdir()
    elif kind == "device":
        path.symlink_to("/dev/null")
    elif kind == "link-to-fifo":
        os.mkfifo(path.with_name("target"))
        path.symlink_to(path.with_name("target"))
    elif kind == "dangling-link":
        path.symlink_to(path.with_name("nowhere"))
    return None


NON_REGULAR = ["fifo", "socket", "directory", "device", "link-to-fifo", "dangling-link"]


@pytest.mark.parametrize("kind", NON_REGULAR)
def test_a_store_path_that_is_not_a_regular_file_is_refused_at_once(tmp_path, kind):
    path = tmp_path / "s.db"
    keep = _make(kind, path)
    try:
        for opening in (lambda: Store(path), lambda: Store(path, readonly=True),
                        lambda: Batch("s", store=path)):
            with pytest.raises(NotAStoreError, match="not a regular file|symbolic link"):
                opening()
        assert sides(path) == []
    finally:
        if keep is not None:
            keep.close()  # type: ignore[attr-defined]


def test_a_batch_whose_default_store_is_a_fifo_is_refused(tmp_path):
    (tmp_path / "_res").mkdir()
    os.mkfifo(tmp_path / "_res" / "b.db")
    with pytest.raises(NotAStoreError, match="FIFO"):
        Batch("b", path=tmp_path)


@pytest.mark.parametrize("side", SIDE)
def test_a_fifo_beside_a_store_is_refused_without_touching_the_store(tmp_path, side):
    batch = Batch("b", path=tmp_path)
    batch.add_run(Sweep, {"A": 1})
    batch.store.close()
    db = tmp_path / "_res" / "b.db"
    for name in sides(db):
        db.with_name(db.name + name).unlink()
    before = sha(db)
    os.mkfifo(db.with_name(db.name + side))
    with pytest.raises(NotAStoreError, match=f"b.db{side} beside it is a FIFO"):
        Store(db)
    assert sha(db) == before


@pytest.mark.parametrize("args", [("status",), ("check",), ("runs",), ("show", "abcd"),
                                  ("upgrade",), ("gc",), ("export", "--csv", "out.csv")])
def test_the_command_line_refuses_a_fifo_without_hanging(tmp_path, args):
    path = tmp_path / "s.db"
    os.mkfifo(path)
    done = cli(args[0], path, *args[1:], timeout=60)
    assert done.returncode == 4, done.stdout + done.stderr  # damaged: not a store
    assert "is a FIFO (named pipe), not a regular file" in done.stderr
    assert "Traceback" not in done.stderr


# -- 5. batch names that collide with SQL names -------------------------------------


def _schema(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return sorted(conn.execute("SELECT type, name FROM sqlite_master"))


def test_no_batch_can_take_the_name_of_an_sql_object_in_any_case(tmp_path):
    db = tmp_path / "s.db"
    store = Store(db)
    names = [name for _, name in _schema(db)]
    assert "ix_runs_running" in names and "sqlite_autoindex_runs_1" in names
    before = _schema(db)
    for name in names:
        for variant in {name, name.upper(), name.title(), name.swapcase()}:
            with pytest.raises(BatchNameError, match="SQL view|sqlite_"):
                Batch(variant, store=store)
            with pytest.raises(BatchNameError):
                store.batch_id(variant)
    assert _schema(db) == before and store.batch_names() == []


def test_names_of_user_objects_and_other_batches_are_refused(tmp_path):
    db = tmp_path / "s.db"
    Batch("Sweep", store=Store(db)).add_run(Sweep, {"A": 1})
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE VIEW my_view AS SELECT 1")
        conn.execute("CREATE TRIGGER my_trigger AFTER INSERT ON batches BEGIN SELECT 1; END")
        conn.execute("CREATE INDEX my_index ON runs (state)")
    conn.close()
    store = Store(db)
    before = _schema(db)
    for name, found in [("MY_VIEW", "view named 'my_view'"),
                        ("my_Trigger", "trigger named 'my_trigger'"),
                        ("my_index", "index named 'my_index'"), ("sweep", "only in case"),
                        ("SQLITE_stat1", "reserved by SQLite"),
                        ("Alembic_Version", "runstore's tables \\('alembic_version'\\)")]:
        with pytest.raises(BatchNameError, match=found):
            Batch(name, store=store)
    assert _schema(db) == before and store.batch_names() == ["Sweep"]
    assert len(Batch("Sweep", store=store).run) == 1  # its own view is no clash


def test_a_batch_named_after_an_index_leaves_no_store_file_behind(tmp_path):
    with pytest.raises(BatchNameError, match="runstore's indexes \\('ix_runs_running'\\)"):
        Batch("ix_runs_running", path=tmp_path)
    assert not (tmp_path / "_res" / "ix_runs_running.db").exists()


def test_a_new_batch_has_its_view_at_once(tmp_path):
    db = tmp_path / "s.db"
    Batch("empty", store=Store(db))
    assert ("view", "empty") in _schema(db)
    with sqlite3.connect(db) as conn:
        assert conn.execute('SELECT COUNT(*) FROM "empty"').fetchone()[0] == 0


# -- 6. durability --------------------------------------------------------------------

LEVELS = {"normal": 1, "full": 2, "extra": 3}


@pytest.mark.parametrize("level", LEVELS)
def test_the_synchronous_level_holds_on_every_pooled_connection(tmp_path, level):
    for opened in (Store(tmp_path / "s.db", synchronous=level.upper()),
                   Batch("b", path=tmp_path, synchronous=level).store,
                   Store(tmp_path / "s.db", readonly=True, synchronous=level)):
        assert opened.synchronous == level
        connections = [opened.engine.connect() for _ in range(4)]
        try:
            for conn in connections:
                assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == LEVELS[level]
        finally:
            for conn in connections:
                conn.close()
        opened.close()


def test_the_default_level_is_normal(tmp_path):
    store = Store(tmp_path / "s.db")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1


@pytest.mark.parametrize("bad", ["off", "FULLL", "", 2, None])
def test_a_bad_synchronous_level_is_a_clear_error(tmp_path, bad):
    with pytest.raises(StoreOptionError, match="'normal', 'full', 'extra'") as info:
        Store(tmp_path / "s.db", synchronous=bad)
    assert isinstance(info.value, ValueError) and info.value.value == bad
    assert not (tmp_path / "s.db").exists()
    if bad is not None:
        with pytest.raises(StoreOptionError):
            Batch("b", path=tmp_path, synchronous=bad)


def test_a_level_that_contradicts_the_store_given_is_refused(tmp_path):
    store = Store(tmp_path / "s.db", synchronous="full")
    assert Batch("b", store=store, synchronous="full").store is store
    with pytest.raises(StoreOptionError, match="opened with synchronous='full'"):
        Batch("b", store=store, synchronous="normal")


# -- 4. registration decided inside the write transaction (one process) ---------------


def test_runs_given_twice_or_already_in_the_batch_are_added_once_in_first_order(tmp_path):
    batch = Batch("b", store=Store(tmp_path / "s.db"))
    batch.add_factorial_runs(Sweep, {"A": [3, 1, 3, 2, 1]})
    batch.add_factorial_runs(Sweep, {"A": [2, 4, 3]})
    assert [run.parameters["A"] for run in batch.run] == [3, 1, 2, 4]
    other = Batch("other", store=batch.store)
    ids = list(batch.run.ids())
    assert batch.store.add_existing(other._id, [ids[2], ids[0], ids[2]]) == []
    assert batch.store.add_existing(other._id, [ids[0], ids[3]]) == []
    assert list(other.run.ids()) == [ids[2], ids[0], ids[3]]
    assert batch.store.add_existing(other._id, [ids[1], "f" * 40]) == ["f" * 40]
    assert len(other.run) == 3  # nothing added when an id is missing


def _sweep_copy(tmp_path: Path) -> Path:
    """A store of 4 done runs, copied as a user copies one: its .db and side files only."""
    batch = Batch("sweep", store=tmp_path / "made" / "sweep.db")
    batch.add_factorial_runs(Sweep, {"A": [1, 2], "B": [1, 2]})
    batch(verbose=0)
    batch.store.close()
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(tmp_path / "made" / "sweep.db", copy / "sweep.db")
    shutil.copytree(tmp_path / "made" / "sweep.arrays", copy / "sweep.arrays")
    return copy / "sweep.db"


@pytest.mark.parametrize("command", [["status"], ["runs"], ["schema"], ["check"]])
def test_reading_commands_leave_no_wal_or_shm_beside_a_copied_store(tmp_path, command):
    db = _sweep_copy(tmp_path)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    done = subprocess.run([sys.executable, "-m", "runstore", *command, str(db)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in db.parent.iterdir()) == ["sweep.arrays", "sweep.db"]
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


def test_a_read_only_store_never_writes_even_when_its_file_is_writable(tmp_path):
    db = _sweep_copy(tmp_path)
    store = Store(db, readonly=True)
    try:
        with store.engine.connect() as conn, pytest.raises(Exception, match="readonly"):
            conn.exec_driver_sql("CREATE TABLE intruder (a)")
    finally:
        store.close()
    assert sorted(p.name for p in db.parent.iterdir()) == ["sweep.arrays", "sweep.db"]
    conn = sqlite3.connect(db)
    assert "intruder" not in {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()


def test_a_store_in_use_is_read_without_touching_its_log(tmp_path):
    # Another process writes it (its -wal exists): closing a reader must not
    # copy that log into the file, nor remove it.
    db = tmp_path / "live.db"
    writer = Batch("live", store=db)
    writer.add_factorial_runs(Sweep, {"A": [1, 2]})
    writer(verbose=0)
    wal = db.with_name("live.db-wal")
    assert wal.exists()
    reader = Store(db, readonly=True)
    assert reader.counts_by_batch()["live"]["done"] == 2
    reader.close()
    assert wal.exists()
    writer.store.close()


@pytest.fixture
def read_only_mount(tmp_path):
    """``read_only_mount(folder)``: the folder, bind-mounted read-only; unmounted afterwards."""
    mounted: list[Path] = []

    def mount(folder: Path) -> Path:
        target = tmp_path / f"ro-{len(mounted)}"
        target.mkdir()
        done = subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(target)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            reason = f"cannot bind-mount a folder here: {done.stderr.strip() or done.returncode}"
            print(reason)
            pytest.skip(reason)
        mounted.append(target)
        # Older mount(8) ignores ro on the first bind: make sure.
        subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], check=True)
        return target

    try:
        yield mount
    finally:
        for target in mounted:
            subprocess.run(["umount", "-l", str(target)], check=False)


def test_a_store_on_a_read_only_filesystem_opens_read_only(tmp_path, read_only_mount):
    from .runs import Arrays

    batch = Batch("media", path=tmp_path / "src")
    batch.add_factorial_runs(Arrays, {"n": [2, 3, 4]})
    batch(verbose=0)
    with sqlite3.connect(batch.store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    db.close()
    batch.store.close()
    ro = read_only_mount(tmp_path / "src")
    with pytest.raises(OSError):
        (ro / "probe").write_text("")  # really read-only
    store = Store(ro / "_res" / "media.db", readonly=True)
    runs = Batch("media", store=store).get_runs_with(n__ge=3)
    assert [r.parameters["n"] for r in runs] == [3, 4]
    assert runs[0].result["m"].shape == (3, 3)  # arrays from the side file too
    store.close()
    listed = subprocess.run([sys.executable, "-m", "runstore", "runs",
                             str(ro / "_res" / "media.db"), "n=2"],
                            capture_output=True, text=True, env=ENV)
    assert listed.returncode == 0, listed.stderr
    assert "(1 run)" in listed.stdout


def test_a_log_with_changes_on_a_read_only_filesystem_is_a_clear_error(tmp_path,
                                                                        read_only_mount):
    batch = Batch("media", path=tmp_path / "live")
    batch.add_factorial_runs(Sweep, {"A": [1, 2]})
    batch.store.close()
    live = tmp_path / "live" / "_res" / "media.db"
    writer = sqlite3.connect(live)  # a writer that has not checkpointed its log
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute("UPDATE runs SET attempts = attempts + 1")
    writer.commit()
    copy = tmp_path / "copy" / "_res"
    copy.mkdir(parents=True)
    for suffix in ("", "-wal"):
        shutil.copy(f"{live}{suffix}", copy / f"media.db{suffix}")
    writer.close()
    assert (copy / "media.db-wal").stat().st_size > 0
    ro = read_only_mount(tmp_path / "copy")
    with pytest.raises(StoreLogUnreadableError, match=r"its log media.db-wal holds changes "
                       r"that are not in the file yet.*Copy the store's files"):
        Store(ro / "_res" / "media.db", readonly=True)
    listed = subprocess.run([sys.executable, "-m", "runstore", "runs",
                             str(ro / "_res" / "media.db")],
                            capture_output=True, text=True, env=ENV)
    assert listed.returncode == 8 and listed.stderr.count("\n") == 1
    assert "media.db-wal holds changes" in listed.stderr
