"""Fast Fourier transforms: FFTW through pyfftw where it is faster, numpy otherwise.

The functions mirror :mod:`numpy.fft` (``fft``, ``ifft``, ``rfft``, ``irfft``,
``fftn``, ``ifftn``, ``rfftn``, ``irfftn``, with ``n``/``axis`` or
``s``/``axes``, negative axes included) and give the same values within
floating-point tolerance, in the same dtypes. Behind them:

- :func:`get_fft` returns a ready :class:`Transform` for arrays of one shape
  and dtype. The first time a (kind, dtype, shape, axes, size, threads,
  planner effort) combination is asked for, an FFTW plan is built (pyfftw's
  builders, with the configured planner effort and threads) and timed against
  numpy on the same array; the faster is kept for the rest of the process.
  Later calls find it in a dictionary.
- pyfftw's own interface cache (:mod:`pyfftw.interfaces.cache`) is enabled
  on import, for code that calls ``pyfftw.interfaces`` directly.
- FFTW *wisdom* (what planning learned) is exported with
  :func:`export_wisdom` and imported with :func:`import_wisdom`; a store
  keeps it (:meth:`runstore.Store.fftw_wisdom`), and the worker pool hands it
  to its workers, so they reuse plans instead of measuring again.
  :func:`fftw_wisdom` keeps it in a file of its own around a block of code.

Without pyfftw every transform is numpy's (a warning says so on import), and
everything here still works.

For code written against ``mmfutils.performance.fft``: :func:`get_ifft`,
:func:`get_fftn`, :func:`get_ifftn` and :func:`fftw_wisdom` have its names
and arguments, :func:`resample` resamples every axis by default as it did,
and its module settings ``_THREADS`` and ``_PLANNER_EFFORT`` can still be
read and assigned (assigning calls :func:`set_num_threads` or
:func:`set_planner_effort`).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
import types
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .threads import SET_THREAD_HOOKS

try:
    import pyfftw
    import pyfftw.builders
    import pyfftw.interfaces.cache
except ImportError as missing:  # numpy does every transform then
    pyfftw = None
    # pyfftw is a dependency: without it the install is broken, and every
    # transform silently slower. mmfutils warned in the same words.
    warnings.warn(f"Could not import pyfftw... falling back to numpy for every transform "
                  f"({missing}); reinstall it with 'pip install pyfftw'", RuntimeWarning,
                  stacklevel=2)

__all__ = [
    "FFTW_AVAILABLE", "KINDS", "Transform", "get_fft", "fft", "ifft", "rfft", "irfft",
    "fftn", "ifftn", "rfftn", "irfftn", "fftfreq", "rfftfreq", "fftshift", "ifftshift",
    "get_ifft", "get_fftn", "get_ifftn",
    "resample", "set_num_threads", "get_num_threads", "set_planner_effort",
    "export_wisdom", "import_wisdom", "interface_cache_enabled", "clear_cache",
    "plans_made", "wisdom_machine", "fftw_wisdom", "WISDOM_FILE",
]

#: Whether pyfftw (and so FFTW) can be used in this process.
FFTW_AVAILABLE = pyfftw is not None

#: The transforms, each with whether it works along several axes.
KINDS = {"fft": False, "ifft": False, "rfft": False, "irfft": False,
         "fftn": True, "ifftn": True, "rfftn": True, "irfftn": True}

_FFTW_DTYPES = {"c2c": ("float32", "float64", "complex64", "complex128"),
                "r2c": ("float32", "float64"), "c2r": ("complex64", "complex128")}
_EFFORTS = ("FFTW_ESTIMATE", "FFTW_MEASURE", "FFTW_PATIENT", "FFTW_EXHAUSTIVE")
#: Seconds spent timing each backend when a transform is first asked for.
_TRIAL_SECONDS = 0.1


def _default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass
class _Settings:
    threads: int = field(default_factory=_default_threads)
    planner_effort: str = "FFTW_MEASURE"
    planning_timelimit: float | None = 10.0


_settings = _Settings()
_cache: dict[tuple[Any, ...], Transform] = {}
_lock = threading.Lock()
_plans = [0]  # FFTW plans built in this process: new wisdom to share

if pyfftw is not None:
    pyfftw.interfaces.cache.enable()
    pyfftw.interfaces.cache.set_keepalive_time(60.0)


def interface_cache_enabled() -> bool:
    """Whether pyfftw's interface cache is on (it is, whenever pyfftw is installed)."""
    return pyfftw is not None and bool(pyfftw.interfaces.cache.is_enabled())


def set_num_threads(threads: int) -> None:
    """Set the threads of FFTW plans made from now on (see also
    :func:`runstore.performance.threads.set_num_threads`)."""
    if int(threads) < 1:
        raise ValueError(f"threads must be at least 1, got {threads!r}")
    _settings.threads = int(threads)
    if pyfftw is not None:
        pyfftw.config.NUM_THREADS = int(threads)


SET_THREAD_HOOKS.add(set_num_threads)


def get_num_threads() -> int:
    """The threads FFTW plans are made with."""
    return _settings.threads


def set_planner_effort(effort: str, timelimit: float | None = 10.0) -> None:
    """Set FFTW's planner effort (``FFTW_ESTIMATE`` ... ``FFTW_EXHAUSTIVE``) and time limit.

    ``FFTW_MEASURE`` (the default) times candidate algorithms when a shape is
    first used, which can take seconds for large arrays; the wisdom it leaves
    is what :func:`export_wisdom` shares.
    """
    if effort not in _EFFORTS:
        raise ValueError(f"unknown planner effort {effort!r}; choose one of {_EFFORTS}")
    _settings.planner_effort = effort
    _settings.planning_timelimit = timelimit
    if pyfftw is not None:
        pyfftw.config.PLANNER_EFFORT = effort


def clear_cache() -> None:
    """Forget the transforms chosen so far (they are chosen again when next asked for)."""
    with _lock:
        _cache.clear()
    if pyfftw is not None:
        pyfftw.interfaces.cache.disable()
        pyfftw.interfaces.cache.enable()


def plans_made() -> int:
    """How many FFTW plans this process has built (a change means new wisdom)."""
    return _plans[0]


def export_wisdom() -> tuple[bytes, ...]:
    """FFTW's wisdom, as bytes (empty without pyfftw)."""
    if pyfftw is None:
        return ()
    return tuple(pyfftw.export_wisdom())


def wisdom_machine() -> str:
    """The kind of machine wisdom is kept for: architecture, CPU model and FFTW build.

    Plans measured on one CPU model are the fastest for that model only; other
    machines get their own wisdom.
    """
    import platform

    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as info:
            model = next((line.split(":", 1)[1].strip() for line in info
                          if line.startswith("model name")), model)
    except OSError:
        pass
    version = getattr(pyfftw, "__version__", "none") if pyfftw is not None else "none"
    return f"{platform.machine()} | {model or 'unknown CPU'} | pyfftw {version}"


def import_wisdom(wisdom: Sequence[bytes]) -> bool:
    """Add wisdom exported elsewhere (by :func:`export_wisdom`); return whether any was taken.

    Wisdom is FFTW's own text format: importing it cannot run code. Wisdom from
    another kind of machine is harmless, only less useful.
    """
    if pyfftw is None or not wisdom:
        return False
    return any(pyfftw.import_wisdom(tuple(wisdom)))


#: Where :func:`fftw_wisdom` keeps wisdom unless told otherwise (as mmfutils did).
WISDOM_FILE = ".fftw_wisdom"
_WISDOM_FORMAT = "runstore-fftw-wisdom"


@contextlib.contextmanager
def fftw_wisdom(wisdom_file: str | os.PathLike[str] = WISDOM_FILE, threads: int | None = None,
                effort: str = "FFTW_PATIENT") -> Iterator[tuple[bytes, ...]]:
    """Plan with ``effort`` (and ``threads``) inside the block, keeping wisdom in ``wisdom_file``.

    On entry the wisdom in the file, if it exists, is imported, and plans are
    made with this planner effort (and this many threads, when given); the
    block gets the wisdom read. On exit, even after an error, FFTW's wisdom is
    written back to the file (atomically: a crash leaves the old file) and the
    previous effort and threads are restored. Planning a shape again with
    wisdom for it takes no measurement::

        with fft.fftw_wisdom("spectra.wisdom", threads=2):
            psi_k = fft.fftn(psi)  # FFTW_PATIENT planning, once per shape ever

    The file is JSON holding FFTW's own text, never a pickle. A file in any
    other form (an mmfutils wisdom pickle, say) is not read, since unpickling
    can run code: a warning says so, and the file is replaced on exit.
    Without pyfftw the block runs and the file keeps no wisdom.
    """
    if effort not in _EFFORTS:
        raise ValueError(f"unknown planner effort {effort!r}; choose one of {_EFFORTS}")
    path = Path(wisdom_file)
    wisdom = _read_wisdom_file(path)
    before = (_settings.threads, _settings.planner_effort, _settings.planning_timelimit)
    if threads is not None:
        set_num_threads(threads)
    set_planner_effort(effort, _settings.planning_timelimit)
    import_wisdom(wisdom)
    try:
        yield wisdom
    finally:
        set_num_threads(before[0])
        set_planner_effort(before[1], before[2])
        _write_wisdom_file(path, export_wisdom())


def _read_wisdom_file(path: Path) -> tuple[bytes, ...]:
    """The wisdom in a file :func:`fftw_wisdom` wrote; () if none, with a warning if foreign."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return ()
    try:
        document = json.loads(raw)
        parts = document["wisdom"]
        if document.get("format") != _WISDOM_FORMAT or not all(
                isinstance(part, str) for part in parts):
            raise ValueError(document.get("format"))
        return tuple(part.encode("latin-1") for part in parts)
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeError):
        warnings.warn(
            f"{path} is not a wisdom file of runstore.performance.fft.fftw_wisdom (a JSON "
            f"document of format {_WISDOM_FORMAT!r}); it is not read (an mmfutils wisdom "
            "pickle is never unpickled: that could run code), FFTW plans from scratch, and the "
            "file is replaced when the block ends. Delete it, or pass another file, to keep it "
            "from being replaced.", RuntimeWarning, stacklevel=4)
        return ()


def _write_wisdom_file(path: Path, wisdom: Sequence[bytes]) -> None:
    """Write wisdom as :func:`fftw_wisdom` reads it, replacing the file in one step."""
    document = {"format": _WISDOM_FORMAT, "version": 1, "machine": wisdom_machine(),
                "wisdom": [part.decode("latin-1") for part in wisdom]}
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(document, indent=1))
    os.replace(partial, path)


@dataclass(eq=False)
class Transform:
    """A transform chosen for arrays of one shape and dtype; call it with such an array.

    ``backend`` is ``"fftw"`` or ``"numpy"``, ``seconds`` the best time each
    took on the first array (when measured), ``threads`` the threads an FFTW
    plan uses, and ``plan`` the ``pyfftw.FFTW`` object when FFTW does it.
    """

    kind: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    backend: str
    seconds: dict[str, float]
    _call: Callable[[np.ndarray], np.ndarray]
    threads: int = 1
    plan: Any = None

    def __call__(self, a: np.ndarray) -> np.ndarray:
        if a.shape != self.shape or a.dtype != self.dtype:
            raise ValueError(
                f"this {self.kind} was made for arrays of {self.dtype}{self.shape}, not "
                f"{a.dtype}{a.shape}; get another with get_fft(a, {self.kind!r}, ...)")
        return self._call(a)


def _family(kind: str) -> str:
    return "r2c" if kind.startswith("rfft") else "c2r" if kind.startswith("irfft") else "c2c"


def _as_input(a: Any, kind: str) -> np.ndarray:
    x: np.ndarray = np.asarray(a)
    if x.dtype.kind in "biu":
        x = x.astype(np.complex128 if _family(kind) == "c2r" else np.float64)
    return x


def _normalized(a: np.ndarray, kind: str, n: Any, axes: Any
                ) -> tuple[tuple[int, ...] | int | None, tuple[int, ...] | int]:
    """Sizes and axes with negative axes resolved, as numpy reads them."""
    ndim = a.ndim
    if not KINDS[kind]:
        axis = -1 if axes is None else int(axes)
        if not -ndim <= axis < ndim:
            raise np.exceptions.AxisError(axis, ndim)
        return (None if n is None else int(n)), axis % ndim
    if axes is None:
        axes = tuple(range(ndim)) if n is None else tuple(range(ndim - len(n), ndim))
    axes = tuple(int(x) for x in np.atleast_1d(axes))
    for axis in axes:
        if not -ndim <= axis < ndim:
            raise np.exceptions.AxisError(axis, ndim)
    sizes = None if n is None else tuple(int(x) for x in n)
    return sizes, tuple(axis % ndim for axis in axes)


def get_fft(a: Any, kind: str = "fft", n: Any = None, axes: Any = None,
            threads: int | None = None, backend: str | None = None, *,
            axis: Any = None) -> Transform:
    """A ready transform of ``kind`` for arrays shaped and typed like ``a``.

    ``n`` and ``axes`` are what numpy's function of that kind calls ``n`` and
    ``axis`` (1-D kinds) or ``s`` and ``axes`` (the ``...n`` kinds); ``axis``
    is another name for ``axes``, so that ``get_fft(a, axis=0)`` reads as
    numpy's ``fft(a, axis=0)``. ``backend`` (``"fftw"`` or ``"numpy"``) skips
    the measurement and uses that one; ``"fftw"`` is an error when FFTW cannot
    do this transform. :func:`get_ifft`, :func:`get_fftn` and
    :func:`get_ifftn` name the kind for you.
    """
    if axis is not None:
        if axes is not None:
            raise TypeError(f"get_fft got axes={axes!r} and axis={axis!r}; give one of them")
        axes = axis
    if kind not in KINDS:
        hint = ""
        if isinstance(kind, (int, np.integer)) and not isinstance(kind, bool):
            # mmfutils' get_fft(a, n, axis) took the size second.
            hint = f"; the second argument is the kind: pass a size as n={kind!r}"
        raise ValueError(f"unknown transform {kind!r}; choose one of {sorted(KINDS)}{hint}")
    if backend not in (None, "fftw", "numpy"):
        raise ValueError(f"unknown backend {backend!r}; choose 'fftw', 'numpy' or None "
                         "(the faster, measured)")
    a = _as_input(a, kind)
    sizes, axes = _normalized(a, kind, n, axes)
    threads = _settings.threads if threads is None else int(threads)
    key = (kind, a.dtype.str, a.shape, axes, sizes, threads, _settings.planner_effort, backend)
    found = _cache.get(key)
    if found is not None:
        return found
    with _lock:
        found = _cache.get(key)
        if found is None:
            found = _cache[key] = _choose(a, kind, sizes, axes, threads, backend)
    return found


def get_ifft(a: Any, n: int | None = None, axis: int = -1, threads: int | None = None,
             backend: str | None = None) -> Transform:
    """``get_fft(a, "ifft", ...)``: the inverse transform, with :func:`numpy.fft.ifft`'s arguments."""
    return get_fft(a, "ifft", n, axis, threads, backend)


def get_fftn(a: Any, s: Sequence[int] | None = None, axes: Sequence[int] | None = None,
             threads: int | None = None, backend: str | None = None) -> Transform:
    """``get_fft(a, "fftn", ...)``: the n-D transform, with :func:`numpy.fft.fftn`'s arguments."""
    return get_fft(a, "fftn", s, axes, threads, backend)


def get_ifftn(a: Any, s: Sequence[int] | None = None, axes: Sequence[int] | None = None,
              threads: int | None = None, backend: str | None = None) -> Transform:
    """``get_fft(a, "ifftn", ...)``: the n-D inverse, with :func:`numpy.fft.ifftn`'s arguments."""
    return get_fft(a, "ifftn", s, axes, threads, backend)


def _numpy_call(kind: str, sizes: Any, axes: Any) -> Callable[[np.ndarray], np.ndarray]:
    function = getattr(np.fft, kind)
    if KINDS[kind]:
        return lambda x: np.asarray(function(x, s=sizes, axes=axes))
    return lambda x: np.asarray(function(x, n=sizes, axis=axes))


def _fftw_plan(a: np.ndarray, kind: str, sizes: Any, axes: Any, threads: int) -> Any:
    """An FFTW plan (a ``pyfftw.FFTW``), or None if FFTW cannot do this transform."""
    if pyfftw is None or a.dtype.name not in _FFTW_DTYPES[_family(kind)] or a.size == 0:
        return None
    if sizes is None:
        plan = _plain_plan(a, kind, axes if KINDS[kind] else (axes,), threads)
    else:
        # Padding or cutting: pyfftw's builders add the copy that does it
        # (they plan without a time limit).
        builder = getattr(pyfftw.builders, kind)
        options = {"s": sizes, "axes": axes} if KINDS[kind] else {"n": sizes, "axis": axes}
        # On a copy: a plan may keep the array it was built from as its input
        # array, and planning and c2r transforms overwrite their input.
        plan = builder(a.copy(), planner_effort=_settings.planner_effort, threads=threads,
                       **options)
    _plans[0] += 1
    return plan


def _plain_plan(a: np.ndarray, kind: str, axes: tuple[int, ...], threads: int) -> Any:
    """An FFTW plan on arrays of its own, planned within the configured time limit."""
    assert pyfftw is not None
    family = _family(kind)
    complex_type = np.result_type(a.dtype, np.complex64)
    shape = list(a.shape)
    if family == "c2c":
        source = pyfftw.empty_aligned(a.shape, dtype=complex_type)
        target = pyfftw.empty_aligned(a.shape, dtype=complex_type)
    elif family == "r2c":
        shape[axes[-1]] = a.shape[axes[-1]] // 2 + 1
        source = pyfftw.empty_aligned(a.shape, dtype=a.dtype)
        target = pyfftw.empty_aligned(tuple(shape), dtype=complex_type)
    else:
        shape[axes[-1]] = 2 * (a.shape[axes[-1]] - 1)
        source = pyfftw.empty_aligned(a.shape, dtype=a.dtype)
        target = pyfftw.empty_aligned(tuple(shape), dtype=np.empty(0, a.dtype).real.dtype)
    direction = "FFTW_BACKWARD" if kind.startswith("i") else "FFTW_FORWARD"
    return pyfftw.FFTW(source, target, axes=axes, direction=direction,
                       flags=(_settings.planner_effort,), threads=threads,
                       planning_timelimit=_settings.planning_timelimit)


def _seconds(call: Callable[[np.ndarray], np.ndarray], a: np.ndarray) -> float:
    """The best time of a few calls (the first call, which warms caches, not counted)."""
    call(a)
    best, spent, tries = float("inf"), 0.0, 0
    while tries < 3 or (spent < _TRIAL_SECONDS and tries < 50):
        start = time.perf_counter()
        call(a)
        took = time.perf_counter() - start
        best, spent, tries = min(best, took), spent + took, tries + 1
        if spent > 1.0 and tries >= 1:
            break
    return best


def _choose(a: np.ndarray, kind: str, sizes: Any, axes: Any, threads: int,
            backend: str | None) -> Transform:
    numpy_call = _numpy_call(kind, sizes, axes)
    plan = None if backend == "numpy" else _fftw_plan(a, kind, sizes, axes, threads)
    if backend == "fftw" and plan is None:
        raise ValueError(
            f"FFTW cannot do this {kind}: " + ("pyfftw is not installed" if pyfftw is None
                                              else f"arrays of {a.dtype} are not supported")
            + "; use backend=None or 'numpy'")

    def fftw_call(x: np.ndarray) -> np.ndarray:
        assert plan is not None
        if copies_input:
            result = plan(x)
        else:
            # Calling a plan with an array it can use in place executes on that
            # array, and c2r transforms overwrite their input: copy it in first.
            plan.input_array[...] = x
            result = plan()
        return np.array(result)  # a copy: the plan's output array is reused by its next call

    copies_input = plan is not None and type(plan).__name__ == "_FFTWWrapper"

    seconds: dict[str, float] = {}
    if backend != "fftw":
        seconds["numpy"] = _seconds(numpy_call, a) if backend is None else 0.0
    if plan is not None:
        seconds["fftw"] = _seconds(fftw_call, a) if backend is None else 0.0
    chosen = min(seconds, key=lambda name: seconds[name]) if backend is None else backend
    call = fftw_call if chosen == "fftw" else numpy_call
    return Transform(kind, a.shape, a.dtype, chosen, seconds, call, threads,
                     plan if chosen == "fftw" else None)


def _apply(kind: str, a: Any, n: Any, axes: Any, threads: int | None) -> np.ndarray:
    x = _as_input(a, kind)
    return get_fft(x, kind, n, axes, threads)(x)


def fft(a: Any, n: int | None = None, axis: int = -1, threads: int | None = None
        ) -> np.ndarray:
    """The 1-D discrete Fourier transform, as :func:`numpy.fft.fft`."""
    return _apply("fft", a, n, axis, threads)


def ifft(a: Any, n: int | None = None, axis: int = -1, threads: int | None = None
         ) -> np.ndarray:
    """The 1-D inverse transform, as :func:`numpy.fft.ifft`."""
    return _apply("ifft", a, n, axis, threads)


def rfft(a: Any, n: int | None = None, axis: int = -1, threads: int | None = None
         ) -> np.ndarray:
    """The 1-D transform of real input, as :func:`numpy.fft.rfft`."""
    return _apply("rfft", a, n, axis, threads)


def irfft(a: Any, n: int | None = None, axis: int = -1, threads: int | None = None
          ) -> np.ndarray:
    """The inverse of :func:`rfft`, as :func:`numpy.fft.irfft`."""
    return _apply("irfft", a, n, axis, threads)


def fftn(a: Any, s: Sequence[int] | None = None, axes: Sequence[int] | None = None,
         threads: int | None = None) -> np.ndarray:
    """The n-D transform, as :func:`numpy.fft.fftn`."""
    return _apply("fftn", a, s, axes, threads)


def ifftn(a: Any, s: Sequence[int] | None = None, axes: Sequence[int] | None = None,
          threads: int | None = None) -> np.ndarray:
    """The n-D inverse transform, as :func:`numpy.fft.ifftn`."""
    return _apply("ifftn", a, s, axes, threads)


def rfftn(a: Any, s: Sequence[int] | None = None, axes: Sequence[int] | None = None,
          threads: int | None = None) -> np.ndarray:
    """The n-D transform of real input, as :func:`numpy.fft.rfftn`."""
    return _apply("rfftn", a, s, axes, threads)


def irfftn(a: Any, s: Sequence[int] | None = None, axes: Sequence[int] | None = None,
           threads: int | None = None) -> np.ndarray:
    """The inverse of :func:`rfftn`, as :func:`numpy.fft.irfftn`."""
    return _apply("irfftn", a, s, axes, threads)


fftfreq = np.fft.fftfreq
rfftfreq = np.fft.rfftfreq
fftshift = np.fft.fftshift
ifftshift = np.fft.ifftshift


def resample(a: Any, n: int | Sequence[int], axis: int | Sequence[int] | None = None
             ) -> np.ndarray:
    """Resample ``a`` to ``n`` points along each axis in ``axis``, by Fourier interpolation.

    ``axis`` is one axis, several, or None (the default): every axis, as
    mmfutils' ``resample(f, N)`` did. ``n`` is one size for all of them or one
    per axis. Along each axis whose size changes, the spectrum is cut or
    padded with zeros (an even-length Nyquist term is split or folded so that
    real input stays real), so a band-limited periodic signal sampled on the
    old grid comes back exactly on the new one. Real input gives real output;
    the result is always a new array.

    >>> import numpy as np
    >>> def f(x, y):
    ...     return np.sin(2 * np.pi * x) - np.cos(4 * np.pi * y)
    >>> x, y = np.arange(16)[:, None] / 16, np.arange(13)[None, :] / 13
    >>> X, Y = np.arange(31)[:, None] / 31, np.arange(24)[None, :] / 24
    >>> np.allclose(resample(f(x, y), (31, 24)), f(X, Y))
    True
    >>> np.allclose(resample(f(x, y), 24, axis=1), f(x, Y))
    True
    """
    x = np.asarray(a)
    if x.dtype.kind not in "fc":
        x = x.astype(np.float64)
    axes = tuple(range(x.ndim)) if axis is None else tuple(
        int(v) for v in np.atleast_1d(np.asarray(axis)))
    for ax in axes:
        if not -x.ndim <= ax < x.ndim:
            raise np.exceptions.AxisError(ax, x.ndim)
    axes = tuple(ax % max(x.ndim, 1) for ax in axes)
    if len(set(axes)) != len(axes):
        raise ValueError(f"resample got the axes {axes}, with repeats; give each axis once")
    sizes = (tuple(int(v) for v in np.atleast_1d(np.asarray(n))) if np.ndim(n)
             else (int(n),) * len(axes))  # type: ignore[arg-type]
    if len(sizes) != len(axes):
        raise ValueError(f"resample needs one size per axis: got the sizes {sizes} for the "
                         f"axes {axes}; give one size, or one per axis")
    if any(size < 1 for size in sizes):
        raise ValueError(f"the sizes must be at least 1, got {sizes}")
    result = x.copy()
    for ax, size in zip(axes, sizes):
        if result.shape[ax] != size:
            result = _resample_axis(result, size, ax)
    return result


def _resample_axis(x: np.ndarray, n: int, axis: int) -> np.ndarray:
    """Resample float or complex ``x`` to ``n`` points along ``axis`` (resolved)."""
    old = x.shape[axis]
    spectrum = fft(x, axis=axis)
    shape = list(spectrum.shape)
    shape[axis] = n
    out = np.zeros(shape, dtype=spectrum.dtype)
    keep = min(old, n)
    positive = keep // 2 + 1

    def at(s: slice | int) -> tuple[Any, ...]:
        index: list[Any] = [slice(None)] * x.ndim
        index[axis] = s
        return tuple(index)

    out[at(slice(0, positive))] = spectrum[at(slice(0, positive))]
    if keep > 2:
        out[at(slice(-(keep - positive), None))] = spectrum[at(slice(-(keep - positive), None))]
    if keep % 2 == 0 and keep > 1:
        if n < old:  # fold the negative Nyquist term in
            out[at(keep // 2)] += spectrum[at(-(keep // 2))]
        elif n > old:  # split the Nyquist term between +/- frequencies
            out[at(keep // 2)] *= 0.5
            out[at(-(keep // 2))] = out[at(keep // 2)]
    result = ifft(out, axis=axis) * (n / old)
    if x.dtype.kind != "c":
        return np.asarray(result.real.astype(np.result_type(x.dtype, np.float32)))
    return np.asarray(result)


class _SettingsModule(types.ModuleType):
    """This module, with mmfutils' module settings as live attributes.

    mmfutils told its users to assign ``fft._THREADS`` and
    ``fft._PLANNER_EFFORT``; here those assignments still take effect instead
    of silently doing nothing.
    """

    @property
    def _THREADS(self) -> int:
        return _settings.threads

    @_THREADS.setter
    def _THREADS(self, threads: int) -> None:
        set_num_threads(threads)

    @property
    def _PLANNER_EFFORT(self) -> str:
        return _settings.planner_effort

    @_PLANNER_EFFORT.setter
    def _PLANNER_EFFORT(self, effort: str) -> None:
        set_planner_effort(effort, _settings.planning_timelimit)

    @property
    def _COPY_OUTPUT(self) -> bool:
        return True

    @_COPY_OUTPUT.setter
    def _COPY_OUTPUT(self, copy: bool) -> None:
        if not copy:
            raise ValueError(
                "runstore's transforms always return arrays of their own (FFTW reuses its "
                "output array on the next call); to work in FFTW's arrays without copies, "
                "call the plan yourself: get_fft(a, backend='fftw').plan")


sys.modules[__name__].__class__ = _SettingsModule
