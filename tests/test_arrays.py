"""runstore.arrays: side files reach the disk before rows point into them; full disks fail cleanly."""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest

import runstore
from runstore import Batch, Store
from runstore.arrays import ArrayStore
from runstore.errors import StorageFullError, UnsafeArrayFileError

RUN = "a" * 40


class WithArrays(runstore.Run):
    def run(self, n=10):
        return {"x": np.arange(n, dtype=np.float64), "n": n}


def _fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


def test_side_files_are_fsynced_renamed_and_their_folder_fsynced_before_the_commit(
        in_tmp, monkeypatch):
    batch = Batch("durable")
    run = batch.add_run(WithArrays, {"n": 1000})
    db = batch.store.path
    calls: list[tuple[str, str, str]] = []

    def state() -> str:  # what a reader of the runs table sees at this moment
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return conn.execute("SELECT state FROM runs WHERE id = ?", (run.id,)).fetchone()[0]

    def recording(name, real):
        def call(*args, **kwargs):
            if name == "fsync":
                what = _fd_path(args[0])
            else:
                what = f"{os.path.abspath(args[0])} -> {os.path.abspath(args[1])}"
            calls.append((name, what, state()))
            return real(*args, **kwargs)
        return call

    with monkeypatch.context() as patch:
        for name in ("fsync", "replace", "rename"):
            patch.setattr(os, name, recording(name, getattr(os, name)))
        batch()
    folder = Path(batch.store.arrays.directory).resolve()
    (final,) = batch.store.arrays.files()
    names = [(name, what) for name, what, _ in calls]
    file_sync = names.index(("fsync", str(folder / (final + ".part"))))
    rename = names.index(("replace", f"{folder / (final + '.part')} -> {folder / final}"))
    folder_sync = names.index(("fsync", str(folder)))
    assert file_sync < rename < folder_sync, calls
    assert all(seen == "running" for _, _, seen in calls[:folder_sync + 1]), calls
    assert state() == "done"
    assert run.result["x"].shape == (1000,)
    assert batch.store.check().ok


def test_a_failed_write_leaves_no_partial_file(tmp_path):
    store = ArrayStore(tmp_path / "s.arrays")
    with pytest.raises(AttributeError):
        store.write({RUN: {"0": np.arange(3), "1": None}})  # fails half-way
    assert store.partial_files() == [] and store.files() == []
    name = store.write({RUN: {"0": np.arange(3)}})
    with h5py.File(store.path(name), "r") as f:
        assert list(f[RUN]["0"][()]) == [0, 1, 2]


# -- full disks ------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmpfs):
    """A 4 MiB tmpfs."""
    return tmpfs("4m")


def fill(folder: Path, leave: int = 0) -> Path:
    """Fill the filesystem of ``folder``, leaving about ``leave`` bytes."""
    filler = folder / "filler"
    chunk = b"\xff" * 65536
    with open(filler, "wb") as f:
        try:
            while os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize > leave + len(chunk):
                f.write(chunk)
                f.flush()
            f.write(chunk[:max(0, os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
                               - leave)])
            f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


@pytest.mark.parametrize("leave", [0, 600_000])
def test_arrays_written_to_a_full_disk_raise_storage_full_and_leave_no_part(
        small_disk, leave):
    store = ArrayStore(small_disk / "s.arrays")
    store.directory.mkdir()
    filler = fill(small_disk, leave)
    with pytest.raises(StorageFullError) as info:
        store.write({RUN: {"0": np.zeros(200_000), "1": np.ones(10)}})  # 1.6 MB
    error = info.value
    assert isinstance(error, OSError) and isinstance(error, runstore.RunstoreError)
    assert error.errno == errno.ENOSPC
    assert error.path == str(store.directory) and error.mount == str(small_disk)
    assert str(store.directory) in str(error) and str(small_disk) in str(error)
    assert "Make room" in str(error) and "call the batch again" in str(error)
    assert list(store.directory.iterdir()) == []  # no .part, no file
    filler.unlink()
    name = store.write({RUN: {"0": np.zeros(200_000)}})  # room again: it works
    assert store.files() == [name] and store.partial_files() == []


def test_a_sqlite_commit_on_a_full_disk_raises_storage_full(small_disk):
    path = small_disk / "s.db"
    batch = Batch("full", store=Store(path))
    batch.add_factorial_runs(WithArrays, {"n": list(range(10))})
    filler = fill(small_disk)
    with pytest.raises(StorageFullError) as info:
        batch.add_factorial_runs(WithArrays, {"n": list(range(10, 40_000))})
    error = info.value
    assert error.path == str(path) and str(path) in str(error)
    assert error.mount == str(small_disk) and error.free is not None
    assert isinstance(error.__cause__, Exception)
    filler.unlink()
    assert len(batch.run) == 10  # the failed transaction left nothing behind
    batch.add_factorial_runs(WithArrays, {"n": [10, 11]})
    assert len(batch.run) == 12 and batch.store.check().ok


def test_a_batch_whose_arrays_fill_the_disk_raises_storage_full(small_disk):
    batch = Batch("big", store=Store(small_disk / "s.db"))
    batch.add_factorial_runs(WithArrays, {"n": [300_000, 300_000 + 1]})  # 2 x 2.4 MB
    with pytest.raises(StorageFullError) as info:
        batch()
    assert "s.arrays" in str(info.value)
    assert batch.store.arrays.partial_files() == []


# -- the layout: arrays at /<id>/<key path>, attributes that explain the file --------


class Described(runstore.Run):
    def run(self, n=3, x=0.5, flag=True, label="é/x", nothing=None, big=2**70,
            seq=(1, 2)):
        return {"fields": {"E": np.arange(n, dtype=np.float64), "B": np.ones((2, n))},
                "names": np.array(["a", "bc"]), "n": n}


def test_side_files_explain_themselves_to_h5py_alone(tmp_path):
    batch = Batch("described", path=tmp_path)
    run = batch.add_run(Described, {"n": 4})
    batch(verbose=0)
    record = batch.store.run_record(run.id)
    payloads = {p["name"]: p for p in _payloads(json.loads(record["result"]))}
    with h5py.File(run.filename, "r") as f:
        assert f.attrs["runstore_format"] == 2
        assert f.attrs["creator"] == f"runstore {runstore.__version__}"
        group = f[run.id]
        attrs = dict(group.attrs)
        assert attrs.pop("run_id") == run.id
        assert attrs.pop("run_type") == record["run_type"] == "tests.test_arrays.Described"
        assert attrs.pop("parameters") == record["parameters"]
        assert attrs.pop("runstore_format") == 2
        assert attrs == {"parameters.n": 4, "parameters.x": 0.5, "parameters.flag": True,
                         "parameters.label": "é/x"}  # not None, big ints, tuples
        assert type(attrs["parameters.label"]) is str
        assert isinstance(attrs["parameters.n"], np.int64)
        assert isinstance(attrs["parameters.flag"], np.bool_)
        assert sorted(payloads) == ["fields/B", "fields/E", "names"]
        for name, payload in payloads.items():
            dataset = group[name]
            assert dataset.attrs["crc32"] == payload["crc32"] == zlib.crc32(
                np.ascontiguousarray(run.result[name.split("/")[0]] if "/" not in name
                                     else run.result["fields"][name[7:]]).tobytes())
        assert "raw_dtype" not in group["fields/E"].attrs
        raw = group["names"]
        assert raw.dtype == np.uint8 and raw.attrs["raw_dtype"] == "<U2"
        assert raw[()].reshape(-1).view(raw.attrs["raw_dtype"]).tolist() == ["a", "bc"]
        text = h5py.h5a.open(group.id, b"parameters").get_type()
        assert text.is_variable_str() and text.get_cset() == h5py.h5t.CSET_UTF8


def _payloads(tree):
    from runstore.results import array_payloads

    return array_payloads(tree)


def test_a_bundle_carries_attributes_even_for_runs_from_old_side_files(tmp_path):
    fixture = Path(__file__).parent / "fixtures" / "store-0004"
    shutil.copytree(fixture, tmp_path / "old")
    store = Store(tmp_path / "old" / "_res" / "fixture.db")
    batch = Batch("fixture", store=store)
    (old,) = store.arrays.files()
    with h5py.File(store.arrays.path(old), "r") as f:  # format 1: no attributes
        assert "runstore_format" not in f.attrs
        assert not any(f[rid].attrs for rid in f)
    db, h5 = batch.export(tmp_path / "bundle" / "b")
    records = store.records(list(batch.run.ids()))
    with h5py.File(h5, "r") as f:
        assert f.attrs["runstore_format"] == 2
        assert sorted(f) == sorted(rid for rid, r in records.items() if r["array_file"])
        for rid in f:
            assert f[rid].attrs["run_id"] == rid
            assert f[rid].attrs["run_type"] == records[rid]["run_type"]
            assert f[rid].attrs["parameters"] == records[rid]["parameters"]
            for name, value in json.loads(records[rid]["parameters"])["values"]:
                assert f[rid].attrs[f"parameters.{name}"] == value
            assert sorted(f[rid]) == ["0", "1", "2", "3"]  # old names stay
    opened = runstore.open_bundle(db)
    mine = {run.id: run for run in batch.run}
    loaded = 0
    for run in opened.run:
        if run.done and records[run.id]["array_file"]:
            for key, value in mine[run.id].result.items():
                if isinstance(value, np.ndarray):
                    assert np.array_equal(run.result[key], value)
                    loaded += 1
    assert loaded


def test_imports_write_the_run_attributes(tmp_path):
    batch = Batch("described", path=tmp_path / "a")
    run = batch.add_run(Described, {"n": 2})
    batch(verbose=0)
    db, _ = batch.export(tmp_path / "b")
    target = Store(tmp_path / "c.db")
    runstore.import_bundle(db, target)
    record = target.run_record(run.id)
    with h5py.File(target.arrays.path(record["array_file"]), "r") as f:
        assert f.attrs["runstore_format"] == 2
        group = f[run.id]
        assert group.attrs["parameters"] == record["parameters"]  # with its origin
        assert "origin" in json.loads(group.attrs["parameters"])
        assert group.attrs["parameters.n"] == 2
        assert group["fields/E"].attrs["crc32"] > 0


class Nested(runstore.Run):
    def run(self, n=2):
        return {"fields": {"E": np.arange(n, dtype=np.float64),
                           "sub": {"B": np.ones(n)}}, "t": np.zeros(n)}


def _private(tmp_path: Path) -> Path:
    private = tmp_path / "elsewhere" / "private.h5"
    private.parent.mkdir(exist_ok=True)
    with h5py.File(private, "w") as f:
        f["secret"] = np.arange(2.0)
    return private


def _hostile(kind: str, f: h5py.File, rid: str, other: str, private: Path) -> str:
    fields = f[rid]["fields"]
    if kind == "soft link":
        del fields["E"]
        fields["E"] = h5py.SoftLink(f"/{other}/fields/E")
        return "a soft link"
    if kind == "external link in a subgroup":
        del fields["sub"]["B"]
        fields["sub"]["B"] = h5py.ExternalLink(str(private), "/secret")
        return "an external link"
    if kind == "external subgroup":
        del fields["sub"]
        fields["sub"] = h5py.ExternalLink(str(private), "/")
        return "an external link"
    if kind == "subgroup linked twice":
        del fields["sub"]
        fields["sub"] = f[other]["fields"]["sub"]
        return "linked from several places"
    if kind == "dataset where a subgroup belongs":
        del fields["sub"]
        fields["sub"] = np.arange(2.0)
        return "a dataset where a group belongs"
    if kind == "group where a nested array belongs":
        del fields["E"]
        fields.create_group("E")
        return "a group where an array belongs"
    if kind == "virtual nested dataset":
        del fields["E"]
        layout = h5py.VirtualLayout(shape=(2,), dtype="f8")
        layout[:] = h5py.VirtualSource(str(private), "secret", shape=(2,))
        fields.create_virtual_dataset("E", layout)
        return "a virtual dataset"
    raise AssertionError(kind)


NESTED_KINDS = ["soft link", "external link in a subgroup", "external subgroup",
                "subgroup linked twice", "dataset where a subgroup belongs",
                "group where a nested array belongs", "virtual nested dataset"]


def _nested_made_hostile(kind, tmp_path):
    """A batch of two Nested runs whose side file is then made hostile in one way."""
    batch = Batch("nested", path=tmp_path / "made")
    batch.add_factorial_runs(Nested, {"n": [2, 3]})
    batch(verbose=0)
    rid, other = batch.run.ids()
    (side,) = batch.store.arrays.files()
    with h5py.File(batch.store.arrays.path(side), "r+") as f:
        expected = _hostile(kind, f, rid, other, _private(tmp_path))
    return batch, side, rid, other, expected


@pytest.mark.parametrize("kind", NESTED_KINDS)
def test_hostile_nested_objects_are_refused_when_read_checked_and_exported(kind, tmp_path):
    batch, side, rid, _, expected = _nested_made_hostile(kind, tmp_path)
    fresh = Batch("nested", path=tmp_path / "made")
    with pytest.raises(UnsafeArrayFileError, match="refused without reading") as caught:
        fresh.run[0].result
    assert expected in str(caught.value)
    shapes = [("fields/E", (2,)), ("fields/sub/B", (2,)), ("t", (2,))]
    problems = batch.store.arrays.verify(side, [(rid, shapes)])
    assert "refused" in problems[rid]
    with pytest.raises(UnsafeArrayFileError):
        batch.export(tmp_path / "out" / "b")
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("kind", ["soft link", "external link in a subgroup",
                                  "subgroup linked twice", "virtual nested dataset"])
def test_repacking_walks_nested_groups_and_refuses_links(kind, tmp_path):
    batch, side, rid, other, _ = _nested_made_hostile(kind, tmp_path)
    with pytest.raises(UnsafeArrayFileError):
        batch.store.arrays.repack(side, [rid])
    assert batch.store.arrays.files() == [side]
    if kind == "subgroup linked twice":
        return  # the other run's group is linked twice too
    fresh = batch.store.arrays.repack(side, [other])  # the healthy run, walked whole
    with h5py.File(batch.store.arrays.path(fresh), "r") as f:
        assert f[other].attrs["run_id"] == other
        assert f[other]["fields/sub/B"].attrs["crc32"] > 0
