"""Standalone workers: processes that drain a store's pending runs.

``runstore worker STORE`` (or :func:`work`) opens a store, finds the run
classes of its pending runs by their module path, and computes runs until
none it can compute is left. Any number of workers on the store's own host
can drain one store beside a coordinator: each claim is atomic, so no run is
computed twice, and a run whose worker died returns to pending at once. A
worker is a writer like any other, so it refuses a store on a network
filesystem or one that another host writes (:mod:`runstore.writerhost`):
other hosts compute through ipyparallel engines or Dask workers, whose
results travel back to the coordinator. Starting a worker is the explicit
step that allows importing the modules a store names; opening or querying a
store never does.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import signal
import sys
import warnings
from collections.abc import Sequence
from types import FrameType
from typing import Any

from .batch import Batch
from .errors import RunsFailedError, UncomputedRunsWarning, WorkerError
from .identity import type_name
from .pool import limit_threads
from .run import Run
from .store import Store

__all__ = ["import_run_class", "work", "work_in_processes"]


def import_run_class(name: str, modules: Sequence[str] = ()) -> type[Run]:
    """Find the run class a store names, importing its module.

    ``modules`` are imported first, for classes that declare their own name
    (``__runstore_name__``) or live where their name does not say.

    Raises
    ------
    WorkerError
        If the class cannot be found, saying what to do.
    """
    for module in modules:
        importlib.import_module(module)
    found = _registered(name)
    if found is not None:
        return found
    parts = name.split(".")
    if parts[0] == "__main__":
        raise WorkerError(
            f"the run class {name} was defined in the script that added the runs "
            f"(__main__), which a worker cannot import. Move the class into a module "
            f"(say models.py beside the script), import it in the script, and add the "
            f"runs again; or compute them with batch() or batch(processes=N)")
    for split in range(len(parts) - 1, 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for part in parts[split:]:
            target = getattr(target, part, None)
        if isinstance(target, type) and issubclass(target, Run):
            return target
        break
    found = _registered(name)
    if found is not None:
        return found
    raise WorkerError(
        f"cannot import the run class {name}: make its module importable here "
        f"(install it, or add its folder to PYTHONPATH), or name the module that "
        f"defines it with --import")


def _registered(name: str) -> type[Run] | None:
    """A loaded Run subclass whose type name is ``name``, if any."""
    stack: list[type[Run]] = [Run]
    while stack:
        cls = stack.pop()
        if cls is not Run and type_name(cls) == name:
            return cls
        stack.extend(cls.__subclasses__())
    return None


def work(path: str, batch: str | None = None, modules: Sequence[str] = (),
         verbose: int = 0, skipped: dict[str, str] | None = None) -> dict[str, int]:
    """Compute pending runs of a store until none this worker can compute is left.

    Returns the number of runs computed per batch. Runs whose class cannot be
    imported are left pending: a line on standard error says why, once per
    run type, and ``skipped`` (if given) maps each such type to the reason.
    Failed runs are recorded as failed and the worker goes on.
    """
    store = Store(path)
    computed: dict[str, int] = {}
    skipped = {} if skipped is None else skipped
    try:
        while True:  # each batch call keeps its leases alive while it computes
            progress = 0
            for name in [batch] if batch else store.batch_names():
                progress += _drain_batch(store, name, modules, verbose, computed, skipped)
            released = store.recover()  # runs of workers that died return to pending
            if not progress and not released:
                return computed
    finally:
        store.close()


def _drain_batch(store: Store, name: str, modules: Sequence[str], verbose: int,
                 computed: dict[str, int], skipped: dict[str, str]) -> int:
    target = Batch(name, store=store)
    target._summarize = False  # the worker sums its calls up in one line of its own
    # Only run types the store's own runs name: an imported run's type names a
    # module from another file, which is imported only once the run is trusted.
    for rtype in store.pending_run_types(target._id, trusted=True):
        try:
            target._classes[rtype] = import_run_class(rtype, modules)
        except WorkerError as exc:
            if rtype not in skipped:
                print(f"runstore worker: skipping runs of {rtype}: {exc}", file=sys.stderr,
                      flush=True)
            skipped[rtype] = str(exc)
    if not target._classes:
        return 0
    try:
        with warnings.catch_warnings():  # the worker reports skipped run types itself
            warnings.simplefilter("ignore", UncomputedRunsWarning)
            target(verbose=verbose)
    except RunsFailedError as exc:
        if verbose:
            print(f"runstore worker: {exc}", flush=True)
    done = target._recorded  # this worker's runs, not those others finished meanwhile
    if done:
        computed[name] = computed.get(name, 0) + done
    return done


def work_in_processes(path: str, processes: int, batch: str | None = None,
                      modules: Sequence[str] = ()) -> int:
    """Run ``processes`` workers on this host and wait for them.

    Each limits BLAS, OpenMP and FFTW threads to its share of the cores.
    Returns the number of runs they computed (done or failed).
    """
    share = max(1, (os.cpu_count() or 1) // processes)
    computed = multiprocessing.Value("q", 0)
    workers = [multiprocessing.Process(target=_limited_work,
                                       args=(share, path, batch, tuple(modules), computed))
               for _ in range(processes)]
    for process in workers:
        process.start()
    try:
        for process in workers:
            process.join()
    except KeyboardInterrupt:
        _stop(workers)
        raise
    failed = [p.exitcode for p in workers if p.exitcode]
    if failed:
        raise WorkerError(f"{len(failed)} of {processes} worker processes exited with "
                          f"status {failed}; their runs return to pending")
    return int(computed.value)


def _stop(workers: Sequence[multiprocessing.Process]) -> None:
    """Ctrl-C: have each worker process keep what it finished and stop, and wait for them."""
    for process in workers:
        if process.is_alive() and process.pid is not None:
            try:
                os.kill(process.pid, signal.SIGTERM)  # once: see _limited_work
            except ProcessLookupError:
                pass  # it ended meanwhile
    for process in workers:
        process.join()


def _limited_work(threads: int, path: str, batch: str | None, modules: Sequence[str],
                  computed: Any) -> None:
    """A worker process of ``runstore worker --processes N``.

    Ctrl-C at a terminal signals every process of the group at once; here it
    is ignored, and the parent sends SIGTERM once, which stops the worker as
    Ctrl-C would (its finished runs kept, the others pending again), then
    reports for all of them in one line. So no process prints a traceback,
    and a second signal cannot cut the giving back short.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _interrupt)
    try:  # the SIGTERM may come while importing what limiting threads needs
        limit_threads(threads)
        done = sum(work(path, batch, modules).values())
    except KeyboardInterrupt:
        sys.exit(130)  # what Ctrl-C means; the parent tells what was kept
    with computed.get_lock():
        computed.value += done


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM in a worker process: stop as Ctrl-C stops a batch call (once)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt
