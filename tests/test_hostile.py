"""A hostile bundle: opening, querying and loading it runs nothing from the file.

The bundle is a real one, then edited the way an attacker could: pickles in
its tables and HDF5 attributes, names of a module whose import has side
effects, SQL in names, a side-file path that leaves the folder, a trigger.
A fresh process opens it with that module importable and does everything a
user would; the test asserts that nothing was imported or unpickled, that
the files are unchanged, and that each invalid value fails with a clear error.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from runstore import Batch

from .runs import Arrays, ExampleRun

#: Imported, it leaves a marker file: proof that code named in the file ran.
HOSTILE_MODULE = '''
from pathlib import Path
Path("IMPORTED").write_text("hostile_mod was imported")

def touch(name):
    Path(name).write_text("called")

class Evil:
    def __setstate__(self, state):
        Path("UNPICKLED").write_text("called")
'''

#: A protocol-0 pickle of ``hostile_mod.touch("UNPICKLED")``.
PAYLOAD = b"chostile_mod\ntouch\n(S'UNPICKLED'\ntR."
PICKLED = ["pickle", base64.b64encode(PAYLOAD).decode("ascii")]
SQL_NAME = 'x"; DROP TABLE runs; --'

USE_IT = r"""
import json, sys, traceback
import runstore
from runstore.encoding import FunctionRef

outcome = {}

def attempt(label, action):
    try:
        value = action()
        outcome[label] = {"ok": repr(value)[:3000]}
    except Exception as exc:
        outcome[label] = {"error": type(exc).__name__, "message": str(exc),
                          "runstore": isinstance(exc, runstore.RunstoreError)}

batch = runstore.open_bundle(sys.argv[1])
runs = list(batch.run)
outcome["types"] = sorted({type(r).__name__ for r in runs})
for i, run in enumerate(runs):
    attempt(f"parameters {i}", lambda: run.parameters)
    attempt(f"result {i}", lambda: run.result)
    attempt(f"provenance {i}", lambda: run.provenance)
    attempt(f"html {i}", lambda: run._repr_html_())
attempt("query function", lambda: [r.index for r in batch.get_runs_with(
    operator=FunctionRef("hostile_mod.touch"))])
attempt("query sql name", lambda: [r.index for r in batch.get_runs_with(
    **{sys.argv[2]: 1})])
attempt("query A", lambda: [r.index for r in batch.get_runs_with(A__ge=2)])
attempt("dataframe", lambda: batch.to_dataframe().shape)
attempt("html", lambda: len(batch._repr_html_()))
attempt("repr", lambda: repr(batch))
store = runstore.Store("mine.db")
attempt("import", lambda: runstore.import_bundle(sys.argv[1], store))
attempt("pickle refused", lambda: runstore.open_bundle(sys.argv[1]).run[1].result)
outcome["modules"] = [m for m in sys.modules if m.startswith(("hostile", "tests"))]
print(json.dumps(outcome))
"""


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_hostile(tmp_path: Path, monkeypatch) -> tuple[Path, Path, list[str]]:
    """A real bundle of four runs, edited into a hostile one; return its files and ids."""
    monkeypatch.chdir(tmp_path)
    batch = Batch("hostile")
    batch.add_factorial_runs(ExampleRun, {"A": [1, 2, 3], "operator": [max]})
    batch.add_factorial_runs(Arrays, {"n": [2, 3]})
    batch(verbose=0)
    db, h5 = batch.export(tmp_path / "bundle" / "hostile")
    batch.store.close()
    ids = list(batch.run.ids())
    conn = sqlite3.connect(db)
    with conn:
        def document(i: int) -> dict:
            return json.loads(conn.execute("SELECT parameters FROM runs WHERE id = ?",
                                           (ids[i],)).fetchone()[0])

        # Run 0: its run type and a parameter name a module with side effects,
        # one of its parameters names a class of it, and one is a pickle.
        doc = document(0)
        doc["values"] = [[k, ["callable", "hostile_mod.touch"] if k == "operator" else v]
                         for k, v in doc["values"]]
        doc["values"].append(["thing", ["object", ["hostile_mod.Evil", [["a", 1]]]]])
        conn.execute("UPDATE runs SET run_type = 'hostile_mod.Run', parameters = ? "
                     "WHERE id = ?", (json.dumps(doc), ids[0]))
        conn.execute("UPDATE parameters SET canonical = ? WHERE name = 'operator' AND "
                     "run_key = (SELECT key FROM runs WHERE id = ?)",
                     (json.dumps(["callable", "hostile_mod.touch"], separators=(",", ":")),
                      ids[0]))
        # Run 1: a pickled result; a parameter whose name is SQL.
        conn.execute("UPDATE runs SET result = ? WHERE id = ?",
                     (json.dumps(["dict", [["val", PICKLED]]]), ids[1]))
        conn.execute("INSERT INTO parameters (run_key, name, kind, num, text, canonical) "
                     "SELECT key, ?, 'int', 1, NULL, '1' FROM runs WHERE id = ?",
                     (SQL_NAME, ids[1]))
        conn.execute("INSERT INTO batch_columns (batch_id, source, name, kinds) VALUES (1, 'parameter', ?, 'int')", (SQL_NAME,))
        # Run 2: a pickled parameter.
        doc = document(2)
        doc["values"] = [[k, PICKLED if k == "B" else v] for k, v in doc["values"]]
        conn.execute("UPDATE runs SET parameters = ? WHERE id = ?", (json.dumps(doc), ids[2]))
        # Run 4: its arrays "elsewhere".
        conn.execute("UPDATE runs SET array_file = '../../outside.h5' WHERE id = ?", (ids[4],))
        # A trigger that would wreck the file if anything wrote to it.
        conn.execute("CREATE TRIGGER wreck AFTER UPDATE ON runs BEGIN DELETE FROM runs; END")
    conn.close()
    with h5py.File(h5, "r+") as f:
        group = f[ids[3]]
        group.attrs["payload"] = np.void(PAYLOAD)
        first = next(iter(group))
        group[first].attrs["payload"] = np.void(PAYLOAD)
        # Run 3's array "m" replaced by pickle bytes of the same name.
        tree = json.loads(sqlite3.connect(db).execute(
            "SELECT result FROM runs WHERE id = ?", (ids[3],)).fetchone()[0])
        name = next(v[1]["name"] for k, v in tree[1] if k == "m")
        del group[name]
        group[name] = np.frombuffer(PAYLOAD, dtype=np.uint8)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "hostile_mod.py").write_text(HOSTILE_MODULE)
    return db, h5, ids


@pytest.mark.slow
def test_a_hostile_bundle_runs_nothing_and_fails_clearly(tmp_path, monkeypatch):
    db, h5, ids = make_hostile(tmp_path, monkeypatch)
    before = (digest(db), digest(h5))
    where = tmp_path / "elsewhere"
    out = subprocess.run(
        [sys.executable, "-c", USE_IT, str(db), SQL_NAME], cwd=where,
        env={"PYTHONPATH": str(where), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    # Nothing named in the file was imported, called or unpickled ...
    left = {p.name for p in where.iterdir()}
    assert left - {"hostile_mod.py"} <= {"mine.db", "mine.db-wal", "mine.db-shm"}
    assert found["modules"] == []
    # ... and the files are unchanged (the trigger never fired).
    assert (digest(db), digest(h5)) == before
    assert found["types"] == ["ResultRun"]

    def error(label: str) -> dict:
        outcome = found[label]
        assert "error" in outcome, f"{label} should fail, gave {outcome}"
        assert outcome["runstore"], outcome
        return outcome

    # Run 0: names of the hostile module stay names.
    assert "FunctionRef('hostile_mod.touch')" in found["parameters 0"]["ok"]
    assert "ObjectRef('hostile_mod.Evil'" in found["parameters 0"]["ok"]
    assert "ok" in found["result 0"] and "ok" in found["html 0"]
    assert found["query function"] == {"ok": "[0]"}
    # Run 1: the pickled result is refused, saying why and what to do.
    for label in ("result 1", "pickle refused"):
        assert error(label)["error"] == "PickleRefusedError"
        assert "open_bundle(path, allow_pickle=True)" in found[label]["message"]
    assert "cannot be loaded" in found["html 1"]["ok"]
    assert "ok" in found["parameters 1"]
    # SQL in a name is a name: the query binds it, the tables survive.
    assert found["query sql name"] == {"ok": "[1]"}
    assert found["query A"] == {"ok": "[1, 2]"}
    assert "ok" in found["dataframe"] and "ok" in found["html"] and "ok" in found["repr"]
    # Run 2: a pickled parameter and a side-file path leaving the folder.
    assert "parameter 'B' is a pickled value" in error("parameters 2")["message"]
    assert "is not the name of a side file" in error("result 4")["message"]
    assert "ok" in found["parameters 4"]
    # Run 3: pickle bytes where an array belongs are refused by dtype and shape.
    assert "expected <i2(2, 2)" in error("result 3")["message"]
    assert "ok" in found["parameters 3"]
    # Importing it checks ids against parameters before writing anything.
    assert "does not match its parameters" in error("import")["message"]
    # The control: the payloads are live. Opting in to pickles runs them.
    subprocess.run([sys.executable, "-c", "import runstore, sys; "
                    "runstore.open_bundle(sys.argv[1], allow_pickle=True).run[1].result",
                    str(db)], cwd=where, env={"PYTHONPATH": str(where), "PATH": "/usr/bin:/bin"},
                   check=True, capture_output=True)
    assert (where / "UNPICKLED").exists() and (where / "IMPORTED").exists()


def edited_bundle(tmp_path, monkeypatch, sql: str, *args: str) -> Path:
    """A one-run bundle, with ``sql`` run on its ``.db``; return the ``.db``."""
    monkeypatch.chdir(tmp_path)
    batch = Batch("plain")
    batch.add_run(ExampleRun, {"A": 1})
    db, _ = batch.export("b")
    with sqlite3.connect(db) as conn:
        conn.execute(sql, args)
    conn.close()
    return db


def test_a_bundle_named_with_sql_is_refused_clearly(tmp_path, monkeypatch):
    db = edited_bundle(tmp_path, monkeypatch, "UPDATE batches SET name = ?", SQL_NAME)
    from runstore import open_bundle
    from runstore.errors import BatchNameError

    with pytest.raises(BatchNameError, match="DROP TABLE"):
        open_bundle(db)


@pytest.mark.parametrize("table", ["parameter_counts", "result_values", "batch_columns"])
def test_a_bundle_missing_a_table_of_its_revision_is_refused_on_opening(
        tmp_path, monkeypatch, table):
    db = edited_bundle(tmp_path, monkeypatch, f"DROP TABLE {table}")
    from runstore import open_bundle
    from runstore.errors import NotAStoreError

    with pytest.raises(NotAStoreError, match=rf"tables \['{table}'\] are missing.*from a copy"):
        open_bundle(db)


def test_a_parameters_document_that_is_not_json_is_a_clear_error(tmp_path, monkeypatch):
    db = edited_bundle(tmp_path, monkeypatch,
                       "UPDATE runs SET parameters = 'import os; os.system(\"x\")'")
    from runstore import open_bundle
    from runstore.errors import DecodingError

    with pytest.raises(DecodingError, match="a malformed parameters document"):
        open_bundle(db).run[0].parameters


def test_a_hostile_side_file_linking_elsewhere_is_refused_not_followed(tmp_path, monkeypatch):
    db, h5, ids = make_hostile(tmp_path, monkeypatch)
    private = tmp_path / "elsewhere" / "private.h5"
    with h5py.File(private, "w") as f:
        f["x"] = np.arange(3.0)
    tree = json.loads(sqlite3.connect(db).execute(
        "SELECT result FROM runs WHERE id = ?", (ids[3],)).fetchone()[0])
    name = next(v[1]["name"] for k, v in tree[1] if k == "flags")
    with h5py.File(h5, "r+") as f:
        del f[ids[3]][name]
        f[ids[3]][name] = h5py.ExternalLink("../elsewhere/private.h5", "/x")
    from runstore import open_bundle
    from runstore.errors import UnsafeArrayFileError

    run = open_bundle(db).run[3]
    with pytest.raises(UnsafeArrayFileError, match="an external link") as caught:
        run.result
    assert caught.value.where == f"{ids[3]}/{name}"
    assert "an external link" in run._repr_html_()
