"""runstore.performance.fft against numpy.fft on the same arrays, in the same run.

For each size, kind (complex fft / real rfft) and thread count, the table
gives the best time per transform of numpy and of runstore's chosen
transform (FFTW or numpy, measured at first use), their ratio (numpy time /
runstore time: above 1 runstore is faster; the target is at least 1.0
everywhere) and the first-use cost (planning with FFTW_MEASURE plus the
measurement that chooses). Then the planning cost of a fresh worker process,
with and without wisdom taken from a store.

    python benchmarks/bench_fft.py            # the full table (about 10 minutes)
    python benchmarks/bench_fft.py --quick    # a few sizes, to try it
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import Report  # noqa: E402

from runstore.performance import auto_timeit  # noqa: E402
from runstore.performance import fft  # noqa: E402

ONE_D = [2**k for k in (10, 12, 14, 16, 18, 20, 22)]
AWKWARD = [2187, 3000, 10800, 16807, 1009, 10007, 65537]  # small-prime products, primes
TWO_D = [(256, 256), (512, 512), (1024, 1024), (2048, 2048)]
THREE_D = [(64, 64, 64), (128, 128, 128), (256, 256, 256)]


def best(call, x, budget: float) -> float:
    timing = auto_timeit(lambda: call(x), time=budget, max_time=20 * budget, repeat=3,
                         display=False)
    return timing.best


def case(report: Report, shape: tuple[int, ...], kind: str, threads: int,
         results: list[float]) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape)
    if kind == "fft":
        x = x + 1j * rng.normal(size=shape)
    nd = len(shape) > 1
    name = (kind + "n") if nd else kind
    numpy_call = getattr(np.fft, name)
    size = x.nbytes
    budget = 0.05 if size < 2**24 else 0.3
    start = time.perf_counter()
    chosen = fft.get_fft(x, name, threads=threads)
    first_use = time.perf_counter() - start
    t_numpy = best(numpy_call, x, budget)
    t_ours = best(chosen, x, budget)
    ratio = t_numpy / t_ours
    results.append(ratio)
    label = "x".join(map(str, shape))
    report.say(f"| {label:>13} | {name:6} | {threads} | {t_numpy * 1e3:10.3f} | "
               f"{t_ours * 1e3:10.3f} | {ratio:5.2f} | {chosen.backend:5} | "
               f"{first_use:7.2f} |")


FRESH_WORKER = """
import json, sys, time
import numpy as np
import runstore
from runstore.performance import fft
store = runstore.Store(sys.argv[1])
if sys.argv[2] == "with":
    fft.import_wisdom(store.fftw_wisdom())
timings = {}
for shape in json.loads(sys.argv[3]):
    x = np.ones(shape, dtype=complex)
    start = time.perf_counter()
    fft.get_fft(x, "fftn" if len(shape) > 1 else "fft", backend="fftw", threads=1)
    timings["x".join(map(str, shape))] = time.perf_counter() - start
if sys.argv[2] == "without":
    store.save_fftw_wisdom(fft.export_wisdom())
print(json.dumps(timings))
"""


def planning(report: Report, shapes: list[tuple[int, ...]]) -> None:
    report.say()
    report.say("Planning in a fresh worker process (FFTW_MEASURE, 1 thread, complex): "
               "seconds to get a ready transform")
    report.say()
    report.say("| shape | without wisdom | with the store's wisdom | ratio |")
    report.say("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        store = str(Path(folder) / "wisdom.db")
        run = [sys.executable, "-c", FRESH_WORKER, store]
        arg = json.dumps(shapes)
        without = json.loads(subprocess.run([*run, "without", arg], capture_output=True,
                                            text=True, check=True).stdout)
        with_it = json.loads(subprocess.run([*run, "with", arg], capture_output=True,
                                            text=True, check=True).stdout)
    for label in without:
        report.say(f"| {label} | {without[label]:.3f} | {with_it[label]:.3f} | "
                   f"{without[label] / with_it[label]:.1f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few sizes only")
    args = parser.parse_args()
    report = Report("runstore.performance.fft vs numpy.fft (best time per transform)")
    report.say(f"pyfftw available: {fft.FFTW_AVAILABLE}; planner effort FFTW_MEASURE; "
               "ratio = numpy time / runstore time (>= 1: runstore as fast or faster)")
    report.say()
    report.say("|         shape | kind   | threads | numpy ms | runstore ms | ratio | "
               "used  | first use s |")
    report.say("|---|---|---|---|---|---|---|---|")
    shapes: list[tuple[int, ...]] = (
        [(n,) for n in (ONE_D[:3] + AWKWARD[:2])] + TWO_D[:1] + THREE_D[:1] if args.quick
        else [(n,) for n in ONE_D + AWKWARD] + TWO_D + THREE_D)
    ratios: list[float] = []
    for shape in shapes:
        for kind in ("fft", "rfft"):
            for threads in (1, 2):
                case(report, shape, kind, threads, ratios)
    report.say()
    report.say(f"ratio over {len(ratios)} cases: min {min(ratios):.2f}, "
               f"median {sorted(ratios)[len(ratios) // 2]:.2f}, max {max(ratios):.2f}; "
               f"{sum(r < 1.0 for r in ratios)} cases below 1.0 "
               f"({sum(r < 0.95 for r in ratios)} below 0.95)")
    planning(report, [(2**16,), (2**20,), (256, 256), (64, 64, 64)] if args.quick else
             [(2**16,), (2**20,), (10007,), (512, 512), (128, 128, 128)])
    if not args.quick:
        print(f"wrote {report.write('bench_fft')}")


if __name__ == "__main__":
    main()
