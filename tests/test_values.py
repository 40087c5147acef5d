"""Bad values fail cleanly, with a runstore error naming the place; one bad result fails its run only."""

from __future__ import annotations

import json
import math
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

import runstore
from runstore import Batch, Object
from runstore.encoding import MAX_DEPTH, MAX_INT_BITS, canonical_json, decode, encode
from runstore.errors import (
    EncodingError,
    QueryError,
    RunsFailedError,
    RunstoreError,
    UnstorableValueError,
)
from runstore.results import encode_result

from .runs import Anything
from .strategies import strictly_equal


class Loop(Object):
    """An Object whose attribute refers back to it."""

    def __init__(self) -> None:
        self.me = None
        Object.__init__(self)


def self_list() -> list:
    a: list = [1]
    a.append(a)
    return a


def self_dict() -> dict:
    d: dict = {"x": 1}
    d["again"] = {"inner": d}
    return d


def self_object() -> Loop:
    o = Loop()
    o.me = o
    return o


def deep(levels: int, leaf=0):
    value = leaf
    for _ in range(levels):
        value = [value]
    return value


def deep_tuple(levels: int):
    value: object = 0
    for _ in range(levels):
        value = (value,)
    return value


def deep_dict(levels: int):
    value: object = 0
    for _ in range(levels):
        value = {"k": value}
    return value


class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no str for you")


#: Results of BadResults(kind=...): the key the error must name (None: a good result).
BAD_RESULTS = {
    "surrogate": ("y", lambda: {"y": "caf\udce9"}),
    "surrogate_nested": ("y", lambda: {"y": [{"z": ("ok", "\udcff")}]}),
    "surrogate_key": ("\\udcff", lambda: {"\udcff": 1}),
    "surrogate_nested_key": ("y", lambda: {"y": {"\ud800": 1}}),
    "nul_key": ("a\\x00b", lambda: {"a\x00b": 1}),
    "self_list": ("y", lambda: {"y": self_list()}),
    "self_dict": ("y", lambda: {"y": self_dict()}),
    "self_object": ("y", lambda: {"y": self_object()}),
    "deep": ("y", lambda: {"y": deep(100_000)}),
    "deep_dict": ("y", lambda: {"y": deep_dict(100_000)}),
    "huge_int": ("y", lambda: {"y": 1 << (MAX_INT_BITS + 1)}),
    "longdouble": ("y", lambda: {"y": np.longdouble(1.5)}),
    "object_key": ("object", lambda: {object(): 1}),
    "clash": ("a.b", lambda: {"a.b": 1, "a": {"b": 2}}),
    "int_str_clash": ("'1'", lambda: {1: "a", "1": "b"}),
    "surrogate_message": ("caf\\udce9", None),
    "unprintable": ("Unprintable", None),
}
GOOD_RESULTS = {
    "good": lambda: {"y": 1, "s": "plain"},
    "big_int": lambda: {"y": 2**64, "neg": -(2**63) - 1, "edge": 2**63 - 1},
    "numpy_big": lambda: {"y": np.uint64(2**64 - 1), "i": np.int64(-(2**63))},
    "widest_int": lambda: {"y": (1 << MAX_INT_BITS) - 1},
    "nul_value": lambda: {"y": "a\x00b", "b": b"\x00"},
    "nested_nul_key": lambda: {"y": {"b\x00": 1, "c": 2}},
    "int_key": lambda: {3: "three", (1, 2): "pair"},
    "deep_enough": lambda: {"y": deep(MAX_DEPTH - 1)},
    "shared_not_cyclic": lambda: {"y": [[1], [1]] * 2, "z": (lambda a: [a, a, {"k": a}])([2])},
}


class BadResults(runstore.Run):
    """Returns a good or a bad result, or raises, depending on ``kind``."""

    def run(self, kind="good"):
        if kind == "surrogate_message":
            raise ValueError("cannot open caf\udce9.txt")
        if kind == "unprintable":
            raise Unprintable()
        return GOOD_RESULTS[kind]() if kind in GOOD_RESULTS else BAD_RESULTS[kind][1]()


# -- parameters --------------------------------------------------------------------

BAD_PARAMETERS = {
    "surrogate": "caf\udce9",
    "surrogate_in_list": ["a", ("b", "\udcff")],
    "surrogate_key": {"\udcff": 1},
    "self_list": self_list(),
    "self_dict": self_dict(),
    "self_object": self_object(),
    "deep": deep(100_000),
    "deep_dict": deep_dict(100_000),
    "deep_tuple_key": {deep_tuple(5_000): 1},
    "huge_int": 1 << (MAX_INT_BITS + 1),
    "huge_negative_int": -(1 << 20_000),
    "longdouble": np.longdouble(1.5),
    "clongdouble": np.clongdouble(1 + 2j),
    "datetime": np.datetime64("2020-01-01"),
}


@pytest.mark.parametrize("label", list(BAD_PARAMETERS))
def test_a_bad_parameter_value_is_a_runstore_error_naming_the_parameter(in_tmp, label):
    batch = Batch("bad")
    with pytest.raises(EncodingError) as info:
        batch.add_run(Anything, {"p": BAD_PARAMETERS[label]})
    assert isinstance(info.value, RunstoreError) and isinstance(info.value, TypeError)
    message = str(info.value)
    assert "parameter 'p'" in message
    assert len(message) < 1000  # says what to do, briefly, even for huge values
    assert len(batch.run) == 0 and batch.store.check().ok


@pytest.mark.parametrize("label, expected", [
    ("self_list", "contains itself"), ("self_dict", "contains itself"),
    ("self_object", "contains itself"), ("deep", f"more than {MAX_DEPTH} levels"),
    ("surrogate", "lone surrogate"), ("huge_int", "bits"),
])
def test_the_error_says_what_is_wrong_and_is_also_a_value_error(in_tmp, label, expected):
    with pytest.raises(UnstorableValueError, match=expected) as info:
        Batch("bad").add_run(Anything, {"p": BAD_PARAMETERS[label]})
    assert isinstance(info.value, ValueError)


def test_a_self_referring_value_is_named_where_it_refers_back():
    with pytest.raises(UnstorableValueError) as info:
        encode(self_dict(), "parameter 'p'")
    assert info.value.path == "parameter 'p'['again']['inner']"


@pytest.mark.parametrize("name, kind", [
    ("a\x00b", UnstorableValueError), ("\udcff", UnstorableValueError),
    ("x\ud800y", UnstorableValueError), ("", UnstorableValueError),
    (3, EncodingError), (None, EncodingError), (("a",), EncodingError),
])
def test_a_bad_parameter_name_is_a_runstore_error(in_tmp, name, kind):
    batch = Batch("names")
    with pytest.raises(kind) as info:
        batch.add_run(Anything, {name: 1})
    assert "parameter name" in str(info.value)
    with pytest.raises(kind):
        batch.add_factorial_runs(Anything, {"ok": [1, 2], name: [1]})
    with pytest.raises(kind):
        runstore.compute_id("x.Run", {name: 1})
    assert len(batch.run) == 0 and batch.store.check().ok


def test_private_parameter_values_are_checked_too(in_tmp):
    with pytest.raises(UnstorableValueError, match="parameter '_x'"):
        Batch("private").add_run(Anything, {"a": 1, "_x": "\udcff"})


GOOD_PARAMETERS = [
    2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 2**64, 10**30, -(10**300), 10**400,
    (1 << MAX_INT_BITS) - 1, np.uint64(2**64 - 1), np.int64(-(2**63)),
    "a\x00b", "\x00", {"a\x00": [b"\x00", "\x00"]}, deep(MAX_DEPTH - 1), [[1], [1]],
]


@pytest.mark.parametrize("value", GOOD_PARAMETERS, ids=range(len(GOOD_PARAMETERS)))
def test_storable_parameters_round_trip_exactly_and_query(in_tmp, value):
    batch = Batch("good")
    batch.add_factorial_runs(Anything, {"p": [value, 0, 1.5, "text"]})
    batch.add_run(Anything, {"p": value})
    assert len(batch.run) == 4
    again = Batch("good")  # reopened: the values come back from the file
    assert strictly_equal(again.run[0].parameters["p"], value)
    found = again.get_runs_with(p=value)
    assert [r.id for r in found] == [again.run[0].id]
    assert again.store.check().ok


# -- queries -------------------------------------------------------------------------

STORED_NUMBERS = [
    0, 1, -1, 2**53 + 1, 2**63 - 1, -(2**63), 2**63, 2**63 + 1, -(2**63) - 1, 2**64 - 1,
    2**64, 2**64 + 1, 10**20 - 1, 10**20, 10**20 + 1, -(10**20), -(10**20) - 1, 10**400,
    -(10**400), 2.0**63, 2.0**64, 1e20, -1e20, 1.5, math.inf, -math.inf, 1e308,
]
PROBES = [
    0, 2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 2**64 - 1, 2**64, 2**64 + 1, 10**20,
    10**20 - 1, -(10**20) - 1, 10**400, -(10**400), 10**400 + 1, 2.0**63, 2.0**64, 1e20,
    -1e20, math.inf, -math.inf, 1e308, 0.5, np.uint64(2**64 - 1), np.int64(-(2**63)),
]


@pytest.fixture(scope="module")
def numbers(tmp_path_factory):
    batch = Batch("numbers", path=tmp_path_factory.mktemp("numbers"))
    batch.add_factorial_runs(Anything, {"n": STORED_NUMBERS})
    return batch


def _exactly(stored, op, probe):
    probe = probe.item() if isinstance(probe, np.generic) else probe
    return {"lt": stored < probe, "le": stored <= probe, "gt": stored > probe,
            "ge": stored >= probe, "ne": stored != probe, "eq": stored == probe}[op]


@pytest.mark.parametrize("op", ["lt", "le", "gt", "ge", "eq", "ne"])
def test_number_queries_are_exact_for_ints_of_any_size(numbers, op):
    for probe in PROBES:
        got = [r.parameters["n"] for r in numbers.get_runs_with(**{f"n__{op}": probe})]
        if op in ("eq", "ne") and isinstance(probe, float) and math.isfinite(probe):
            continue  # float equality has a tolerance; checked below
        expected = [n for n in STORED_NUMBERS if _exactly(n, op, probe)]
        assert got == expected, (op, probe)


def test_big_int_equality_and_in_match_exactly(numbers):
    def ids(**query):
        return [r.parameters["n"] for r in numbers.get_runs_with(**query)]
    assert ids(n=2**64) == [2**64, 2.0**64]  # the float equal to it too
    assert ids(n=2**64 + 1) == [2**64 + 1]
    assert ids(n=10**400) == [10**400]
    assert ids(n__in=[2**63, 10**20 + 1, -(10**400), 7]) == [2**63, 10**20 + 1, -(10**400),
                                                            2.0**63]
    assert ids(n__in=[-(2**63), 2**64 - 1]) == [-(2**63), 2**64 - 1]
    assert ids(n=1e20) == [10**20 - 1, 10**20, 10**20 + 1, 1e20]  # within the tolerance


def test_ordering_on_big_ints_uses_the_index(numbers):
    from runstore.query import Query

    sql, args = Query({"n__ge": 2**64}).sql(numbers._id)
    with numbers.store.engine.connect() as conn:
        plan = [row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql,
                                                        tuple(args))]
    assert not [step for step in plan if step.startswith("SCAN")], plan


@pytest.mark.parametrize("value, kind", [
    (1 << (MAX_INT_BITS + 1), UnstorableValueError), ("\udcff", UnstorableValueError),
    (self_list(), UnstorableValueError), (deep(100_000), UnstorableValueError),
    ([1, "\udcff"], UnstorableValueError), (object(), EncodingError),
])
def test_bad_query_values_are_runstore_errors(numbers, value, kind):
    for op in ("", "__ne", "__ge", "__in"):
        query = {f"n{op}": [value] if op == "__in" else value}
        with pytest.raises(kind) as info:
            numbers.get_runs_with(**query)
        assert "query value of 'n'" in str(info.value)


def test_bad_query_names_are_query_errors(numbers):
    for name in ("\udcff", "n\x00", "n\ud800__ge"):
        with pytest.raises(QueryError, match="no run has a parameter"):
            numbers.get_runs_with(**{name: 1})


def runstore_cli(*args):
    return subprocess.run([sys.executable, "-m", "runstore", *args], capture_output=True,
                          text=True, errors="backslashreplace")


@pytest.mark.slow
def test_cli_filters_with_big_and_bad_values(numbers):
    db = numbers.store.path
    for text, count in [(f"n>={2**64}", sum(n >= 2**64 for n in STORED_NUMBERS)),
                        (f"n={10**400}", 1), (f"n<{-(10**20)}", 3),
                        (f"n__in=[{2**63}, {10**400}]", 3)]:
        result = runstore_cli("runs", db, "--csv", text)
        assert result.returncode == 0, result.stderr
        assert len(result.stdout.splitlines()) == 1 + count, (text, result.stdout)
    for text in [f"n={'9' * 5000}", "n=" + "[" * 100_000, "n=" + "[" * 50_000 + "]" * 50_000,
                 "n=[1, 2", "n\udcff=1", "n='\udcff'",
                 "n=\udcff", f"n>={1 << (MAX_INT_BITS + 1)}"]:
        result = runstore_cli("runs", db, text)
        assert result.returncode != 0 and "Traceback" not in result.stderr, (text, result)
        assert result.stderr.strip(), text


# -- results: one bad result fails its own run only -------------------------------------


@pytest.mark.parametrize("processes", [None, 2])
def test_bad_results_fail_their_runs_only(in_tmp, processes):
    batch = Batch("mixed")
    kinds = [k for pair in zip(GOOD_RESULTS, BAD_RESULTS) for k in pair]
    kinds += list(BAD_RESULTS)[len(GOOD_RESULTS):]
    batch.add_factorial_runs(BadResults, {"kind": kinds})
    with pytest.raises(RunsFailedError) as info:
        batch(processes=processes)
    assert len(info.value.failures) == len(BAD_RESULTS)
    again = Batch("mixed")
    again.add_factorial_runs(BadResults, {"kind": kinds})
    states = {r.parameters["kind"]: r for r in again.run}
    assert len(states) == len(kinds)
    for kind, (key, _) in BAD_RESULTS.items():
        run = states[kind]
        assert run.state == "failed", kind
        record = run._record()
        assert key in record["error_message"], (kind, record["error_message"])
        assert key in run.error, kind
        assert record["error_message"].encode("utf-8")  # storable text
    for kind, make in GOOD_RESULTS.items():
        run = states[kind]
        assert run.state == "done", (kind, run.error)
        assert strictly_equal(run.result, make()), kind
    counts = again.store.state_counts(again._id)
    assert counts == {"done": len(GOOD_RESULTS), "failed": len(BAD_RESULTS)}
    assert again.store.check().ok
    # The query rows of good results are there, typed; none of the bad ones.
    with sqlite3.connect(again.store.path) as conn:
        keys = {row[0] for row in conn.execute("SELECT key FROM result_values")}
    assert {"y", "s", "neg", "edge", "i", "3", "(1, 2)", "y.c"} <= keys
    assert not any("\x00" in key for key in keys)


def test_error_texts_with_surrogates_are_stored_escaped(in_tmp):
    batch = Batch("escaped")
    run = batch.add_run(BadResults, {"kind": "surrogate_message"})
    with pytest.raises(RunsFailedError, match=r"caf\\udce9"):
        batch()
    assert "cannot open caf\\udce9.txt" in run.error
    assert run._record()["error_message"] == "cannot open caf\\udce9.txt"


def test_a_retried_bad_run_fails_again_cleanly(in_tmp):
    batch = Batch("retry")
    batch.add_factorial_runs(BadResults, {"kind": ["good", "surrogate", "nul_key"]})
    for _ in range(2):
        with pytest.raises(RunsFailedError):
            batch(retry_failed=True)
    assert batch.store.state_counts(batch._id) == {"done": 1, "failed": 2}


@pytest.mark.parametrize("kind", list(BAD_RESULTS)[:-2])
def test_encode_result_refuses_each_bad_result(kind):
    key, make = BAD_RESULTS[kind]
    with pytest.raises(EncodingError) as info:
        encode_result(make())
    assert key in str(info.value)


@pytest.mark.parametrize("kind", list(GOOD_RESULTS))
def test_everything_an_encoded_good_result_holds_is_storable(kind):
    encoded = encode_result(GOOD_RESULTS[kind]())
    encoded.json.encode("ascii")
    for key, form in encoded.scalars.items():
        key.encode("utf-8")
        assert "\x00" not in key
        assert form.text is None or form.text.encode("utf-8") is not None
    assert strictly_equal(decode(json.loads(encoded.json)), GOOD_RESULTS[kind]())


def test_pickling_does_not_rescue_values_too_deep_for_pickle_either(in_tmp):
    with pytest.raises(UnstorableValueError, match="levels"):
        encode_result({"y": deep(100_000)}, allow_pickle=True)
    cyclic = encode_result({"y": self_list()}, allow_pickle=True)  # pickle keeps cycles
    assert cyclic.json.startswith('["dict"')


def test_canonical_json_of_the_deepest_value_loads_back():
    value = deep(MAX_DEPTH + 1, leaf="x")
    with pytest.raises(UnstorableValueError):
        encode(value)
    tree = encode(value[0])
    assert decode(json.loads(canonical_json(tree))) == value[0]


# -- property tests: anything is refused cleanly, or comes back exactly -----------------

import tempfile  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from .strategies import wild_ints, wild_values  # noqa: E402


class Echo(runstore.Run):
    """Returns whatever the test put in ``Echo.value`` (serial batches only)."""

    value: object = None

    def run(self, k=0):
        return Echo.value


_PROPERTY = settings(max_examples=60, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])


@_PROPERTY
@given(value=wild_values)
def test_any_parameter_value_is_refused_or_round_trips(value):
    with tempfile.TemporaryDirectory() as folder:
        batch = Batch("prop", path=folder)
        try:
            run = batch.add_run(Anything, {"p": value})
        except RunstoreError as exc:
            assert isinstance(exc, EncodingError), exc
            assert "parameter 'p'" in str(exc)
            assert len(batch.run) == 0 and batch.store.check().ok
            return
        again = Batch("prop", path=folder)
        stored = again.add_run(Anything, {"p": value})  # not added twice: the stored run
        assert len(again.run) == 1 and stored.id == run.id
        assert strictly_equal(stored.parameters["p"], value)
        assert run.id in [r.id for r in again.get_runs_with(p=value)]
        for op in ("ne", "lt", "ge", "in"):
            try:
                again.get_runs_with(**{f"p__{op}": [value] if op == "in" else value})
            except (QueryError, EncodingError):
                pass
        assert again.store.check().ok
        again.store.close()
        batch.store.close()


@_PROPERTY
@given(value=wild_values, wrap=st.booleans())
def test_any_result_is_refused_or_round_trips_through_a_batch(value, wrap):
    Echo.value = {"v": value, "ok": 1} if wrap else value
    with tempfile.TemporaryDirectory() as folder:
        batch = Batch("prop", path=folder)
        run = batch.add_run(Echo, {"k": 0})
        try:
            batch(verbose=0)
        except RunsFailedError:
            record = run._record()
            assert record["state"] == "failed"
            assert record["error_type"] in ("EncodingError", "UnstorableValueError"), (
                record["traceback"])
        else:
            again = Batch("prop", path=folder)
            stored = again.add_run(Echo, {"k": 0})
            assert strictly_equal(stored.result, Echo.value)
            again.store.close()
        assert batch.store.state_counts(batch._id).get("running") is None
        assert batch.store.check().ok
        batch.store.close()


@pytest.fixture(scope="module")
def wild_numbers(tmp_path_factory):
    stored = sorted({*STORED_NUMBERS, *(2**k + d for k in (53, 63, 64, 100) for d in
                                        (-1, 0, 1)), *(-(2**k) + d for k in (63, 64)
                                                       for d in (-1, 0, 1))},
                    key=lambda n: (float(n) if abs(n) < 1e300 else (
                        math.inf if n > 0 else -math.inf), n))
    batch = Batch("wild", path=tmp_path_factory.mktemp("wild"))
    batch.add_factorial_runs(Anything, {"n": stored})
    return batch, [r.parameters["n"] for r in batch.run]


@settings(max_examples=150, deadline=None)
@given(probe=st.one_of(wild_ints, st.floats(allow_nan=False)),
       op=st.sampled_from(["lt", "le", "gt", "ge", "eq", "ne"]))
def test_number_queries_are_exact_for_any_probe(wild_numbers, probe, op):
    batch, stored = wild_numbers
    try:
        got = [r.parameters["n"] for r in batch.get_runs_with(**{f"n__{op}": probe})]
    except UnstorableValueError:
        assert probe.bit_length() > MAX_INT_BITS
        return
    if op in ("eq", "ne") and isinstance(probe, float):
        return  # float equality has a tolerance
    assert got == [n for n in stored if _exactly(n, op, probe)]
