"""Each batch has a SQL view that any SQLite client can query."""

from __future__ import annotations

import html
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from runstore import Batch
from runstore.errors import BatchNameError, RunsFailedError

from .runs import Anything, Collides, ExampleRun

SQLITE3 = shutil.which("sqlite3")


def sqlite3_cli(db: str, sql: str) -> list[list[str]]:
    assert SQLITE3, "the sqlite3 command-line client (Debian package sqlite3) is needed"
    out = subprocess.run([SQLITE3, "-readonly", db, sql], capture_output=True, text=True,
                         check=True).stdout
    return [line.split("|") for line in out.splitlines()]


def test_the_sqlite3_client_answers_from_the_view(in_tmp):
    batch = Batch("example")
    batch.add_factorial_runs(ExampleRun, {"A": [1, 2, 3, 4, 5], "B": [[2, 5, 8], [1, 9]],
                                          "operator": [min, max]})
    batch(verbose=0)
    rows = sqlite3_cli("_res/example.db", "select A, val from example where A >= 3 and "
                       "operator = '[\"callable\",\"builtins.max\"]' and "
                       "B = '[\"list\",[2,5,8]]' order by position")
    assert rows == [["3", "24"], ["4", "32"], ["5", "40"]]
    (count,) = sqlite3_cli("_res/example.db", "select count(*) from example where state = 'done'")
    assert count == ["20"]


def test_view_columns_are_typed_and_never_collide(in_tmp):
    batch = Batch("typed")
    batch.add_run(Anything, {"n": 3, "f": 2.5, "s": "text", "b": False, "z": None, "l": [1]})
    batch.add_run(Collides, {"x": 4})
    batch(verbose=0)
    with sqlite3.connect("_res/typed.db") as db:
        cursor = db.execute('select * from typed order by position')
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, row)) for row in cursor.fetchall()]
    assert names[:4] == ["id", "position", "state", "runtime"]
    assert "parameter.state" in names and "result.x" in names and "x" in names
    first, second = rows
    assert (first["n"], first["f"], first["s"], first["b"], first["z"]) == (3, 2.5, "text", 0, None)
    assert first["l"] == '["list",[1]]' and first["flag"] == 1 and first["nothing"] is None
    assert first["state"] == "done" and first["runtime"] > 0 and len(first["id"]) == 40
    assert (second["x"], second["result.x"], second["parameter.state"]) == (4, 40, "s")


def test_batch_names_with_dots_and_dashes_have_quoted_views(in_tmp):
    batch = Batch("sweep-2026.1")
    batch.add_factorial_runs(ExampleRun, {"A": [1, 2]})
    batch(verbose=0)
    assert sqlite3_cli("_res/sweep-2026.1.db", 'select A, val from "sweep-2026.1"') == [
        ["1", "3"], ["2", "6"]]


@pytest.mark.parametrize("name, reason", [("runs", "runstore's tables"),
                                          ("Parameters", "runstore's tables"),
                                          ("Example", "differs only in case")])
def test_names_that_would_clash_in_sql_are_refused(in_tmp, name, reason):
    Batch("example", path="shared").store.close()
    from runstore import Store

    store = Store("shared/_res/example.db")
    with pytest.raises(BatchNameError, match=reason):
        Batch(name, store=store)


def test_hostile_parameter_names_cannot_inject_sql(in_tmp):
    hostile = 'x" FROM runs; DROP TABLE runs; --'
    batch = Batch("hostile")
    batch.add_run(Anything, {hostile: 1, "quote'": 2})
    batch(verbose=0)
    with sqlite3.connect("_res/hostile.db") as db:
        cursor = db.execute("select * from hostile")
        row = dict(zip([d[0] for d in cursor.description], cursor.fetchone()))
        assert db.execute("select count(*) from runs").fetchone() == (1,)
    assert row[hostile] == 1 and row["quote'"] == 2


def test_views_cover_runs_added_from_the_store_and_upgraded_stores(in_tmp):
    first = Batch("first", path="s")
    first.add_factorial_runs(ExampleRun, {"A": [1, 2]})
    first(verbose=0)
    second = Batch("second", store=first.store)
    second.add_resultrun([r.id for r in first.run])
    assert sqlite3_cli("s/_res/first.db", "select A, val from second order by A") == [
        ["1", "3"], ["2", "6"]]
    fixture = Path(__file__).parent / "fixtures" / "store-0001"
    shutil.copytree(fixture, "old")
    Batch("fixture", path="old")  # opening upgrades, and makes the views
    assert sqlite3_cli("old/_res/fixture.db", "select count(*) from fixture") == [["10"]]


def test_a_run_shared_by_two_batches_gives_both_views_its_results(in_tmp):
    first = Batch("first")
    first.add_factorial_runs(ExampleRun, {"A": [1, 2]})
    second = Batch("second", store=first.store)
    second.add_factorial_runs(ExampleRun, {"A": [2, 3]})  # shares A=2, still pending
    first(verbose=0)  # computes A=1 and A=2 through the first batch
    assert sqlite3_cli("_res/first.db", "select A, val from second order by A") == [
        ["2", "6"], ["3", ""]]


def test_to_dataframe_is_the_view_indexed_by_position(in_tmp):
    batch = Batch("frame")
    batch.add_factorial_runs(ExampleRun, {"A": [1, 2, 3], "operator": [max]})
    batch(verbose=0)
    frame = batch.to_dataframe()
    assert list(frame.index) == [0, 1, 2]
    assert list(frame.columns[:3]) == ["id", "state", "runtime"]
    assert list(frame["A"]) == [1, 2, 3] and list(frame["val"]) == [3, 6, 9]
    assert (frame["state"] == "done").all()


def test_export_writes_csv_and_parquet(in_tmp):
    import csv

    import pandas

    batch = Batch("exported")
    batch.add_factorial_runs(ExampleRun, {"A": [1, 2]})
    batch(verbose=0)
    result = subprocess.run([sys.executable, "-m", "runstore", "export", "_res/exported.db",
                             "--csv", "out.csv", "--parquet", "out.parquet"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "wrote 2 runs of batch 'exported' to out.csv" in result.stdout
    with open("out.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["A"], r["val"]) for r in rows] == [("1", "3"), ("2", "6")]
    frame = pandas.read_parquet("out.parquet")
    assert list(frame["val"]) == [3, 6]


def test_export_asks_which_batch_when_there_are_several(in_tmp):
    first = Batch("one")
    Batch("two", store=first.store)
    result = subprocess.run([sys.executable, "-m", "runstore", "export", "_res/one.db",
                             "--csv", "x.csv"], capture_output=True, text=True)
    assert result.returncode == 2 and "choose one with --batch" in result.stderr


def test_batches_and_runs_show_as_escaped_html_tables(in_tmp):
    from .runs import Arrays

    batch = Batch("shown")
    batch.add_run(Anything, {"n": 1, "label": "<script>alert(1)</script>"})
    batch.add_run(Arrays, {"n": 2})
    batch(verbose=0)
    page = batch._repr_html_()
    assert "<b>Batch shown</b>" in page and "2 done" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert page.count("<tr>") == 3  # the header and two runs
    run = batch.run[1]._repr_html_()
    x = batch.run[1].result["x"]
    assert "parameter n" in run and "result x" in run
    assert html.escape(repr(x)) in run  # small arrays are shown whole
    assert "<b>Arrays</b>" in run


def test_a_failed_run_shows_its_error_escaped_and_its_traceback_folded(in_tmp):
    from .runs import FailsWithMarkup

    batch = Batch("failing")
    batch.add_factorial_runs(FailsWithMarkup, {"x": [1, 2]})
    with pytest.raises(RunsFailedError):
        batch(verbose=0)
    run = batch.run[0]
    page = run._repr_html_()
    assert "<script>" not in page
    assert ("RuntimeError: &lt;script&gt;alert(1)&lt;/script&gt; &amp; more\nsecond line"
            in page)
    folded = page[page.index("<details>"):page.index("</details>")]
    assert "Traceback (most recent call last)" in folded
    assert "in run" in folded and "raise RuntimeError" in folded
    assert html.escape(run.error) in folded
    table = batch._repr_html_()
    assert "2 failed" in table and "<th>error</th>" in table and "<script>" not in table
    assert table.count("RuntimeError: &lt;script&gt;alert(") == 2
    assert "second line" not in table  # the first line of each error only


def test_a_run_with_large_arrays_shows_them_summarised(in_tmp):
    from .runs import Arrays

    batch = Batch("large")
    batch.add_run(Arrays, {"n": 300})
    batch(verbose=0)
    run = batch.run[0]
    page = run._repr_html_()
    assert len(page) < 3000  # 90,000 ints and 600 floats
    row = page[page.index("<th>result m</th>"):].split("</tr>")[0]
    m = run.result["m"]
    assert (f"&lt;array int16 (300, 300), min {m.min()}, max {m.max()}: "
            f"[0, 1, 2, ..., {m.flat[-3]}, {m.flat[-2]}, {m.flat[-1]}]&gt;") in row
    assert "result stats" in page and "n=300" in page
