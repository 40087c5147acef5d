"""Short text for results: large arrays summarised in one line, small ones whole."""

from __future__ import annotations

import copy
import json
import pickle
import subprocess
import sys

import numpy as np
import pytest

from runstore import Batch
from runstore.summary import WHOLE, array_summary, summary


@pytest.mark.parametrize("array", [
    np.arange(WHOLE, dtype=float), np.eye(4), np.array([], dtype=np.int8), np.array(3.5),
    np.array(["a", "b"]), np.array([1 + 2j, np.nan]),
])
def test_small_arrays_are_shown_whole_by_numpy(array):
    assert array_summary(array) == repr(array)


def test_a_large_array_is_one_short_line_with_dtype_shape_range_and_ends():
    big = np.linspace(-1.0, 2.0, 1_000_000).reshape(1000, 1000)
    shown = array_summary(big)
    assert shown == ("<array float64 (1000, 1000), min -1, max 2: "
                     "[-1, -1, -1, ..., 2, 2, 2]>")
    ints = np.arange(WHOLE + 1, dtype=np.uint16)
    assert array_summary(ints) == ("<array uint16 (21,), min 0, max 20: "
                                   "[0, 1, 2, ..., 18, 19, 20]>")


def test_summaries_count_what_has_no_range():
    floats = np.arange(30.0)
    floats[[0, 5]] = np.nan
    floats[7] = np.inf
    assert array_summary(floats) == ("<array float64 (30,), min 1, max 29, 2 NaN, 1 inf: "
                                     "[nan, 1, 2, ..., 27, 28, 29]>")
    assert array_summary(np.full(30, np.nan)) == (
        "<array float64 (30,), 30 NaN: [nan, nan, nan, ..., nan, nan, nan]>")
    flags = np.arange(30) % 3 == 0
    assert array_summary(flags) == ("<array bool (30,), 10 True: "
                                    "[True, False, False, ..., True, False, False]>")
    words = np.array(["word" * 20] * 30)
    shown = array_summary(words)
    assert shown.startswith("<array <U80 (30,): ['wordwordword") and len(shown) < 300
    assert array_summary(np.full(30, 1 + 2j)).startswith("<array complex128 (30,): [1+2j, 1+2j")


def test_arrays_inside_dicts_lists_and_tuples_are_summarised():
    result = {"x": np.zeros(10_000), "few": np.arange(3), "n": 2,
              "nested": {"frames": [np.ones(500), np.ones(2)]}, "pair": (np.ones(100),)}
    shown = summary(result)
    assert shown == (
        "{'x': <array float64 (10000,), min 0, max 0: [0, 0, 0, ..., 0, 0, 0]>, "
        "'few': array([0, 1, 2]), 'n': 2, "
        "'nested': {'frames': [<array float64 (500,), min 1, max 1: "
        "[1, 1, 1, ..., 1, 1, 1]>, array([1., 1.])]}, "
        "'pair': (<array float64 (100,), min 1, max 1: [1, 1, 1, ..., 1, 1, 1]>,)}")
    assert summary(list(range(1000))) == "[0, 1, 2, ..., 997, 998, 999] (1000 items)"
    assert summary(list(range(WHOLE))) == repr(list(range(WHOLE)))
    assert summary(("a", None, 1.5)) == repr(("a", None, 1.5))


def test_show_summarises_large_arrays_inside_lists(in_tmp):
    from .runs import Frames

    batch = Batch("frames")
    run = batch.add_run(Frames, {"n": 2})
    batch(verbose=0)
    batch.store.close()
    done = subprocess.run([sys.executable, "-m", "runstore", "show", run.id[:12]],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    frame = "<array float64 (1000,), min 1, max 1: [1, 1, 1, ..., 1, 1, 1]>"
    assert (f"result\n  frames = [{frame}, {frame}]\n  n = 2\n"
            "  t: array float64 (1000,)\n") in done.stdout
    assert len(done.stdout) < 2000


@pytest.fixture
def large(in_tmp):
    """A done run of tests.runs.Large (arrays of 10^5, 200 x 200 and 500 numbers, a long list)."""
    from .runs import Large

    batch = Batch("large")
    batch.add_run(Large, {"n": 100_000})
    batch(verbose=0)
    return Batch("large").run[0]  # loaded from the store, as in a new session


def test_a_result_of_large_arrays_prints_in_a_few_short_lines(large):
    shown = repr(large.result)
    assert len(shown) < 1200 and "\n" not in shown  # numpy's repr: 45,000 characters
    assert ("'x': <array float64 (100000,), min 0, max 1: [0, 1e-05, 2e-05, ..., 1, 1, 1]>"
            in shown)
    assert "'m': <array float64 (200, 200), min 0, max 4e+04: [0, 1, 2, ..., " in shown
    assert "'counts': <array int32 (500,), min 0, max 499: [0, 1, 2, ..., 497, 498, 499]>" in shown
    assert "'few': array([0, 1, 2])" in shown and "'steps': 100000" in shown
    assert "'history': [0.0, 1.0, 2.0, ..., 4997.0, 4998.0, 4999.0] (5000 items)" in shown
    assert ("'nested': {'frames': [<array float64 (300,), min 1, max 1: [1, 1, 1, ..., 1, 1, 1]>, "
            "<array float64 (300,)") in shown
    assert str(large.result) == shown


def test_ipython_shows_a_result_a_key_per_line_summarised(large):
    from IPython.lib.pretty import pretty

    lines = pretty(large.result).splitlines()
    # (A stored dict comes back with its keys sorted.)
    assert [line.split(":")[0] for line in lines] == [
        "{'counts'", " 'few'", " 'history'", " 'label'", " 'm'", " 'nested'", " 'steps'",
        " 'x'"]
    assert lines[-1] == (" 'x': <array float64 (100000,), min 0, max 1: "
                         "[0, 1e-05, 2e-05, ..., 1, 1, 1]>}")


def test_a_result_shown_short_is_still_exactly_the_dict_the_run_returned(large):
    from runstore.encoding import encode
    from runstore.summary import ResultDict

    from .runs import Large
    from .strategies import strictly_equal

    result, returned = large.result, Large.run(None, n=100_000)
    assert type(result) is ResultDict and isinstance(result, dict)
    assert sorted(result) == sorted(returned)
    for key, value in returned.items():  # every value of the same type, and equal
        assert type(result[key]) is type(value) and strictly_equal(result[key], value), key
    assert type(result["nested"]) is dict
    for copied in (pickle.loads(pickle.dumps(result)), copy.copy(result),
                   copy.deepcopy(result), result.copy(), dict(result)):
        assert type(copied) is dict and strictly_equal(copied, returned)
    assert encode(result) == encode(returned)
    scalars = {k: result[k] for k in ("steps", "label")}
    assert ResultDict(scalars) == scalars and json.dumps(ResultDict(scalars)) == json.dumps(
        scalars)


def test_a_result_shown_short_is_the_same_parameter_and_result_again(in_tmp):
    from .runs import Anything, ExampleRun

    batch = Batch("again")
    batch.add_run(ExampleRun, {"A": 2})
    batch(verbose=0)
    result = Batch("again").run[0].result
    assert result == {"val": 6} and repr(result) == "{'val': 6}"
    ids = [batch.add_run(Anything, {"p": value}).id for value in (result, {"val": 6})]
    assert ids[0] == ids[1]  # the same parameter, the same run
    batch.add_run(Anything, {"p": 0, "result": result})  # returned inside another result
    batch(verbose=0)
    again = Batch("again").get_runs_with(p=0)[0].result
    assert again["result"] == {"val": 6} and type(again["result"]) is dict


def test_the_jupyter_table_and_runstore_show_are_as_before(large):
    page = large._repr_html_()
    assert ("<tr><th>result x</th><td>&lt;array float64 (100000,), min 0, max 1: "
            "[0, 1e-05, 2e-05, ..., 1, 1, 1]&gt;</td></tr>") in page
    assert "<th>result nested</th>" in page and len(page) < 3000
    done = subprocess.run([sys.executable, "-m", "runstore", "show", large.id[:12]],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "  counts: array int32 (500,)\n" in done.stdout and len(done.stdout) < 3000
