"""runstore.query: get_runs_with is one indexed SQL query with exact semantics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import runstore
from runstore import Batch
from runstore.errors import EncodingError, QueryError
from runstore.query import Query

from .runs import ExampleRun, Sweep


class Mixed(runstore.Run):
    def run(self, v=None, tag=""):
        return {"v": v}


MIXED_VALUES = [0, 1, 2, 2.0, 2.000001, 2.5, 3, -1, True, False, None, "2", "abc",
                [2], (2,), math.inf, math.nan, 2**70, np.arange(3)]


@pytest.fixture
def mixed(in_tmp):
    batch = Batch("mixed")
    for i, v in enumerate(MIXED_VALUES):
        batch.add_run(Mixed, {"v": v, "tag": f"t{i}"})
    return batch


def values_of(runs):
    return [MIXED_VALUES[int(r.parameters["tag"][1:])] for r in runs]


def test_quickstart_query(in_tmp):
    batch = Batch("example")
    batch.add_run(ExampleRun, {"A": 10, "B": [3, 2, 4, 3, 8]})
    batch.add_factorial_runs(ExampleRun, {"A": [1, 2, 3, 4, 5],
                                          "B": [[2, 5, 8], [1, 9, 6, 3, 9]],
                                          "operator": [min, max]})
    runs = batch.get_runs_with(A__ge=3, B=[2, 5, 8], operator=max)
    assert [(r.parameters["A"], r.index) for r in runs] == [(3, 10), (4, 14), (5, 18)]
    assert all(r.parameters["B"] == [2, 5, 8] and r.parameters["operator"] is max for r in runs)


def test_equality_is_typed_and_numeric_with_float_tolerance(mixed):
    assert values_of(mixed.get_runs_with(v=2)) == [2, 2.0]
    assert values_of(mixed.get_runs_with(v=2.0)) == [2, 2.0, 2.000001]  # isclose
    assert values_of(mixed.get_runs_with(v=True)) == [True]
    assert values_of(mixed.get_runs_with(v=None)) == [None]
    assert values_of(mixed.get_runs_with(v="2")) == ["2"]
    assert values_of(mixed.get_runs_with(v=[2])) == [[2]]
    assert values_of(mixed.get_runs_with(v=(2,))) == [(2,)]
    assert values_of(mixed.get_runs_with(v=math.inf)) == [math.inf]
    assert len(mixed.get_runs_with(v=math.nan)) == 1
    assert values_of(mixed.get_runs_with(v=2**70)) == [2**70]
    assert len(mixed.get_runs_with(v=np.arange(3))) == 1
    assert mixed.get_runs_with(v=np.arange(4)) == []
    assert values_of(mixed.get_runs_with(v=np.float64(2.5))) == [2.5]


def test_ordering_compares_numbers_or_strings_and_none_never_crashes(mixed):
    assert values_of(mixed.get_runs_with(v__ge=2.5)) == [2.5, 3, math.inf, 2**70]
    assert values_of(mixed.get_runs_with(v__lt=1)) == [0, -1]
    assert values_of(mixed.get_runs_with(v__gt="2")) == ["abc"]
    assert values_of(mixed.get_runs_with(v__le=0, tag="t0")) == [0]
    with pytest.raises(QueryError, match="ordering compares numbers or strings"):
        mixed.get_runs_with(v__ge=None)
    with pytest.raises(QueryError, match="ordering compares numbers or strings"):
        mixed.get_runs_with(v__lt=[1])


def test_in_takes_a_list_of_values(mixed):
    assert values_of(mixed.get_runs_with(v__in=[None, "abc", 3])) == [3, None, "abc"]
    assert mixed.get_runs_with(v__in=[]) == []
    with pytest.raises(QueryError, match="needs a list of values"):
        mixed.get_runs_with(v__in=3)


def test_ne_is_the_exact_complement_of_equality(mixed):
    everything = {r.id for r in mixed.run}
    for value in [2, 2.0, None, "2", [2], True, math.nan, 2**70]:
        equal = {r.id for r in mixed.get_runs_with(v=value)}
        different = {r.id for r in mixed.get_runs_with(v__ne=value)}
        assert equal | different == everything and not equal & different


def test_unknown_parameter_or_operator_is_an_error_naming_the_valid_ones(mixed):
    with pytest.raises(QueryError, match="no run has a parameter 'w'; the parameters are 'tag', 'v'"):
        mixed.get_runs_with(w=1)
    with pytest.raises(QueryError, match="unknown operator 'gte' in 'v__gte'.*__ge"):
        mixed.get_runs_with(v__gte=1)
    with pytest.raises(EncodingError, match="query value of 'v'"):
        mixed.get_runs_with(v=lambda x: x)


def test_no_conditions_gives_every_run_in_order(mixed):
    assert [r.index for r in mixed.get_runs_with()] == list(range(len(MIXED_VALUES)))


def test_queries_only_see_their_own_batch(in_tmp):
    a = Batch("a")
    b = Batch("b", store=a.store)
    a.add_factorial_runs(Sweep, {"A": [1, 2]})
    b.add_factorial_runs(Sweep, {"A": [2, 3]})
    assert [r.parameters["A"] for r in a.get_runs_with(A__ge=2)] == [2]
    assert [r.index for r in b.get_runs_with(A__ge=2)] == [0, 1]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-3, 3), min_size=1, max_size=12), st.integers(-3, 3),
       st.sampled_from(["eq", "ne", "lt", "le", "gt", "ge"]))
def test_queries_agree_with_python_comparisons(tmp_path_factory, values, probe, op):
    batch = Batch("prop", saveresult=False)
    batch.add_factorial_runs(Sweep, {"A": values})
    got = [r.parameters["A"] for r in batch.get_runs_with(**{f"A__{op}": probe})]
    compare = {"eq": int.__eq__, "ne": int.__ne__, "lt": int.__lt__, "le": int.__le__,
               "gt": int.__gt__, "ge": int.__ge__}[op]
    assert got == [v for v in dict.fromkeys(values) if compare(v, probe)]


def test_selective_query_plan_uses_indexes_not_full_scans(in_tmp):
    batch = Batch("plan")
    batch.add_factorial_runs(Sweep, {"A": list(range(20)), "B": list(range(20)), "C": [0, 1]})
    for conditions in ({"A": 3, "B": 7}, {"A__ge": 18, "C": 1}, {"B__in": [1, 2]},
                       {"A": 3, "B__ne": 4}):
        sql, args = Query(conditions).sql(batch._id)
        with batch.store.engine.connect() as conn:
            plan = [row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql,
                                                            tuple(args))]
        scans = [step for step in plan if step.startswith("SCAN")]
        assert not scans, f"full scan in plan for {conditions}: {plan}"
        assert any("USING" in step and "INDEX" in step and "p0" in step for step in plan), plan
        expected = [r for r in batch.run if all(
            _matches(r.parameters[k.split("__")[0]], k, v) for k, v in conditions.items())]
        assert [r.id for r in batch.get_runs_with(**conditions)] == [r.id for r in expected]


def _matches(value, key, probe):
    op = key.split("__")[1] if "__" in key else "eq"
    if op == "in":
        return value in probe
    return {"eq": value.__eq__, "ne": value.__ne__, "ge": value.__ge__}[op](probe)


def test_structured_and_text_queries_use_the_canonical_index(in_tmp):
    batch = Batch("plan2")
    batch.add_factorial_runs(ExampleRun, {"A": list(range(10)),
                                          "B": [[2, 5, 8], [1, 9], [6, 4, 0]],
                                          "operator": [min, max, sum, len]})
    for conditions in ({"B": [2, 5, 8], "operator": max}, {"operator": sum},
                       {"B__in": [[1, 9], [6, 4, 0]]}):
        sql, args = Query(conditions).sql(batch._id)
        with batch.store.engine.connect() as conn:
            plan = [row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql,
                                                            tuple(args))]
        assert not [step for step in plan if step.startswith("SCAN")], plan
        assert any("ix_parameters_canonical" in step and "p0" in step for step in plan), plan
    runs = batch.get_runs_with(B=[2, 5, 8], operator=max)
    assert [r.parameters["A"] for r in runs] == list(range(10))
    assert len(batch.get_runs_with(B__in=[[1, 9], [6, 4, 0]])) == 80


def test_the_most_selective_condition_drives_whatever_order_they_are_written_in(in_tmp):
    import itertools

    batch = Batch("plan")
    # A has 2 levels (half the runs each), B 100 (1 %), C 5; a range on C too.
    batch.add_factorial_runs(Sweep, {"A": [0, 1], "B": list(range(100)), "C": list(range(5))})
    conditions = {"A": 1, "B": 7, "C__ge": 3}
    plans, results = set(), set()
    with batch.store._reading() as conn:
        for order in itertools.permutations(conditions.items()):
            query = Query(dict(order))
            query.order(conn)
            sql, args = query.sql(batch._id)
            plans.add((sql, tuple(args)))
            results.add(tuple(r[1] for r in conn.exec_driver_sql(sql, tuple(args))))
    assert len(plans) == 1 and len(results) == 1  # one plan, one answer
    ((sql, args),) = plans
    assert args[0] == "B"  # B (5 rows) drives, not A (500) nor the range on C
    (ids,) = results
    assert [(r.parameters["A"], r.parameters["B"], r.parameters["C"])
            for r in batch.get_runs_with(C__ge=3, A=1, B=7)] == [(1, 7, 3), (1, 7, 4)]
    assert list(ids) == [r.id for r in batch.get_runs_with(B=7, C__ge=3, A=1)]


def test_when_every_condition_is_broad_the_plan_still_ignores_the_written_order(in_tmp):
    batch = Batch("broad")
    # A=1 and B=1 each match 10,000 runs: their counts tie.
    batch.add_factorial_runs(Sweep, {"A": [0, 1], "B": [0, 1], "C": list(range(5000))})
    with batch.store._reading() as conn:
        a, b = Query({"B": 1, "A": 1}), Query({"A": 1, "B": 1})
        a.order(conn)
        b.order(conn)
    assert a.sql(batch._id) == b.sql(batch._id)
    assert len(batch.get_runs_with(B=1, A=1)) == 5000


def test_conditions_on_scalar_results_use_the_result_prefix(in_tmp):
    batch = Batch("results")
    batch.add_factorial_runs(ExampleRun, {"A": [1, 2, 3, 4], "B": [[1, 2], [5]]})
    batch(verbose=0)
    # val = A * max(B): 2, 5, 4, 10, 6, 15, 8, 20
    assert sorted(r.result["val"] for r in batch.get_runs_with(result__val__ge=10)) == [
        10, 15, 20]
    assert [r.parameters["A"] for r in batch.get_runs_with(result__val=6, A__ge=2)] == [3]
    assert batch.get_runs_with(result__val__in=[2, 20]) == [batch.run[0], batch.run[7]]
    with pytest.raises(QueryError, match=r"no run has a scalar result 'vall'; the result "
                                         r"names are 'val'"):
        batch.get_runs_with(result__vall=1)
    with pytest.raises(QueryError, match=r"unknown operator 'gte' in 'result__val__gte'"):
        batch.get_runs_with(result__val__gte=1)
    with pytest.raises(QueryError, match=r"conditions on results are written result__<name>"):
        batch.get_runs_with(val=1)


def test_nested_result_keys_are_reached_with_double_underscores(in_tmp):
    from .runs import Arrays

    batch = Batch("nested")
    batch.add_factorial_runs(Arrays, {"n": [2, 3, 4]})
    batch(verbose=0)
    assert [r.parameters["n"] for r in batch.get_runs_with(result__stats__n__gt=2)] == [3, 4]
    assert [r.parameters["n"] for r in batch.get_runs_with(
        **{"result__stats.label": "n=3"})] == [3]
    # Pending runs have no result rows: they never match a result condition.
    batch.add_run(Arrays, {"n": 9})
    assert len(batch.get_runs_with(result__stats__n__ge=0)) == 3


def test_the_command_line_filters_on_results_too(in_tmp):
    from .test_cli import runstore_cli

    batch = Batch("cli")
    batch.add_factorial_runs(ExampleRun, {"A": [1, 2, 3, 4], "B": [[1, 2], [5]]})
    batch(verbose=0)
    out = runstore_cli("runs", batch.store.path, "val>=10", "A<4", "--csv")
    assert out.returncode == 0, out.stderr
    rows = out.stdout.splitlines()[1:]
    assert sorted(int(row.split(",")[-1]) for row in rows) == [10, 15]
    out = runstore_cli("runs", batch.store.path, "result__val=20", "--csv")
    assert len(out.stdout.splitlines()) == 2
    out = runstore_cli("runs", batch.store.path, "vals>=10")
    assert out.returncode == 2 and "no run has a parameter 'vals'" in out.stderr


def test_a_command_line_filter_of_a_kind_its_column_never_holds_is_refused(in_tmp):
    from runstore.query import filter_conditions

    batch = Batch("kinds")
    batch.add_factorial_runs(Mixed, {"v": [0.5, 1.5], "tag": ["a", "b"]})
    store = batch.store
    refusals = {
        "v=1,5": r"its value is a tuple, and v holds float values; for a decimal number "
                 r"write it with a point: 1\.5",
        'v="1.5"': r"its value is a string, and v holds float values; a number is written "
                   r"without quotes: v=1\.5",
        "tag=3": r"its value is an int, and tag holds string values; for text, quote it: "
                 r"'tag=\"3\"'",
        "v=True": r"its value is a boolean, and v holds float values",
        "v__in=['a', None]": r"its value is None, a string, and v holds float values",
    }
    for text, message in refusals.items():
        with pytest.raises(QueryError, match=rf"the filter .* can match no run: {message}"):
            filter_conditions(store, [text])
    # Values of a kind the column holds, __ne of any value, and unknown names pass on.
    assert filter_conditions(store, ["v=1.5", "tag=b"]) == {"v": 1.5, "tag": "b"}
    assert filter_conditions(store, ["v=2"]) == {"v": 2}  # an int may equal a float
    assert filter_conditions(store, ["v__in=[1, 'x']"]) == {"v__in": [1, "x"]}
    assert filter_conditions(store, ["v__in={0.5, 9}"]) == {"v__in": {0.5, 9}}  # a set
    assert filter_conditions(store, ["v__in=[]"]) == {"v__in": []}  # matches nothing
    assert filter_conditions(store, ["tag!=3"]) == {"tag__ne": 3}
    assert len(batch.get_runs_with(**filter_conditions(store, ["tag!=3"]))) == 4
    assert filter_conditions(store, ["w=1,5"]) == {"w": (1, 5)}  # the query names it
