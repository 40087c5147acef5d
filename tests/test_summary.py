"""Short text for results: large arrays summarised in one line, small ones whole."""

from __future__ import annotations

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
