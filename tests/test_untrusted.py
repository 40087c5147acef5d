"""What came from another file stays data; foreign files are read defensively.

Bundles here are real ones, edited the way an attacker could: parameters and
results naming a canary module whose import leaves a marker file (with the
run id recomputed, so the import's id check passes), custom ids, hostile HDF5
side files (links, virtual datasets, huge or mistyped datasets, FIFOs) and
hostile SQL (views that never end, views where tables belong, triggers,
ATTACH). Fresh processes do what a user would; the tests check the marker
files, the files on disk, exit codes and messages.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import runstore
from runstore import Batch, Store
from runstore.encoding import FunctionRef, ObjectRef, canonical_json
from runstore.errors import (
    ArrayFileError,
    BundleError,
    CustomIdRefusedError,
    NotAStoreError,
    QueryTimeoutError,
    RunsFailedError,
    UnsafeArrayFileError,
)
from runstore.identity import run_id_of_pairs

from .runs import Arrays, CustomId, ExampleRun

ROOT = Path(__file__).resolve().parent.parent

#: Imported, it writes the marker file named by $CANARY_MARK.
CANARY = '''
import os
from pathlib import Path
Path(os.environ["CANARY_MARK"]).write_text("canary_mod was imported")

def f(x):
    return max(x)

class Evil:
    pass
'''


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def set_parameter(conn: sqlite3.Connection, rid: str, name: str, tree) -> str:
    """Give a run of a bundle a new parameter value, with the id it then has."""
    run_type, document = conn.execute(
        "SELECT run_type, parameters FROM runs WHERE id = ?", (rid,)).fetchone()
    doc = json.loads(document)
    doc["values"] = [[k, tree if k == name else v] for k, v in doc["values"]]
    new = run_id_of_pairs(run_type, canonical_json(doc["values"]))
    conn.execute("UPDATE runs SET id = ?, parameters = ? WHERE id = ?",
                 (new, canonical_json(doc), rid))
    conn.execute("UPDATE parameters SET kind = 'structured', num = NULL, text = NULL, "
                 "canonical = ? WHERE name = ? AND run_key = (SELECT key FROM runs "
                 "WHERE id = ?)", (canonical_json(tree), name, new))
    return new


def canary_bundle(tmp_path: Path) -> tuple[Path, list[str]]:
    """A bundle of ExampleRuns naming the canary: in a parameter (done and pending
    runs) and in a result; return its .db and its run ids."""
    batch = Batch("plain", path=tmp_path / "made")
    batch.add_factorial_runs(ExampleRun, {"A": [1, 2, 3]})
    batch(verbose=0)
    batch.add_run(ExampleRun, {"A": 4})  # stays pending
    db, _ = batch.export(tmp_path / "bundle" / "b")
    batch.store.close()
    ids = list(batch.run.ids())
    with sqlite3.connect(db) as conn:
        ids[0] = set_parameter(conn, ids[0], "operator", ["callable", "canary_mod.f"])
        conn.execute("UPDATE runs SET result = ? WHERE id = ?", (canonical_json(
            ["dict", [["val", ["object", ["canary_mod.Evil", [["a", 1]]]]]]]), ids[1]))
        ids[3] = set_parameter(conn, ids[3], "operator", ["callable", "canary_mod.f"])
    conn.close()
    return db, ids


def canary_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    where = tmp_path / "canary"
    where.mkdir(exist_ok=True)
    (where / "canary_mod.py").write_text(CANARY)
    mark = tmp_path / "IMPORTED"
    env = {"PYTHONPATH": f"{where}{os.pathsep}{ROOT}", "PATH": os.environ["PATH"],
           "CANARY_MARK": str(mark), "HOME": str(tmp_path)}
    return env, mark


USE_IMPORTED = r"""
import json, sys
import runstore
from runstore import Batch
from tests.runs import ExampleRun

outcome = {}

def attempt(label, action):
    try:
        outcome[label] = {"ok": repr(action())[:2000]}
    except Exception as exc:
        outcome[label] = {"error": type(exc).__name__, "message": str(exc)}

batch = Batch("plain", store=sys.argv[1])
batch.add_run(ExampleRun, {"A": 50})  # the class is known in this process
for i, run in enumerate(batch.run):
    attempt(f"type {i}", lambda: type(run).__name__)
    attempt(f"parameters {i}", lambda: run.parameters)
    attempt(f"result {i}", lambda: run.result)
    attempt(f"repr {i}", lambda: repr(run))
    attempt(f"html {i}", lambda: run._repr_html_())
attempt("dataframe", lambda: batch.to_dataframe().shape)
attempt("batch html", lambda: len(batch._repr_html_()))
attempt("call", lambda: batch(verbose=0))
attempt("states", lambda: [run.state for run in batch.run])
attempt("errors", lambda: [batch.store.run_record(i)["error_type"] for i in batch.run.ids()])
attempt("imported", lambda: "canary_mod" in sys.modules)
print(json.dumps(outcome))
"""


def run_python(code: str, *args: str, env: dict[str, str], cwd: Path
               ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def runstore_cli(*args: str, env: dict[str, str], cwd: Path
                 ) -> subprocess.CompletedProcess[str]:
    return run_python("from runstore.cli import run; run()", *args, env=env, cwd=cwd)


@pytest.mark.slow
def test_imported_runs_never_import_the_code_they_name(tmp_path):
    db, ids = canary_bundle(tmp_path)
    env, mark = canary_env(tmp_path)
    mine = tmp_path / "mine.db"
    out = runstore_cli("import", str(db), str(mine), env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    used = run_python(USE_IMPORTED, str(mine), env=env, cwd=tmp_path)
    assert used.returncode == 0, used.stderr
    found = json.loads(used.stdout)
    assert not mark.exists(), found
    assert found["imported"] == {"ok": "False"}
    # The class is here, yet what the bundle named stays a reference ...
    assert found["type 0"] == {"ok": "'ExampleRun'"}
    assert "FunctionRef('canary_mod.f')" in found["parameters 0"]["ok"]
    assert "ObjectRef('canary_mod.Evil', a=1)" in found["result 1"]["ok"]
    assert "ok" in found["dataframe"] and "ok" in found["batch html"]
    # ... and the pending imported run naming the canary is refused, clearly.
    assert found["call"]["error"] == "RunsFailedError"
    states = json.loads(found["states"]["ok"].replace("'", '"'))
    assert states[3] == "failed" and states[4] == "done"  # A=50, the user's own, computed
    assert "UntrustedCodeError" in found["errors"]["ok"]
    for command in (["show", str(mine), ids[0][:12]], ["show", str(mine), ids[1][:12]],
                    ["show", str(mine), ids[3][:12]], ["runs", str(mine)],
                    ["runs", str(mine), "operator=canary_mod.f"]):
        shown = runstore_cli(*command, env=env, cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
    assert "canary_mod.f" in shown.stdout
    assert not mark.exists()
    # add_resultrun(source=bundle) into another store: the same.
    taken = run_python(
        "import sys; from runstore import Batch; from tests.runs import ExampleRun\n"
        "b = Batch('other', store=sys.argv[2]); b.add_run(ExampleRun, {'A': 7})\n"
        "b.add_resultrun(sys.argv[3:], source=sys.argv[1])\n"
        "print([repr(r.parameters) + repr(r.result) for r in b.run])",
        str(db), str(tmp_path / "other.db"), ids[0], ids[1], env=env, cwd=tmp_path)
    assert taken.returncode == 0, taken.stderr
    assert "FunctionRef('canary_mod.f')" in taken.stdout and not mark.exists()
    # The control: trusting the bundle imports what it names (so the test can fail).
    trusted = tmp_path / "trusted.db"
    out = runstore_cli("import", "--trust", str(db), str(trusted), env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    used = run_python(USE_IMPORTED, str(trusted), env=env, cwd=tmp_path)
    assert used.returncode == 0, used.stderr
    assert mark.exists()


def test_trust_after_the_fact_in_another_process(tmp_path):
    db, ids = canary_bundle(tmp_path)
    env, mark = canary_env(tmp_path)
    store = Store(tmp_path / "mine.db")
    runstore.import_bundle(db, store)
    store.close()
    code = ("import sys; from runstore import Batch, Store; from tests.runs import ExampleRun\n"
            "s = Store(sys.argv[1]); print(s.trust_runs([sys.argv[2]]))\n"
            "b = Batch('plain', store=s); b.add_run(ExampleRun, {'A': 9})\n"
            "print(b.run[0].parameters['operator'])")
    out = run_python(code, str(tmp_path / "mine.db"), ids[0], env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "1" and mark.exists()


@pytest.fixture
def imported(in_tmp):
    """A store that imported a bundle of ExampleRuns of operator=min: results name len."""
    made = Batch("share", path="made")
    made.add_factorial_runs(ExampleRun, {"A": [1, 2], "operator": [min]})
    made(verbose=0)
    made.add_run(ExampleRun, {"A": 3, "operator": min})  # pending
    db, _ = made.export("b")
    made.store.close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE runs SET result = ? WHERE state = 'done'", (canonical_json(
            ["dict", [["f", ["callable", "builtins.len"]], ["val", 1]]]),))
    conn.close()
    store = Store("mine.db")
    runstore.import_bundle(db, store)
    batch = Batch("share", store=store)
    batch._register_class(ExampleRun)
    return batch


def test_imported_values_stay_references_and_the_store_says_where_from(imported):
    run = imported.run[0]
    assert type(run) is ExampleRun
    assert isinstance(run.parameters["operator"], FunctionRef)
    assert isinstance(run.result["f"], FunctionRef)
    record = imported.store.run_record(run.id)
    assert record["parameters_origin"] == record["result_origin"] == str(Path("b.db").resolve())
    assert json.loads(record["parameters"])["origin"] == record["parameters_origin"]
    pending = imported.store.run_record(imported.run[2].id)
    assert pending["result_origin"] is None and pending["parameters_origin"]
    # Reopened (another Store object on the file): still references.
    again = Batch("share", store=Store("mine.db"))
    again._register_class(ExampleRun)
    assert isinstance(again.run[0].result["f"], FunctionRef)


def test_adding_the_run_vouches_for_its_parameters_never_for_its_result(imported):
    mine = imported.add_run(ExampleRun, {"A": 1, "operator": min})
    assert mine.id == imported.run[0].id and mine.done
    assert mine.parameters["operator"] is min
    assert isinstance(mine.result["f"], FunctionRef)  # the bundle's result
    record = imported.store.run_record(mine.id)
    assert record["parameters_origin"] is None and record["result_origin"]
    assert "origin" not in json.loads(record["parameters"])
    # Computed here after a clear, the result is the store's own.
    mine.clear()
    assert mine() == {"val": 1 * min([1, 2, 3])}
    assert imported.store.run_record(mine.id)["result_origin"] is None
    # The other imported run is untouched.
    assert isinstance(imported.run[1].parameters["operator"], FunctionRef)


def test_a_pending_imported_run_naming_code_is_not_computed_until_vouched_for(imported):
    with pytest.raises(RunsFailedError, match="1 of 3 runs of batch .share. failed"):
        imported(verbose=0)
    pending = imported.run[2]
    record = imported.store.run_record(pending.id)
    assert record["state"] == "failed" and record["error_type"] == "UntrustedCodeError"
    assert "builtins.min" in record["error_message"]
    assert "batch.add_run(TheClass, parameters) vouches" in record["error_message"]
    imported.add_run(ExampleRun, {"A": 3, "operator": min})
    imported(verbose=0, retry_failed=True)
    assert imported.run[2].result == {"val": 3}


def test_a_pending_imported_run_of_plain_data_computes(in_tmp):
    made = Batch("plain", path="made")
    made.add_run(ExampleRun, {"A": 2, "B": [4, 5]})
    made.export("b")
    made.store.close()
    store = Store("mine.db")
    runstore.import_bundle("b", store)
    batch = Batch("plain", store=store)
    # The default operator (max) is a name too: computing it needs the user's word.
    batch._register_class(ExampleRun)
    with pytest.raises(RunsFailedError):
        batch(verbose=0)
    store.trust_runs()
    batch(verbose=0, retry_failed=True)
    assert batch.run[0].result == {"val": 10}


def test_runs_with_custom_ids_are_refused_unless_trusted(in_tmp):
    made = Batch("custom", path="made")
    made.add_run(CustomId, {"k": 1})
    made(verbose=0)
    db, _ = made.export("b")
    made.store.close()
    with sqlite3.connect(db) as conn:  # the id of k=2, holding k=1 and a forged result
        conn.execute("UPDATE runs SET id = ?, result = ?", (f"{2:040x}", canonical_json(
            ["dict", [["k", 999]]])))
    conn.close()
    with pytest.raises(CustomIdRefusedError, match="trust=True") as caught:
        runstore.import_bundle(db, "mine.db")
    assert caught.value.run_id == f"{2:040x}"
    mine = Batch("custom", store="mine.db")
    assert len(mine.run) == 0  # nothing was imported
    # So a later add_run of k=2 computes, instead of serving the forged result.
    run = mine.add_run(CustomId, {"k": 2})
    assert run() == {"k": 2}
    report = runstore.import_bundle(db, "trusted.db", trust=True)
    assert report.added == 1
    out = subprocess.run([sys.executable, "-m", "runstore", "import", str(db), "cli.db"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 5 and "--trust" in out.stderr


def test_a_store_of_schema_0003_upgrades_with_its_runs_its_own(tmp_path):
    shutil.copytree(ROOT / "tests" / "fixtures" / "store-0003", tmp_path / "copy")
    batch = Batch("fixture", path=tmp_path / "copy")
    batch._register_class(ExampleRun)
    with sqlite3.connect(tmp_path / "copy" / "_res" / "fixture.db") as conn:
        origins = set(conn.execute("SELECT parameters_origin, result_origin FROM runs"))
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master "
                                              "WHERE type = 'index'")}
    conn.close()
    assert origins == {(None, None)} and "ix_runs_foreign_parameters" in indexes
    run = batch.get_runs_with(A=1, operator=min)[0]
    assert run.parameters["operator"] is min


# -- HDF5: links, virtual datasets, sizes, FIFOs ---------------------------------------

def arrays_bundle(tmp_path: Path) -> tuple[Path, Path, list[str], dict[str, dict[str, str]]]:
    """A bundle of two Arrays runs; return its files, ids and {id: {key: array name}}."""
    batch = Batch("arrays", path=tmp_path / "made")
    batch.add_factorial_runs(Arrays, {"n": [2, 3]})
    batch(verbose=0)
    db, h5 = batch.export(tmp_path / "bundle" / "b")
    batch.store.close()
    names: dict[str, dict[str, str]] = {}
    with sqlite3.connect(db) as conn:
        for rid, result in conn.execute("SELECT id, result FROM runs"):
            names[rid] = {k: v[1]["name"] for k, v in json.loads(result)[1]
                          if isinstance(v, list) and v[0] == "ndarray"}
    conn.close()
    return db, h5, list(names), names


def make_private(tmp_path: Path) -> Path:
    private = tmp_path / "elsewhere" / "private.h5"
    private.parent.mkdir(exist_ok=True)
    with h5py.File(private, "w") as f:
        f["secret"] = np.arange(2.0)
        f["m"] = np.arange(4, dtype=np.int16).reshape(2, 2)
    return private


def edit(kind: str, f: h5py.File, rid: str, other: str, names: dict[str, dict[str, str]],
         private: Path) -> str:
    """Make the array x (or m) of run ``rid`` hostile; return the error text expected."""
    group = f[rid]
    x = names[rid]["x"]
    if kind == "external link":
        del group[x]
        group[x] = h5py.ExternalLink(os.path.relpath(private, Path(f.filename).parent),
                                     "/secret")
        return "an external link"
    if kind == "soft link":
        del group[x]
        group[x] = h5py.SoftLink(f"/{other}/{names[other]['x']}")
        return "a soft link"
    if kind == "hard link":
        del group[x]
        group[x] = f[other][names[other]["x"]]
        return "linked from several places"
    if kind == "virtual dataset":
        del group[x]
        layout = h5py.VirtualLayout(shape=(2,), dtype="f8")
        layout[:] = h5py.VirtualSource(str(private), "secret", shape=(2,))
        group.create_virtual_dataset(x, layout)
        return "a virtual dataset"
    if kind == "huge compressed dataset":  # 2 GiB of fill value, a few bytes on disk
        del group[x]
        group.create_dataset(x, shape=(2**28,), dtype="f8", chunks=(2**20,),
                             compression="gzip")
        return "expected <f8(2,)"
    if kind == "chunks beyond the shape":
        del group[x]
        group.create_dataset(x, shape=(2,), maxshape=(None,), dtype="f8",
                             chunks=(2**26,), compression="gzip")
        return "larger than its shape"
    if kind == "wrong dtype":
        del group[x]
        group[x] = np.arange(2, dtype=np.float32)
        return "expected <f8(2,)"
    if kind == "wrong shape":
        del group[x]
        group[x] = np.arange(3.0)
        return "expected <f8(2,)"
    if kind == "group where a dataset belongs":
        del group[x]
        group.create_group(x)
        return "a group where an array belongs"
    if kind == "dataset where a group belongs":
        del f[rid]
        f[rid] = np.arange(2.0)
        return "a dataset where a run's group belongs"
    if kind == "external group":
        del f[rid]
        f[rid] = h5py.ExternalLink(str(private), "/")
        return "an external link"
    raise AssertionError(kind)


KINDS = ["external link", "soft link", "hard link", "virtual dataset",
         "huge compressed dataset", "chunks beyond the shape", "wrong dtype", "wrong shape",
         "group where a dataset belongs", "dataset where a group belongs", "external group"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_hostile_array_in_a_bundle_is_refused_before_it_is_read(kind, tmp_path):
    db, h5, ids, names = arrays_bundle(tmp_path)
    private = make_private(tmp_path)
    with h5py.File(h5, "r+") as f:
        expected = edit(kind, f, ids[0], ids[1], names, private)
    bundle = runstore.open_bundle(db)
    with pytest.raises(UnsafeArrayFileError, match="refused without reading") as caught:
        bundle.run[0].result
    assert expected in str(caught.value)
    if kind not in ("hard link", "dataset where a group belongs"):
        # the other run is fine (a hard link makes both refuse, and so does a dataset
        # where the run's group belongs, which holds its arrays too)
        assert bundle.run[1].result["x"].shape == (3,)
    # verify (what `runstore check` uses) reports it without reading it.
    shapes = [(name, (2,) if key == "x" else (2, 2) if key == "m" else (2,))
              for key, name in names[ids[0]].items()]
    problems = bundle.store.arrays.verify(h5.name, [(ids[0], shapes)])
    if kind != "wrong dtype":  # verify is given shapes only
        assert ids[0] in problems and ("refused" in problems[ids[0]] or "shape" in
                                       problems[ids[0]])
    # Importing it fails with the same reason and keeps nothing of it.
    with pytest.raises(BundleError, match="refused without reading"):
        runstore.import_bundle(db, tmp_path / "mine.db")
    mine = Store(tmp_path / "mine.db")
    assert ids[0] not in mine.states(ids)


@pytest.mark.parametrize("kind", ["external link", "virtual dataset", "soft link",
                                  "group where a dataset belongs"])
def test_export_refuses_a_hostile_side_file_and_leaves_no_bundle(kind, tmp_path):
    batch = Batch("arrays", path=tmp_path / "made")
    batch.add_factorial_runs(Arrays, {"n": [2, 3]})
    batch(verbose=0)
    ids = list(batch.run.ids())
    names = {rid: {k: v[1]["name"] for k, v in json.loads(
        batch.store.run_record(rid)["result"])[1] if isinstance(v, list) and
        v[0] == "ndarray"} for rid in ids}
    (side,) = batch.store.arrays.files()
    with h5py.File(batch.store.arrays.path(side), "r+") as f:
        edit(kind, f, ids[0], ids[1], names, make_private(tmp_path))
    with pytest.raises(UnsafeArrayFileError):
        batch.export(tmp_path / "out" / "b")
    assert list((tmp_path / "out").iterdir()) == []


def test_a_fifo_side_file_is_refused_without_opening_it(tmp_path):
    db, h5, ids, names = arrays_bundle(tmp_path)
    h5.unlink()
    os.mkfifo(h5)
    code = ("import sys, runstore\n"
            "b = runstore.open_bundle(sys.argv[1])\n"
            "try:\n    b.run[0].result\nexcept runstore.RunstoreError as e:\n    print(e)\n"
            "print(b.store.arrays.verify(sys.argv[2], [(sys.argv[3], [])]))\n"
            "try:\n    runstore.import_bundle(sys.argv[1], 'mine.db')\n"
            "except runstore.RunstoreError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code, str(db), h5.name, ids[0]],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("a FIFO, not a regular file") == 3, out.stdout


def test_a_missing_array_is_a_clear_error(tmp_path):
    db, h5, ids, names = arrays_bundle(tmp_path)
    with h5py.File(h5, "r+") as f:
        del f[ids[0]][names[ids[0]]["x"]]
    with pytest.raises(ArrayFileError, match="is missing"):
        runstore.open_bundle(db).run[0].result


# -- SQL: views, triggers, time bounds, ATTACH -------------------------------------------

NEVER_ENDS = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
              "SELECT x AS id, x AS position, 'done' AS state, 0 AS runtime, x AS A FROM c")


def one_run_bundle(tmp_path: Path, *edits: str) -> Path:
    batch = Batch("plain", path=tmp_path / "made")
    batch.add_factorial_runs(ExampleRun, {"A": [1, 2]})
    batch(verbose=0)
    db, _ = batch.export(tmp_path / "bundle" / "b")
    batch.store.close()
    with sqlite3.connect(db) as conn:
        for sql in edits:
            conn.execute(sql)
    conn.close()
    return db


def cli(tmp_path: Path, *args: str, limit: str = "2") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RUNSTORE_QUERY_TIME_LIMIT": limit}
    return subprocess.run([sys.executable, "-m", "runstore", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_a_view_that_never_ends_is_never_read_and_user_sql_on_it_is_stopped(tmp_path):
    db = one_run_bundle(tmp_path, "DROP VIEW plain", f"CREATE VIEW plain AS {NEVER_ENDS}")
    before = digest(db)
    out = cli(tmp_path, "runs", str(db))
    assert out.returncode == 0, out.stderr
    assert "(2 runs)" in out.stdout and "val" in out.stdout
    out = cli(tmp_path, "export", str(db), "--csv", "t.csv")
    assert out.returncode == 0 and len((tmp_path / "t.csv").read_text().splitlines()) == 3
    assert runstore.open_bundle(db).to_dataframe().shape[0] == 2
    out = cli(tmp_path, "sql", str(db), "select count(*) from plain")
    assert out.returncode == 1
    assert "took longer than 2 s" in out.stderr and "hostile or damaged" in out.stderr
    assert digest(db) == before


@pytest.mark.parametrize("table", ["batch_columns", "entries", "runs", "alembic_version"])
def test_a_view_where_a_table_belongs_is_refused(table, tmp_path):
    db = one_run_bundle(tmp_path, "PRAGMA foreign_keys = OFF", "DROP VIEW plain",
                        f"ALTER TABLE {table} RENAME TO old_{table}",
                        f"CREATE VIEW {table.upper()} AS SELECT * FROM old_{table}")
    with pytest.raises(NotAStoreError, match=f"is a view, not a table"):
        runstore.open_bundle(db)
    with pytest.raises(NotAStoreError):
        runstore.import_bundle(db, tmp_path / "mine.db")
    out = cli(tmp_path, "runs", str(db))
    assert out.returncode == 4 and "not a table" in out.stderr


def test_triggers_in_a_bundle_never_fire(tmp_path):
    db = one_run_bundle(
        tmp_path, "CREATE TABLE log (x)",
        "CREATE TRIGGER t1 AFTER INSERT ON runs BEGIN INSERT INTO log VALUES (1); END",
        "CREATE TRIGGER t2 AFTER UPDATE ON runs BEGIN DELETE FROM runs; END")
    before = digest(db)
    runstore.import_bundle(db, tmp_path / "mine.db")
    bundle = runstore.open_bundle(db)
    assert [run.result["val"] for run in bundle.run] == [3, 6]
    with sqlite3.connect(tmp_path / "mine.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger'"
                            ).fetchone() == (0,)
    conn.close()
    assert digest(db) == before


def test_queries_on_read_only_files_are_time_bounded(tmp_path):
    batch = Batch("many", path=tmp_path / "made")
    batch.add_factorial_runs(ExampleRun, {"A": list(range(400))})
    db, _ = batch.export(tmp_path / "bundle" / "b")
    batch.store.close()
    bundle = runstore.open_bundle(db)
    bundle.store.query_time_limit = 1e-9  # any query longer than one look at the clock
    with pytest.raises(QueryTimeoutError, match="hostile or damaged") as caught:
        bundle.store.view_rows(bundle._id)
    assert isinstance(caught.value, TimeoutError) and caught.value.seconds == 1e-9
    bundle.store.query_time_limit = None
    assert len(bundle.store.view_rows(bundle._id)[1]) == 400
    # The store's own files, opened for writing, are not bounded.
    batch = Batch("many", path=tmp_path / "made")
    batch.store.query_time_limit = 1e-9
    assert len(batch.store.view_rows(batch._id)[1]) == 400


@pytest.mark.parametrize("query, made", [
    ("ATTACH 'file:made.db?mode=rwc' AS x", "made.db"),
    ("ATTACH DATABASE 'made.db' AS x", "made.db"),
    ("VACUUM INTO 'made.db'", "made.db"),
    ("DETACH DATABASE main", None),
    ("PRAGMA query_only = OFF", None),
    ("PRAGMA journal_mode = WAL", None),
    ("PRAGMA user_version = 7", None),
    ("SELECT load_extension('made')", None),
    ("CREATE TEMP TABLE t (x)", None),
    ("DELETE FROM runs", None),
    ("UPDATE runs SET state = 'pending'", None),
])
def test_runstore_sql_only_reads(query, made, tmp_path):
    db = one_run_bundle(tmp_path)
    before = digest(db)
    out = cli(tmp_path, "sql", str(db), query)
    assert out.returncode in (2, 5), out.stdout  # a statement refused, or one that fails
    assert "only reads" in out.stderr or "SQL error" in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "made"]
    assert digest(db) == before


@pytest.mark.parametrize("query, shown", [
    ("select A, val from plain order by A", "3"),
    ("PRAGMA table_info(runs)", "parameters_origin"),
    ("select count(*) from runs", "2"),
    ("PRAGMA user_version", "1"),
])
def test_runstore_sql_still_reads(query, shown, tmp_path):
    db = one_run_bundle(tmp_path)
    out = cli(tmp_path, "sql", str(db), query)
    assert out.returncode == 0, out.stderr
    assert shown in out.stdout


def test_a_worker_never_imports_the_run_type_an_imported_run_names(tmp_path):
    batch = Batch("plain", path=tmp_path / "made")
    batch.add_run(ExampleRun, {"A": 1})  # pending
    db, _ = batch.export(tmp_path / "bundle" / "b")
    batch.store.close()
    with sqlite3.connect(db) as conn:
        (rid, document), = conn.execute("SELECT id, parameters FROM runs")
        new = run_id_of_pairs("canary_mod.Run",
                              canonical_json(json.loads(document)["values"]))
        conn.execute("UPDATE runs SET id = ?, run_type = 'canary_mod.Run'", (new,))
    conn.close()
    env, mark = canary_env(tmp_path)
    runstore.import_bundle(db, tmp_path / "mine.db")
    out = runstore_cli("worker", str(tmp_path / "mine.db"), "-v", env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "0 of 1 runs from the store, 0 computed, 1 still pending\n"
    assert not mark.exists()
    assert Store(tmp_path / "mine.db").states([new]) == {new: "pending"}


def test_an_imported_pickle_is_never_loaded_by_a_store_that_allows_pickles(in_tmp):
    made = Batch("plain", path="made")
    made.add_run(ExampleRun, {"A": 1})
    made(verbose=0)
    db, _ = made.export("b")
    made.store.close()
    payload = "Y29zCnN5c3RlbQooUyd0b3VjaCBVTlBJQ0tMRUQnCnRSLg=="  # os.system('touch ...')
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE runs SET result = ?", (canonical_json(
            ["dict", [["val", ["pickle", payload]]]]),))
    conn.close()
    store = Store("mine.db", allow_pickle=True)
    runstore.import_bundle(db, store)
    from runstore.errors import PickleRefusedError

    with pytest.raises(PickleRefusedError):
        Batch("plain", store=store).run[0].result
    assert not Path("UNPICKLED").exists()


def test_a_fifo_where_a_bundle_or_store_file_belongs_is_refused(tmp_path):
    fifo = tmp_path / "b.db"
    os.mkfifo(fifo)
    code = ("import sys, runstore\n"
            "try:\n    runstore.open_bundle(sys.argv[1])\n"
            "except runstore.RunstoreError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code, str(fifo)], capture_output=True,
                         text=True, timeout=60)
    assert "not a regular file" in out.stdout, out.stderr
    for command in (["runs", str(fifo)], ["sql", str(fifo), "select 1"]):
        out = cli(tmp_path, *command)
        assert out.returncode != 0 and "not a regular file" in out.stderr


def test_hostile_column_names_are_data_and_never_break_the_table(tmp_path):
    db = one_run_bundle(tmp_path)
    with sqlite3.connect(db) as conn:
        conn.executemany("INSERT INTO batch_columns (batch_id, source, name, kinds) "
                         "VALUES (1, ?, ?, ?)", [
            ("result", 'x"; DROP TABLE runs; --', "float"), ("result", "a\x00b", "int"),
            ("evil", "q", ""), ("result", "k1", "float') AS x, (SELECT 1"),
            ("result", "k2", b"\x00\xff"), ("result", "k3", 7)])
    conn.close()
    columns, rows = runstore.open_bundle(db).store.view_rows(1)
    assert 'x"; DROP TABLE runs; --' in columns and "q" not in columns
    assert {"k1", "k2", "k3"} <= set(columns)  # unknown kinds: a column without a type
    assert len(rows) == 2


def test_an_origin_a_file_claims_is_replaced_or_dropped(in_tmp):
    made = Batch("plain", path="made")
    made.add_run(ExampleRun, {"A": 1, "operator": min})
    made(verbose=0)
    db, _ = made.export("b")
    made.store.close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE runs SET parameters = json_set(parameters, '$.origin', 'x')")
    conn.close()
    for name, trust in (("untrusted.db", False), ("trusted.db", True)):
        runstore.import_bundle(db, name, trust=trust)
        batch = Batch("plain", store=name)
        batch._register_class(ExampleRun)
        document = json.loads(batch.store.run_record(batch.run[0].id)["parameters"])
        if trust:
            assert "origin" not in document and batch.run[0].parameters["operator"] is min
        else:
            assert document["origin"] == str(Path("b.db").resolve())
            assert isinstance(batch.run[0].parameters["operator"], FunctionRef)
