"""A few BLAS operations, through scipy's BLAS wrappers when scipy is installed.

``axpy`` updates its argument in place (no temporary array), which is where
BLAS helps most; ``dot``, ``dotc`` and ``norm`` match numpy's values. Without
scipy, numpy computes them all (in place for ``axpy`` too). Each works for
float32, float64, complex64 and complex128 arrays of any shape, and numpy
does the rest (integers, mixed dtypes, strided views).

mmfutils' names are here too, for the same functions: ``ddot`` is
:func:`dot`, ``zdotc`` :func:`dotc`, ``daxpy`` and ``zaxpy`` :func:`axpy`,
``dnorm`` and ``znorm`` :func:`norm`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

try:
    from scipy.linalg import blas as _blas
except ImportError:  # optional
    _blas = None

__all__ = ["SCIPY_BLAS", "dot", "dotc", "axpy", "norm",
           "ddot", "zdotc", "daxpy", "zaxpy", "dnorm", "znorm"]

#: Whether scipy's BLAS wrappers are used.
SCIPY_BLAS = _blas is not None

_PREFIX = {np.dtype(np.float32): "s", np.dtype(np.float64): "d",
           np.dtype(np.complex64): "c", np.dtype(np.complex128): "z"}


def _routine(name: str, *arrays: np.ndarray) -> Any:
    """The BLAS routine for these arrays, or None (numpy does it then)."""
    if _blas is None:
        return None
    dtypes = {a.dtype for a in arrays}
    if len(dtypes) != 1 or not all(a.flags.c_contiguous or a.flags.f_contiguous
                                   for a in arrays):
        return None
    prefix = _PREFIX.get(dtypes.pop())
    return None if prefix is None else getattr(_blas, prefix + name, None)


def dot(x: np.ndarray, y: np.ndarray) -> Any:
    """The sum of ``x * y`` over all elements (no complex conjugation), as ``np.vdot`` without it."""
    return _dot(x, y, conjugate=False)


def dotc(x: np.ndarray, y: np.ndarray) -> Any:
    """The sum of ``conj(x) * y`` over all elements, as ``np.vdot(x, y)`` (BLAS ``?dotc``)."""
    return _dot(x, y, conjugate=True)


def _dot(x: np.ndarray, y: np.ndarray, conjugate: bool) -> Any:
    x, y = np.asarray(x), np.asarray(y)
    if x.shape != y.shape:
        raise ValueError(f"dot needs arrays of one shape, got {x.shape} and {y.shape}")
    complex_ = x.dtype.kind == "c"
    routine = _routine(("dotc" if conjugate else "dotu") if complex_ else "dot", x, y)
    if routine is None or x.ndim > 1 and x.flags.c_contiguous != y.flags.c_contiguous:
        return np.sum((np.conj(x) if conjugate else x) * y)
    return routine(x.reshape(-1, order="A"), y.reshape(-1, order="A"))


def axpy(y: np.ndarray, x: np.ndarray, a: Any = 1.0) -> np.ndarray:
    """``y += a * x`` in place, without a temporary; return ``y``."""
    x = np.asarray(x)
    if not isinstance(y, np.ndarray) or x.shape != y.shape:
        raise ValueError("axpy needs an array y and an x of its shape")
    if not y.flags.writeable:
        raise ValueError("axpy updates y in place, and y is read-only")
    routine = _routine("axpy", x, y)
    same_order = x.flags.c_contiguous == y.flags.c_contiguous or x.ndim == 1
    if routine is None or not same_order:
        y += a * x
        return y
    flat_y = y.reshape(-1, order="A")
    result = routine(x.reshape(-1, order="A"), flat_y, a=a)
    if not np.shares_memory(result, y):  # the wrapper copied: put the result back
        flat_y[...] = result
    return y


_NRM2 = {np.dtype(np.float32): "snrm2", np.dtype(np.float64): "dnrm2",
         np.dtype(np.complex64): "scnrm2", np.dtype(np.complex128): "dznrm2"}


def norm(x: np.ndarray) -> float:
    """The 2-norm of all elements, as ``np.linalg.norm(x.ravel())``."""
    x = np.asarray(x)
    name = _NRM2.get(x.dtype)
    if _blas is None or name is None or not (x.flags.c_contiguous or x.flags.f_contiguous):
        return float(np.linalg.norm(x.ravel()))
    return float(getattr(_blas, name)(x.reshape(-1, order="A")))


# mmfutils.performance.blas's names, one per dtype there; here each takes any.
#: mmfutils' name for :func:`dot`.
ddot = dot
#: mmfutils' name for :func:`dotc`.
zdotc = dotc
#: mmfutils' name for :func:`axpy` (real arrays there).
daxpy = axpy
#: mmfutils' name for :func:`axpy` (complex arrays there).
zaxpy = axpy
#: mmfutils' name for :func:`norm` (real arrays there).
dnorm = norm
#: mmfutils' name for :func:`norm` (complex arrays there).
znorm = norm
