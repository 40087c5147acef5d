"""runstore.performance: FFTs against numpy, threads, BLAS helpers, timing, fallbacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runstore.performance import Timing, auto_timeit, blas, threads
from runstore.performance import fft as F

ROOT = Path(__file__).resolve().parent.parent
DTYPES = ["float32", "float64", "complex64", "complex128"]
# (shape, axis or axes): awkward sizes, negative axes, n-D over some axes.
ONE_D = [((16,), -1), ((15,), 0), ((7, 12), -1), ((6, 10), 0), ((3, 5, 8), -2)]
N_D = [((8, 6), None), ((9, 4, 10), (-1, 0)), ((5, 6, 7), (-2,)), ((4, 12), (1, 0))]


@pytest.fixture(autouse=True)
def quick_choices(monkeypatch):
    """Keep first-use measurements short, and the plan cache per test."""
    monkeypatch.setattr(F, "_TRIAL_SECONDS", 0.001)
    F.set_planner_effort("FFTW_ESTIMATE")
    F.clear_cache()
    yield
    F.set_planner_effort("FFTW_MEASURE")
    F.clear_cache()


def data(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape)
    if np.dtype(dtype).kind == "c":
        x = x + 1j * rng.normal(size=shape)
    return x.astype(dtype)


def close(got, expected, dtype):
    tol = 2e-4 if np.dtype(dtype) in (np.float32, np.complex64) else 1e-10
    scale = max(1.0, float(np.max(np.abs(expected))) if expected.size else 1.0)
    assert got.shape == expected.shape
    assert got.dtype == expected.dtype, (got.dtype, expected.dtype)
    assert np.max(np.abs(got - expected), initial=0) <= tol * scale


def kinds_and_dtypes(kinds):
    """Every pair but a real-input transform of complex data (numpy refuses it)."""
    return [(k, d) for k in kinds for d in DTYPES
            if not (k.startswith("rfft") and d.startswith("complex"))]


@pytest.mark.parametrize("backend", [None, "fftw", "numpy"])
@pytest.mark.parametrize("kind, dtype", kinds_and_dtypes(["fft", "ifft", "rfft", "irfft"]))
@pytest.mark.parametrize("shape, axis", ONE_D)
def test_one_dimensional_transforms_match_numpy(kind, dtype, shape, axis, backend):
    x = data(shape, dtype)
    expected = getattr(np.fft, kind)(x, axis=axis)
    if backend == "fftw" and kind == "irfft" and not dtype.startswith("complex"):
        backend = None  # FFTW's c2r transform takes complex input only
    original = x.copy()
    transform = F.get_fft(x, kind, axes=axis, backend=backend)
    close(transform(x), expected, dtype)
    close(transform(x), expected, dtype)  # again: nothing was overwritten
    assert np.array_equal(x, original)
    close(getattr(F, kind)(x, axis=axis), expected, dtype)
    if backend is not None:
        assert transform.backend == backend


@pytest.mark.parametrize("backend", [None, "fftw"])
@pytest.mark.parametrize("kind, dtype", kinds_and_dtypes(["fftn", "ifftn", "rfftn", "irfftn"]))
@pytest.mark.parametrize("shape, axes", N_D)
def test_n_dimensional_transforms_match_numpy(kind, dtype, shape, axes, backend):
    if kind == "irfftn" and not dtype.startswith("complex"):
        backend = None
    x = data(shape, dtype)
    original = x.copy()
    expected = getattr(np.fft, kind)(x, axes=axes)
    transform = F.get_fft(x, kind, axes=axes, backend=backend)
    for _ in range(2):  # c2r transforms overwrite their input: the caller's is kept
        close(transform(x), expected, dtype)
    assert np.array_equal(x, original)
    close(getattr(F, kind)(x, axes=axes), expected, dtype)


@pytest.mark.parametrize("kind, sizes", [("fft", 20), ("rfft", 9), ("irfft", 14),
                                         ("fftn", (4, 6)), ("irfftn", (6, 10))])
def test_sizes_pad_and_cut_as_numpy_does(kind, sizes):
    x = data((5, 8), "complex128" if kind.startswith("i") else "float64")
    if kind.endswith("n"):
        expected = getattr(np.fft, kind)(x, s=sizes, axes=(0, 1))
        got = getattr(F, kind)(x, s=sizes)
    else:
        expected = getattr(np.fft, kind)(x, n=sizes)
        got = getattr(F, kind)(x, n=sizes)
    close(got, expected, "float64")


def test_integer_input_and_bad_arguments():
    close(F.fft(np.arange(8)), np.fft.fft(np.arange(8)), "float64")
    with pytest.raises(np.exceptions.AxisError):
        F.fft(np.ones((2, 3)), axis=2)
    with pytest.raises(ValueError, match="unknown transform 'dct'"):
        F.get_fft(np.ones(4), "dct")
    with pytest.raises(ValueError, match="unknown backend"):
        F.get_fft(np.ones(4), backend="cuda")
    transform = F.get_fft(np.ones(8))
    with pytest.raises(ValueError, match=r"made for arrays of float64\(8,\)"):
        transform(np.ones(9))


def test_transforms_are_cached_and_results_are_not_shared():
    x = data((64,), "complex128")
    first = F.get_fft(x, backend="fftw", threads=1)
    assert F.get_fft(x, backend="fftw", threads=1) is first
    assert F.get_fft(x, backend="fftw", threads=2) is not first
    a, b = first(x), first(2 * x)
    assert not np.shares_memory(a, b)  # FFTW's reused output array is copied
    close(a, np.fft.fft(x), "complex128")


def test_the_faster_backend_is_chosen_by_measurement():
    x = data((256,), "complex128")
    transform = F.get_fft(x)
    assert set(transform.seconds) == {"numpy", "fftw"}
    assert transform.backend == min(transform.seconds, key=transform.seconds.get)


def test_pyfftw_interface_cache_is_on():
    import pyfftw.interfaces.cache

    assert F.interface_cache_enabled() and pyfftw.interfaces.cache.is_enabled()
    F.clear_cache()
    assert pyfftw.interfaces.cache.is_enabled()


@pytest.mark.parametrize("old, new", [(16, 32), (16, 24), (32, 16), (15, 40), (40, 15),
                                      (12, 12)])
def test_resample_reproduces_band_limited_signals(old, new):
    def signal(n):
        t = np.arange(n) / n
        return np.cos(2 * np.pi * 3 * t) + 0.5 * np.sin(2 * np.pi * 5 * t + 0.3)

    got = F.resample(signal(old), new)
    assert got.dtype == np.float64 and np.allclose(got, signal(new))
    stacked = F.resample(np.stack([signal(old), 2 * signal(old)]) * (1 + 1j), new, axis=-1)
    assert np.allclose(stacked, np.stack([signal(new), 2 * signal(new)]) * (1 + 1j))
    assert np.allclose(F.resample(signal(old)[:, None], new, axis=0)[:, 0], signal(new))


def test_wisdom_round_trips_and_lets_a_fresh_process_plan_from_it(tmp_path):
    F.set_planner_effort("FFTW_MEASURE")
    x = data((4096,), "complex128")
    F.get_fft(x, backend="fftw", threads=1)
    wisdom = F.export_wisdom()
    assert wisdom and all(isinstance(part, bytes) for part in wisdom)
    script = """
import sys, numpy as np, pyfftw
from runstore.performance import fft
if sys.argv[1] == "import":
    assert fft.import_wisdom(tuple(open(p, "rb").read() for p in sys.argv[2:]))
a = pyfftw.empty_aligned(4096, dtype="complex128")
b = pyfftw.empty_aligned(4096, dtype="complex128")
try:
    pyfftw.FFTW(a, b, flags=("FFTW_MEASURE", "FFTW_WISDOM_ONLY"), threads=1)
    print("planned from wisdom")
except RuntimeError:
    print("no wisdom")
"""
    paths = []
    for i, part in enumerate(wisdom):
        paths.append(tmp_path / f"w{i}")
        paths[-1].write_bytes(part)
    run = [sys.executable, "-c", script]
    without = subprocess.run([*run, "none"], capture_output=True, text=True, check=True)
    with_it = subprocess.run([*run, "import", *map(str, paths)], capture_output=True,
                             text=True, check=True)
    assert without.stdout.strip() == "no wisdom"
    assert with_it.stdout.strip() == "planned from wisdom"


THREADS = """
import os
# All cores, whatever affinity this process inherited: pinned to one core,
# FFTW and OpenBLAS start no thread of their own.
os.sched_setaffinity(0, range(os.cpu_count()))
import json, numpy as np, psutil
from runstore.performance import fft, threads
from threadpoolctl import threadpool_info
process = psutil.Process()
# FFTW_ESTIMATE plans from FFTW's cost model alone, so the 2-thread plan is
# threaded on any machine; a measured plan may find one thread faster on a
# busy machine and start none.
fft.set_planner_effort("FFTW_ESTIMATE")
a = np.ones(2**16, dtype=complex)
counts = [process.num_threads()]
fft.get_fft(a, threads=1, backend="fftw")(a)
counts.append(process.num_threads())
fft.get_fft(a, threads=2, backend="fftw")(a)
counts.append(process.num_threads())
threads.set_num_threads(1)
fft.set_planner_effort("FFTW_MEASURE")
default = fft.get_fft(np.ones(64, dtype=complex), backend="fftw").threads
limits = sorted({p["num_threads"] for p in threadpool_info()})
print(json.dumps({"cores": len(os.sched_getaffinity(0)), "counts": counts,
                  "default": default, "limits": limits, "report": threads.get_num_threads()}))
"""


def test_the_thread_count_is_honoured():
    # OpenMP's variables cap FFTW's OpenMP threads, and may be set where the suite
    # runs (Dask's LocalCluster sets OMP_NUM_THREADS=1 in the process that starts
    # it): the plan must be free to start its own.
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMP_")}
    out = subprocess.run([sys.executable, "-c", THREADS], capture_output=True, text=True,
                         check=True, env=env).stdout
    found = json.loads(out)
    if found["cores"] < 2:  # confined to one core (a cpuset), FFTW starts no thread
        pytest.skip("this process may use only one core: no thread to count")
    one, after_one, after_two = found["counts"]
    assert after_one == one  # a 1-thread plan starts no thread
    assert after_two > after_one  # a 2-thread plan runs on a worker thread of FFTW's
    assert found["default"] == 1 and found["limits"] == [1]
    assert found["report"]["fftw"] == 1 and set(found["report"].values()) == {1}


def test_set_num_threads_refuses_nonsense():
    with pytest.raises(ValueError, match="whole number >= 1"):
        threads.set_num_threads(0)
    with pytest.raises(ValueError, match="at least 1"):
        F.set_num_threads(0)
    with pytest.raises(ValueError, match="unknown planner effort"):
        F.set_planner_effort("FFTW_FAST")


HIDDEN = """
import json, sys
for name in sys.argv[1:]:
    sys.modules[name] = None  # as if not installed
import numpy as np
from runstore.performance import blas, fft
x = np.random.default_rng(1).normal(size=(6, 10))
t = fft.get_fft(x, "rfftn")
out = {"fftw": fft.FFTW_AVAILABLE, "blas": blas.SCIPY_BLAS, "backend": t.backend,
       "close": bool(np.allclose(fft.rfftn(x), np.fft.rfftn(x))),
       "resample": bool(np.allclose(fft.resample(x, 20, axis=-1)[:, ::2], x)),
       "wisdom": list(fft.export_wisdom()), "cache": fft.interface_cache_enabled()}
y = np.ones(10); blas.axpy(y, np.arange(10.0), 3.0)
out["axpy"] = y.tolist()
out["dot"] = float(blas.dot(np.arange(4.0), np.arange(4.0)))
out["norm"] = blas.norm(np.array([3.0, 4.0]))
try:
    fft.get_fft(x, backend="fftw")
except ValueError as exc:
    out["error"] = str(exc)
print(json.dumps(out))
"""


def test_without_pyfftw_and_scipy_numpy_does_everything():
    result = subprocess.run([sys.executable, "-c", HIDDEN, "pyfftw", "scipy"],
                            capture_output=True, text=True, check=True)
    found = json.loads(result.stdout)
    # A broken install is said once, on import, as mmfutils said it.
    assert result.stderr.count("RuntimeWarning: Could not import pyfftw... falling back") == 1
    assert "pip install pyfftw" in result.stderr
    assert found["fftw"] is False and found["blas"] is False and found["cache"] is False
    assert found["backend"] == "numpy" and found["close"] and found["resample"]
    assert found["wisdom"] == []
    assert found["axpy"] == [1.0 + 3 * i for i in range(10)]
    assert found["dot"] == 14.0 and found["norm"] == 5.0
    assert "pyfftw is not installed" in found["error"]


@pytest.mark.parametrize("dtype", DTYPES + ["int64"])
def test_blas_helpers_match_numpy(dtype):
    x, y = data((7, 5), dtype if dtype != "int64" else "float64"), data((7, 5), dtype, 1)
    if dtype == "int64":
        x, y = np.arange(35).reshape(7, 5), np.arange(35).reshape(7, 5) * 2
    assert np.isclose(blas.dot(x, y), np.sum(x * y), rtol=1e-5)
    assert np.isclose(blas.norm(x), np.linalg.norm(x.ravel()), rtol=1e-5)
    target = y.copy()
    same = blas.axpy(target, x, 2)
    assert same is target and np.allclose(target, y + 2 * x, rtol=1e-5)
    fortran = np.asfortranarray(y)
    blas.axpy(fortran, np.asfortranarray(x), 2)
    assert np.allclose(fortran, y + 2 * x, rtol=1e-5)
    mixed = y.copy()
    blas.axpy(mixed, np.asfortranarray(x), 2)
    assert np.allclose(mixed, y + 2 * x, rtol=1e-5)
    with pytest.raises(ValueError, match="of its shape"):
        blas.axpy(y, x[:2])


def test_auto_timeit_picks_loops_and_respects_max_time(capsys):
    timing = auto_timeit("sum(range(50))", time=0.02)
    assert isinstance(timing, Timing) and timing.number > 10 and timing.repeat == 5
    assert timing.best <= timing.mean and " per loop (best of 5, " in capsys.readouterr().out
    import time

    slow = auto_timeit(lambda: time.sleep(0.02), time=0.01, max_time=0.05, display=False)
    assert slow.number == 1 and slow.repeat == 2
    assert capsys.readouterr().out == ""
    assert "ms per loop" in str(slow)
    with pytest.raises(ValueError):
        auto_timeit(time=0)


# What code written for mmfutils.performance relies on (docs/howto/migrate.rst).

@pytest.mark.parametrize("shape, axis", ONE_D)
def test_get_ifft_get_fftn_get_ifftn_take_numpys_arguments(shape, axis):
    x = data(shape, "complex128")
    close(F.get_fft(x, axis=axis)(x), np.fft.fft(x, axis=axis), "complex128")
    close(F.get_ifft(x, axis=axis)(x), np.fft.ifft(x, axis=axis), "complex128")
    close(F.get_ifft(x, 9, axis)(x), np.fft.ifft(x, 9, axis=axis), "complex128")
    axes = [axis, 0] if len(shape) > 1 and axis % len(shape) != 0 else [axis]
    close(F.get_fftn(x, axes=axes)(x), np.fft.fftn(x, axes=axes), "complex128")
    close(F.get_ifftn(x, axes=axes)(x), np.fft.ifftn(x, axes=axes), "complex128")
    assert F.get_ifftn(x, axes=axes).kind == "ifftn"
    assert F.get_fft(x, axis=axis) is F.get_fft(x, axes=axis)


def test_get_fft_says_where_the_size_goes_and_refuses_two_axes():
    x = np.ones(16, dtype=complex)
    with pytest.raises(ValueError, match=r"unknown transform 8;.*pass a size as n=8"):
        F.get_fft(x, 8)  # mmfutils' get_fft(a, n)
    with pytest.raises(TypeError, match="give one of them"):
        F.get_fft(x, axes=0, axis=0)


def test_mmfutils_module_settings_read_and_assign_the_real_ones():
    F.set_num_threads(1)
    assert F._THREADS == 1
    F._THREADS = 2
    assert F.get_num_threads() == 2 and F.get_fft(np.ones(32, complex)).threads == 2
    F._THREADS = 1
    with pytest.raises(ValueError, match="at least 1"):
        F._THREADS = 0
    F._PLANNER_EFFORT = "FFTW_PATIENT"
    assert F._PLANNER_EFFORT == "FFTW_PATIENT"
    with pytest.raises(ValueError, match="unknown planner effort"):
        F._PLANNER_EFFORT = "FFTW_FAST"
    F.set_planner_effort("FFTW_ESTIMATE")
    assert F._PLANNER_EFFORT == "FFTW_ESTIMATE" and F._COPY_OUTPUT is True
    F._COPY_OUTPUT = True
    with pytest.raises(ValueError, match=r"get_fft\(a, backend='fftw'\).plan"):
        F._COPY_OUTPUT = False


WISDOM_ONLY = """
import sys, numpy as np, pyfftw, warnings
warnings.simplefilter("error")
from runstore.performance import fft
with fft.fftw_wisdom(sys.argv[1], threads=1, effort="FFTW_MEASURE") as wisdom:
    a = pyfftw.empty_aligned(4096, dtype="complex128")
    b = pyfftw.empty_aligned(4096, dtype="complex128")
    try:
        pyfftw.FFTW(a, b, flags=("FFTW_MEASURE", "FFTW_WISDOM_ONLY"), threads=1)
        print("planned from wisdom", len(wisdom))
    except RuntimeError:
        print("no wisdom", len(wisdom))
"""


def test_fftw_wisdom_keeps_wisdom_in_a_json_file_a_fresh_process_plans_from(tmp_path):
    path, empty = tmp_path / "spectra.wisdom", tmp_path / "empty.wisdom"
    run = [sys.executable, "-c", WISDOM_ONLY, str(path)]
    first = subprocess.run([*run[:-1], str(empty)], capture_output=True, text=True,
                           check=True).stdout
    assert first.strip() == "no wisdom 0" and empty.exists()  # written even so
    empty.unlink()
    x = data((4096,), "complex128")
    F.set_num_threads(3)
    with F.fftw_wisdom(path, threads=1, effort="FFTW_MEASURE") as taken:
        assert taken == () and F.get_num_threads() == 1
        transform = F.get_fft(x, backend="fftw")
        assert transform.threads == 1
        close(transform(x), np.fft.fft(x), "complex128")
    assert F.get_num_threads() == 3 and F._PLANNER_EFFORT == "FFTW_ESTIMATE"  # restored
    document = json.loads(path.read_text())
    assert document["format"] == "runstore-fftw-wisdom" and document["version"] == 1
    assert document["machine"] == F.wisdom_machine() and any(document["wisdom"])
    second = subprocess.run(run, capture_output=True, text=True, check=True).stdout
    assert second.strip() == "planned from wisdom 3"
    assert list(tmp_path.iterdir()) == [path]  # no partial file left behind


def test_fftw_wisdom_restores_settings_and_saves_after_an_error(tmp_path):
    path = tmp_path / "w.json"
    with pytest.raises(KeyError):
        with F.fftw_wisdom(path, effort="FFTW_MEASURE"):
            assert F._PLANNER_EFFORT == "FFTW_MEASURE"
            raise KeyError("in the block")
    assert F._PLANNER_EFFORT == "FFTW_ESTIMATE" and path.exists()
    with pytest.raises(ValueError, match="unknown planner effort"):
        with F.fftw_wisdom(tmp_path / "never", effort="FFTW_FAST"):
            pass  # pragma: no cover
    assert not (tmp_path / "never").exists()


class _Hostile:
    """A pickle that creates a file when unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_fftw_wisdom_never_unpickles_an_old_wisdom_file(tmp_path):
    import pickle

    path, marker = tmp_path / ".fftw_wisdom", tmp_path / "unpickled"
    path.write_bytes(pickle.dumps((b"", _Hostile(marker))))
    with pytest.warns(RuntimeWarning, match=r"not read \(an mmfutils wisdom pickle is never"):
        with F.fftw_wisdom(path, effort="FFTW_ESTIMATE") as taken:
            assert taken == ()
    assert not marker.exists()
    assert json.loads(path.read_text())["format"] == "runstore-fftw-wisdom"  # replaced


@pytest.mark.parametrize("old, new", [((16, 13), (31, 24)), ((31, 24), (16, 13)),
                                      ((12, 10), (12, 15))])
def test_resample_resamples_every_axis_by_default(old, new):
    def f(shape):
        x = np.arange(shape[0])[:, None] / shape[0]
        y = np.arange(shape[1])[None, :] / shape[1]
        return np.sin(2 * np.pi * x) - np.cos(4 * np.pi * y) + 0.3 * np.cos(2 * np.pi * (x + y))

    got = F.resample(f(old), new)
    assert got.shape == new and got.dtype == np.float64 and np.allclose(got, f(new))
    assert np.allclose(F.resample(f(old), new, axis=(0, 1)), f(new))
    assert np.allclose(F.resample(f(old), new[::-1], axis=(1, 0)), f(new))
    square = F.resample(f(old), 24)  # one size: every axis, as mmfutils' resample(f, N)
    assert square.shape == (24, 24) and np.allclose(square, f((24, 24)))
    along = F.resample(f(old), new[1], axis=-1)
    assert along.shape == (old[0], new[1]) and np.allclose(along, f((old[0], new[1])))


def test_resample_returns_a_new_array_and_refuses_unclear_requests():
    x = np.arange(12.0).reshape(3, 4)
    same = F.resample(x, (3, 4))
    assert np.allclose(same, x) and not np.shares_memory(same, x)
    assert F.resample(np.arange(8), 8).dtype == np.float64
    with pytest.raises(ValueError, match="one size per axis"):
        F.resample(x, (3, 4, 5))
    with pytest.raises(ValueError, match="with repeats"):
        F.resample(x, (4, 4), axis=(1, -1))
    with pytest.raises(ValueError, match="at least 1"):
        F.resample(x, 0)
    with pytest.raises(np.exceptions.AxisError):
        F.resample(x, 5, axis=2)


HOOKS = """
import json
from runstore.performance import fft, threads
seen = []
threads.SET_THREAD_HOOKS.add(seen.append)
before = threads.set_num_threads(2)
threads.SET_THREAD_HOOKS.discard(seen.append)
threads.set_num_threads(1)
print(json.dumps({"seen": seen, "fft_hook": fft.set_num_threads in threads.SET_THREAD_HOOKS,
                  "fft": fft._THREADS, "before_has_fftw": "fftw" in before}))
"""


def test_set_num_threads_calls_every_hook_in_set_thread_hooks():
    out = subprocess.run([sys.executable, "-c", HOOKS], capture_output=True, text=True,
                         check=True).stdout
    found = json.loads(out)
    assert found == {"seen": [2], "fft_hook": True, "fft": 1, "before_has_fftw": True}


@pytest.mark.parametrize("dtype", DTYPES + ["int64"])
def test_dotc_conjugates_its_first_argument(dtype):
    x, y = data((9, 4), dtype if dtype != "int64" else "float64"), data((9, 4), dtype, 1)
    if dtype == "int64":
        x, y = np.arange(36).reshape(9, 4), np.arange(36).reshape(9, 4) + 1
    assert np.isclose(blas.dotc(x, y), np.vdot(x, y), rtol=1e-5)
    assert np.isclose(blas.dotc(np.asfortranarray(x), y), np.vdot(x, y), rtol=1e-5)
    with pytest.raises(ValueError, match="one shape"):
        blas.dotc(x, y[:2])


def test_mmfutils_blas_names_are_runstores_functions():
    assert (blas.ddot, blas.zdotc) == (blas.dot, blas.dotc)
    assert blas.daxpy is blas.zaxpy is blas.axpy and blas.dnorm is blas.znorm is blas.norm
    y, x = data((10, 10, 10), "complex128"), data((10, 10, 10), "complex128", 1)
    a = np.array([0.25 - 0.5j])  # mmfutils' own tests pass a as a 1-element array
    expected = y + a * x
    assert blas.zaxpy(y, x, a) is y and np.allclose(y, expected)
