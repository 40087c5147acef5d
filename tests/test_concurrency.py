"""Processes that start together: new stores, existing stores, batches, migrations.

Each scenario starts the same work in several real processes released at the
same instant by a barrier, for several rounds; every process must succeed and
every run must be in its batch exactly once.
"""

from __future__ import annotations

import multiprocessing
import shutil
import sqlite3
import traceback
from pathlib import Path
from typing import Any

import pytest

from runstore import Batch, Store
from runstore.schema import APPLICATION_ID, SCHEMA_REVISION

from .runs import Sweep

PROCESSES = 6
FIXTURE_0001 = Path(__file__).parent / "fixtures" / "store-0001"
#: (scenario, round): what every process does, in this order.
SCHEDULE = [("new", 0), ("new", 1), ("new", 2), ("existing", 0), ("existing", 1),
            ("existing", 2), ("migrate", 0), ("migrate", 1), ("new-computed", 0)]


def _levels(index: int, round_: int) -> dict[str, Any]:
    """Overlapping parameter sets: all share A in 0..7, each adds its own A too."""
    return {"A": [*range(8), 100 + index], "B": [round_ % 2, 5], "C": [0]}


def _add(batch: Batch, index: int, round_: int) -> None:
    levels = _levels(index, round_)
    if index % 2:  # half of the processes add their runs one at a time
        for a in levels["A"]:
            for b in levels["B"]:
                batch.add_run(Sweep, {"A": a, "B": b, "C": 0})
    else:
        batch.add_factorial_runs(Sweep, levels)


def _step(folder: Path, scenario: str, round_: int, index: int) -> int:
    """One process's part of a round; returns the number of runs it sees in its batch."""
    if scenario in ("new", "new-computed"):
        batch = Batch("sweep", path=folder / f"{scenario}-{round_}")
        _add(batch, index, round_)
        if scenario == "new-computed":
            batch(verbose=0)
    elif scenario == "existing":
        batch = Batch(f"round-{round_ % 2}", store=folder / "existing.db")
        _add(batch, index, round_)
    else:
        batch = Batch("fixture", path=folder / f"old-{round_}")
    count = len(batch.run)
    batch.store.close()
    return count


def _worker(folder: Path, index: int, barrier: Any, results: Any) -> None:
    for scenario, round_ in SCHEDULE:
        try:
            barrier.wait(timeout=120)
            results.put((scenario, round_, index, None, _step(folder, scenario, round_, index)))
        except BaseException:  # reported to the test, which fails on it
            results.put((scenario, round_, index, traceback.format_exc(), None))


@pytest.fixture(scope="module")
def outcome(tmp_path_factory):
    """Run the whole schedule once in PROCESSES processes; return (folder, results)."""
    folder = tmp_path_factory.mktemp("together")
    seed = Batch("round-1", store=folder / "existing.db")
    seed.add_factorial_runs(Sweep, {"A": [0, 3, 50], "B": [5], "C": [0]})
    seed.store.close()
    for round_ in range(2):
        shutil.copytree(FIXTURE_0001, folder / f"old-{round_}")
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    results = context.Queue()
    workers = [context.Process(target=_worker, args=(folder, i, barrier, results))
               for i in range(PROCESSES)]
    for worker in workers:
        worker.start()
    try:
        found = [results.get(timeout=300) for _ in range(PROCESSES * len(SCHEDULE))]
    finally:
        for worker in workers:
            worker.join(timeout=60)
            if worker.is_alive():
                worker.kill()
                worker.join()
        results.close()
        results.join_thread()
    return folder, found


def _expected(rounds: list[int], extra: set[tuple[int, int]] = frozenset()) -> set[tuple[int, int]]:
    return {(a, b) for r in rounds for i in range(PROCESSES)
            for a in _levels(i, r)["A"] for b in _levels(i, r)["B"]} | set(extra)


def _batch_runs(db: Path, name: str) -> list[tuple[int, int]]:
    """The (A, B) of every entry of a batch, read with sqlite3 through its view."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        entries = conn.execute("SELECT COUNT(*) FROM entries e JOIN batches b ON "
                               "b.id = e.batch_id WHERE b.name = ?", (name,)).fetchone()[0]
        rows = conn.execute(f'SELECT A, B FROM "{name}"').fetchall()
    conn.close()
    assert entries == len(rows)
    return [tuple(row) for row in rows]


@pytest.mark.slow
def test_every_process_succeeds_in_every_round(outcome):
    _, found = outcome
    errors = [(scenario, round_, index, error) for scenario, round_, index, error, _ in found
              if error is not None]
    assert errors == [], "\n".join(e[3] for e in errors)
    assert len(found) == PROCESSES * len(SCHEDULE)


@pytest.mark.slow
@pytest.mark.parametrize("scenario, round_", [s for s in SCHEDULE if s[0].startswith("new")])
def test_a_new_store_made_by_processes_together_holds_each_run_once(outcome, scenario, round_):
    folder, _ = outcome
    db = folder / f"{scenario}-{round_}" / "_res" / "sweep.db"
    runs = _batch_runs(db, "sweep")
    assert len(runs) == len(set(runs))
    assert set(runs) == _expected([round_])
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (SCHEMA_REVISION,)]
        assert conn.execute("SELECT COUNT(*) FROM batches").fetchone()[0] == 1
        states = dict(conn.execute("SELECT state, COUNT(*) FROM runs GROUP BY state"))
    conn.close()
    if scenario == "new-computed":
        assert states == {"done": len(runs)}


@pytest.mark.slow
def test_an_existing_store_gets_each_run_once_in_each_batch(outcome):
    folder, _ = outcome
    db = folder / "existing.db"
    even = _batch_runs(db, "round-0")
    odd = _batch_runs(db, "round-1")
    assert len(even) == len(set(even)) and len(odd) == len(set(odd))
    assert set(even) == _expected([0, 2])
    assert set(odd) == _expected([1], {(0, 5), (3, 5), (50, 5)})
    assert odd[:3] == [(0, 5), (3, 5), (50, 5)]  # what was there stays first, in order
    with sqlite3.connect(db) as conn:
        ids = conn.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM runs").fetchone()
        positions = conn.execute(
            "SELECT batch_id, COUNT(*), MAX(position) FROM entries GROUP BY batch_id").fetchall()
    conn.close()
    assert ids[0] == ids[1] == len(set(even) | set(odd))
    assert all(count == top + 1 for _, count, top in positions)  # no gaps


@pytest.mark.slow
@pytest.mark.parametrize("round_", [0, 1])
def test_an_old_store_upgraded_by_processes_together_is_upgraded_once(outcome, round_):
    folder, found = outcome
    counts = {count for scenario, r, _, _, count in found if (scenario, r) == ("migrate", round_)}
    assert counts == {10}
    db = folder / f"old-{round_}" / "_res" / "fixture.db"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (SCHEMA_REVISION,)]
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    batch = Batch("fixture", store=Store(db, readonly=True))
    assert len(batch.run) == 10 and all(run.done for run in batch.run)
