"""How long do ``import runstore`` and ``runstore --help`` take in a fresh process, and what do they load?

Targets of the performance issue: ``import runstore`` under 0.25 s and
``runstore --help`` under 0.3 s, and neither loads anything heavy
(SQLAlchemy, numpy, h5py, pandas, matplotlib, ipyparallel, pyfftw): those
load with the first Batch or Store. ``from runstore import Batch`` is
measured too, for honesty: that is where the weight moved.

Each figure is the best wall time of N fresh processes (``-N``, default 15):

- ``python -c pass``: the interpreter's own start, for reference;
- ``python -c "import runstore"`` and the import alone, as ``-X importtime``
  reports it (cumulative microseconds of the ``runstore`` line);
- ``runstore --help``: the console script beside the interpreter (pyenv's
  shim on PATH adds its own start), and ``python -m runstore --help``;
- ``python -c "from runstore import Batch"``, and its imports alone.

Run it:

    python benchmarks/bench_import.py [-n 15]

It prints a table and writes it to benchmarks/results/bench_import.txt.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import Report  # noqa: E402

#: Packages that ``import runstore`` and ``runstore --help`` must not load.
HEAVY = ("sqlalchemy", "numpy", "h5py", "pandas", "matplotlib", "ipyparallel", "pyfftw")

#: Prints, at exit, the top-level packages this process loaded beyond ``python -c pass``.
LOADED = """
import atexit, sys
_before = {m.split('.')[0] for m in sys.modules}
def _report():
    new = sorted({m.split('.')[0] for m in sys.modules} - _before)
    sys.stderr.write("LOADED " + " ".join(new) + "\\n")
atexit.register(_report)
"""


def wall(args: list[str], n: int) -> float:
    best = float("inf")
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - t0)
    return best


def import_time(statement: str, n: int) -> float:
    """Best seconds ``-X importtime`` gives runstore: its line and every later top-level one.

    (``from runstore import Batch`` loads runstore.batch and the rest from
    ``runstore.__getattr__``, after runstore's own line.)
    """
    best = float("inf")
    for _ in range(n):
        err = subprocess.run([sys.executable, "-X", "importtime", "-c", statement],
                             check=True, capture_output=True, text=True).stderr
        total, seen = 0, False
        for line in err.splitlines():
            found = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S+)$", line)
            if found and (seen or found.group(2) == "runstore"):
                seen = True
                total += int(found.group(1))
        best = min(best, total / 1e6)
    return best


def loaded(code: str, argv: list[str] | None = None) -> list[str]:
    args = [sys.executable, "-c", LOADED + code, *(argv or [])]
    err = subprocess.run(args, capture_output=True, text=True).stderr
    (line,) = [x for x in err.splitlines() if x.startswith("LOADED ")]
    return line.split()[1:]


HELP = "import sys\nfrom runstore.cli import run\nsys.argv = ['runstore', '--help']\nrun()"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=15, help="processes per figure (best of)")
    args = parser.parse_args()
    n = args.n
    py = sys.executable
    script = Path(py).parent / "runstore"
    report = Report("import time")
    say = report.say
    say(f"best wall time of {n} fresh processes; PYTHONPATH={os.environ.get('PYTHONPATH', '')}")
    base = wall([py, "-c", "pass"], n)
    say(f"  python -c pass                          {base * 1e3:7.1f} ms   (the interpreter's start)")
    t_imp = wall([py, "-c", "import runstore"], n)
    say(f"  python -c 'import runstore'             {t_imp * 1e3:7.1f} ms   (target < 250 ms)")
    alone = import_time("import runstore", n)
    say(f"    import runstore alone (-X importtime) {alone * 1e3:7.1f} ms")
    if script.exists():
        t_help = wall([str(script), "--help"], n)
        say(f"  runstore --help (console script)        {t_help * 1e3:7.1f} ms   (target < 300 ms)")
    t_m = wall([py, "-m", "runstore", "--help"], n)
    say(f"  python -m runstore --help               {t_m * 1e3:7.1f} ms")
    t_batch = wall([py, "-c", "from runstore import Batch"], n)
    say(f"  python -c 'from runstore import Batch'  {t_batch * 1e3:7.1f} ms   (no target: the "
        "weight moved here)")
    batch_alone = import_time("from runstore import Batch", n)
    say(f"    the imports alone (-X importtime)     {batch_alone * 1e3:7.1f} ms")
    say()
    for what, code in (("import runstore", "import runstore"), ("runstore --help", HELP),
                       ("from runstore import Batch", "from runstore import Batch")):
        found = loaded(code)
        heavy = [m for m in HEAVY if m in found]
        say(f"{what} loads {len(found)} top-level packages; heavy: {', '.join(heavy) or 'none'}")
        say(f"  {' '.join(found)}")
    report.write("bench_import")


if __name__ == "__main__":
    main()
