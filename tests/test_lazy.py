"""runstore.lazy: run.arrays reads only the slices taken, checked like every read."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import runstore
from runstore import ArrayOptions, Batch
from runstore.errors import ArrayFileError, UnsafeArrayFileError

SHAPE = (7, 5, 4)


class Cube(runstore.Run):
    def run(self, seed=0):
        data = np.arange(np.prod(SHAPE), dtype=np.float64).reshape(SHAPE) + seed
        return {"cube": data, "fields": {"E": data[0], "names": np.array(
            ["a", "bb", "ccc", "d", "ee"])}, "when": np.arange(6).astype("datetime64[s]"),
                "scalar": np.array(2.5), "n": seed}


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """Runs whose arrays are stored contiguous, and chunked with gzip."""
    folder = tmp_path_factory.mktemp("lazy")
    plain = Batch("plain", path=folder)
    plain.add_run(Cube, {"seed": 1})
    plain(verbose=0)
    packed = Batch("packed", path=folder, storage=ArrayOptions(
        compression="gzip", chunks=(3, 2, 4), min_bytes=0))
    packed.add_run(Cube, {"seed": 1})
    packed(verbose=0)
    return [Batch(name, path=folder).run[0] for name in ("plain", "packed")]


def test_run_arrays_maps_key_paths_to_arrays_that_know_their_type(stored):
    for run in stored:
        arrays = run.arrays
        assert sorted(arrays) == ["cube", "fields/E", "fields/names", "scalar", "when"]
        cube = arrays["cube"]
        assert (cube.shape, cube.dtype, cube.ndim, len(cube)) == (SHAPE, np.float64, 3, 7)
        assert cube.nbytes == 7 * 5 * 4 * 8
        assert np.array_equal(cube.read(), Cube.run(None, seed=1)["cube"])
        assert np.array_equal(np.asarray(arrays["fields/E"]), Cube.run(None, 1)["cube"][0])
        assert arrays["scalar"][()] == 2.5
        with pytest.raises(KeyError):
            arrays["nope"]


index_kinds = st.one_of(
    hnp.basic_indices(SHAPE, min_dims=0, allow_newaxis=True, allow_ellipsis=True),
    hnp.integer_array_indices(SHAPE, result_shape=hnp.array_shapes(max_dims=2)),
    st.tuples(st.slices(7), st.lists(st.integers(-5, 4), max_size=4)),
    st.tuples(st.just(Ellipsis), hnp.arrays(bool, (4,))),
    hnp.arrays(bool, SHAPE[:2]),
    st.lists(st.integers(-7, 6), max_size=5),
)


@settings(max_examples=150, deadline=None)
@given(index=index_kinds, which=st.sampled_from([0, 1]))
def test_slicing_matches_numpy(stored, index, which):
    expected = Cube.run(None, seed=1)["cube"]
    got = stored[which].arrays["cube"][index]
    want = expected[index]
    assert np.asarray(got).shape == np.asarray(want).shape
    assert np.array_equal(got, want)


@settings(max_examples=40, deadline=None)
@given(index=st.one_of(st.slices(5), st.integers(-5, 4), st.lists(st.integers(-5, 4),
                                                                    max_size=3)))
def test_raw_byte_dtypes_slice_as_their_dtype(stored, index):
    names = Cube.run(None, seed=1)["fields"]["names"]
    for run in stored:
        got = run.arrays["fields/names"][index]
        want = names[index]
        assert type(got) is type(want) and np.asarray(got).dtype == np.asarray(want).dtype
        assert np.array_equal(got, want)
    assert np.array_equal(stored[0].arrays["when"][::-2], np.arange(6).astype(
        "datetime64[s]")[::-2])


def test_indexes_numpy_refuses_are_refused(stored):
    cube = stored[0].arrays["cube"]
    for bad in (7, (0, 0, 0, 0), (slice(None), 9), [7]):
        with pytest.raises(IndexError):
            cube[bad]


def test_arrays_of_runs_in_memory_and_without_arrays(tmp_path):
    batch = Batch("mem", saveresult=False)
    run = batch.add_run(Cube, {"seed": 2})
    batch(verbose=0)
    assert np.array_equal(run.arrays["cube"][1:3, ::2], Cube.run(None, 2)["cube"][1:3, ::2])
    pending = Batch("p", path=tmp_path).add_run(Cube, {"seed": 3})
    assert dict(pending.arrays) == {}


def test_old_side_files_are_read_lazily_by_key_path(tmp_path):
    shutil.copytree(Path(__file__).parent / "fixtures" / "store-0004", tmp_path / "old")
    batch = Batch("fixture", path=tmp_path / "old")  # upgraded to the current schema
    run = next(run for run in batch.run if run.arrays)
    assert set(run.arrays) >= {"x", "m"}  # named 0, 1 ... in the file
    assert np.array_equal(run.arrays["m"][1:, :1], run.result["m"][1:, :1])


def make_hostile(tmp_path, kind):
    batch = Batch("h", path=tmp_path)
    batch.add_factorial_runs(Cube, {"seed": [1, 2]})
    batch(verbose=0)
    rid, other = batch.run.ids()
    (side,) = batch.store.arrays.files()
    with h5py.File(batch.store.arrays.path(side), "r+") as f:
        fields = f[rid]["fields"]
        if kind == "soft link":
            del fields["E"]
            fields["E"] = h5py.SoftLink(f"/{other}/fields/E")
        elif kind == "external link":
            private = tmp_path / "private.h5"
            with h5py.File(private, "w") as p:
                p["secret"] = np.zeros((5, 4))
            del fields["E"]
            fields["E"] = h5py.ExternalLink(str(private), "/secret")
        elif kind == "wrong shape":
            del fields["E"]
            fields["E"] = np.zeros((50, 4))
        elif kind == "huge compressed":
            del f[rid]["cube"]
            f[rid].create_dataset("cube", shape=(2**28,), dtype="f8", chunks=(2**20,),
                                  compression="gzip")
    return Batch("h", path=tmp_path).run[0]


@pytest.mark.parametrize("kind, path", [("soft link", "fields/E"),
                                        ("external link", "fields/E"),
                                        ("wrong shape", "fields/E"),
                                        ("huge compressed", "cube")])
def test_hostile_files_are_refused_on_lazy_access(tmp_path, kind, path):
    run = make_hostile(tmp_path, kind)
    lazy = run.arrays[path]  # nothing read yet
    with pytest.raises(UnsafeArrayFileError, match="refused without reading"):
        lazy[0]
    with pytest.raises(UnsafeArrayFileError):
        lazy.read()


def test_a_damaged_array_fails_its_checksum_when_read_whole(tmp_path):
    batch = Batch("d", path=tmp_path)
    run = batch.add_run(Cube, {"seed": 1})
    batch(verbose=0)
    with h5py.File(run.filename, "r+") as f:
        f[run.id]["cube"][0, 0, 0] = -1.0
    lazy = Batch("d", path=tmp_path).run[0].arrays["cube"]
    assert lazy[0, 0, 0] == -1.0  # a slice is what the file holds
    with pytest.raises(runstore.DecodingError, match="checksum"):
        lazy.read()


def test_a_missing_side_file_is_an_array_file_error(tmp_path):
    batch = Batch("m", path=tmp_path)
    run = batch.add_run(Cube, {"seed": 1})
    batch(verbose=0)
    lazy = run.arrays["cube"]
    Path(run.filename).unlink()
    with pytest.raises(ArrayFileError, match="missing"):
        lazy[0]


MEMORY = """
import sys, numpy as np, runstore
def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
run = runstore.Batch("big", path=sys.argv[1]).run[0]
lazy = run.arrays["x"]
before = peak()
part = lazy[1000:2000, ::7]
column = lazy[:, 3]
print(lazy.nbytes, peak() - before, part.shape, column.shape, float(part[0, 0]))
"""


class Big(runstore.Run):
    def run(self, rows=40_000):
        return {"x": np.arange(rows * 1000, dtype=np.float64).reshape(rows, 1000)}


@pytest.mark.slow
def test_a_slice_of_a_big_array_needs_the_memory_of_the_slice_only(tmp_path):
    batch = Batch("big", path=tmp_path)
    batch.add_run(Big, {})  # 320 MB
    batch(verbose=0)
    out = subprocess.run([sys.executable, "-c", MEMORY, str(tmp_path)], capture_output=True,
                         text=True, check=True).stdout.split()
    size, grown = int(out[0]), int(out[1])
    assert size == 320_000_000
    assert grown < 20_000_000, f"peak RSS grew by {grown / 1e6:.0f} MB for a slice"
    assert float(out[-1]) == 1000 * 1000.0
