"""Importing batchpy's ``_res/`` folders (runstore.legacy), on files batchpy wrote itself.

The folders in tests/fixtures/batchpy/ were written by batchpy 1.3.0 (Python 3),
batchpy 1.0.0 and two earlier versions (Python 2); see their README.
"""

from __future__ import annotations

import datetime
import fractions
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

import runstore
from runstore import Batch, Store, import_batchpy
from runstore.errors import BatchpyImportError, BatchpyPickleRefusedError, PickleRefusedError
from runstore.legacy import RUN_TYPE

FIXTURES = Path(__file__).parent / "fixtures" / "batchpy"
EXAMPLE_IDS = ["17d403499f18220ad289001ee80cd16760d08a8c",
               "551949fdf47b51f69bad2436dca1d0e35c745b00",
               "7b7e1c7433b3269ad91d83cc93dc425e9f077d3a",
               "ae45322ecdd4a5b796e311582a8053eb7f4cf7d9",
               "76c355e61d9203d0807e076e5919ffe1385bfe85"]
PY2_IDS = ["698c8a8a6e5f3393ee8898ff796bcd7197752824",
           "92f9679963414fccb77d98fc9a516822aa0ec515",
           "f37c167d48eff780cad367f9a5852c8a29106057"]


@pytest.fixture
def res(tmp_path):
    """A copy of batchpy 1.3.0's _res/ folder, with the __init__.py batchpy puts there."""
    folder = tmp_path / "_res"
    shutil.copytree(FIXTURES / "batchpy-1.3.0", folder)
    (folder / "__init__.py").write_text("")
    return folder


@contextmanager
def opened(path: Path, **options: object) -> Iterator[Store]:
    store = Store(path, **options)
    try:
        yield store
    finally:
        store.close()


def result_file(folder: Path, batch: str, rid: str, content: object) -> Path:
    """A result file as batchpy writes one: a pickled object in an .npy file."""
    path = folder / f"{batch}_{rid}.npy"
    array = np.empty((), dtype=object)
    array[()] = content
    np.save(path, array, allow_pickle=True)
    return path


def pickle_file(path: Path, payload: bytes) -> Path:
    """An .npy file of a 0-d object array whose pickle is ``payload``."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "|O", "fortran_order": False, "shape": ()})
        f.write(payload)
    return path


def test_new_style_files_become_done_result_runs_with_batchpy_ids(res, tmp_path):
    report = import_batchpy(res, tmp_path / "s.db", allow_pickle=True)
    assert report.ok and report.failed == []
    assert {name: (c.imported, c.present) for name, c in report.batches.items()} == {
        "example": (5, 0), "signal_sweep": (5, 0)}
    store = Store(tmp_path / "s.db")
    assert store.batch_names() == ["example", "signal_sweep"]
    example = Batch("example", store=store)
    # in the order of batchpy's saved id list (the order the runs were added)
    assert list(example.run.ids()) == EXAMPLE_IDS
    first = example.run[0]
    assert type(first) is runstore.ResultRun and first.state == "done"
    assert first.parameters == {"A": 10, "B": [3, 2, 4, 3, 8], "operator": "max"}
    assert first.result == {"val": 80}
    assert first.provenance["runtime"] == pytest.approx(2.86102294921875e-06)
    assert store.run_record(first.id)["run_type"] == RUN_TYPE
    assert [r.id for r in example.get_runs_with(operator="min", A__ge=2)] == [EXAMPLE_IDS[3]]
    sweep = Batch("signal_sweep", store=store)
    run = sweep.get_runs_with(x=2.0, reduce="fmean")[0]
    assert run.id == "79a430a77599869e5614ebf23275ed5a3292146b"
    result = run.result
    np.testing.assert_array_equal(result["signal"], [0.0, 2.0, 4.0])
    assert store.run_record(run.id)["array_file"]  # the array is in a side file
    assert result["count"] == 3 and result["pair"] == (3, 2.0) and result["nothing"] is None
    assert result["items"] == [1, 2.5, "a"] and result["nested"] == {"label": "a", "ok": True}
    # what batchpy saved for np.mean on numpy 2, kept as it is
    assert sweep.get_runs_with(label="mean")[0].parameters["reduce"] == "__unhashable__"
    assert store.check().ok
    store.close()


def test_the_runs_record_the_file_they_came_from(res, tmp_path, capsys):
    import_batchpy(res, tmp_path / "s.db", allow_pickle=True, progress=True)
    assert "importing" in capsys.readouterr().err  # the progress bar
    with sqlite3.connect(tmp_path / "s.db") as db:
        rows = db.execute("SELECT id, parameters_origin, result_origin FROM runs").fetchall()
    for rid, parameters_origin, result_origin in rows:
        assert parameters_origin == result_origin
        assert Path(parameters_origin).name.endswith(f"_{rid}.npy")


def test_importing_again_adds_nothing(res, tmp_path):
    import_batchpy(res, tmp_path / "s.db", allow_pickle=True)
    again = import_batchpy(res, tmp_path / "s.db", allow_pickle=True)
    assert {name: (c.imported, c.present) for name, c in again.batches.items()} == {
        "example": (0, 5), "signal_sweep": (0, 5)}
    with opened(tmp_path / "s.db") as store:
        assert store.counts_by_batch() == {"example": {"done": 5},
                                           "signal_sweep": {"done": 5}}
    with sqlite3.connect(tmp_path / "s.db") as db:
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone() == (10,)


def test_without_allow_pickle_nothing_is_read_and_the_store_is_not_made(res, tmp_path):
    with pytest.raises(BatchpyPickleRefusedError) as caught:
        import_batchpy(res, tmp_path / "s.db")
    message = str(caught.value)
    assert "10 batchpy result files" in message and "allow_pickle=True" in message
    assert "can run code" in message
    assert isinstance(caught.value, PermissionError) and caught.value.count == 10
    assert not (tmp_path / "s.db").exists()


@pytest.mark.parametrize("folder, batch, keys, with_runtime", [
    ("batchpy-1.0.0-py2", "py2_v1_0_0", {"A", "scale", "reduce", "label"}, True),
    ("batchpy-2017-py2", "legacy_2017", set(), True),   # {'res', 'id', 'runtime'}
    ("batchpy-2016-py2", "legacy_2016", set(), False),  # {'res', 'id'}
])
def test_python_2_and_old_style_files(tmp_path, folder, batch, keys, with_runtime):
    report = import_batchpy(FIXTURES / folder, tmp_path / "s.db", allow_pickle=True)
    assert report.ok and report.batches[batch].imported == 3
    with opened(tmp_path / "s.db") as store:
        runs = Batch(batch, store=store).run
        by_total = sorted(runs, key=lambda r: r.result["total"])
        assert [r.result["total"] for r in by_total] == [0.5, 0.75, 2.0]
        np.testing.assert_array_equal(by_total[0].result["values"], [0.0, 0.5, 1.0])
        assert by_total[2].result["label"] == "grand"
        assert set(by_total[0].parameters) == keys
        assert (by_total[0].provenance["runtime"] is not None) == with_runtime
        if keys:
            assert by_total[0].parameters["reduce"] == "mean"  # numpy 1.16: a function
        assert store.check().ok


def test_the_same_run_in_two_batches_is_one_run_in_both(tmp_path):
    import_batchpy(FIXTURES / "batchpy-2017-py2", tmp_path / "s.db", allow_pickle=True)
    # The same runs with parameters: old-style files fit any parameters.
    for folder in ("batchpy-2016-py2", "batchpy-1.0.0-py2"):
        report = import_batchpy(FIXTURES / folder, tmp_path / "s.db", allow_pickle=True)
        assert report.ok
    assert report.batches["py2_v1_0_0"].present == 2  # 2a4c... is a new id
    with opened(tmp_path / "s.db") as store:
        for name in ("legacy_2016", "legacy_2017"):
            assert sorted(Batch(name, store=store).run.ids()) == PY2_IDS
        # without saved id lists, a batch's runs are in the order of their file names
        assert store.batches_of(PY2_IDS[1]) == [("legacy_2017", 1), ("legacy_2016", 1),
                                                ("py2_v1_0_0", 1)]


def test_a_run_whose_id_the_store_holds_with_another_result_is_reported(res, tmp_path):
    import_batchpy(res, tmp_path / "s.db", allow_pickle=True)
    other = tmp_path / "other"
    other.mkdir()
    clash = result_file(other, "model_b", EXAMPLE_IDS[0], {
        "res": {"val": -1}, "id": EXAMPLE_IDS[0], "runtime": 1.0,
        "parameters": {"A": 10, "B": [3, 2, 4, 3, 8], "operator": "max"}})
    result_file(other, "model_b", "0" * 40, {"res": {"val": 1}, "id": "0" * 40})
    report = import_batchpy(other, tmp_path / "s.db", allow_pickle=True)
    assert report.batches["model_b"].imported == 1
    [(path, reason)] = report.failed
    assert path == str(clash) and "another result" in reason and "--batch NAME" in reason
    with opened(tmp_path / "s.db") as store:
        assert Batch("example", store=store).run[0].result == {"val": 80}
        assert list(Batch("model_b", store=store).run.ids()) == ["0" * 40]
    # into another store, it imports
    assert import_batchpy(other, tmp_path / "b.db", allow_pickle=True).ok


def test_damaged_foreign_and_hostile_files_are_reported_and_skipped(res, tmp_path):
    import_batchpy(res, tmp_path / "s.db", allow_pickle=True, batches=["example"])
    good = res / f"signal_sweep_{'79a430a77599869e5614ebf23275ed5a3292146b'}.npy"
    data = good.read_bytes()
    truncated = res / f"signal_sweep_{'1' * 40}.npy"
    truncated.write_bytes(data[:len(data) // 2])
    empty = res / f"signal_sweep_{'2' * 40}.npy"
    empty.write_bytes(b"")
    garbage = res / f"signal_sweep_{'3' * 40}.npy"
    garbage.write_bytes(b"\x93NUMPY\x01\x00garbage")
    plain = res / f"signal_sweep_{'4' * 40}.npy"
    np.save(plain, np.arange(3.0))
    not_a_dict = result_file(res, "signal_sweep", "5" * 40, [1, 2])
    renamed = res / f"signal_sweep_{'6' * 40}.npy"
    shutil.copy(good, renamed)
    marker = tmp_path / "ran"
    hostile = pickle_file(res / f"signal_sweep_{'7' * 40}.npy",
                          f"cos\nsystem\n(S'touch {marker}'\ntR.".encode())
    custom = res / "signal_sweep_run-one.npy"
    shutil.copy(good, custom)
    report = import_batchpy(res, tmp_path / "s.db", allow_pickle=True)
    reasons = dict(report.failed)
    assert set(reasons) == {str(p) for p in (truncated, empty, garbage, plain, not_a_dict,
                                             renamed, hostile, custom)}
    assert "truncated" in reasons[str(truncated)]
    assert "not an .npy file" in reasons[str(empty)]
    assert "header is damaged" in reasons[str(garbage)]
    assert "float64" in reasons[str(plain)] and "not a batchpy result" in reasons[str(plain)]
    assert "a builtins.list" in reasons[str(not_a_dict)]
    assert "renamed" in reasons[str(renamed)]
    assert "os.system" in reasons[str(hostile)] and "--allow-module os" in reasons[str(hostile)]
    assert "40-hex-digit id" in reasons[str(custom)]
    assert not marker.exists()
    assert report.batches["signal_sweep"].imported == 5
    assert report.batches["example"].present == 5
    assert "8 files could not be imported" in str(report)
    with opened(tmp_path / "s.db") as store:
        assert store.counts_by_batch() == {"example": {"done": 5},
                                           "signal_sweep": {"done": 5}}


def test_a_batch_whose_files_all_fail_is_not_created(tmp_path):
    folder = tmp_path / "_res"
    folder.mkdir()
    (folder / f"broken_{'a' * 40}.npy").write_bytes(b"\x93NUMPY")
    report = import_batchpy(folder, tmp_path / "s.db", allow_pickle=True)
    assert len(report.failed) == 1 and report.batches["broken"].imported == 0
    with opened(tmp_path / "s.db") as store:
        assert store.batch_names() == []


def test_add_resultrun_takes_the_ids_batchpy_saved(res, tmp_path):
    import_batchpy(res, tmp_path / "_res" / "plots.db", allow_pickle=True)
    ids = np.load(res / "example_ids.npy")  # as the batchpy Quickstart loads them
    plots = Batch("plots", path=tmp_path)  # its store: _res/plots.db
    plots.add_resultrun(ids)
    assert [r.result["val"] for r in plots.run] == [80, 2, 8, 4, 16]
    plots.add_resultrun(ids[0])
    assert len(plots.run) == 5


def test_runs_of_runstore_classes_get_runstore_ids_beside_the_imported(res, tmp_path):
    from .runs import ExampleRun

    import_batchpy(res, tmp_path / "_res" / "example.db", allow_pickle=True)
    batch = Batch("example", path=tmp_path)  # its store: _res/example.db
    batch.add_run(ExampleRun, {"A": 10, "B": [3, 2, 4, 3, 8], "operator": max})
    assert batch.run[5].id not in EXAMPLE_IDS and batch.run[5].state == "pending"
    batch(verbose=0)
    assert batch.run[5].result == {"val": 80} and batch.run[0].result == {"val": 80}


def test_results_without_a_canonical_encoding_follow_the_stores_allow_pickle(tmp_path):
    folder = tmp_path / "_res"
    folder.mkdir()
    when = datetime.datetime(2017, 2, 19, 12, 30)
    path = result_file(folder, "dated", "a" * 40, {"res": {"when": when, "x": 1},
                                                   "id": "a" * 40, "parameters": {"x": 1}})
    report = import_batchpy(folder, tmp_path / "s.db", allow_pickle=True)
    [(failed, reason)] = report.failed
    assert failed == str(path) and "datetime.datetime" in reason
    assert "allow_pickle=True" in reason and "--store-pickles" in reason
    with opened(tmp_path / "p.db", allow_pickle=True) as store:
        assert import_batchpy(folder, store, allow_pickle=True).ok
        run = Batch("dated", store=store).run[0]
        with pytest.raises(PickleRefusedError):
            run.result  # imported values stay data until trusted
        assert store.trust_runs() == 1
        assert Batch("dated", store=store).run[0].result == {"when": when, "x": 1}


def test_objects_of_other_modules_need_their_module_allowed(tmp_path):
    folder = tmp_path / "_res"
    folder.mkdir()
    result_file(folder, "ratios", "b" * 40, {"res": {"third": fractions.Fraction(1, 3)},
                                              "id": "b" * 40, "parameters": {}})
    refused = import_batchpy(folder, tmp_path / "s.db", allow_pickle=True)
    [(_, reason)] = refused.failed
    assert "fractions.Fraction" in reason and "allow_modules=['fractions']" in reason
    with opened(tmp_path / "p.db", allow_pickle=True) as store:
        assert import_batchpy(folder, store, allow_pickle=True,
                              allow_modules=["fractions"]).ok


def test_what_is_not_a_batchpy_folder_is_refused(tmp_path):
    with pytest.raises(BatchpyImportError, match="is not a folder"):
        import_batchpy(tmp_path / "missing", tmp_path / "s.db", allow_pickle=True)
    shutil.copytree(FIXTURES / "batchpy-2016-py2", tmp_path / "project" / "_res")
    with pytest.raises(BatchpyImportError, match=r"batchpy's results are in .*_res"):
        import_batchpy(tmp_path / "project", tmp_path / "s.db", allow_pickle=True)
    with pytest.raises(BatchpyImportError, match=r"no results of the batches \['nope'\]"):
        import_batchpy(tmp_path / "project" / "_res", tmp_path / "s.db", allow_pickle=True,
                       batches=["nope"])
    assert not (tmp_path / "s.db").exists()


# -- the command line -------------------------------------------------------------------


def runstore_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runstore", *args], cwd=cwd,
                          capture_output=True, text=True)


def test_cli_refuses_without_allow_pickle(res, tmp_path):
    result = runstore_cli("import-batchpy", "_res", "s.db", cwd=tmp_path)
    assert result.returncode == 5 and result.stdout == ""  # refused
    assert "--allow-pickle" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "s.db").exists()


def test_cli_imports_and_reports_per_batch(res, tmp_path):
    result = runstore_cli("import-batchpy", "--allow-pickle", "_res/", "s.db", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ("s.db:\n"
                             "  example       5 imported, 0 already in the store\n"
                             "  signal_sweep  5 imported, 0 already in the store\n")
    again = runstore_cli("import-batchpy", "--allow-pickle", "--batch", "example", "_res/",
                         "s.db", cwd=tmp_path)
    assert again.returncode == 0
    assert again.stdout == "s.db:\n  example  0 imported, 5 already in the store\n"


def test_cli_lists_the_files_it_could_not_import_and_exits_1(res, tmp_path):
    broken = res / f"example_{'c' * 40}.npy"
    broken.write_bytes(b"\x93NUMPY\x01\x00")
    result = runstore_cli("import-batchpy", "--allow-pickle", "_res", "s.db", cwd=tmp_path)
    assert result.returncode == 1
    assert "1 files could not be imported (the others were):" in result.stdout
    assert f"_res/{broken.name}: not an .npy file" in result.stdout
    assert "example       5 imported" in result.stdout


def test_cli_keeps_non_canonical_results_as_pickles_when_asked(tmp_path):
    folder = tmp_path / "_res"
    folder.mkdir()
    result_file(folder, "dated", "d" * 40, {"res": {"when": datetime.date(2016, 7, 15)},
                                            "id": "d" * 40})
    refused = runstore_cli("import-batchpy", "--allow-pickle", "_res", "s.db", cwd=tmp_path)
    assert refused.returncode == 1 and "--store-pickles" in refused.stdout
    kept = runstore_cli("import-batchpy", "--allow-pickle", "--store-pickles", "_res", "s.db",
                        cwd=tmp_path)
    assert kept.returncode == 0 and "dated  1 imported" in kept.stdout
