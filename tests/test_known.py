"""What a store's queries keep between calls: a connection, counts and slots of one state,
and the conditions they made. Nothing kept may change an answer."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import runstore
from runstore import Batch, Store
from runstore.encoding import encode, indexed
from runstore.errors import QueryError, QueryTimeoutError
from runstore.query import Condition, Known, Query, _numeric_order

from .runs import Anything, Sweep
from .test_slots import slot_table, through_parameters


def ids(batch: Batch, **conditions: Any) -> list[str]:
    return [run.id for run in batch.get_runs_with(**conditions)]


def statements(store: Store) -> list[str]:
    """Collects what the store's kept reading connection runs from now on."""
    seen: list[str] = []
    store._kept_reader()[0].set_trace_callback(seen.append)
    return seen


def sweep(path: Path) -> Batch:
    batch = Batch("k", path=path)
    batch.add_factorial_runs(Sweep, {"A": [0, 1, 2], "B": list(range(20)), "C": [5, 6]})
    return batch


def in_process(path: Path, code: str) -> None:
    """Runs ``code`` in a new Python process with ``batch`` opened on the store at ``path``."""
    script = textwrap.dedent(f"""
        from runstore import Batch
        from tests.runs import Sweep, Anything
        batch = Batch("k", path={str(path)!r})
    """) + textwrap.dedent(code)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_repeated_query_counts_nothing_again_until_the_store_changes(tmp_path):
    batch = sweep(tmp_path)
    first = ids(batch, A=1, B=3)
    seen = statements(batch.store)
    assert ids(batch, B=3, A=1) == first and len(first) == 2
    counted = [s for s in seen if "parameter_counts" in s or "batch_columns" in s]
    assert counted == [], seen  # the counts and slots of this state were read before
    assert any("PRAGMA data_version" in s for s in seen)
    seen.clear()
    batch.add_run(Sweep, {"A": 1, "B": 3, "C": 7})  # a commit: counts and slots read again
    assert len(ids(batch, A=1, B=3)) == 3
    assert any("parameter_counts" in s for s in seen), seen


def test_runs_added_by_another_process_are_found_by_the_next_query(tmp_path):
    batch = sweep(tmp_path)
    assert len(ids(batch, A=1, C=5)) == 20
    in_process(tmp_path, """
        batch.add_factorial_runs(Sweep, {"A": [1], "B": [100, 101], "C": [5]})
        batch.add_run(Anything, {"A": 1, "D": 2.5, "C": 5})
    """)
    assert len(ids(batch, A=1, C=5)) == 23
    found = ids(batch, D=2.5, A=1)  # D got a slot in the other process
    assert len(found) == 1 and "D" in slot_table(batch.store.path)
    for conditions in ({"A": 1, "C": 5}, {"D__ge": 2, "A": 1}, {"B__ge": 100, "C": 5}):
        assert ids(batch, **conditions) == through_parameters(batch, conditions)


def test_a_result_condition_counted_to_none_is_counted_again_once_results_exist(tmp_path):
    batch = Batch("k", path=tmp_path)
    batch.add_factorial_runs(Sweep, {"A": [0], "B": list(range(20)), "C": [5, 6]})
    batch(verbose=0)  # results from 5 to 6
    batch.add_factorial_runs(Sweep, {"A": [1, 2], "B": list(range(20)), "C": [5, 6]})
    # No result is 20 or more: the result condition is counted to no run, and no
    # other statement runs.
    seen = statements(batch.store)
    assert ids(batch, result__val__ge=20, A=2) == []
    assert not any(s.startswith("SELECT e.position") for s in seen), seen
    in_process(tmp_path, """
        batch.add_run(Sweep, {"A": 0, "B": 0, "C": 5})  # (stored: its class, for this process)
        batch(verbose=0)
    """)
    found = batch.get_runs_with(result__val__ge=20, A=2)
    assert found and all(r.parameters["A"] * r.parameters["B"] + r.parameters["C"] >= 20
                         for r in found)
    assert len(found) == len([1 for b in range(20) for c in (5, 6) if 2 * b + c >= 20])


def test_slots_moved_by_another_connection_are_read_again(tmp_path):
    """A store whose slots were given anew (by check --fix, or a later runstore) is read anew."""
    batch = sweep(tmp_path)
    expected = {key: ids(batch, **conditions) for key, conditions in {
        "A=1,B=3": {"A": 1, "B": 3}, "B=3,C=6": {"B": 3, "C": 6},
        "A=2,C>=6": {"A": 2, "C__ge": 6}}.items()}
    slots = slot_table(batch.store.path)
    assert len(set(slots.values())) == 3
    # Swap the slots of A and B, and their columns, as one consistent change.
    a, b = slots["A"], slots["B"]
    with sqlite3.connect(batch.store.path) as db:
        db.execute("UPDATE batch_columns SET slot = CASE name WHEN 'A' THEN ? ELSE ? END "
                   "WHERE source = 'parameter' AND name IN ('A', 'B')", (b, a))
        db.execute(f"UPDATE entries SET v{a} = v{b}, v{b} = v{a}")
    db.close()
    assert slot_table(batch.store.path)["A"] == b
    for key, conditions in {"A=1,B=3": {"A": 1, "B": 3}, "B=3,C=6": {"B": 3, "C": 6},
                            "A=2,C>=6": {"A": 2, "C__ge": 6}}.items():
        assert ids(batch, **conditions) == expected[key], key


def test_threads_querying_at_once_get_the_answers_one_thread_gets(tmp_path):
    batch = sweep(tmp_path)
    queries = [{"A": a, "B": b} for a in range(3) for b in range(0, 20, 3)] + [
        {"B__lt": 4, "C": 6}, {"A__in": [0, 2], "B": 7}, {"C": 5, "B__ge": 18}]
    expected = [ids(batch, **q) for q in queries]
    errors: list[BaseException] = []
    answers: list[list[list[str]]] = []

    def reader() -> None:
        try:
            answers.append([ids(batch, **q) for _ in range(20) for q in queries])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert len(answers) == 4
    for answer in answers:
        assert answer == expected * 20


def test_a_forked_process_queries_on_its_own_connection(tmp_path):
    batch = sweep(tmp_path)
    expected = ids(batch, A=1, B=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork in a threaded process
        pid = os.fork()
    if pid == 0:  # the child: the parent's connection is not used here
        code = 1
        try:
            kept = batch.store._kept
            code = 0 if ids(batch, A=1, B=3) == expected and batch.store._kept is not kept else 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + 60
    while not (waited := os.waitpid(pid, os.WNOHANG))[0] and time.monotonic() < deadline:
        time.sleep(0.05)
    if not waited[0]:  # a child stuck on a lock another thread held at the fork
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child did not finish in 60 s")
    assert os.waitstatus_to_exitcode(waited[1]) == 0
    assert ids(batch, A=1, B=3) == expected  # the parent's connection still serves it


def test_closing_the_store_closes_the_kept_connection(tmp_path):
    sweep(tmp_path).store.close()
    db = tmp_path / "_res" / "k.db"
    store = Store(db, readonly=True)
    assert len(store.query(1, {"A": 1, "B": 3})) == 2
    raw = store._kept[1]
    store.close()
    assert store._kept is None
    with pytest.raises(sqlite3.ProgrammingError):
        raw.execute("SELECT 1")
    # Read-only, so nothing of the reading is left beside the file once closed.
    assert sorted(p.name for p in db.parent.iterdir() if p.name.startswith("k.db")) == ["k.db"]
    assert len(Store(db, readonly=True).query(1, {"A": 2, "C": 6})) == 20  # opens again


def test_conditions_are_kept_per_type_of_value(tmp_path):
    batch = Batch("t", path=tmp_path)
    for value in (1, 1.0, True, 2, "1", None):
        batch.add_run(Anything, {"x": value, "tag": repr(value)})
    tags = lambda **c: sorted(r.parameters["tag"] for r in batch.get_runs_with(**c))  # noqa: E731
    for _ in range(2):  # the second time, the conditions made the first time
        assert tags(x=True) == ["True"]
        assert tags(x=1) == ["1", "1.0"]
        assert tags(x=1.0) == ["1", "1.0"]
        assert tags(x="1") == ["'1'"]
        assert tags(x=None) == ["None"]
        with pytest.raises(QueryError, match="ordering compares numbers or strings"):
            tags(x__ge=True)
        assert tags(x__gt=1) == ["2"]
        assert tags(x__gt=0.5) == ["1", "1.0", "2"]
        assert tags(x__ne=1) == ["'1'", "2", "None", "True"]


def test_forgetting_counts_beyond_the_limit_changes_no_answer(tmp_path, monkeypatch):
    monkeypatch.setattr(Known, "LIMIT", 5)
    batch = sweep(tmp_path)
    queries = [{"A": a, "B": b, "C": c} for a in range(3) for b in range(20) for c in (5, 6)]
    for _ in range(2):
        for q in queries:
            assert len(ids(batch, **q)) == 1
    assert len(batch.store._kept[2].counts) <= 5 + 3


numbers = st.one_of(
    st.integers(min_value=-2**63, max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 2.0**63, -2.0**63, 5e-324, 1e308, 2**63 - 1, -2**63]))


@given(numbers, st.sampled_from(["eq", "ne", "lt", "le", "gt", "ge", "in"]))
def test_the_quick_forms_of_numbers_are_the_encodings_forms(value, op):
    """64-bit ints and finite floats skip encode(): what they make must be what it makes."""
    condition = Condition("x", op, [value] if op == "in" else value)
    tree = encode(value)
    assert condition._form(value) == indexed(tree)
    if op in ("lt", "le", "gt", "ge"):
        form = indexed(tree)
        number = tree if isinstance(tree, (int, float)) else form.number
        assert condition._predicate() == _numeric_order("p", op, number)
    sql, args = condition.predicate("p")
    assert [type(a) for a in args] == [type(a) for a in condition._predicate()[1]]
    assert not any(isinstance(a, float) and math.isnan(a) for a in args)


def test_a_value_that_cannot_be_encoded_names_its_condition(tmp_path):
    batch = sweep(tmp_path)
    with pytest.raises(Exception, match="the query value of 'A'"):
        batch.get_runs_with(A=object(), B=3)
    assert len(Query({"A": 1}).conditions) == 1


def test_a_query_stopped_by_the_time_bound_leaves_the_next_one_working(tmp_path):
    batch = Batch("many", path=tmp_path / "made")
    batch.add_factorial_runs(Sweep, {"A": list(range(40)), "B": list(range(20))})
    db, _ = batch.export(tmp_path / "bundle" / "b")
    bundle = runstore.open_bundle(db)
    expected = [r.id for r in batch.get_runs_with(A__ge=1, B__ge=1)]
    bundle.store.query_time_limit = 1e-9  # any query longer than one look at the clock
    with pytest.raises(QueryTimeoutError):
        bundle.get_runs_with(A__ge=1, B__ge=1)
    bundle.store.query_time_limit = None
    assert [r.id for r in bundle.get_runs_with(A__ge=1, B__ge=1)] == expected
    bundle.store.close()


def test_a_transaction_left_open_on_the_kept_connection_is_ended_by_the_next_query(tmp_path):
    batch = sweep(tmp_path)
    assert len(ids(batch, A=1, B=3)) == 2
    raw = batch.store._kept_reader()[0]
    raw.execute("BEGIN")
    raw.execute("SELECT COUNT(*) FROM runs").fetchall()  # holds a read of this state
    batch.add_run(Sweep, {"A": 1, "B": 3, "C": 7})
    assert len(ids(batch, A=1, B=3)) == 3  # a new transaction: the new state
    assert not raw.in_transaction


def test_a_store_queried_can_still_be_sealed(tmp_path):
    """Sealing leaves WAL mode, which needs the file to itself: the kept reader is closed."""
    made = sweep(tmp_path)
    db = Path(made.store.path)
    made.store.close()
    store = Store(db)
    assert len(store.query(1, {"A": 1, "B": 3})) == 2
    store.seal()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        assert conn.execute("PRAGMA user_version").fetchone() == (1,)
    conn.close()
    assert len(runstore.open_bundle(db).get_runs_with(A=1, B=3)) == 2


def test_what_queries_keep_stays_small(tmp_path):
    """Counts of long __in lists, and conditions on big values, are not kept."""
    batch = sweep(tmp_path)
    runstore.query._parsed.cache_clear()
    for shift in range(20):  # 1,000 values, B up to 9 + shift among them
        assert len(ids(batch, B__in=list(range(shift - 990, shift + 10)), A=1, C=5)
                   ) == min(20, 10 + shift)
    known = batch.store._kept[2]
    assert known.counts and max(len(key) for key in known.counts) <= 64
    for exponent in range(30, 40):
        assert ids(batch, B=10**exponent, A=1) == []
        assert ids(batch, B="x" * 1000, A=1) == []
    assert runstore.query._parsed.cache_info().currsize == 2  # A=1 and C=5 (lists: not kept)
    # -0.0 is not kept as 0.0 is: a message says the value as it was given.
    for value in (0.0, -0.0):
        with pytest.raises(QueryError, match=rf"got {value}; for one value use B={value}"):
            batch.get_runs_with(B__in=value, A=1)


def test_a_loop_over_a_grid_counts_only_the_queries_that_bring_a_new_value(tmp_path):
    batch = sweep(tmp_path)
    seen = statements(batch.store)
    for a in range(3):
        for b in range(20):
            assert len(ids(batch, A=a, B=b)) == 2
    counting = [s for s in seen if "parameter_counts" in s]
    assert len(counting) == 20 + 1 + 1  # B's 20 values with A=0, then A=1, then A=2
    seen.clear()
    for a in range(3):
        for b in range(20):
            assert len(ids(batch, B=b, A=a)) == 2
    assert not [s for s in seen if "parameter_counts" in s]
