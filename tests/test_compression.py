"""runstore.compression: chunked, compressed arrays, set as asked and read back exactly."""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import runstore
from runstore import ArrayOptions, Batch
from runstore.errors import MissingFilterError

from .strategies import strictly_equal



class Fields(runstore.Run):
    def run(self, n=50_000):
        x = np.linspace(0, 1, n)
        return {"smooth": np.sin(x), "counts": (x * 1000).astype(np.int32),
                "grid": np.outer(x[:300], x[:300]), "small": np.arange(10.0),
                "names": np.array(["ab", "c"] * (n // 2)), "empty": np.zeros((0, 3)),
                "scalar": np.float64(2.5)}


def stored(run) -> dict[str, dict]:
    out = {}

    def note(name, obj):
        if isinstance(obj, h5py.Dataset):
            out[name] = {"chunks": obj.chunks, "compression": obj.compression,
                         "opts": obj.compression_opts, "shuffle": obj.shuffle,
                         "filters": obj.id.get_create_plist().get_nfilters()}

    with h5py.File(run.filename, "r") as f:
        f[run.id].visititems(note)
    return out


def computed(tmp_path, storage=None, call=None, name="f"):
    batch = Batch(name, path=tmp_path, storage=storage)
    run = batch.add_run(Fields, {})
    if call is None:
        batch(verbose=0)
    else:
        batch(verbose=0, storage=call)
    again = Batch(name, path=tmp_path).run[0]  # from the file, no memory
    assert strictly_equal(again.result, Fields.run(None))
    return run


def test_by_default_arrays_are_contiguous_and_uncompressed(tmp_path):
    for info in stored(computed(tmp_path)).values():
        assert info["chunks"] is None and info["filters"] == 0


@pytest.mark.parametrize("options, compression, shuffle", [
    (ArrayOptions(compression="gzip"), "gzip", False),
    (ArrayOptions(compression="gzip", compression_opts=9, shuffle=True), "gzip", True),
    (ArrayOptions(compression="lzf"), "lzf", False),
    (ArrayOptions(compression="lzf", shuffle=True), "lzf", True),
    (ArrayOptions(shuffle=True), None, True)])
def test_large_arrays_get_the_filters_asked_small_ones_stay_contiguous(
        tmp_path, options, compression, shuffle):
    found = stored(computed(tmp_path, options))
    for name in ("smooth", "counts", "grid", "names"):
        assert found[name]["compression"] == compression, name
        assert found[name]["shuffle"] == shuffle
        assert found[name]["chunks"] is not None
    if options.compression_opts is not None:
        assert found["smooth"]["opts"] == options.compression_opts
    for name in ("small", "empty"):  # under min_bytes, or nothing to compress
        assert found[name]["chunks"] is None and found[name]["filters"] == 0


def test_chunks_are_as_given_and_clipped_to_the_shape(tmp_path):
    found = stored(computed(tmp_path, ArrayOptions(chunks=(1000,))))
    assert found["smooth"]["chunks"] == (1000,) and found["smooth"]["filters"] == 0
    assert found["names"]["chunks"] == (1000, 8)  # raw bytes: the item axis whole
    found = stored(computed(tmp_path, ArrayOptions(chunks=(10**9, 7)), name="g"))
    assert found["grid"]["chunks"] == (300, 7)
    assert found["smooth"]["chunks"] == (50_000,)  # other ndim: about 1 MiB chunks


def test_min_bytes_decides_what_is_compressed(tmp_path):
    found = stored(computed(tmp_path, ArrayOptions(compression="gzip", min_bytes=10**6)))
    assert found["grid"]["compression"] is None  # 720 kB
    found = stored(computed(tmp_path, ArrayOptions(compression="gzip", min_bytes=0), name="g"))
    assert found["small"]["compression"] == "gzip"


def test_a_call_overrides_the_batch_options(tmp_path):
    found = stored(computed(tmp_path, ArrayOptions(compression="gzip"),
                            call=ArrayOptions(compression="lzf")))
    assert found["smooth"]["compression"] == "lzf"


def test_pool_drains_store_with_the_options(tmp_path):
    batch = Batch("pool", path=tmp_path, storage=ArrayOptions(compression="gzip"))
    batch.add_factorial_runs(Fields, {"n": [40_000, 50_000]})
    batch(verbose=0, processes=2)
    for run in batch.run:
        assert stored(run)["smooth"]["compression"] == "gzip"
        assert np.array_equal(run.result["smooth"], np.sin(np.linspace(0, 1, run.parameters["n"])))


@pytest.mark.parametrize("bad", [dict(compression="zip"), dict(compression_opts=3),
                                 dict(compression="lzf", compression_opts=3),
                                 dict(compression="gzip", compression_opts=12),
                                 dict(chunks=(0,))])
def test_bad_options_are_refused_when_made(bad):
    with pytest.raises(ValueError):
        ArrayOptions(**bad)


def test_storage_must_be_array_options(tmp_path):
    with pytest.raises(TypeError, match="ArrayOptions"):
        Batch("x", path=tmp_path, storage={"compression": "gzip"})


class Any(runstore.Run):
    def run(self, seed=0):
        return {}


@settings(max_examples=40, deadline=None)
@given(array=st.sampled_from([np.float64, np.int16, np.complex64, np.bool_, "<U3",
                              "datetime64[s]", np.float32]).flatmap(
    lambda dtype: st.tuples(st.integers(0, 3).flatmap(
        lambda ndim: st.lists(st.integers(0, 40), min_size=ndim, max_size=ndim)),
        st.just(dtype))).map(lambda spec: np.arange(int(np.prod(spec[0], dtype=int))).astype(
            spec[1]).reshape(spec[0])),
       options=st.builds(ArrayOptions, compression=st.sampled_from([None, "gzip", "lzf"]),
                         shuffle=st.booleans(), min_bytes=st.just(0),
                         chunks=st.one_of(st.none(), st.lists(st.integers(1, 50), min_size=1,
                                                              max_size=3).map(tuple))))
def test_any_array_round_trips_exactly_with_any_options(tmp_path_factory, array, options):
    store = runstore.Store(tmp_path_factory.mktemp("s") / "s.db")
    name = store.arrays.write({"r" * 40: {"a": array}}, None, options)
    back = store.arrays.read(name, ("r" * 40) + "/a")
    from runstore.encoding import stored_array
    payload = {"dtype": array.dtype.str, "shape": list(array.shape), "name": "a"}
    assert strictly_equal(stored_array(payload, back, "a"), array)
    store.close()


BLOCKED = """
import sys
sys.modules["hdf5plugin"] = None  # as if not installed
import runstore
try:
    runstore.Batch("b", path=sys.argv[1]).run[0].result
except runstore.MissingFilterError as exc:
    print(type(exc).__name__, exc.extra, exc.filter, "|", exc)
"""


def test_blosc_round_trips_and_without_hdf5plugin_reading_says_what_to_install(tmp_path):
    pytest.importorskip("hdf5plugin")
    found = stored(computed(tmp_path, ArrayOptions(compression="blosc", shuffle=True),
                            name="b"))
    assert found["smooth"]["filters"] == 1 and found["smooth"]["chunks"] is not None
    out = subprocess.run([sys.executable, "-c", BLOCKED, str(tmp_path)], capture_output=True,
                         text=True, check=True).stdout
    assert out.startswith("MissingFilterError blosc blosc |"), out
    assert "pip install 'runstore[blosc]'" in out


def test_asking_for_blosc_without_hdf5plugin_fails_at_once(monkeypatch):
    monkeypatch.setitem(sys.modules, "hdf5plugin", None)
    with pytest.raises(MissingFilterError, match=r"runstore\[blosc\]"):
        ArrayOptions(compression="blosc")


def test_gc_rewrites_compressed_nested_arrays_with_their_filters_and_attributes(tmp_path):
    batch = Batch("gc", path=tmp_path, storage=ArrayOptions(compression="gzip", shuffle=True))
    batch.add_factorial_runs(Fields, {"n": [40_000, 50_000]})
    batch(verbose=0)
    (old,) = batch.store.arrays.files()
    batch.run[0].clear()
    assert batch.store.check().ok
    batch.store.gc(min_age=0)
    (new,) = batch.store.arrays.files()
    assert new != old
    run = batch.run[1]
    assert run.filename.endswith(new)
    found = stored(run)
    assert found["smooth"]["compression"] == "gzip" and found["smooth"]["shuffle"]
    with h5py.File(run.filename, "r") as f:
        assert f[run.id].attrs["run_id"] == run.id
        assert f[run.id]["smooth"].attrs["crc32"] > 0
    fresh = Batch("gc", path=tmp_path).run[1]
    assert strictly_equal(fresh.result, Fields.run(None, n=50_000))
    assert batch.store.check().ok
