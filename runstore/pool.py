"""Draining a batch on an executor: local processes or any concurrent.futures.Executor.

The coordinator (the process that called the batch) claims pending runs in
chunks, atomically, as in serial mode. Each chunk travels to a worker as the
run class and the runs' own parameter documents (never the batch); the worker
computes the runs and encodes their results (so what comes back is JSON text
and numpy arrays); the coordinator commits outcomes in batches as they
arrive, writing arrays to new side files first. Chunks are sized from the
measured run times so that each is about a tenth of a second of work, or
longer with many workers, so that the coordinator sends at most about
``MAX_CHUNK_RATE`` chunks a second (claiming, sending and collecting a chunk
costs it milliseconds); but never more than an even share of what is left (so
that no worker idles at the end), and twice as many chunks as workers are kept
in flight. Leases of claimed runs
are extended while they wait or compute.

A heartbeat thread keeps the leases alive while runs compute. A worker that
dies is seen by its pid (a zombie counts as dead), not only through the pool's
breakage: a worker killed while it sends a result would otherwise leave the
pool waiting for the rest of the message forever. If a worker process dies
(killed, or crashed in compiled code), its pool is stopped (its other workers
killed) and every run in flight is lost with it: they return to PENDING and
become suspects, and the pool is started again. Suspects then run alone, one
task at a time, so that a death can be attributed: a run whose worker dies
twice while it runs alone is recorded FAILED; the others complete normally.
On an executor that goes on when one worker dies (an ipyparallel cluster,
where an engine computes one task at a time and only its task is lost),
suspects run one per task, side by side: a host that dies does not slow the
rest of the batch down to one task at a time.
An executor given by the caller cannot be restarted: its runs return to
PENDING and the error says so.

A Dask client's executor (``client.get_executor()``) is recognised by its
attributes, without importing Dask: twice as many chunks as its workers'
threads are kept in flight, and each chunk is a new task (never one Dask
takes for a task it already has). Dask computes elsewhere the tasks of a
worker that dies; when it gives up on a task (``KilledWorker``) its runs are
requeued to run alone, and one that Dask gives up on alone is recorded FAILED.

This module knows nothing of ipyparallel; an ipyparallel cluster is reached
through its ``concurrent.futures`` executor.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

from .errors import PoolError
from .run import Run, code_fingerprint, compute
from .schema import RunState
from .errors import RunsUnfinishedError
from .leases import process_is_dead
from .store import Completion, RunRow

if TYPE_CHECKING:
    from .batch import Batch

__all__ = ["compute_chunk", "drain", "process_pool", "limit_threads"]

#: Runs claimed in one transaction at most (each is a bound SQL variable).
MAX_CLAIM = 4096
#: Seconds of work a chunk should hold, once run times are known.
CHUNK_SECONDS = 0.1
#: Chunks a second the coordinator should send in all: with many workers,
#: chunks are made longer than CHUNK_SECONDS. Each costs the coordinator
#: milliseconds (claiming it, and 2-6 ms to send it through ipyparallel on a
#: busy 2-core machine), and Dask's executor more (one scheduler round trip
#: to send it, more to fetch its result): see benchmarks/bench_cluster.py.
MAX_CHUNK_RATE = 50.0
#: A run whose worker died this many times while it ran alone is recorded FAILED.
MAX_DEATHS = 2
#: Seconds between looks at the futures, the buffer and the workers' pids.
_POLL = 0.5
#: Seconds to wait for an abandoned pool's manager thread to end.
_ABANDON_SECONDS = 10.0


def limit_threads(threads: int) -> None:
    """Limit BLAS, OpenMP, numexpr and FFTW threads in this (worker) process."""
    from .performance.threads import set_num_threads

    set_num_threads(threads)


#: FFTW wisdom in this process: the store wisdom last taken, and the plan count
#: when wisdom was last taken or handed back.
_wisdom: dict[str, Any] = {"taken": (), "shared_at": 0}


def take_wisdom(wisdom: Sequence[bytes]) -> None:
    """Import a store's FFTW wisdom into this process (once per wisdom)."""
    if wisdom and tuple(wisdom) != _wisdom["taken"]:
        from .performance import fft

        fft.import_wisdom(wisdom)
        _wisdom["taken"] = tuple(wisdom)
        _wisdom["shared_at"] = fft.plans_made()


def new_wisdom() -> tuple[bytes, ...]:
    """FFTW wisdom to hand back, if this process planned FFTs since it last did."""
    fft = sys.modules.get("runstore.performance.fft")
    if fft is None or fft.plans_made() == _wisdom["shared_at"]:
        return ()
    _wisdom["shared_at"] = fft.plans_made()
    return tuple(fft.export_wisdom())


def _setup_worker(threads: int, parent: int) -> None:
    """Initializer of pool workers: thread limits, Ctrl-C left to the coordinator, and
    exit if the coordinator dies."""
    # Ctrl-C signals the terminal's whole process group: a worker would print
    # its own traceback. The coordinator keeps what was computed and kills the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    limit_threads(threads)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True,
                     name="runstore-parent-watch").start()


def _watch_parent(parent: int) -> None:
    # A killed coordinator cannot shut its pool down, and its workers, which
    # hold both ends of the pool's queues, would wait for work forever.
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def process_pool(processes: int, threads: int | None = None) -> ProcessPoolExecutor:
    """A pool of local worker processes, each limited to its share of the cores."""
    share = threads if threads is not None else max(1, (os.cpu_count() or 1) // processes)
    return ProcessPoolExecutor(max_workers=processes, initializer=_setup_worker,
                               initargs=(share, os.getpid()))


def compute_chunk(cls: type[Run], rows: Sequence[RunRow], allow_pickle: bool,
                  wisdom: Sequence[bytes] = ()) -> list[Completion]:
    """Compute a chunk of runs in a worker and return their encoded outcomes.

    Each outcome names this host and process as the run's provenance.

    ``wisdom`` is the store's FFTW wisdom, taken on a worker's first chunk;
    wisdom the worker gains travels back on the first completion.
    """
    take_wisdom(wisdom)
    completions = [compute(cls, row, allow_pickle) for row in rows]
    host, pid = socket.gethostname(), os.getpid()
    for completion in completions:  # the provenance names who computed, not who claimed
        completion.host, completion.pid = host, pid
    gained = new_wisdom()
    if gained and completions:
        completions[0].wisdom = gained
    return completions


def drain(batch: Batch, executor: Executor | None, processes: int | None,
          bar: Any, restartable: bool, workers: int | None = None,
          lost: Callable[[BaseException], bool] | None = None, pending: int = 0,
          stalled: Callable[[], str | None] | None = None) -> list[str]:
    """Compute the batch's pending runs on an executor; return the failed ids.

    With ``executor=None``, a pool of ``processes`` local processes is made
    (and remade if a worker dies). ``lost(exc)`` tells whether a task's
    exception means its worker died (the executor going on with the others,
    as an ipyparallel cluster does when an engine dies): its runs are
    requeued, not failed. ``stalled()`` tells why the executor can compute
    nothing now (no worker left, for long enough), or None: then the drain
    stops with a :class:`~runstore.errors.PoolError` naming the runs that are
    pending again, instead of waiting for workers that may never come.
    """
    return _Drain(batch, executor, processes, bar, restartable, workers, lost, pending,
                  stalled).run()


class _Drain:
    """The state of one parallel drain."""

    def __init__(self, batch: Batch, executor: Executor | None, processes: int | None,
                 bar: Any, restartable: bool, workers: int | None,
                 lost: Callable[[BaseException], bool] | None, pending: int,
                 stalled: Callable[[], str | None] | None = None) -> None:
        self.batch, self.store, self.bar = batch, batch.store, bar
        self.stalled = stalled or (lambda: None)
        self.processes = processes or 1
        self.owns_pool = executor is None
        self.restartable = restartable
        self.lost = lost or (lambda exc: False)
        # An executor that goes on when a worker dies (an ipyparallel cluster,
        # one task per engine at a time) loses only that worker's task: a
        # suspect in a task of its own is blamed exactly, side by side with
        # others. A broken pool loses every task: a suspect must run alone.
        self.side_by_side = lost is not None
        self.executor: Executor = executor if executor is not None else process_pool(
            self.processes)
        self.workers = workers or (self.processes if executor is None
                                   else _worker_count(executor))
        self.in_flight: dict[Future[list[Completion]], list[RunRow]] = {}
        self.buffer: list[Completion] = []
        self.failed: list[str] = []
        self.after, self.chunk = -1, 1
        self.remaining = pending  # runs not yet claimed, as far as this drain knows
        self.suspects: set[str] = set()  # lost when a pool broke: they run alone
        self.deaths: dict[str, int] = {}  # deaths of a worker running a suspect alone
        self.claimed: dict[int, str] = {}  # claimed by this drain, not yet recorded
        self.last_flush = time.monotonic()
        self.wisdom = self.store.fftw_wisdom()

    def run(self) -> list[str]:
        with self.store.draining() as reserve:
            try:
                while self._top_up() or self.in_flight:
                    done, _ = wait(list(self.in_flight), timeout=_POLL,
                                   return_when=FIRST_COMPLETED)
                    for future in done:
                        rows = self.in_flight.pop(future, None)
                        if rows is not None:  # else harvested when a worker died
                            self._collect(future, rows)
                    self._maintain()
                self._flush()
            except BaseException as exc:
                for future in self.in_flight:
                    future.cancel()
                if self.owns_pool:
                    _abandon(self.executor)
                instead = self.store.give_back(self.buffer, self.claimed, self.batch._id,
                                               exc, reserve, self.batch._storage_now)
                if instead is not None:
                    raise instead from exc
                raise
        if self.owns_pool:
            self.executor.shutdown()
        if self.claimed:  # never happens unless something above is wrong: say so
            self.store.release_runs(list(self.claimed))
            raise RunsUnfinishedError(f"batch {self.batch.name!r}", {
                rid: "claimed by this call but neither recorded nor released; it is "
                     "pending again" for rid in self.claimed.values()})
        return self.failed

    def _flush(self) -> None:
        """Record the buffered outcomes; they are no longer this drain's to give back."""
        done = [c for c in self.buffer if c.state is not RunState.FAILED]
        self.store.complete(self.buffer, self.batch._id, self.batch._storage_now)
        self.batch._recorded += len(self.buffer)
        self.failed += [c.run_id for c in done if c.state is RunState.FAILED]  # unstorable
        for completion in self.buffer:
            self.claimed.pop(completion.run_key, None)
        self.buffer, self.last_flush = [], time.monotonic()

    def _top_up(self) -> bool:
        """Claim and submit chunks until enough are in flight; False when none is left.

        The chunks missing are claimed in one transaction and split in batch
        order: with many workers, a claim per chunk would cost the coordinator
        a write transaction for each.
        """
        types = list(self.batch._classes)
        alone = self.suspects and not self.side_by_side
        target = 1 if alone else 2 * self.workers
        while len(self.in_flight) < target:
            share = -(-self.remaining // (2 * self.workers))  # an even share, rounded up
            size = 1 if self.suspects else max(1, min(self.chunk, share))
            slots = min(target - len(self.in_flight), max(1, MAX_CLAIM // size))
            rows = self.store.claim(self.batch._id, types, size * slots, self.after,
                                    positions=self.batch._only)
            if not rows:
                return bool(self.in_flight)
            self.claimed.update((row.key, row.id) for row in rows)
            self.remaining = max(0, self.remaining - len(rows))
            self.after = max(row.position for row in rows)
            for start in range(0, len(rows), size):
                unsent = self._submit(rows[start:start + size])
                if unsent:  # the pool broke before we noticed
                    self._worker_died(unsent + rows[start + size:])
                    return True
        return True

    def _submit(self, chunk: list[RunRow]) -> list[RunRow]:
        """Send a chunk to the executor, one task per run type.

        Returns the runs that could not be sent because the pool broke (none
        when all went); the groups sent are in flight.
        """
        by_type: dict[str, list[RunRow]] = {}
        for row in chunk:
            by_type.setdefault(row.run_type, []).append(row)
        groups = list(by_type.values())
        for i, group in enumerate(groups):
            cls = self.batch._classes[group[0].run_type]
            try:
                future = self.executor.submit(compute_chunk, cls, group,
                                              self.store.allow_pickle, self.wisdom,
                                              **_submit_options(self.executor))
            except BrokenProcessPool:
                return [row for rest in groups[i:] for row in rest]
            self.in_flight[future] = group
        return []

    def _collect(self, future: Future[list[Completion]], rows: list[RunRow]) -> None:
        try:
            completions = future.result()
        except BrokenProcessPool:
            self._worker_died(rows)
            return
        except Exception as exc:
            if self.lost(exc):  # its worker died; the executor goes on
                self._requeue(rows)
                return
            if _dask_gave_up(exc):  # workers died while it ran: Dask gave up on the task
                if not (len(rows) == 1 and rows[0].id in self.suspects):
                    self._requeue(rows)  # they run again, each alone
                    return
                exc = PoolError(  # it ran alone, so it (or its host) is to blame
                    f"Dask gave up on it, running alone ({exc}); it is not retried. "
                    f"batch(retry_failed=True) runs it again")
            # the chunk or its results could not travel
            completions = [_failed(row, self.batch, exc) for row in rows]
        self._keep_wisdom([c.wisdom for c in completions if c.wisdom])
        for completion in completions:
            self.suspects.discard(completion.run_id)
            self.buffer.append(completion)
            if completion.state is RunState.FAILED:
                self.failed.append(completion.run_id)
        if self.bar is not None:
            self.bar.update(len(completions))
            if self.failed:
                self.bar.set_postfix(failed=len(self.failed), refresh=False)
        runtimes = [c.runtime for c in completions if c.runtime is not None]
        if runtimes:
            mean = max(sum(runtimes) / len(runtimes), 1e-6)
            seconds = max(CHUNK_SECONDS, self.workers / MAX_CHUNK_RATE)
            self.chunk = max(1, min(1000, round(seconds / mean)))

    def _keep_wisdom(self, gained: list[tuple[bytes, ...]]) -> None:
        """Merge FFTW wisdom from workers with the store's, and keep it there."""
        if not gained:
            return
        from .performance import fft

        take_wisdom(self.wisdom)
        for wisdom in gained:
            fft.import_wisdom(wisdom)
        merged = fft.export_wisdom()
        self.store.save_fftw_wisdom(merged)
        self.wisdom = merged

    def _worker_died(self, rows: list[RunRow]) -> None:
        """A worker process died: requeue (or fail) the runs that were in flight."""
        _abandon(self.executor)  # broken, or about to hang on the dead worker's pipe
        lost = list(rows)
        finished = {f: group for f, group in self.in_flight.items()
                    if f.done() and not f.cancelled() and f.exception() is None}
        for group in (g for f, g in self.in_flight.items() if f not in finished):
            lost += group
        self.in_flight.clear()
        for future, group in finished.items():  # computed before the pool broke: keep
            self._collect(future, group)
        self._give_up(lost)
        if not (self.owns_pool and self.restartable):
            raise PoolError(
                "a worker process of the executor died; the runs it had in flight are "
                "pending again. Restart the executor and call the batch again.")
        self.executor = process_pool(self.processes)

    def _requeue(self, rows: list[RunRow]) -> None:
        """One task's worker died while the executor goes on: requeue its runs."""
        self._give_up(rows)

    def _give_up(self, lost: list[RunRow]) -> None:
        """Record what is buffered, and return the lost runs to pending (or fail them)."""
        self._blame(lost)
        self._flush()
        keys = [row.key for row in lost if row.key in self.claimed]
        self.store.release_runs(keys)
        for key in keys:
            self.claimed.pop(key, None)
        self.after = -1  # the requeued runs sit behind the cursor

    def _blame(self, lost: list[RunRow]) -> None:
        """Fail a suspect that was alone when its worker died twice; suspect the rest."""
        self.remaining += len(lost)  # they go back to pending (or are failed below)
        if len(lost) == 1 and lost[0].id in self.suspects:  # it ran alone: its fault
            rid = lost[0].id
            self.deaths[rid] = self.deaths.get(rid, 0) + 1
            if self.deaths[rid] >= MAX_DEATHS:
                self.suspects.discard(rid)
                self.failed.append(rid)
                self.buffer.append(_failed(lost[0], self.batch, PoolError(
                    f"its worker process died each of the {self.deaths[rid] + 1} times it "
                    f"ran (killed, or crashed in compiled code); it is not retried")))
        else:
            self.suspects.update(row.id for row in lost)

    def _maintain(self) -> None:
        if self.buffer and time.monotonic() - self.last_flush >= 1.0:
            self._flush()
        if self.in_flight and _dead_workers(self.executor):
            # Seen by its pid, whether or not the pool noticed: a worker killed
            # while it sends a result leaves the pool waiting for the rest forever.
            self._worker_died([])
        if self.in_flight:
            self._check_stalled()

    def _check_stalled(self) -> None:
        """Stop if the executor can compute nothing (its runs return to pending)."""
        reason = self.stalled()
        if reason is None:
            return
        held = sorted(set(self.claimed.values()))
        shown = ", ".join(rid[:12] for rid in held[:10]) + (" ..." if len(held) > 10 else "")
        raise PoolError(
            f"{reason}. Nothing is lost: the results recorded so far are kept, the "
            f"{len(held)} runs of batch {self.batch.name!r} in flight ({shown}) are pending "
            f"again, and so are the {self.remaining} not yet started. Call the batch again "
            f"once workers are running")


def _failed(row: RunRow, batch: Batch, exc: BaseException) -> Completion:
    cls = batch._classes.get(row.run_type)
    message = str(exc)
    if not isinstance(exc, PoolError):
        message = (f"the run or its result could not be sent between processes: {exc}. "
                   f"Make the run class importable, or return values runstore can encode")
    now = time.time()
    return Completion(row.id, row.key, RunState.FAILED, error_type=type(exc).__qualname__,
                      error_message=message, traceback=None, started_at=now,
                      finished_at=now, runtime=None,
                      code_fingerprint=code_fingerprint(cls) if cls else None)


def _dead_workers(executor: Executor) -> list[int]:
    """The pids of a process pool's workers that are gone (zombies count)."""
    processes = getattr(executor, "_processes", None)  # ProcessPoolExecutor's workers
    if not isinstance(executor, ProcessPoolExecutor) or not processes:
        return []
    return [pid for pid in list(processes) if process_is_dead(pid)]


def _abandon(executor: Executor) -> None:
    """Stop a broken process pool at once, its workers killed, its threads ended.

    A worker killed while it sends a result leaves the pool's manager thread
    reading the rest of the message forever (and the other workers waiting
    for the pipe's lock): with every worker killed, closing this process's
    copy of the pipe's writing end lets that read meet end-of-file, and the
    pool ends as broken. Must run before a new pool is forked, whose workers
    would inherit that end.
    """
    if not isinstance(executor, ProcessPoolExecutor):
        return
    for process in list((getattr(executor, "_processes", None) or {}).values()):
        try:
            process.kill()
        except (OSError, ValueError, AttributeError):
            pass  # gone already
    results = getattr(executor, "_result_queue", None)
    manager = getattr(executor, "_executor_manager_thread", None)
    executor.shutdown(wait=False, cancel_futures=True)
    writer = getattr(results, "_writer", None)
    if writer is not None:
        writer.close()
    if manager is not None:
        manager.join(timeout=_ABANDON_SECONDS)


def _worker_count(executor: Executor) -> int:
    count = getattr(executor, "_max_workers", None)
    if isinstance(count, int) and count > 0:
        return count
    threads = _dask_threads(executor)
    return threads if threads > 0 else (os.cpu_count() or 1)


# A Dask client's executor (``client.get_executor()``) is recognised by its
# attributes, without importing Dask: its client counts the workers' threads;
# it runs a task again on another worker when one dies, and gives up with
# ``KilledWorker`` after ``allowed_failures`` deaths.

def _dask_client(executor: Executor) -> Any:
    client = getattr(executor, "_client", None)
    return client if callable(getattr(client, "nthreads", None)) else None


def _dask_threads(executor: Executor) -> int:
    """The threads of all workers of a Dask executor's cluster (0 if it is not one)."""
    client = _dask_client(executor)
    try:
        return sum(client.nthreads().values()) if client is not None else 0
    except Exception:  # not a Dask client after all, or its scheduler is gone
        return 0


def _submit_options(executor: Executor) -> dict[str, Any]:
    # Dask names a task by hashing its arguments (pure=True): runs requeued and
    # sent again would get the old task's name, and its outcome (KilledWorker).
    return {"pure": False} if _dask_client(executor) is not None else {}


def _dask_gave_up(exc: BaseException) -> bool:
    """Whether Dask gave up on a task because its workers died (``KilledWorker``)."""
    return type(exc).__name__ == "KilledWorker" and type(exc).__module__.startswith(
        "distributed")

