"""Does reading part of a large stored array cost time and memory in proportion to the part?

One run returns one large float64 array (1 GB; 100 MB with --quick),
written once. Each read then happens in a new process, which reports the
time of the read and its peak RSS above what it used before the read:

- run.arrays["x"][i]            one row (8 kB)
- run.arrays["x"][:n // 10]     the first 10 % of the rows
- run.arrays["x"][:, :k // 10]  10 % of the columns (strided on disk)
- run.arrays["x"].read()        all of it, checked against its CRC-32
- run.result["x"]               all of it through the result (for comparison)

Each figure is the best of three processes; the page cache holds the file
(what is measured is runstore and HDF5, not the disk).

    python benchmarks/bench_arrays.py [--quick]

It prints a table and writes it to benchmarks/results/bench_arrays.txt.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import Report  # noqa: E402

import runstore  # noqa: E402

COLUMNS = 1000


class Large(runstore.Run):
    def run(self, rows: int = 1000) -> dict[str, np.ndarray]:
        return {"x": np.arange(rows * COLUMNS, dtype=np.float64).reshape(rows, COLUMNS)}


READ = """
import sys, time
def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
import runstore
run = runstore.Batch("large", path=sys.argv[1]).run[0]
lazy, rows = run.arrays["x"], int(sys.argv[3])
before = peak()
t0 = time.perf_counter()
part = {
    "row": lambda: lazy[rows // 2],
    "rows": lambda: lazy[: rows // 10],
    "columns": lambda: lazy[:, : lazy.shape[1] // 10],
    "read": lambda: lazy.read(),
    "result": lambda: run.result["x"],
}[sys.argv[2]]()
seconds = time.perf_counter() - t0
print(seconds, peak() - before, part.nbytes)
"""


def read(folder: Path, how: str, rows: int) -> tuple[float, float, int]:
    """Best time, and the smallest peak RSS growth, of three processes."""
    found = []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", READ, str(folder), how, str(rows)],
                             capture_output=True, text=True, check=True,
                             env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
        seconds, grown, nbytes = out.stdout.split()
        found.append((float(seconds), float(grown), int(nbytes)))
    return min(f[0] for f in found), min(f[1] for f in found), found[0][2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 100 MB array")
    args = parser.parse_args()
    rows = 12_500 if args.quick else 125_000
    report = Report("lazy reads of a large array")
    say = report.say
    folder = Path(tempfile.mkdtemp(prefix="runstore-bench-", dir=os.environ.get("BENCH_DIR")))
    try:
        batch = runstore.Batch("large", path=folder)
        batch.add_run(Large, {"rows": rows})
        batch(verbose=0)
        total = rows * COLUMNS * 8
        say(f"a ({rows:,}, {COLUMNS}) float64 array, {total / 1e9:.2f} GB, in one side file")
        say(f"  {'read':34} {'bytes':>10} {'time':>10} {'peak RSS':>12}   "
            f"{'time / whole':>12}")
        labels = {"row": "arrays['x'][i]       one row",
                  "rows": "arrays['x'][:n//10]  10 % rows",
                  "columns": "arrays['x'][:, :k//10] 10 % cols",
                  "read": "arrays['x'].read()   all",
                  "result": "run.result['x']      all"}
        figures = {how: read(folder, how, rows) for how in labels}
        whole = figures["read"][0]
        for how, label in labels.items():
            seconds, grown, nbytes = figures[how]
            say(f"  {label:34} {nbytes / 1e6:8.2f}MB {seconds * 1e3:8.1f}ms "
                f"{grown / 1e6:10.1f}MB   {seconds / whole:12.4f}")
        say()
        say("  peak RSS: growth of the reading process's peak during the read")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    report.write("bench_arrays_quick" if args.quick else "bench_arrays")


if __name__ == "__main__":
    main()
