"""The installed package carries its migrations: a wheel in a fresh virtualenv."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CHECK = """
import json, sqlite3, sys
import runstore
from runstore import migration
from runstore.schema import SCHEMA_REVISION
store = runstore.Store(sys.argv[1])
store.close()
row = sqlite3.connect(sys.argv[1]).execute("SELECT version_num FROM alembic_version").fetchone()
print(json.dumps({"package": runstore.__file__, "scripts": str(migration.script_location()),
                  "head": migration.head(), "revision": row[0], "expected": SCHEMA_REVISION}))
"""


OPEN_BUNDLE = """
import json, sys
import runstore
batch = runstore.open_bundle(sys.argv[1])
print(json.dumps({
    "package": runstore.__file__,
    "n": [r.parameters["n"] for r in batch.get_runs_with(n__ge=3)],
    "m": [r.result["m"].tolist() for r in batch.run],
    "label": [r.result["stats"]["label"] for r in batch.run],
}))
"""


@pytest.mark.slow
def test_a_wheel_installed_in_a_fresh_virtualenv_has_its_migrations(tmp_path, monkeypatch):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                    "-q", "-w", str(wheels), str(ROOT)], check=True)
    (wheel,) = wheels.glob("runstore-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in ("runstore/migrations/env.py", "runstore/migrations/script.py.mako",
                    "runstore/migrations/versions/0001_initial.py"):
        assert shipped in names
    sources = {f"runstore/{p.relative_to(ROOT / 'runstore').as_posix()}"
               for p in (ROOT / "runstore").rglob("*.py")}
    assert sources - set(names) == set(), "list every package in pyproject.toml"
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], check=True)
    out = subprocess.run([str(python), "-c", CHECK, str(tmp_path / "s.db")], cwd=tmp_path,
                         check=True, capture_output=True, text=True).stdout
    found = json.loads(out)
    assert found["package"].startswith(str(venv))
    assert found["scripts"].startswith(str(venv)) and found["scripts"].endswith("migrations")
    assert found["head"] == found["revision"] == found["expected"]

    # A bundle made here opens there, where only runstore (and no test code) is installed.
    from runstore import Batch

    from .runs import Arrays

    monkeypatch.chdir(tmp_path)
    batch = Batch("made-here")
    batch.add_factorial_runs(Arrays, {"n": [2, 3, 4]})
    batch(verbose=0)
    db, _ = batch.export(tmp_path / "elsewhere" / "bundle")
    out = subprocess.run([str(python), "-c", OPEN_BUNDLE, str(db)], cwd=db.parent,
                         check=True, capture_output=True, text=True).stdout
    opened = json.loads(out)
    assert opened["package"].startswith(str(venv))
    assert opened["n"] == [3, 4]
    assert opened["m"] == [r.result["m"].tolist() for r in batch.run]
    assert opened["label"] == ["n=2", "n=3", "n=4"]
