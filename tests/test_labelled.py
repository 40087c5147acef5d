"""Batch.to_xarray: a sweep as an xarray Dataset, checked cell by cell against run.result."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import runstore
from runstore import Batch, open_bundle
from runstore.errors import ArrayShapeError, DatasetError, OptionalDependencyError

from .runs import Anything, ContainerResult, ExampleRun, OddArrays, OtherRun

xr = pytest.importorskip("xarray")


class Field(runstore.Run):
    """Scalars of each type, a 1-D and a 2-D array, and a nested dict; fails for A=3, B=1.0."""

    def run(self, A=0, B=0.0, C="c", n=3):
        if A == 3 and B == 1.0:
            raise ValueError("A=3 with B=1.0 fails")
        return {
            "val": A * B, "count": A * 10, "big": A > 1, "label": f"A={A}",
            "y": np.arange(n) * B + A, "field": np.full((2, n), A + B), "t": np.linspace(0, 1, n),
            "stats": {"mean": B / 2, "ok": True}, "listed": [A, B], "nothing": None,
        }


class Ragged(runstore.Run):
    def run(self, n=2, k=0):
        return {"x": np.zeros(n), "k": k}


def total(values):
    """A function parameter defined here, to see that loading never imports it."""
    return sum(values)


SCALARS = ["val", "count", "big", "label", "stats.mean", "stats.ok"]
ARRAYS = ["y", "field", "t"]


def at(ds, run, names=("A", "B")):
    return ds.sel({name: run.parameters[name] for name in names if name in ds.dims})


def flat(result):
    return {**result, "stats.mean": result["stats"]["mean"], "stats.ok": result["stats"]["ok"]}


@pytest.fixture
def swept(in_tmp):
    batch = Batch("swept")
    batch.add_factorial_runs(Field, {"A": [2, 1], "B": [0.5, 1.0, 2.0]})
    batch(verbose=0)
    return batch


def test_a_2d_sweep_holds_every_result_of_every_run(swept):
    ds = swept.to_xarray()
    assert list(ds.dims) == ["A", "B", "field_dim_0", "field_dim_1", "t_dim_0", "y_dim_0"]
    assert ds["A"].values.tolist() == [1, 2] and ds["B"].values.tolist() == [0.5, 1.0, 2.0]
    assert ds.coords["C"].item() == "c" and ds.coords["n"].item() == 3  # constants
    assert sorted(ds.data_vars) == sorted(SCALARS + ARRAYS + ["nothing"])
    assert "listed" not in ds  # neither a scalar nor an array
    assert ds["nothing"].isnull().all().item()  # None: missing, as in the view (NULL)
    assert ds.attrs["batch"] == "swept"
    for run in swept.run:
        cell, result = at(ds, run), flat(run.result)
        for key in SCALARS:
            assert cell[key].item() == result[key], key
        for key in ARRAYS:
            assert np.array_equal(cell[key].values, result[key]), key
    assert ds["y"].dims == ("A", "B", "y_dim_0")
    assert ds["field"].dims == ("A", "B", "field_dim_0", "field_dim_1")


def test_complete_results_keep_their_dtypes(swept):
    ds = swept.to_xarray()
    assert ds["val"].dtype == np.float64 and ds["count"].dtype == np.int64
    assert ds["big"].dtype == bool and ds["stats.ok"].dtype == bool
    assert ds["label"].dtype.kind == "U" and ds["y"].dtype == np.float64


def test_awkward_arrays_and_container_results(in_tmp):
    batch = Batch("odd")
    batch.add_factorial_runs(OddArrays, {"k": [0, 1]})
    batch.add_factorial_runs(ContainerResult, {"n": [2, 3]})
    batch(verbose=0)
    odd = batch.get_runs_with(k__in=[0, 1])
    ds = batch.to_xarray(runs=odd)
    assert ds["scalar"].dims == ("k",) and ds["empty"].shape == (2, 0, 3)
    for run in odd:
        for key, value in run.result.items():
            assert np.array_equal(ds[key].sel(k=run.parameters["k"]).values, value), key
    held = batch.to_xarray(exclude=["x"], runs=batch.get_runs_with(n__in=[2, 3]))
    assert held["info.n"].values.tolist() == [2, 3] and held["info.half"].dtype == np.float64


def test_a_3d_sweep_with_named_dims_and_a_result_as_coordinate(in_tmp):
    batch = Batch("cube")
    batch.add_factorial_runs(Field, {"C": ["u", "v"], "A": [1, 2], "B": [0.5, 2.0], "n": [4]})
    batch(verbose=0)
    ds = batch.to_xarray(dims={"y": ["t"], "field": ["row", "t"]}, coords={"t": "t"})
    assert list(ds["val"].dims) == ["C", "A", "B"]  # the factorial's order
    assert ds["y"].dims == ("C", "A", "B", "t") and ds["field"].dims == ("C", "A", "B", "row", "t")
    assert "t" not in ds.data_vars and ds["t"].values.tolist() == np.linspace(0, 1, 4).tolist()
    assert ds.sizes == {"C": 2, "A": 2, "B": 2, "t": 4, "row": 2}
    for run in batch.run:
        cell, result = at(ds, run, ("C", "A", "B")), run.result
        assert cell["count"].item() == result["count"]
        assert np.array_equal(cell["y"].values, result["y"])
        assert np.array_equal(cell["field"].values, result["field"])


def test_pending_failed_and_absent_runs_are_nan(in_tmp):
    batch = Batch("holes")
    batch.add_factorial_runs(Field, {"A": [1, 2, 3], "B": [0.5, 1.0]})
    with pytest.raises(runstore.RunsFailedError):
        batch(verbose=0)  # A=3, B=1.0 fails
    batch.add_run(Field, {"A": 4, "B": 0.5})  # pending; (4, 1.0) is not in the batch
    ds = batch.to_xarray()
    assert ds.sizes["A"] == 4 and ds.sizes["B"] == 2
    for a, b in [(3, 1.0), (4, 0.5), (4, 1.0)]:
        cell = ds.sel(A=a, B=b)
        for key in SCALARS:
            assert cell[key].isnull().item(), (key, a, b)
        assert cell["y"].isnull().all().item() and cell["field"].isnull().all().item()
    # ints become floats, booleans and strings objects, as xarray does
    assert ds["count"].dtype == np.float64 and ds["val"].dtype == np.float64
    assert ds["big"].dtype == object and ds["label"].dtype == object
    for run in batch.run:
        if run.done:
            cell, result = at(ds, run), flat(run.result)
            for key in SCALARS:
                assert cell[key].item() == result[key], key
            assert np.array_equal(cell["y"].values, result["y"])


def test_function_and_list_parameters_become_their_labels(in_tmp):
    batch = Batch("labels")
    batch.add_factorial_runs(ExampleRun, {"A": [1, 2], "B": [[2, 5, 8], [1, 9]],
                                          "operator": [min, max, total]})
    batch(verbose=0)
    ds = batch.to_xarray()
    assert ds["operator"].values.tolist() == ["max", "min", "tests.test_labelled.total"]
    assert ds["B"].values.tolist() == ["[1, 9]", "[2, 5, 8]"]
    for run in batch.run:
        name = {min: "min", max: "max", total: "tests.test_labelled.total"}[
            run.parameters["operator"]]
        cell = ds.sel(A=run.parameters["A"], B=repr(run.parameters["B"]), operator=name)
        assert cell["val"].item() == run.result["val"]


def test_a_bundle_gives_the_same_dataset_without_importing_anything(in_tmp, tmp_path):
    batch = Batch("shared")
    batch.add_factorial_runs(ExampleRun, {"A": [1, 2], "B": [[2, 5, 8]], "operator": [min, total]})
    batch.add_factorial_runs(Field, {"A": [1, 2], "B": [0.5]})
    batch(verbose=0)
    mine = batch.to_xarray(runs=batch.get_runs_with(operator__in=[min, total]))
    db, h5 = batch.export("out/shared", runs=batch.get_runs_with(operator__in=[min, total]))
    opened = open_bundle(db)
    try:
        assert opened.to_xarray().identical(mine)
    finally:
        opened.store.close()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(db, elsewhere)
    assert not h5.exists()  # no arrays in these runs
    script = ("import json, sys, runstore\n"
              "ds = runstore.open_bundle('shared').to_xarray()\n"
              "print(json.dumps({'operator': ds['operator'].values.tolist(),\n"
              "                  'val': ds['val'].values.tolist(),\n"
              "                  'tests': 'tests' in sys.modules}))\n")
    out = json.loads(subprocess.run([sys.executable, "-c", script], cwd=elsewhere, check=True,
                                    capture_output=True, text=True).stdout)
    assert out == {"operator": ["min", "tests.test_labelled.total"],
                   "val": mine["val"].values.tolist(), "tests": False}
    # Arrays come from the bundle's .h5 file.
    fields = batch.get_runs_with(C="c")
    db, h5 = batch.export("out/fields", runs=fields)
    opened = open_bundle(db)
    try:
        theirs = opened.to_xarray(dims={"y": ["s"]})
    finally:
        opened.store.close()
    assert h5.exists() and theirs.identical(batch.to_xarray(dims={"y": ["s"]}, runs=fields))
    assert theirs["field"].shape == (2, 2, 3)


def test_runs_of_two_run_types_get_a_run_type_dimension(in_tmp):
    batch = Batch("types")
    batch.add_factorial_runs(ExampleRun, {"A": [1, 2, 3]})
    batch.add_factorial_runs(OtherRun, {"A": [1, 2]})
    batch(verbose=0)
    ds = batch.to_xarray()
    assert ds["val"].dims == ("run_type", "A")
    assert ds["run_type"].values.tolist() == ["tests.runs.ExampleRun", "tests.runs.OtherRun"]
    assert ds["val"].sel(run_type="tests.runs.OtherRun").values.tolist()[:2] == [-1, -2]
    assert ds["val"].sel(run_type="tests.runs.OtherRun", A=3).isnull().item()
    one = batch.to_xarray(runs=[r for r in batch.run if r.index < 3])
    assert "run_type" not in one.dims and one["val"].values.tolist() == [3, 6, 9]


def test_runs_with_different_parameters_are_an_error(in_tmp):
    batch = Batch("mixed")
    batch.add_run(Anything, {"a": 1})
    batch.add_run(Anything, {"b": 2})
    batch(verbose=0)
    with pytest.raises(DatasetError, match="has no parameter 'b'.*runs="):
        batch.to_xarray()
    assert batch.to_xarray(runs=batch.get_runs_with(a=1))["flag"].item() is True


def test_array_shapes_that_differ_are_an_error_naming_the_key_and_shapes(in_tmp):
    batch = Batch("ragged")
    batch.add_factorial_runs(Ragged, {"n": [2, 3], "k": [0, 1]})
    batch(verbose=0)
    with pytest.raises(ArrayShapeError) as raised:
        batch.to_xarray()
    error = raised.value
    assert error.key == "x" and set(error.shapes) == {(2,), (3,)}
    assert "'x'" in str(error) and "(2,)" in str(error) and "exclude=['x']" in str(error)
    assert list(batch.to_xarray(exclude=["x"]).data_vars) == ["result.k"]
    assert list(batch.to_xarray(variables=["k"]).data_vars) == ["result.k"]
    assert batch.to_xarray(runs=batch.get_runs_with(n=3))["x"].shape == (2, 3)


def test_variables_choose_the_keys_and_unknown_keys_are_errors(swept):
    ds = swept.to_xarray(variables=["val", "stats.ok", "y"])
    assert list(ds.data_vars) == ["val", "stats.ok", "y"]
    assert sorted(swept.to_xarray(exclude=ARRAYS + ["nothing"]).data_vars) == sorted(SCALARS)
    with pytest.raises(DatasetError, match="no result has the key 'vall'"):
        swept.to_xarray(variables=["vall"])
    with pytest.raises(DatasetError, match="no result has the key 'nope'"):
        swept.to_xarray(exclude=["nope"])
    with pytest.raises(DatasetError, match="'listed' is a list"):
        swept.to_xarray(variables=["listed"])


def test_dims_and_coords_are_checked(swept):
    with pytest.raises(DatasetError, match="shape"):
        swept.to_xarray(dims={"y": ["t", "u"]})
    with pytest.raises(DatasetError, match="not an array variable"):
        swept.to_xarray(dims={"val": ["t"]})
    with pytest.raises(DatasetError, match="also a parameter"):
        swept.to_xarray(dims={"y": ["A"]})
    with pytest.raises(DatasetError, match=r"coords=\{'t': 't'\}"):
        swept.to_xarray(dims={"y": ["t"]})  # the result 't' would shadow the dimension
    with pytest.raises(DatasetError, match="differs between runs"):
        swept.to_xarray(dims={"t": ["time"], "y": ["s"]}, coords={"s": "y"})
    ds = swept.to_xarray(dims={"y": ["s"]}, coords={"s": [10, 20, 30]})
    assert ds["s"].values.tolist() == [10, 20, 30]


def test_a_result_named_like_a_parameter_is_prefixed(in_tmp):
    batch = Batch("collide")
    batch.add_factorial_runs(ExampleRun, {"A": [1, 2]})
    batch.add_factorial_runs(Ragged, {"k": [5]})
    batch(verbose=0)
    ds = batch.to_xarray(runs=batch.get_runs_with(k=5))
    assert ds["result.k"].item() == 5 and ds.coords["k"].item() == 5


def test_without_xarray_it_says_what_to_install(swept, monkeypatch):
    monkeypatch.setitem(sys.modules, "xarray", None)
    with pytest.raises(OptionalDependencyError, match=r"runstore\[xarray\]"):
        swept.to_xarray()


def test_importing_runstore_does_not_import_xarray():
    out = subprocess.run([sys.executable, "-c", "import sys, runstore; print('xarray' in "
                          "sys.modules)"], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "False"


CANARY_XARRAY = """
import json, sys
import runstore
from tests.runs import ExampleRun

bundled = runstore.open_bundle(sys.argv[1]).to_xarray()
mine = runstore.Batch("plain", store=sys.argv[2])
mine.add_run(ExampleRun, {"A": 50})  # the class is known in this process
imported = mine.to_xarray()
print(json.dumps({"operator": [bundled["operator"].values.tolist(),
                               imported["operator"].values.tolist()],
                  "variables": sorted(imported.data_vars),
                  "imported": "canary_mod" in sys.modules}))
"""


@pytest.mark.slow
def test_code_named_in_a_bundle_or_an_import_is_never_imported(tmp_path):
    from .test_untrusted import canary_bundle, canary_env, run_python

    db, _ = canary_bundle(tmp_path)  # names canary_mod in parameters and a result
    env, mark = canary_env(tmp_path)
    runstore.import_bundle(db, tmp_path / "mine.db")
    out = run_python(CANARY_XARRAY, str(db), str(tmp_path / "mine.db"), env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert found["operator"] == [["canary_mod.f", "max"]] * 2
    assert found["variables"] == []  # 'val' holds an object in one run: left out
    assert found["imported"] is False and not mark.exists()
