"""runstore.batch and runstore.run: the batchpy Quickstart API, done right."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import runstore
import runstore as batchpy
from runstore import Batch, ResultRun
from runstore.encoding import FunctionRef
from runstore.errors import (
    BatchNameError,
    CodeChangedWarning,
    DecodingError,
    EncodingError,
    ParameterError,
    RunError,
    RunNotFound,
    RunsFailedError,
)

from .strategies import values
from .runs import (
    Arrays,
    BadId,
    ContainerResult,
    Counting,
    OddArrays,
    CustomId,
    ExampleRun,
    Flaky,
    OtherRun,
    Private,
    Sweep,
    Unstorable,
)

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART_LEVELS = {"A": [1, 2, 3, 4, 5],
                     "B": [[2, 5, 8], [1, 9, 6, 3, 9], [6, 4, 0, 9, 4, 1]],
                     "operator": [min, max, sum, len]}


@pytest.fixture
def quickstart(in_tmp):
    batch = batchpy.Batch("example")
    batch.add_run(ExampleRun, {"A": 10, "B": [3, 2, 4, 3, 8]})
    batch.add_factorial_runs(ExampleRun, QUICKSTART_LEVELS)
    return batch


def test_runs_have_parameters_with_defaults_id_index_and_no_result_yet(quickstart):
    run = quickstart.run[0]
    assert run.parameters == {"A": 10, "B": [3, 2, 4, 3, 8], "operator": max}
    assert len(run.id) == 40 and int(run.id, 16) >= 0
    assert run.index == 0 and not run.done and run.result is None
    assert run.runtime is None and run.filename is None
    assert len(quickstart.run) == 61
    assert Path("_res/example.db").exists()


def test_factorial_order_has_the_last_key_varying_fastest(quickstart):
    runs = quickstart.run[1:6]
    assert [r.parameters["operator"] for r in runs] == [min, max, sum, len, min]
    assert [r.parameters["B"] for r in runs][3:] == [[2, 5, 8], [1, 9, 6, 3, 9]]
    assert quickstart.run[-1].parameters == {"A": 5, "B": [6, 4, 0, 9, 4, 1], "operator": len}


def test_scalar_and_string_levels_are_wrapped(in_tmp):
    batch = Batch("wrap")
    batch.add_factorial_runs(Sweep, {"A": 3, "B": [1, 2], "C": 0})
    assert [r.parameters for r in batch.run] == [{"A": 3, "B": 1, "C": 0},
                                                 {"A": 3, "B": 2, "C": 0}]


def test_batch_computes_every_run_and_results_load(quickstart):
    quickstart(verbose=0)
    assert all(r.done for r in quickstart.run)
    assert quickstart.run[0].result == {"val": 80}
    runs = quickstart.get_runs_with(A__le=3, B=[2, 5, 8], operator=min)
    assert [run.result["val"] for run in runs] == [2, 4, 6]
    run = quickstart.run[0]
    assert run.runtime is not None and run.runtime >= 0
    prov = run.provenance
    assert prov["pid"] == os.getpid() and prov["host"] and prov["attempts"] == 1
    assert prov["runstore_version"] == runstore.__version__
    assert prov["python_version"] == sys.version.split()[0]
    assert prov["finished_at"] >= prov["started_at"] and len(prov["code_fingerprint"]) == 16


def test_adding_a_run_later_leaves_done_runs_done(quickstart):
    quickstart(verbose=0)
    quickstart.add_run(ExampleRun, {"A": 8, "operator": min})
    assert [run.done for run in quickstart.run] == [True] * 61 + [False]
    quickstart(verbose=0)
    assert quickstart.run[-1].result == {"val": 8}


def test_same_id_is_computed_once_within_a_call_across_batches_and_processes(in_tmp):
    log = str(in_tmp / "log.txt")
    store = runstore.Store(in_tmp / "shared.db")
    first = Batch("first", store=store)
    first.add_run(Counting, {"x": 1, "log": log})
    first.add_run(Counting, {"x": 1, "log": log})  # the same run: not added twice
    first.add_factorial_runs(Counting, {"x": [1, 2, 1], "log": log})
    assert len(first.run) == 2
    first(verbose=0)
    second = Batch("second", store=store)
    second.add_factorial_runs(Counting, {"x": [2, 1, 3], "log": log})
    assert [r.done for r in second.run] == [True, True, False]
    second(verbose=0)
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from runstore import Batch, Store; from tests.runs import Counting;"
        "b = Batch('third', store=Store(sys.argv[2]));"
        "b.add_factorial_runs(Counting, {'x': [1, 2, 3], 'log': sys.argv[3]}); b(verbose=0)"
    )
    subprocess.run([sys.executable, "-c", script, str(ROOT), str(in_tmp / "shared.db"), log],
                   check=True)
    assert sorted(Path(log).read_text().split()) == ["1", "2", "3"]


def test_rerunning_the_script_does_not_grow_the_batch(quickstart):
    quickstart(verbose=0)
    again = batchpy.Batch("example")
    again.add_run(ExampleRun, {"A": 10, "B": [3, 2, 4, 3, 8]})
    again.add_factorial_runs(ExampleRun, QUICKSTART_LEVELS)
    assert len(again.run) == 61 and all(r.done for r in again.run)


def test_unknown_parameter_is_an_error_at_add_time_and_nothing_is_written(quickstart):
    with pytest.raises(ParameterError, match="does not accept the parameter.*'Z'.*accepts 'A', 'B', 'operator'"):
        quickstart.add_factorial_runs(ExampleRun, {"A": [1, 2], "Z": [1]})
    with pytest.raises(TypeError):  # ParameterError is a TypeError
        quickstart.add_run(ExampleRun, {"a": 1})
    assert len(quickstart.run) == 61


def test_unencodable_parameter_names_it_and_nothing_is_written(quickstart):
    with pytest.raises(EncodingError, match="parameter 'operator'.*lambda"):
        quickstart.add_factorial_runs(ExampleRun, {"A": [99], "operator": [max, lambda b: 0]})
    assert len(quickstart.run) == 61


@pytest.mark.parametrize("name", ["a/b", "..", "../up", "x..y", "", "-x", "a b", "é", 7, "x" * 101])
def test_bad_batch_names_are_refused(in_tmp, name):
    with pytest.raises(BatchNameError, match="invalid batch name"):
        Batch(name)
    assert not (in_tmp / "_res").exists() or not any((in_tmp / "_res").iterdir())


def test_failures_are_recorded_the_others_go_on_and_retry_reruns_them(in_tmp):
    batch = Batch("flaky")
    batch.add_factorial_runs(Flaky, {"x": [0, 1, 2, 3, 4]})
    with pytest.raises(RunsFailedError) as info:
        batch(verbose=0)
    error = info.value
    assert "2 of 5 runs of batch 'flaky' failed" in str(error)
    assert "ValueError: odd x=1 is not allowed" in str(error) and "second line" not in str(error)
    assert "retry_failed=True" in str(error)
    assert [(p, line) for _, p, line in error.failures] == [
        ({"x": 1}, "ValueError: odd x=1 is not allowed"),
        ({"x": 3}, "ValueError: odd x=3 is not allowed")]
    states = [r.state for r in batch.run]
    assert states == ["done", "failed", "done", "failed", "done"]
    assert batch.run[2].result == {"y": 2}
    assert "Traceback" in batch.run[1].error and "odd x=1" in batch.run[1].error
    batch(verbose=0)  # nothing pending: failed runs stay failed, no new error
    with pytest.raises(RunsFailedError, match="2 of 5"):
        batch(verbose=0, retry_failed=True)
    assert batch.run[1].provenance["attempts"] == 2


class Interrupting(runstore.Run):
    """Raises KeyboardInterrupt at x == 3 while the file ``stop`` exists."""

    def run(self, x=0, log="", stop=""):
        if x == 3 and os.path.exists(stop):
            raise KeyboardInterrupt
        with open(log, "a") as f:
            f.write(f"{x}\n")
        return {"x": x}


def test_keyboard_interrupt_keeps_computed_results_and_resumes(in_tmp):
    log, stop = str(in_tmp / "log"), in_tmp / "stop"
    stop.touch()
    levels = {"x": list(range(6)), "log": log, "stop": str(stop)}
    batch = Batch("interrupted")
    batch.add_factorial_runs(Interrupting, levels)
    with pytest.raises(KeyboardInterrupt):
        batch(verbose=0)
    assert [r.state for r in batch.run] == ["done"] * 3 + ["pending"] * 3
    stop.unlink()
    again = Batch("interrupted")
    again.add_factorial_runs(Interrupting, levels)
    again(verbose=0)
    assert Path(log).read_text().split() == ["0", "1", "2", "3", "4", "5"]
    assert all(r.done for r in again.run)


def test_array_results_round_trip_with_dtype_and_shape(in_tmp):
    batch = Batch("arrays")
    batch.add_factorial_runs(Arrays, {"n": [1, 3, 5], "seed": [1, 2]})
    batch(verbose=0)
    for run in batch.run:
        expected = Arrays.run(None, **run.parameters)
        got = run.result
        assert set(got) == set(expected)
        for key in ("x", "m", "flags", "z"):
            assert got[key].dtype == expected[key].dtype and np.array_equal(got[key], expected[key])
        assert got["stats"] == expected["stats"] and got["none"] is None and got["c"] == 1 - 1j
        assert run.filename.endswith(".h5") and Path(run.filename).parent.name == "arrays.arrays"


def test_scalar_results_are_sql_rows_with_dotted_keys(in_tmp):
    batch = Batch("arrays")
    batch.add_run(Arrays, {"n": 2})
    batch(verbose=0)
    import sqlite3

    with sqlite3.connect("_res/arrays.db") as db:
        rows = dict(db.execute("SELECT key, kind FROM result_values").fetchall())
    assert rows == {"stats.mean": "float", "stats.n": "int", "stats.label": "text",
                    "none": "null", "c": "structured"}


def test_unstorable_result_fails_the_run_naming_the_key(in_tmp):
    batch = Batch("bad")
    batch.add_run(Unstorable, {"x": 1})
    with pytest.raises(RunsFailedError, match="EncodingError: cannot encode result key 'bad'"):
        batch(verbose=0)
    assert batch.run[0].state == "failed"


def test_allow_pickle_stores_unencodable_values_and_only_loads_them_when_allowed(in_tmp):
    batch = Batch("pickled", allow_pickle=True)
    batch.add_run(Unstorable, {"x": 1})
    batch(verbose=0)
    assert type(batch.run[0].result["bad"]) is object and batch.run[0].result["ok"] == 1
    cautious = Batch("pickled")
    with pytest.raises(DecodingError, match="allow_pickle=True"):
        cautious.run[0].result


def test_private_parameters_reach_run_but_not_the_id(in_tmp):
    batch = Batch("private")
    run = batch.add_run(Private, {"a": 2, "_verbose": True})
    assert run.parameters == {"a": 2}
    assert run.id == runstore.compute_id(Private, {"a": 2})
    assert run() == {"a": 2, "verbose": True}


def test_save_results_false_writes_no_files(in_tmp):
    batch = Batch("memory", saveresult=False)
    batch.add_factorial_runs(Arrays, {"n": [2, 3]})
    batch(verbose=0)
    assert batch.run[1].result["m"].shape == (3, 3)
    assert not (in_tmp / "_res").exists()


def test_calling_a_single_run_computes_or_loads_it_and_clear_forgets(in_tmp):
    log = str(in_tmp / "log")
    batch = Batch("single")
    run = batch.add_run(Counting, {"x": 7, "log": log})
    assert run() == {"x": 7} and run.done
    assert batch.run[0]() == {"x": 7}  # loaded, not recomputed
    assert run.clear() is True  # as batchpy's: whether there was a result to forget
    assert not run.done and batch.run[0].state == "pending"
    assert run.clear() is False
    assert run() == {"x": 7}
    assert Path(log).read_text().split() == ["7", "7"]
    loose = Sweep(A=2, B=3, C=1)  # a run without a batch
    assert loose.clear() is False and loose() == {"val": 7} and loose.clear() is True


def test_result_runs_load_without_the_run_class(quickstart):
    quickstart(verbose=0)
    ids = [r.id for r in quickstart.run]
    other = Batch("results", store=quickstart.store)
    other.add_resultrun(ids)
    other.add_resultrun(ids[0])  # one id; already there: not added twice
    run = other.run[0]
    assert isinstance(run, ResultRun) and len(other.run) == 61
    assert run.result == {"val": 80}
    assert run.parameters["operator"] == FunctionRef("builtins.max")
    with pytest.raises(RunError, match="cannot be computed"):
        run.run()
    with pytest.raises(RunNotFound, match="no run with id '0+'.*none was added"):
        other.add_resultrun([ids[1], "0" * 40])


def test_save_ids_follows_batchpy_s_format_and_extension_rule(quickstart, tmp_path):
    ids = [r.id for r in quickstart.run]
    path = quickstart.save_ids()
    assert path == Path("_res/example_ids.npy") and list(np.load(path)) == ids
    assert not Path("_res/example_ids.py").exists()  # one file, in the format asked for
    path = quickstart.save_ids(format="py")
    assert path == Path("_res/example_ids.py")
    # Importable as batchpy made it: the _res folder is a package.
    code = "from _res.example_ids import ids; print(len(ids), ids[0])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == [str(len(ids)), ids[0]]
    # With a file name, its extension decides and format= is ignored.
    assert list(np.load(quickstart.save_ids(tmp_path / "a.npy", format="py"))) == ids
    namespace: dict = {}
    exec(quickstart.save_ids(tmp_path / "b.py").read_text(), namespace)
    assert namespace["ids"] == ids
    with pytest.raises(ValueError, match="cannot save ids as 'txt'.*format='npy' or format='py'"):
        quickstart.save_ids(format="txt")
    with pytest.raises(ValueError, match="from the extension of .*ids.csv"):
        quickstart.save_ids(tmp_path / "ids.csv")
    assert not (tmp_path / "ids.csv").exists() and not Path("_res/example_ids.txt").exists()


def test_save_ids_of_an_empty_batch_loads_back_empty(in_tmp):
    path = Batch("empty").save_ids()
    assert list(np.load(path)) == []


def test_custom_generate_id_is_used_and_checked(in_tmp):
    batch = Batch("custom")
    assert batch.add_run(CustomId, {"k": 255}).id == "0" * 38 + "ff"
    with pytest.raises(RunError, match="must return 40 lowercase hexadecimal digits"):
        batch.add_run(BadId, {"k": 1})


def test_two_run_classes_with_the_same_parameters_do_not_share_results(in_tmp):
    batch = Batch("classes")
    a = batch.add_run(ExampleRun, {"A": 2})
    b = batch.add_run(OtherRun, {"A": 2})
    batch(verbose=0)
    assert a.id != b.id and a.result == {"val": 6} and b.result == {"val": -2}


def test_changed_code_warns_and_recompute_changed_recomputes(in_tmp):
    batch = Batch("changes")
    batch.add_factorial_runs(Sweep, {"A": [1, 2]})
    batch(verbose=0)
    import sqlite3

    with sqlite3.connect("_res/changes.db") as db:
        db.execute("UPDATE runs SET code_fingerprint = 'from-older-code', result = "
                   "'[\"dict\",[[\"val\",-1]]]'")
    with pytest.warns(CodeChangedWarning, match="2 stored results.*recompute_changed=True"):
        batch(verbose=0)
    assert batch.run[0].result == {"val": -1}  # served as stored
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batch(verbose=0, recompute_changed=True)
    assert [r.result for r in batch.run] == [{"val": 0}, {"val": 0}]


@settings(max_examples=30, deadline=None)
@given(st.lists(values, min_size=1, max_size=3), st.lists(values, min_size=1, max_size=3))
def test_factorial_ids_equal_the_ids_of_single_runs(levels_a, levels_b):
    batch = Batch("factorial", saveresult=False)
    batch.add_factorial_runs(Sweep, {"A": levels_a, "B": levels_b})
    expected = {runstore.compute_id(Sweep, {"A": a, "B": b, "C": 0})
                for a in levels_a for b in levels_b}
    assert set(batch.run.ids()) == expected


def test_container_results_come_back_as_containers_with_queryable_scalars(in_tmp):
    batch = Batch("containers")
    batch.add_run(ContainerResult, {"n": 4})
    batch(verbose=0)
    result = Batch("containers").run[0].result  # loaded as a ResultRun: no class needed
    assert type(result) is runstore.Container
    assert np.array_equal(result.x, np.arange(4)) and result.info == {"n": 4, "half": 2.0}
    import sqlite3

    with sqlite3.connect("_res/containers.db") as db:
        assert dict(db.execute("SELECT key, num FROM result_values")) == {
            "info.n": 4, "info.half": 2.0}


def test_arrays_of_every_plain_dtype_round_trip(in_tmp):
    batch = Batch("odd")
    batch.add_run(OddArrays, {"k": 1})
    batch(verbose=0)
    got, expected = Batch("odd").run[0].result, OddArrays.run(None)
    for key, array in expected.items():
        assert got[key].dtype == array.dtype and got[key].shape == array.shape, key
        assert np.array_equal(got[key], array), key


def test_run_list_indexing_and_slicing_behave_like_a_list(in_tmp):
    batch = Batch("slices")
    batch.add_factorial_runs(Sweep, {"A": list(range(6))})
    indices = list(range(6))
    for key in (slice(None), slice(None, None, -1), slice(4, 0, -2), slice(-2, None),
                slice(1, 5, 2), slice(5, 1), slice(10, 20)):
        assert [r.index for r in batch.run[key]] == indices[key], key
    assert batch.run[-1].index == 5 and len(batch.run) == 6
    with pytest.raises(IndexError, match="out of range: the batch has 6 runs"):
        batch.run[6]


def test_a_run_made_with_a_batch_is_added_to_it(in_tmp):
    batch = Batch("direct")
    run = Sweep(batch, A=2, B=3, C=1)
    assert (run.index, run.id) == (0, batch.run[0].id) and len(batch.run) == 1
    assert run() == {"val": 7} and batch.run[0].done


def test_calling_a_batch_with_runs_computes_those_only_batchpy_s_order(in_tmp):
    from .runs import Echo, Flaky

    batch = Batch("chosen")
    batch.add_factorial_runs(Echo, {"i": list(range(6))})
    batch(0)  # batchpy: batch(runs=-1, verbose=1, processes=1); 0 is run 0, not verbose=0
    assert [run.state for run in batch.run] == ["done"] + ["pending"] * 5
    batch([0, 3, 4], 0)  # run 0 is done already: computed once
    assert [run.done for run in batch.run] == [True, False, False, True, True, False]
    batch(runs=[1], verbose=0, processes=2)  # the same on worker processes
    assert [run.done for run in batch.run] == [True, True, False, True, True, False]
    batch(-1, 0)
    assert all(run.done for run in batch.run)
    for wrong, error in (([6], IndexError), (-7.5, TypeError), (True, TypeError),
                         ([0, -1], IndexError)):
        with pytest.raises(error, match="runs|has runs 0 to 5"):
            batch(wrong, 0)
    flaky = Batch("flaky")
    flaky.add_factorial_runs(Flaky, {"x": [1, 3, 4]})
    with pytest.raises(runstore.errors.RunsFailedError):
        flaky(verbose=0)
    with pytest.raises(runstore.errors.RunsFailedError):
        flaky([0], 0, retry_failed=True)  # retries run 0 only
    states = [run.state for run in flaky.run]
    assert states == ["failed", "failed", "done"]
    assert flaky.store.run_record(flaky.run[1].id)["attempts"] == 1  # not retried
    assert flaky.store.run_record(flaky.run[0].id)["attempts"] == 2


def test_runs_just_added_are_computed_where_they_are_with_their_parameters(tmp_path):
    from .runs import Positioned

    batch = Batch("fresh", path=tmp_path)
    batch.add_factorial_runs(Positioned, {"A": [1, 2, 3], "B": ["x", "y"]})
    batch.add_factorial_runs(Positioned, {"A": [3, 4], "B": ["y", "z"]})  # (3, 'y') again
    batch(verbose=0)
    expected = [(a, b) for a in [1, 2, 3] for b in "xy"] + [(3, "z"), (4, "y"), (4, "z")]
    assert [(r.result["A"], r.result["B"]) for r in batch.run] == expected
    assert [r.result["index"] for r in batch.run] == list(range(len(expected)))
    assert batch.run[0].result["seen"] == repr({"A": 1, "B": "x"})  # the signature's order
    again = Batch("fresh", path=tmp_path)  # read back from the store: the same parameters
    assert [r.parameters for r in again.run] == [{"A": a, "B": b} for a, b in expected]


def test_runs_just_added_that_another_process_claimed_are_left_to_it(tmp_path):
    from .runs import Positioned

    batch = Batch("fresh", path=tmp_path)
    batch.add_factorial_runs(Positioned, {"A": list(range(10))})
    other = runstore.Store(batch.store.path)
    taken = other.claim(batch._id, [f"{Positioned.__module__}.Positioned"], 3, after=4)
    batch(verbose=0)
    states = [r.state for r in batch.run]
    assert states == ["done"] * 5 + ["running"] * 3 + ["done"] * 2
    assert [r.result["index"] for r in batch.run if r.state == "done"] == [0, 1, 2, 3, 4, 8, 9]
    other.complete([runstore.run.compute(Positioned, row, False) for row in taken])
    assert [r.result["A"] for r in Batch("fresh", path=tmp_path).run] == list(range(10))
    other.close()


def test_removing_runs_forgets_the_positions_of_those_just_added(tmp_path):
    from .runs import Positioned

    batch = Batch("fresh", path=tmp_path)
    batch.add_factorial_runs(Positioned, {"A": list(range(4))})
    batch.remove([0])
    batch(verbose=0)
    assert [(r.result["A"], r.result["index"]) for r in batch.run] == [(1, 0), (2, 1), (3, 2)]
