"""runstore.arrays: side files reach the disk before rows point into them; full disks fail cleanly."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

import h5py
import numpy as np
import pytest

import runstore
from runstore import Batch, Store
from runstore.arrays import ArrayStore
from runstore.errors import StorageFullError

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
