"""Numeric parameters copied into batch entries (slots): the same answers, from one row per run."""

from __future__ import annotations

import math
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runstore import Batch, Store
from runstore.bundle import import_bundle
from runstore.errors import QueryError
from runstore.query import Query
from runstore.schema import SLOTS
from runstore.slots import slots_of

from .runs import Anything, Sweep


def through_parameters(batch: Batch, conditions: dict[str, Any]) -> list[str]:
    """The ids the query finds with every condition tested in ``parameters`` (no slots)."""
    store = batch.store
    with store._reading() as conn:
        raw = conn.connection.driver_connection
        query = Query(conditions)
        query.order(raw)
        sql, args = query.sql(batch._id, {})
        return [row[1] for row in raw.execute(sql, args)]


def found(batch: Batch, conditions: dict[str, Any]) -> list[str] | str:
    """The ids ``get_runs_with`` finds (through the slots), or the error it raises."""
    try:
        return [run.id for run in batch.get_runs_with(**conditions)]
    except QueryError as exc:
        return f"QueryError: {exc}"


def plan(batch: Batch, conditions: dict[str, Any]) -> str:
    store = batch.store
    with store._reading() as conn:
        raw = conn.connection.driver_connection
        query = Query(conditions)
        query.order(raw)
        sql, args = query.sql(batch._id, slots_of(raw, batch._id))
        return " / ".join(row[3] for row in raw.execute("EXPLAIN QUERY PLAN " + sql, args))


def slot_table(path: str | Path, batch: int = 1) -> dict[str, int]:
    with sqlite3.connect(path) as db:
        found = dict(db.execute("SELECT name, slot FROM batch_columns WHERE batch_id = ? AND "
                                "slot IS NOT NULL", (batch,)))
    db.close()
    return found


def misfilled(path: str | Path) -> int:
    """Entries whose slot differs from the number in ``parameters`` (computed here)."""
    with sqlite3.connect(path) as db:
        wrong = 0
        for batch, name, slot in db.execute(
                "SELECT batch_id, name, slot FROM batch_columns WHERE slot IS NOT NULL").fetchall():
            wrong += db.execute(
                f"SELECT COUNT(*) FROM entries e LEFT JOIN parameters p ON p.run_key = e.run_key "
                f"AND p.name = ? WHERE e.batch_id = ? AND e.v{slot} IS NOT p.num",
                (name, batch)).fetchone()[0]
    db.close()
    return wrong


# -- the same answers as through parameters ---------------------------------------------

NAMES = [f"p{i:02d}" for i in range(SLOTS + 4)]  # more numeric names than slots
VALUES = [0, 1, 2, -3, 2**63 - 1, -2**63, 2**70, 0.5, 2.0, 1.0000001, -0.0, math.inf,
          float("nan"), "x", "2", None, True, False, [1, 2]]
values = st.sampled_from(VALUES)
runs = st.dictionaries(st.sampled_from(NAMES), values, min_size=1, max_size=5)
conditions = st.dictionaries(
    st.tuples(st.sampled_from(NAMES[:4] + NAMES[-3:]),
              st.sampled_from(["", "__ne", "__lt", "__ge", "__le", "__gt", "__in"])),
    st.one_of(values, st.lists(values, max_size=3)), min_size=1, max_size=3)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(runs, min_size=1, max_size=6), min_size=1, max_size=4),
       st.lists(conditions, min_size=1, max_size=6), st.integers(0, 5))
def test_queries_through_slots_find_what_parameters_find(tmp_path_factory, added, queries,
                                                        removed):
    folder = tmp_path_factory.mktemp("slots")
    batch = Batch("b", path=folder)
    for chunk in added:  # names (and their first numbers) arrive over several calls
        batch._add(Anything, chunk)
    if len(batch.run) > 1:
        batch.remove(batch.run[removed % len(batch.run)])  # positions move up
    assert misfilled(batch.store.path) == 0
    assert len(slot_table(batch.store.path)) <= SLOTS
    for query in queries:
        written = {f"{name}{op}": value for (name, op), value in query.items()}
        ours = found(batch, written)
        if isinstance(ours, str):  # refused: for a reason that does not depend on slots
            assert "QueryError" in ours
            continue
        assert ours == through_parameters(batch, written), written
    batch.store.close()


OPS = ["", "__ne", "__lt", "__le", "__gt", "__ge", "__in"]


def test_every_operator_and_value_finds_what_parameters_find(tmp_path):
    """Every stored value as the bound of every operator, alone and with a second condition."""
    batch = Batch("b", path=tmp_path)
    batch._add(Anything, [{"x": value, "y": i % 3} for i, value in enumerate(VALUES)]
               + [{"y": 1}, {"x": 1, "z": "only"}])
    assert set(slot_table(batch.store.path)) == {"x", "y"}
    checked = 0
    for op in OPS:
        for value in VALUES + [[0, 2.0, "x"], [2**70, 0.5]]:
            for extra in ({}, {"y__ge": 1}, {"y": 2, "z__ne": "other"}):
                written = {f"x{op}": value, **extra}
                ours = found(batch, written)
                if isinstance(ours, str):
                    continue  # refused (an ordering of lists ...), with or without slots
                assert ours == through_parameters(batch, written), written
                checked += 1
    assert checked > 150
    batch.store.close()


def test_known_answers_on_slots_and_their_plan(tmp_path):
    batch = Batch("b", path=tmp_path)
    batch.add_factorial_runs(Sweep, {"A": list(range(10)), "B": [0.5, 1.5, 2.5], "C": [1, 2]})
    by_id = {run.id: run.parameters for run in batch.run}

    def expect(conditions, test):
        ours = [run.id for run in batch.get_runs_with(**conditions)]
        assert ours == [rid for rid, p in by_id.items() if test(p)]
        return ours

    assert len(expect({"A__ge": 7, "B": 1.5}, lambda p: p["A"] >= 7 and p["B"] == 1.5)) == 6
    assert len(expect({"B": 1.5000001, "C": 2}, lambda p: p["B"] == 1.5 and p["C"] == 2)) == 10
    expect({"A__in": [1, 3, 99], "C__lt": 2}, lambda p: p["A"] in (1, 3) and p["C"] < 2)
    expect({"A__ne": 4, "C": 1}, lambda p: p["A"] != 4 and p["C"] == 1)
    assert slot_table(batch.store.path) == {"A": 0, "B": 1, "C": 2}
    # The most selective condition drives through its slot's index; the others are
    # tested on the same row: no lookup in parameters at all.
    shown = plan(batch, {"A": 3, "B": 1.5, "C": 2})
    assert "ix_entries_v0" in shown and "name=?" not in shown, shown
    assert "ix_entries_v2 (batch_id=? AND v2>? AND v2<?)" in plan(batch, {"C__lt": 2,
                                                                          "A__ge": 3})
    assert "ix_entries_v0" in plan(batch, {"A__in": [1, 2], "C": 1})
    # __ne is not decided by a slot (a run without the parameter has NULL there).
    assert "(run_key=? AND name=?)" in plan(batch, {"A__ne": 3, "C": 2})


def test_a_name_gets_its_slot_when_it_first_holds_a_number(tmp_path):
    batch = Batch("b", path=tmp_path)
    batch.add_run(Anything, {"x": "text", "y": 1})
    batch.add_run(Anything, {"x": "more", "y": 2})
    assert slot_table(batch.store.path) == {"y": 0}
    batch.add_run(Anything, {"x": 5, "y": 3})  # x holds a number now: a slot, filled
    assert slot_table(batch.store.path) == {"y": 0, "x": 1}
    assert misfilled(batch.store.path) == 0
    assert [r.parameters for r in batch.get_runs_with(x=5)] == [{"x": 5, "y": 3}]
    assert [r.parameters["x"] for r in batch.get_runs_with(x="more")] == ["more"]
    # Beyond SLOTS numeric names, the rest are queried through parameters.
    many = {f"n{i:02d}": i for i in range(SLOTS + 3)}
    batch.add_run(Anything, many)
    assert len(slot_table(batch.store.path)) == SLOTS
    assert misfilled(batch.store.path) == 0
    last = f"n{SLOTS + 2:02d}"
    assert last not in slot_table(batch.store.path)
    assert [r.parameters[last] for r in batch.get_runs_with(**{last: SLOTS + 2, "n00": 0})
            ] == [SLOTS + 2]


def test_slots_follow_runs_into_other_batches_bundles_and_stores(tmp_path):
    source = Batch("src", path=tmp_path / "a")
    source.add_factorial_runs(Anything, {"A": [1, 2, 3], "B": [10, 20], "C": ["s", 2.5]})
    source(verbose=0)
    other = Batch("other", store=source.store)
    other.add_run(Anything, {"A": 9, "B": 9, "C": 9})
    other.add_resultrun([r.id for r in source.get_runs_with(A=2)])  # stored runs, by id
    assert [r.parameters["A"] for r in other.get_runs_with(A__ge=2)] == [9, 2, 2, 2, 2]
    source.export(tmp_path / "out.db")
    bundle = Store(tmp_path / "out.db", readonly=True)
    assert misfilled(tmp_path / "out.db") == 0
    assert slot_table(tmp_path / "out.db") == {"A": 0, "B": 1, "C": 2}
    bundle.close()
    target = Store(tmp_path / "t.db")
    Batch("src", store=target).add_run(Anything, {"A": 3, "B": 10, "C": 2.5})
    import_bundle(tmp_path / "out.db", target)
    assert misfilled(target.path) == 0
    imported = Batch("src", store=target)
    assert [(r.parameters["A"], r.parameters["C"]) for r in imported.get_runs_with(
        A=3, B=10)] == [(3, 2.5), (3, "s")]
    target.close()
    source.store.close()


def test_a_store_upgraded_from_before_the_slots_has_them(tmp_path):
    fixture = Path(__file__).parent / "fixtures" / "store-0006"
    shutil.copytree(fixture, tmp_path / "copy")
    db = tmp_path / "copy" / "_res" / "fixture.db"
    batch = Batch("fixture", path=tmp_path / "copy")  # upgrades
    assert slot_table(db) == {"A": 0, "n": 1, "seed": 2}
    assert misfilled(db) == 0
    assert [r.result["val"] for r in batch.get_runs_with(A=2, operator=max)] == [16, 18]
    assert "ix_entries_v0" in plan(batch, {"A": 2})
    batch.store.close()


@pytest.mark.parametrize("slot", ["99", "-1", "'x'", "0.5", "1"])
def test_slots_a_file_got_wrong_are_not_trusted(tmp_path, slot):
    batch = Batch("b", path=tmp_path)
    batch.add_factorial_runs(Sweep, {"A": [1, 2], "B": [3, 4]})
    expected = [r.id for r in batch.get_runs_with(A=2, B=4)]
    with sqlite3.connect(batch.store.path) as db:  # A claims a slot out of range, or B's
        db.execute(f"UPDATE batch_columns SET slot = {slot} WHERE name = 'A'")
    db.close()
    assert [r.id for r in batch.get_runs_with(A=2, B=4)] == expected
    assert [r.id for r in batch.get_runs_with(A=2)] == [r.id for r in batch.run
                                                        if r.parameters["A"] == 2]
    batch.store.close()


def test_check_finds_a_tampered_slot_and_copies_it_again(tmp_path):
    batch = Batch("b", path=tmp_path)
    batch.add_factorial_runs(Sweep, {"A": [1, 2, 3], "B": [1, 2]})
    with sqlite3.connect(batch.store.path) as db:
        db.execute("UPDATE entries SET v0 = 7 WHERE position = 0")
        db.execute("UPDATE entries SET v1 = NULL WHERE position = 1")
    db.close()
    assert [r.parameters for r in batch.get_runs_with(A=7)] == [{"A": 1, "B": 1, "C": 0}]  # damage
    report = batch.store.check()
    assert report.wrong_slots == 2 and not report.ok
    assert "differ from them" in str(report)
    assert batch.store.check(fix=True, dry_run=True).wrong_slots == 2
    assert batch.store.check().wrong_slots == 2  # a dry run changes nothing
    fixed = batch.store.check(fix=True)
    assert any("slots" in line for line in fixed.repaired)
    assert batch.store.check().ok
    assert batch.get_runs_with(A=7) == []
    assert len(batch.get_runs_with(B=2)) == 3
    batch.store.close()


def test_check_fix_keeps_each_name_in_its_slot_and_gives_wrong_slots_again(tmp_path):
    batch = Batch("b", path=tmp_path)
    batch.add_run(Anything, {"z": 1})
    batch.add_factorial_runs(Anything, {"a": [1, 2], "m": [3, 4]})
    assert slot_table(batch.store.path) == {"z": 0, "a": 1, "m": 2}  # as they came
    with sqlite3.connect(batch.store.path) as db:  # a and m both claim slot 1
        db.execute("UPDATE batch_columns SET slot = 1 WHERE name = 'm'")
        db.execute("UPDATE entries SET v0 = 5")
    db.close()
    assert len(batch.get_runs_with(a=1)) == 2  # a slot held twice is not read
    assert batch.store.check().wrong_slots == 5  # slot 0 (z) of every entry
    batch.store.check(fix=True)
    assert batch.store.check().ok and misfilled(batch.store.path) == 0
    fixed = slot_table(batch.store.path)
    assert fixed["z"] == 0 and sorted(fixed.values()) == [0, 1, 2]  # z kept its slot
    assert [r.parameters for r in batch.get_runs_with(a=2, m=4)] == [{"a": 2, "m": 4}]
    assert "ix_entries_v" in plan(batch, {"m": 4})
    batch.store.close()


class BySeed(Anything):
    """An id from ``seed`` alone: other values of ``x`` are the same run."""

    def generate_id(self, parameters):
        return f"{int(parameters['seed']):040x}"


def test_a_run_stored_before_gets_its_stored_numbers_in_another_batch(tmp_path):
    first = Batch("a", path=tmp_path)
    first.add_run(BySeed, {"seed": 1, "x": 1})
    second = Batch("b", store=first.store)
    second.add_run(BySeed, {"seed": 1, "x": 2})  # the stored run (x=1) is appended
    assert [r.parameters["x"] for r in second.run] == [1]
    assert misfilled(first.store.path) == 0
    assert [r.parameters["x"] for r in second.get_runs_with(x=1)] == [1]
    assert second.get_runs_with(x=2) == []
    first.store.close()


@pytest.mark.parametrize("change", [
    "DROP INDEX ix_entries_v0",
    "DROP INDEX ix_entries_v0; CREATE INDEX ix_entries_v0 ON entries (batch_id, v0) "
    "WHERE v0 > 100"])
def test_a_file_without_a_slot_index_is_still_answered(tmp_path, change):
    batch = Batch("b", path=tmp_path)
    batch.add_factorial_runs(Sweep, {"A": [1, 2, 3], "B": [1, 2]})
    batch.store.close()
    with sqlite3.connect(batch.store.path) as db:
        db.executescript(change)
    db.close()
    store = Store(batch.store.path, readonly=True)
    again = Batch("b", store=store)
    assert [r.parameters["A"] for r in again.get_runs_with(A=2)] == [2, 2]
    assert [r.parameters for r in again.get_runs_with(A__ge=2, B=1)] == [
        {"A": 2, "B": 1, "C": 0}, {"A": 3, "B": 1, "C": 0}]
    store.close()


def test_a_slot_held_by_a_name_that_is_not_text_is_not_read(tmp_path):
    batch = Batch("b", path=tmp_path)
    batch.add_factorial_runs(Sweep, {"A": [1, 2, 3], "B": [1, 2]})
    batch.store.close()
    with sqlite3.connect(batch.store.path) as db:  # a name of bytes, not UTF-8, in slot 5
        db.execute("INSERT INTO batch_columns (batch_id, source, name, kinds, slot) "
                   "VALUES (1, 'parameter', x'ff41', 'int', 5)")
        db.execute("UPDATE entries SET v5 = 1")
    db.close()
    store = Store(batch.store.path, readonly=True)
    again = Batch("b", store=store)
    assert [r.parameters["A"] for r in again.get_runs_with(A=2, B__ge=1)] == [2, 2]
    store.close()
