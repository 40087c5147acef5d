"""``import runstore`` and ``runstore --help`` stay light: nothing heavy loads until it is used.

Checked in fresh processes by what they load, never by how long they take
(benchmarks/bench_import.py times them).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

#: What the first Batch or Store loads, and the command line must not need for --help.
HEAVY = ("sqlalchemy", "numpy", "h5py", "pandas", "matplotlib", "ipyparallel", "pyfftw",
         "alembic", "zope", "psutil")

#: Prints, at exit (also after SystemExit), the top-level packages the process loaded.
LOADED = """
import atexit, sys
def _report():
    sys.stderr.write("LOADED " + " ".join(sorted({m.split('.')[0] for m in sys.modules}))
                     + "\\n")
atexit.register(_report)
"""


def loaded(code: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", LOADED + code], capture_output=True,
                          text=True, timeout=120)
    lines = [line for line in done.stderr.splitlines() if line.startswith("LOADED ")]
    assert lines, f"no report from the process:\n{done.stdout}\n{done.stderr}"
    return set(lines[-1].split()[1:])


@pytest.mark.parametrize("code", [
    "import runstore",
    "import runstore; runstore.__all__; runstore.RunstoreError; runstore.QueryError",
    "import sys\nfrom runstore.cli import run\nsys.argv = ['runstore', '--help']\nrun()",
    "import sys\nfrom runstore.cli import run\nsys.argv = ['runstore', 'runs', '--help']\nrun()",
], ids=["import", "errors", "help", "runs-help"])
def test_nothing_heavy_loads(code):
    found = loaded(code)
    assert "runstore" in found
    assert not [name for name in HEAVY if name in found]


def test_the_heavy_modules_do_load_when_a_store_is_used():
    # The test above could pass because its names were wrong: here they appear.
    found = loaded("from runstore import Batch")
    assert {"sqlalchemy", "numpy", "h5py"} <= found
