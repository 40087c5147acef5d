"""Which ArrayOptions should a batch use: how small, and how fast, are compressed side files?

On the same arrays (a few MB each: a smooth float64 field, noisy float64
numbers, integer counts), for each storage option of runstore.ArrayOptions
(none, gzip at levels 1/4/9, with and without shuffle, lzf, Blosc if
hdf5plugin is installed), the size on disk and the write and read speeds of
a side file holding one array (ArrayStore.write, fsynced as runstore does;
ArrayStore.read_many, checked as runstore reads), against
np.savez_compressed / np.load of the same array on the same disk (fsynced
too), as ratios measured in the same run: size / savez size (below 1:
smaller), speed / savez speed (above 1: faster). Best of three.

    python benchmarks/bench_compression.py [--quick]

It prints a table and writes it to benchmarks/results/bench_compression.txt.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import Report  # noqa: E402

from runstore import ArrayOptions  # noqa: E402
from runstore.arrays import ArrayStore  # noqa: E402

RUN = "b" * 40


def arrays(mb: float) -> dict[str, np.ndarray]:
    """The three kinds of data, ``mb`` MB each."""
    n = int(mb * 1e6 / 8)
    side = int(np.sqrt(n))
    y, x = np.mgrid[0:side, 0:side] / side
    rng = np.random.default_rng(0)
    return {
        "smooth float64": np.sin(6 * x) * np.cos(4 * y) + 0.1 * x * y,
        "noisy float64": rng.normal(size=(side, side)),
        "int64 counts": rng.poisson(20, size=(side, side)).astype(np.int64),
    }


def options() -> dict[str, ArrayOptions]:
    found = {
        "uncompressed": ArrayOptions(),
        "gzip 1": ArrayOptions(compression="gzip", compression_opts=1),
        "gzip 4": ArrayOptions(compression="gzip", compression_opts=4),
        "gzip 9": ArrayOptions(compression="gzip", compression_opts=9),
        "gzip 4 + shuffle": ArrayOptions(compression="gzip", compression_opts=4, shuffle=True),
        "lzf": ArrayOptions(compression="lzf"),
        "lzf + shuffle": ArrayOptions(compression="lzf", shuffle=True),
    }
    try:
        import hdf5plugin  # noqa: F401
    except ImportError:
        return found
    found["blosc lz4 5"] = ArrayOptions(compression="blosc")
    found["blosc lz4 5 + shuffle"] = ArrayOptions(compression="blosc", shuffle=True)
    return found


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def best_of(work, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        work()
        times.append(time.perf_counter() - t0)
    return min(times)


def runstore_figures(folder: Path, array: np.ndarray, option: ArrayOptions
                     ) -> tuple[int, float, float]:
    """(bytes on disk, write s, read s) of a side file holding ``array``."""
    store = ArrayStore(folder / "arrays")
    names: list[str] = []
    write = best_of(lambda: names.append(store.write({RUN: {"a": array}}, None, option)))
    size = (store.directory / names[-1]).stat().st_size
    read = best_of(lambda: store.read_many(names[-1], [f"{RUN}/a"]))
    shutil.rmtree(store.directory)
    return size, write, read


def savez_figures(folder: Path, array: np.ndarray) -> tuple[int, float, float]:
    path = folder / "a.npz"

    def write() -> None:
        np.savez_compressed(path, a=array)
        fsync(path)

    seconds = best_of(write)
    read = best_of(lambda: np.load(path)["a"])
    return path.stat().st_size, seconds, read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 MB arrays (a smoke test)")
    args = parser.parse_args()
    mb = 1.0 if args.quick else 8.0
    report = Report("compression of side files")
    say = report.say
    folder = Path(tempfile.mkdtemp(prefix="runstore-bench-", dir=os.environ.get("BENCH_DIR")))
    try:
        for kind, array in arrays(mb).items():
            size_mb = array.nbytes / 1e6
            say(f"{kind}, {array.shape}, {size_mb:.1f} MB")
            say(f"  {'':24} {'on disk':>9} {'write':>10} {'read':>10}   ratios to savez_compressed")
            say(f"  {'':24} {'MB':>9} {'MB/s':>10} {'MB/s':>10}   {'size':>6} {'write':>6} {'read':>6}")
            z_size, z_write, z_read = savez_figures(folder, array)
            for name, option in options().items():
                size, write, read = runstore_figures(folder, array, option)
                say(f"  {name:24} {size / 1e6:9.2f} {size_mb / write:10.0f} "
                    f"{size_mb / read:10.0f}   {size / z_size:6.2f} {z_write / write:6.1f} "
                    f"{z_read / read:6.1f}")
            say(f"  {'np.savez_compressed':24} {z_size / 1e6:9.2f} {size_mb / z_write:10.0f} "
                f"{size_mb / z_read:10.0f}   {1:6.2f} {1:6.1f} {1:6.1f}")
            say()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    report.write("bench_compression_quick" if args.quick else "bench_compression")


if __name__ == "__main__":
    main()
