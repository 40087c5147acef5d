"""parameter_counts: runs per parameter value, kept as runs come and go; only a plan hint."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import runstore
from runstore import Batch, Store
from runstore.bundle import import_bundle
from runstore.query import Query, _Probe

from .runs import Sweep

class Tagged(runstore.Run):
    def run(self, A=0, B=None):
        return {"val": A}


#: What the counts must be: the ``parameters`` rows grouped by value.
TRUE_COUNTS = ("SELECT name, canonical, kind, num, text, COUNT(*) FROM parameters "
               "GROUP BY name, canonical ORDER BY name, canonical")
STORED_COUNTS = ("SELECT name, canonical, kind, num, text, runs FROM parameter_counts "
                 "ORDER BY name, canonical")


def counts(path: str | Path) -> tuple[list[tuple], list[tuple]]:
    """(the counts kept, the counts of the rows) of a store."""
    with sqlite3.connect(path) as db:
        found = db.execute(STORED_COUNTS).fetchall(), db.execute(TRUE_COUNTS).fetchall()
    db.close()
    return found


def assert_counted(path: str | Path) -> None:
    kept, true = counts(path)
    assert kept == true


values = st.one_of(st.integers(-3, 3), st.sampled_from(
    [0.5, 2.0, "x", None, True, [1, 2], float("nan"), 2**70, -0.0]))
steps = st.lists(st.one_of(
    st.tuples(st.just("add"), st.sampled_from("ab"), st.lists(values, min_size=1, max_size=4)),
    st.tuples(st.just("remove"), st.sampled_from("ab"), st.integers(0, 5)),
    st.tuples(st.just("remove_deleting"), st.sampled_from("ab"), st.integers(0, 5))),
    min_size=1, max_size=8)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps)
def test_counts_follow_every_add_and_removal(tmp_path_factory, plan):
    folder = tmp_path_factory.mktemp("counts")
    store = Store(folder / "s.db")
    batches = {name: Batch(name, store=store) for name in "ab"}
    for step, name, arg in plan:
        batch = batches[name]
        if step == "add":  # the same runs may go into both batches, or twice into one
            batch.add_factorial_runs(Sweep, {"A": arg, "B": [0, "b"]})
        elif len(batch.run):
            batch.remove(batch.run[arg % len(batch.run)], delete_unheld=step != "remove")
        assert_counted(store.path)
    store.close()


def test_counts_of_bundles_imports_and_upgrades_match_the_rows(tmp_path):
    source = Batch("src", path=tmp_path / "a")
    source.add_factorial_runs(Tagged, {"A": [1, 2, 3], "B": [0.5, "x", None]})
    source(verbose=0)
    source.export(tmp_path / "out.db")
    assert_counted(tmp_path / "out.db")  # a bundle has its counts
    target = Store(tmp_path / "t.db")
    Batch("mine", store=target).add_factorial_runs(Tagged, {"A": [3, 4], "B": ["x"]})
    import_bundle(tmp_path / "out.db", target)  # one run in common
    assert_counted(target.path)
    kept, _ = counts(target.path)
    assert ("A", "3", "int", 3, None, 3) in kept
    assert [r.parameters["B"] for r in Batch("src", store=target).get_runs_with(A=3, B="x")
            ] == ["x"]
    target.close()


def test_a_store_upgraded_from_before_the_counts_has_them(tmp_path):
    import shutil

    fixture = Path(__file__).parent / "fixtures" / "store-0005"
    shutil.copytree(fixture, tmp_path / "copy")
    db = tmp_path / "copy" / "_res" / "fixture.db"
    with sqlite3.connect(db) as conn:
        assert not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'parameter_counts'"
                                ).fetchall()
    conn.close()
    batch = Batch("fixture", path=tmp_path / "copy")  # upgrades
    kept, _ = counts(db)
    assert len(kept) > 5
    assert_counted(db)
    assert len(batch.get_runs_with(A=2, operator=max)) == 2


def test_wrong_counts_change_no_answer_and_check_fix_counts_again(tmp_path):
    batch = Batch("hint", path=tmp_path)
    batch.add_factorial_runs(Sweep, {"A": [0, 1], "B": list(range(30)), "C": [0.5, 1.5, "c"]})
    queries = [{"A": 1, "B": 7}, {"B": 7, "C": "c"}, {"A": 0, "C__ge": 1}, {"B__lt": 3, "A": 1},
               {"A__ne": 0, "B__in": [1, 2, 40]}, {"C": 1.5, "B": 29, "A": 1}]
    right = [[r.id for r in batch.get_runs_with(**q)] for q in queries]
    assert all(right)
    db = batch.store.path
    for damage in ("UPDATE parameter_counts SET runs = 0",  # every value counted to none
                   "DELETE FROM parameter_counts",  # no value counted
                   "UPDATE parameter_counts SET runs = 1000000 - runs * 3 "
                   "WHERE name != 'C'"):  # the order turned over
        with sqlite3.connect(db) as conn:
            conn.execute(damage)
        conn.close()
        assert [[r.id for r in batch.get_runs_with(**q)] for q in queries] == right
    report = batch.store.check()
    assert not report.ok and report.wrong_counts > 0
    assert "parameter_counts: the counts of" in str(report)
    dry = batch.store.check(fix=True, dry_run=True)
    assert "would repair: parameter_counts counted again" in str(dry)
    assert counts(db)[0] != counts(db)[1]  # a dry run changed nothing
    fixed = batch.store.check(fix=True)
    assert "repaired: parameter_counts counted again" in str(fixed)
    assert_counted(db)
    assert batch.store.check().ok


def test_the_counts_pick_the_driving_condition_in_one_lookup(in_tmp):
    batch = Batch("drive")
    # A=1 holds 2,000 runs, B=7 150, C=7 120; C__ge=45 600 over 5 values.
    batch.add_factorial_runs(Sweep, {"A": list(range(3)), "B": list(range(40)),
                                     "C": list(range(50))})
    raw = batch.store.engine.raw_connection()
    try:
        for conditions, first in (({"A": 1, "B": 7}, "B"), ({"A": 1, "B": 7, "C": 7}, "C"),
                                  ({"B": 7, "A__ge": 1}, "B"), ({"C__ge": 45, "A": 1}, "C"),
                                  ({"C__ge": 45, "B": 7}, "B")):
            query = Query(conditions)
            statements = []
            raw.driver_connection.set_trace_callback(statements.append)
            assert query.order(raw.driver_connection)
            raw.driver_connection.set_trace_callback(None)
            assert query.conditions[0].label == first
            assert len(statements) == 1  # each count exact in the first round
            assert "parameter_counts" in statements[0]
    finally:
        raw.close()
    runs = batch.get_runs_with(C=7, A=1, B=7)
    assert [(r.parameters["A"], r.parameters["B"], r.parameters["C"]) for r in runs] == [(1, 7, 7)]


def test_counting_reads_an_index_of_the_counts_never_every_value_of_a_name(in_tmp):
    batch = Batch("plan")
    batch.add_factorial_runs(Sweep, {"A": [0, 1], "B": list(range(300)), "C": ["x", "y"]})
    raw = batch.store.engine.raw_connection()
    try:
        db = raw.driver_connection
        for conditions in ({"A": 1, "B": 7}, {"A": 1.0, "B__lt": 3}, {"B__in": [1, 2], "C": "x"},
                           {"A__ge": 1, "B__gt": 298}):
            query = Query(conditions)
            probes = [_Probe(c) for c in query.conditions]
            sql = "SELECT " + ", ".join(p.sql for p in probes)
            args = [a for p in probes for a in p.args]
            plan = [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql, args)]
            searches = [step for step in plan if "parameter_counts" in step or " p " in step
                        or step.startswith(("SEARCH p", "SCAN p"))]
            assert len(searches) == len(conditions), plan
            for step in searches:  # a number through its index, text through the key
                assert step.startswith("SEARCH p USING"), plan
                assert ("COVERING INDEX ix_parameter_counts_num (name=? AND num" in step
                        or "PRIMARY KEY (name=? AND canonical" in step), plan
    finally:
        raw.close()


def test_check_fix_counts_out_the_stray_rows_it_deletes(tmp_path):
    batch = Batch("stray", path=tmp_path)
    batch.add_factorial_runs(Sweep, {"A": [1, 2, 3]})
    db = batch.store.path
    with sqlite3.connect(db) as conn:  # a run deleted outside runstore, its rows left
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("DELETE FROM entries WHERE run_key = 1")
        conn.execute("DELETE FROM runs WHERE key = 1")
    conn.close()
    fixed = batch.store.check(fix=True)
    assert "parameter_counts" not in str(fixed)  # the fix itself kept them right
    assert_counted(db)
    assert batch.store.check().ok
