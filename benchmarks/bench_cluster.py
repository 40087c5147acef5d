"""How much of a cluster's capacity can one coordinator keep busy?

The coordinator (the process that calls the batch) claims runs, sends them to
the engines, and commits every result itself. With many engines and short
runs it can become the bottleneck. Runs here sleep 50 ms (no CPU), so the
figure measures coordination, not computing: the achieved rate as a fraction
of the ideal, engines / 0.05 s.

C1  ipyparallel: 8, 16 and 32 local engines; batch(cluster=...) against a bare
    load_balanced_view().map of the same sleeps on the same engines (no store:
    the alternative on the same work).
C2  Dask: a LocalCluster of 8, 16 and 32 single-threaded worker processes;
    batch(executor=client.get_executor()) against a bare client.map.

Target: >= 85 % of the ideal at 32 engines. Each size runs ROUNDS runs per
engine (the ideal time is ROUNDS x 50 ms whatever the size); each figure is
the best of --repeat tries, the bare and the runstore tries interleaved. This
machine has 2 cores: the controller, the scheduler and 32 engines share them
with the coordinator. Run it on an otherwise idle machine:

    pip install -e ".[bench]" && python benchmarks/bench_cluster.py [--quick]

It prints a table and writes it to benchmarks/results/bench_cluster.txt.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import logging
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_runs import Nap, nap  # noqa: E402

from report import Report  # noqa: E402

import runstore  # noqa: E402

SECONDS = 0.05  # each run's sleep


def fraction(runs: int, engines: int, elapsed: float) -> float:
    """The achieved rate as a fraction of the ideal, engines / SECONDS."""
    return (runs / elapsed) / (engines / SECONDS)


def through_runstore(folder: Path, tag: str, runs: int, **how: Any) -> float:
    """Seconds to drain a batch of ``runs`` naps (registering them is not timed)."""
    batch = runstore.Batch(f"nap{tag}", path=folder)
    batch.add_factorial_runs(Nap, {"i": list(range(runs)), "seconds": SECONDS, "tag": tag})
    t0 = time.perf_counter()
    batch(verbose=0, **how)
    elapsed = time.perf_counter() - t0
    if not all(run.done for run in batch.run):
        raise RuntimeError(f"batch {tag}: not every run is done")
    return elapsed


def timed(call: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0


@contextlib.contextmanager
def ipyparallel_engines(engines: int) -> Iterator[Any]:
    cluster = runstore.Cluster(profile=f"bench{engines}", n=engines).start()
    try:
        cluster.wait(timeout=600)
        yield cluster
    finally:
        cluster.stop()


@contextlib.contextmanager
def dask_workers(engines: int) -> Iterator[Any]:
    from distributed import Client, LocalCluster

    local = LocalCluster(n_workers=engines, threads_per_worker=1, processes=True,
                         dashboard_address=None, silence_logs=logging.ERROR)
    client = Client(local)
    try:
        client.wait_for_workers(engines, timeout=600)
        client.run(lambda: __import__("runstore.pool"))  # as Cluster.wait does
        yield client
    finally:
        client.close()
        local.close()


def baseline_drain(rev: str) -> Callable[..., Any]:
    """``drain`` as runstore/pool.py was at git revision ``rev`` (the coordinator only)."""
    source = subprocess.run(["git", "show", f"{rev}:runstore/pool.py"], cwd=HERE.parent,
                            capture_output=True, text=True, check=True).stdout
    module = types.ModuleType("runstore.pool_at_baseline")
    module.__package__ = "runstore"
    exec(compile(source, f"{rev}:runstore/pool.py", "exec"), module.__dict__)
    module.compute_chunk = runstore.pool.compute_chunk  # what workers import by name
    drain: Callable[..., Any] = module.drain
    return drain


@contextlib.contextmanager
def patched_drain(drain: Callable[..., Any] | None) -> Iterator[None]:
    batch_module = sys.modules["runstore.batch"]
    if drain is None:
        yield
        return
    original = batch_module.drain  # type: ignore[attr-defined]
    batch_module.drain = drain  # type: ignore[attr-defined]
    try:
        yield
    finally:
        batch_module.drain = original  # type: ignore[attr-defined]


def measure(folder: Path, kind: str, engines: int, runs: int, repeat: int,
            baseline: Callable[..., Any] | None, profile: bool) -> dict[str, float]:
    """Best times of bare map and runstore (and its baseline) on one cluster."""
    opener = ipyparallel_engines if kind == "ipyparallel" else dask_workers
    with opener(engines) as handle:
        if kind == "ipyparallel":
            view = handle.load_balanced_view()
            bare = lambda: view.map_sync(nap, range(runs), [SECONDS] * runs)  # noqa: E731
            how: dict[str, Any] = {"cluster": handle}
        else:
            bare = lambda: handle.gather(handle.map(  # noqa: E731
                nap, range(runs), [SECONDS] * runs, pure=False))
            how = {"executor": handle.get_executor()}
        tries: dict[str, Callable[[str], float]] = {"bare": lambda tag: timed(bare)}
        if baseline is not None:
            def before(tag: str) -> float:
                with patched_drain(baseline):
                    return through_runstore(folder, tag + "b", runs, **how)
            tries["before"] = before
        tries["runstore"] = lambda tag: through_runstore(folder, tag, runs, **how)
        bare()  # warm up: imports on every engine
        through_runstore(folder, f"{kind}{engines}warm", 2 * engines, **how)
        best = {name: float("inf") for name in tries}
        for rep in range(repeat):
            for name, attempt in tries.items():
                best[name] = min(best[name], attempt(f"{kind}{engines}r{rep}"))
        if profile:
            profiler = cProfile.Profile()
            profiler.enable()
            through_runstore(folder, f"{kind}{engines}prof", runs, **how)
            profiler.disable()
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(20)
            print(f"cProfile of the coordinator's main thread, {kind}, {engines} engines")
            print(text.getvalue())
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 and 16 engines, 10 rounds")
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--rounds", type=int, default=30, help="runs per engine")
    parser.add_argument("--repeat", type=int, default=3, help="tries; the best is kept")
    parser.add_argument("--only", choices=["ipyparallel", "dask"], help="one of the two")
    parser.add_argument("--baseline", metavar="REV",
                        help="also time the coordinator of runstore/pool.py at this git "
                             "revision (before a change), in the same run")
    parser.add_argument("--results", metavar="NAME",
                        help="write results/NAME.txt (default bench_cluster)")
    parser.add_argument("--profile", action="store_true",
                        help="print a cProfile of the coordinator for one more runstore try")
    args = parser.parse_args()
    sizes, rounds = ([8, 16], 10) if args.quick else (args.sizes, args.rounds)
    kinds = [args.only] if args.only else ["ipyparallel", "dask"]
    baseline = baseline_drain(args.baseline) if args.baseline else None
    report = Report("cluster capacity benchmarks")
    say = report.say

    folder = Path(tempfile.mkdtemp(prefix="runstore-bench-cluster-"))
    # Engines and workers import bench_runs (and this runstore).
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(HERE), str(HERE.parent), *filter(None, [os.environ.get("PYTHONPATH")])])
    os.environ["IPYTHONDIR"] = str(folder / "ipython")
    names = ["bare", *(["before"] if baseline else []), "runstore"]
    heads = {"bare": "bare map", "before": f"at {args.baseline}"[:12], "runstore": "runstore"}
    rows = []
    try:
        say(f"runs sleep {SECONDS * 1000:.0f} ms; {rounds} runs per engine; best of "
            f"{args.repeat}; ideal time {rounds * SECONDS:.2f} s at every size.")
        say("Fraction of the ideal rate (engines / 50 ms), then seconds:")
        say(f"{'executor':12} {'engines':>7} {'runs':>5}  " + "".join(
            f"{heads[n]:>13}" for n in names) + "  " + "".join(f"{heads[n]:>13}" for n in names))
        for kind in kinds:
            for engines in sizes:
                runs = rounds * engines
                best = measure(folder, kind, engines, runs, args.repeat, baseline, args.profile)
                share = {n: fraction(runs, engines, best[n]) for n in names}
                rows.append((kind, engines, share))
                say(f"{kind:12} {engines:7d} {runs:5d}  " + "".join(
                    f"{share[n]:13.0%}" for n in names) + "  " + "".join(
                    f"{best[n]:12.2f}s" for n in names))
        say()
        say("Dask workers are processes (LocalCluster(processes=True, threads_per_worker=1)).")
        for kind, engines, share in rows:
            if engines == max(sizes):
                say(f"{kind} at {engines}: runstore {share['runstore']:.0%} of the ideal "
                    f"(target >= 85%), bare map {share['bare']:.0%}" + (
                        f", runstore at {args.baseline} {share['before']:.0%}"
                        if baseline else ""))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    report.write(args.results or ("bench_cluster_quick" if args.quick else "bench_cluster"))


if __name__ == "__main__":
    main()
