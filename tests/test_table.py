"""What goes in comes out typed: SQL views, DataFrames, CSV, Parquet, bundles, imports."""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import runstore
import runstore.table
from runstore import Batch
from runstore.encoding import canonical_json, encode

from .runs import Anything, Echo
from .strategies import strictly_equal
from .test_views import sqlite3_cli

INT64 = 2**63

# -- the values of one column -----------------------------------------------------------

_floats = st.floats(allow_nan=True, allow_infinity=True)
_ints = st.integers(-INT64, INT64 - 1)
_big_ints = st.integers(-(2**70), 2**70)
_texts = st.text(max_size=8)
_scalars = st.one_of(st.none(), st.booleans(), _big_ints, _floats, _texts)
_structured = st.one_of(
    st.binary(max_size=4), st.complex_numbers(allow_nan=False),
    st.lists(_scalars, max_size=3), st.lists(_scalars, max_size=3).map(tuple),
    st.dictionaries(_texts, _scalars, max_size=2), st.sampled_from([max, min, len]))

#: Columns of one family of values (with None now and then), or of any mix.
columns = st.one_of(*(
    st.lists(st.one_of(family, st.none()) if allow_none else family, min_size=1, max_size=4)
    for family, allow_none in ((_floats, True), (_floats, False), (_ints, False),
                               (_ints, True), (_big_ints, False), (st.booleans(), False),
                               (st.booleans(), True), (_texts, True), (_structured, False),
                               (st.one_of(_scalars, _structured), True))))


def kind(value: Any) -> str:
    """The kind a value is stored as, written independently of runstore."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    return {int: "int", float: "float", str: "text"}.get(type(value), "structured")


def column_family(values: list[Any]) -> str:
    kinds = {kind(v) for v in values} - {"null"}
    if not kinds:
        return "empty"
    if kinds == {"bool"}:
        return "bool"
    if kinds <= {"int", "bool"}:
        return "int"
    if kinds <= {"int", "float"}:
        return "float"
    if kinds in ({"text"}, {"structured"}):
        return "text"
    return "mixed"


def shown(value: Any) -> Any:
    """A value as tables show it: functions by name, everything else itself."""
    return value.__name__ if callable(value) else value


def same(a: Any, b: Any) -> bool:
    return strictly_equal(a, b) or (a is None and b is None)


def expected_sql(value: Any, family: str) -> Any:
    """What the SQL view holds for a value in a column of this family."""
    if value is None or (isinstance(value, float) and math.isnan(value) and family != "mixed"):
        return None
    if isinstance(value, bool) and family in ("bool", "int", "mixed"):
        return int(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and (
            family in ("int", "float", "mixed")):
        if family == "float" or not -INT64 <= value < INT64 or isinstance(value, float):
            if isinstance(value, float) and math.isnan(value):
                return canonical_json(encode(value))  # mixed: its canonical JSON
            return float(value)
        return value
    if isinstance(value, str):
        return value
    return canonical_json(encode(value))


def expected_dtype(values: list[Any], family: str) -> str:
    missing = any(v is None for v in values)
    if family == "float":
        return "float64"
    if family == "bool":
        return "boolean" if missing else "bool"
    if family == "int" and all(v is None or -INT64 <= v < INT64 for v in values):
        return "Int64" if missing else "int64"
    return ""  # as pandas infers it


def expected_frame_cell(value: Any, family: str, values: list[Any]) -> Any:
    if family == "float":
        return math.nan if value is None else float(value)
    if family == "int" and isinstance(value, bool):  # 0/1, as in SQL
        return int(value)
    return shown(value)


def frame_same(found: Any, expected: Any) -> bool:
    if found is pandas.NA or (isinstance(found, float) and math.isnan(found) and (
            expected is None)):
        return expected is None
    if isinstance(found, np.generic):
        found = found.item()
    return same(found, expected)


def csv_parsed(text: str, like: Any) -> Any:
    """A CSV cell read back as the type of ``like``."""
    if like is None:
        return None if text == "" else text
    if isinstance(like, bool):
        return {"True": True, "False": False}[text]
    if isinstance(like, int):
        return int(text)
    if isinstance(like, float):
        return float(text) if text else math.nan
    return text


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.data_too_large])
@given(values=columns)
def test_every_stored_type_comes_back_through_every_way_out(values, tmp_path_factory):
    where = tmp_path_factory.mktemp("typed")
    batch = Batch("typed", path=where)
    for i, value in enumerate(values):
        batch.add_run(Echo, {"i": i, "x": value})
    batch(verbose=0)
    family = column_family(values)
    runs = list(batch.run)
    for run, value in zip(runs, values):  # the run objects
        assert same(run.parameters["x"], value) or callable(value)
        assert same(run.result["r"], shown(value)) or callable(value)
    db = where / "_res" / "typed.db"
    with sqlite3.connect(db) as conn:  # the SQL view
        found = conn.execute("SELECT * FROM typed ORDER BY position")
        names = [d[0] for d in found.description]
        rows = [dict(zip(names, row)) for row in found.fetchall()]
    conn.close()
    for row, value in zip(rows, values):
        assert same(row["x"], expected_sql(value, family)), (row["x"], value, family)
        if kind(value) != "structured" or isinstance(value, complex):  # a result row
            assert same(row["r"], expected_sql(value, family)), (row["r"], value, family)
    frame = batch.to_dataframe()  # the DataFrame
    dtype = expected_dtype(values, family)
    if dtype:
        assert str(frame["x"].dtype) == dtype
    for cell, value in zip(frame["x"], values):
        assert frame_same(cell, expected_frame_cell(value, family, values)), (cell, value)
    out = subprocess.run([sys.executable, "-m", "runstore", "export", str(db), "--csv",
                          str(where / "t.csv"), "--parquet", str(where / "t.parquet")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    with open(where / "t.csv", newline="") as f:  # CSV
        rows = list(csv.DictReader(f))
    for row, cell in zip(rows, frame["x"]):
        like = None if cell is None or cell is pandas.NA else (
            cell.item() if isinstance(cell, np.generic) else cell)
        if isinstance(like, (bool, int, float, str)) or like is None:
            assert frame_same(csv_parsed(row["x"], like), like), (row["x"], like)
        else:
            assert row["x"] == repr(like)
    parquet = pandas.read_parquet(where / "t.parquet")  # Parquet
    if frame["x"].dtype != object:
        pandas.testing.assert_series_equal(parquet["x"], frame["x"])
    bundle, _ = batch.export(where / "shared")  # a bundle, and an import of it
    opened = runstore.open_bundle(bundle)
    imported_into = where / "other.db"
    runstore.import_bundle(bundle, imported_into)
    imported = Batch("typed", store=imported_into)
    for other in (opened, imported):
        pandas.testing.assert_frame_equal(other.to_dataframe(), frame)
        for run, value in zip(other.run, values):
            assert same(run.parameters["x"], value) or callable(value)
        other.store.close()
    batch.store.close()


def test_a_float_sweep_is_float_everywhere(in_tmp):
    batch = Batch("decay")
    batch.add_factorial_runs(Echo, {"i": [0], "x": [0.0, 50.0, 0.02]})
    batch(verbose=0)
    rows = sqlite3_cli("_res/decay.db", "select x, typeof(x), r, typeof(r), typeof(i) "
                                        "from decay order by position")
    assert rows == [["0.0", "real", "0.0", "real", "integer"],
                    ["50.0", "real", "50.0", "real", "integer"],
                    ["0.02", "real", "0.02", "real", "integer"]]
    # A client that passes values as text (datasette's facets) still matches.
    for text in ("0.02", "50", "50.0", "5e1"):
        (count,) = sqlite3_cli("_res/decay.db", f"select count(*) from decay where x = '{text}'")
        assert count == ["1"], text
    frame = batch.to_dataframe()
    assert str(frame["x"].dtype) == "float64" and list(frame["x"]) == [0.0, 50.0, 0.02]
    assert str(frame["i"].dtype) == "int64"


def test_a_column_whose_kinds_grow_changes_type_and_every_batch_holding_it_learns(in_tmp):
    def types(name: str) -> list[list[str]]:
        return sqlite3_cli("_res/first.db", f"select typeof(x), typeof(r) from {name} "
                                            "order by position")

    first = Batch("first")
    first.add_run(Echo, {"i": 0, "x": 1})
    first(verbose=0)
    assert types("first") == [["integer", "integer"]]
    first.add_run(Echo, {"i": 1, "x": 2.5})
    first(verbose=0)
    assert types("first") == [["real", "real"]] * 2  # the int columns became REAL
    assert str(first.to_dataframe()["x"].dtype) == "float64"
    second = Batch("second", store=first.store)
    second.add_run(Echo, {"i": 0, "x": 1})  # done already: its kinds come with it
    second.add_run(Echo, {"i": 2, "x": 3})
    assert types("second") == [["integer", "integer"], ["integer", "null"]]
    first.add_run(Echo, {"i": 2, "x": 3})
    first.add_run(Echo, {"i": 3, "x": 0.5})
    second.add_run(Echo, {"i": 3, "x": 0.5})
    first(verbose=0)  # computes runs second holds too: second learns their kinds
    assert types("second") == [["real", "real"]] * 3
    first.add_run(Echo, {"i": 4, "x": "text"})
    first(verbose=0)
    assert [t[0] for t in types("first")] == ["integer", "real", "integer", "real", "text"]
    assert list(first.to_dataframe()["x"]) == [1, 2.5, 3, 0.5, "text"]  # each its own


def test_the_dataframe_decodes_structured_values_and_times(in_tmp):
    batch = Batch("frame")
    batch.add_factorial_runs(Anything, {"B": [[2, 5, 8]], "operator": [max], "t": [(1, "a")],
                                        "n": [1, 2]})
    batch(verbose=0)
    batch.add_run(Anything, {"B": [2, 5, 8], "operator": max, "t": (1, "a"), "n": 3})
    frame = batch.to_dataframe()
    assert list(frame["B"]) == [[2, 5, 8]] * 3 and list(frame["operator"]) == ["max"] * 3
    assert list(frame["t"]) == [(1, "a")] * 3
    assert str(frame["finished_at"].dtype) == "datetime64[ns, UTC]"
    assert frame["finished_at"].iloc[2] is pandas.NaT  # not computed yet
    now = dt.datetime.now(dt.timezone.utc)
    assert abs(now - frame["finished_at"].iloc[0].to_pydatetime()) < dt.timedelta(minutes=5)
    assert str(frame["flag"].dtype) == "boolean"  # the pending run has no result yet
    assert list(frame["flag"][:2]) == [True, True] and frame["flag"].iloc[2] is pandas.NA
    assert str(frame["n"].dtype) == "int64"


def test_export_csv_and_the_runs_listing_show_values_as_they_went_in(in_tmp):
    batch = Batch("listed")
    batch.add_run(Anything, {"f": 0.0, "n": 2**70, "b": True, "l": [1, 2], "op": min,
                             "s": "a,b\n\"c\""})
    batch(verbose=0)
    subprocess.run([sys.executable, "-m", "runstore", "export", "_res/listed.db", "--csv",
                    "out.csv"], check=True, capture_output=True)
    listed = subprocess.run([sys.executable, "-m", "runstore", "runs", "_res/listed.db",
                             "--csv"], check=True, capture_output=True, text=True).stdout
    with open("out.csv", newline="") as f:
        exported = list(csv.DictReader(f))
    (row,) = exported
    (same_row,) = list(csv.DictReader(io.StringIO(listed, newline="")))
    assert same_row == {k: v for k, v in row.items() if k != "position"}
    assert (row["f"], row["n"], row["b"], row["l"], row["op"]) == (
        "0.0", str(2**70), "True", "[1, 2]", "min")
    assert row["s"] == "a,b\n\"c\"" and row["flag"] == "True" and row["nothing"] == ""
    assert row["finished_at"].endswith("+00:00")


def test_parquet_takes_columns_of_mixed_kinds_as_text(in_tmp):
    batch = Batch("mixed")
    batch.add_run(Echo, {"i": 0, "x": 1})
    batch.add_run(Echo, {"i": 1, "x": "one"})
    batch.add_run(Echo, {"i": 2, "x": {3, 4}})
    batch(verbose=0)
    out = subprocess.run([sys.executable, "-m", "runstore", "export", "_res/mixed.db",
                          "--parquet", "m.parquet"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    frame = pandas.read_parquet("m.parquet")
    assert list(frame["x"]) == ["1", "'one'", "{3, 4}"] and list(frame["i"]) == [0, 1, 2]
    # The result r mixes an int and a string (a set gives no result row).
    assert list(frame["r"][:2]) == ["1", "'one'"] and frame["r"].isna()[2]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_datasette_facet_values_passed_as_text_select_their_runs(in_tmp):
    """Datasette passes filter values as text: a float column must still match."""
    import json
    import time
    import urllib.request

    batch = Batch("oscillator")
    batch.add_factorial_runs(Echo, {"i": [0, 1, 2, 3], "x": [0.02, 0.5, 1.0]})
    batch(verbose=0)
    batch.store.close()
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "datasette", "serve", "-i", "_res/oscillator.db",
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}/oscillator/oscillator.json?_shape=array"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(base + "&x=0.02", timeout=5) as answer:
                    rows = json.load(answer)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, (
                    server.stdout.read() if server.poll() is not None else "no answer")
                time.sleep(0.2)
        assert len(rows) == 4 and all(row["x"] == 0.02 for row in rows)
        with urllib.request.urlopen(base + "&x=1", timeout=5) as answer:
            assert len(json.load(answer)) == 4  # "1" matches 1.0
        facets = f"http://127.0.0.1:{port}/oscillator/oscillator.json?_facet=x"
        with urllib.request.urlopen(facets, timeout=5) as answer:
            results = json.load(answer)["facet_results"]
        results = results.get("results", results)  # datasette 0.x / 1.x
        for item in results["x"]["results"]:  # follow each facet link, as a click does
            with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/oscillator/oscillator.json?_shape=array"
                    f"&x={item['value']}", timeout=5) as answer:
                assert len(json.load(answer)) == item["count"] == 4, item
    finally:
        server.terminate()
        server.wait(timeout=30)
        server.stdout.close()


def test_plot_legends_are_in_numeric_order_whatever_the_types(in_tmp):
    import matplotlib

    matplotlib.use("Agg")
    batch = Batch("legend")
    batch.add_factorial_runs(Echo, {"i": [0, 1], "x": [10, 2.5, 0.0, 1, 0.5]})
    batch(verbose=0)
    ax = batch.plot("i", "r", hue="x")
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels == ["x=0.0", "x=0.5", "x=1.0", "x=2.5", "x=10.0"]  # one column, one type
    import matplotlib.pyplot as plt

    plt.close("all")


def test_nan_and_ints_beyond_64_bits_come_back_exact_where_sql_cannot_hold_them(in_tmp):
    batch = Batch("exact")
    for i, x in enumerate([1.5, math.nan, None]):
        batch.add_run(Echo, {"i": i, "x": x})
    big = Batch("big", store=batch.store)
    for i, x in enumerate([2**70, 3, True]):
        big.add_run(Echo, {"i": i, "x": x})
    batch(verbose=0)
    big(verbose=0)
    assert sqlite3_cli("_res/exact.db", "select quote(x) from exact order by position") == [
        ["1.5"], ["NULL"], ["NULL"]]  # SQL has no NaN
    frame = batch.to_dataframe()
    assert str(frame["x"].dtype) == "float64" and frame["x"].iloc[0] == 1.5
    assert frame["x"].isna().tolist() == [False, True, True]
    table = runstore.table.batch_table(batch.store, batch._id)
    at = table.columns.index("x")
    assert [row[at] for row in table.rows][1:] == [pytest.approx(math.nan, nan_ok=True), None]
    assert sqlite3_cli("_res/exact.db", "select typeof(x) from big order by position") == [
        ["real"], ["integer"], ["integer"]]  # the nearest float of 2**70
    frame = big.to_dataframe()
    assert frame["x"].dtype == object and list(frame["x"]) == [2**70, 3, 1]
    assert type(frame["x"].iloc[0]) is int


def test_a_rolled_back_commit_never_leaves_a_column_kind_unrecorded(tmp_path):
    """The store splits a commit SQLite refuses; the kinds it saw must be written again."""
    from runstore.encoding import indexed
    from runstore.schema import RunState
    from runstore.store import Completion

    batch = Batch("kinds", path=tmp_path)
    batch.add_factorial_runs(Echo, {"i": [0, 1, 2]})
    rows = batch.store.claim(batch._id, [f"{Echo.__module__}.Echo"], 3)
    # The lone surrogate makes SQLite refuse the typed row, after the
    # transaction has seen the column's kinds: the commit is rolled back and
    # retried in parts.
    values = [0.5, "\ud800", 2.0]
    completions = [Completion(row.id, row.key, RunState.DONE,
                              result_json='["dict",[["r",1.0]]]', scalars={"r": indexed(v)})
                   for row, v in zip(rows, values)]
    assert batch.store.complete(completions, batch._id) == 3
    assert [run.state for run in batch.run] == ["done", "failed", "done"]
    db = str(tmp_path / "_res" / "kinds.db")
    assert sqlite3_cli(db, "select kinds from batch_columns where name = 'r'") == [["float"]]
    assert sqlite3_cli(db, "select typeof(r) from kinds order by position") == [
        ["real"], ["null"], ["real"]]
