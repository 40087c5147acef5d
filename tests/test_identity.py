"""runstore.identity: run ids are canonical, typed, stable and pinned."""

from __future__ import annotations

import copy
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from runstore import SCHEME_VERSION, Container, Object, compute_id, type_name
from runstore.encoding import decode, encode
from runstore.errors import EncodingError
from runstore.identity import encode_parameters, run_id

from . import golden
from .strategies import names, parameters, strictly_equal, values


class ExampleRun:
    """Stands in for a run class: only its name matters to identity."""


class OtherRun:
    pass


class Moved:
    __runstore_name__ = "example.ExampleRun"


class Grid(Object):
    def __init__(self, N):
        self.N = N
        Object.__init__(self)


def sort_key(x):
    return x


def test_scheme_version_is_one():
    assert SCHEME_VERSION == 1


@pytest.mark.parametrize("run_type, params, expected", golden.CASES)
def test_golden_ids_never_change(run_type, params, expected):
    assert compute_id(run_type, params) == expected


@pytest.mark.parametrize("seed", ["0", "4242"])
def test_golden_ids_are_the_same_in_a_subprocess_with_another_hash_seed(seed):
    code = (
        "import json; from runstore import compute_id; from tests.golden import CASES;"
        "print(json.dumps([compute_id(t, p) for t, p, _ in CASES]))"
    )
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(root))
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root,
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [expected for _, _, expected in golden.CASES]


def test_acceptance_cases():
    ids = lambda p, t=ExampleRun: compute_id(t, p)  # noqa: E731
    assert ids({"A": 1, "B": 2}) != ids({"A": 2, "B": 1})
    assert ids({"A": 1}, ExampleRun) != ids({"A": 1}, OtherRun)
    assert len({ids({"x": v}) for v in (1, 1.0, True, "1")}) == 4
    assert ids({"x": [1, 2]}) != ids({"x": (1, 2)})
    assert ids({"x": {"a": 1, "b": 2}}) == ids({"x": {"b": 2, "a": 1}})
    assert ids({"x": np.float64(2.5)}) == ids({"x": 2.5})
    a = np.linspace(0, 1, 50)
    assert ids({"x": a}) == ids({"x": a.copy()})
    b = a.copy()
    b[17] += 1e-12
    assert ids({"x": a}) != ids({"x": b})
    assert encode(max) == ["callable", "builtins.max"]
    assert ids({"s": Grid(4)}) == ids({"s": Grid(4)}) != ids({"s": Grid(5)})
    assert encode(Grid(4))[1][0].endswith(".Grid")


def test_type_name_is_module_qualified_or_declared():
    assert type_name(ExampleRun) == f"{__name__}.ExampleRun"
    assert type_name(Moved) == "example.ExampleRun"
    assert compute_id(Moved, {"A": 1}) == compute_id("example.ExampleRun", {"A": 1})

    class Bad:
        __runstore_name__ = ""

    with pytest.raises(TypeError, match="non-empty string"):
        type_name(Bad)


@pytest.mark.parametrize("value, match", [
    (lambda x: x, "lambda"),
    (object(), "no canonical encoding"),
])
def test_unencodable_parameter_names_the_parameter(value, match):
    with pytest.raises(EncodingError, match=match) as info:
        compute_id(ExampleRun, {"ok": 1, "operator": value})
    message = str(info.value)
    assert "parameter 'operator'" in message
    assert "top level of a module" in message or "Convert the value" in message


def test_local_function_parameter_is_an_error_not_dropped():
    def local_op(values):
        return max(values)

    with pytest.raises(EncodingError, match="parameter 'operator'.*is defined inside "
                                            r"test_local_function_parameter_is_an_error_not_dropped\(\)"):
        compute_id(ExampleRun, {"operator": local_op})


def test_ids_recompute_from_stored_encodings():
    params = {"A": 3, "B": [2, 5, 8], "operator": max, "s": Container(a=1), "g": Grid(3)}
    stored = {k: json.loads(json.dumps(v)) for k, v in encode_parameters(params).items()}
    reloaded = {k: decode(v) for k, v in stored.items()}  # FunctionRef, ObjectRef ...
    assert run_id("t", encode_parameters(reloaded)) == compute_id("t", params)


@given(parameters)
def test_equal_inputs_give_equal_ids(params):
    assert compute_id("t", params) == compute_id("t", copy.deepcopy(params))


@given(values, values)
def test_ids_differ_exactly_when_values_differ(a, b):
    same = compute_id("t", {"x": a}) == compute_id("t", {"x": b})
    assert same == strictly_equal(a, b)


@given(parameters, names)
def test_renaming_a_parameter_changes_the_id(params, new_name):
    assume(params and new_name not in params)
    old = sorted(params)[0]
    renamed = {(new_name if k == old else k): v for k, v in params.items()}
    assert compute_id("t", params) != compute_id("t", renamed)


@given(parameters, st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20))
def test_changing_the_run_type_changes_the_id(params, t1, t2):
    assume(t1 != t2)
    assert compute_id(t1, params) != compute_id(t2, params)


@given(parameters, st.randoms())
def test_dict_order_never_matters(params, rnd: random.Random):
    items = list(params.items())
    rnd.shuffle(items)
    assert compute_id("t", dict(items)) == compute_id("t", params)
    nested = {"cfg": dict(items)}
    assert compute_id("t", nested) == compute_id("t", {"cfg": params})
