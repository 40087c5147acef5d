"""Tools for fast numerical code: FFTs, thread control, BLAS, and timing.

- :mod:`runstore.performance.fft`: numpy's FFT functions, done by FFTW
  (pyfftw) where that is measured to be faster, with plans cached and FFTW
  wisdom shared through the store;
- :mod:`runstore.performance.threads`: one call to set the threads of BLAS,
  OpenMP, numexpr and FFTW;
- :mod:`runstore.performance.blas`: ``dot``, in-place ``axpy`` and ``norm``
  through scipy's BLAS when scipy is installed;
- :func:`auto_timeit`: :mod:`timeit` that picks the number of loops itself.

The submodules are imported when first used: ``import runstore`` does not load
pyfftw.
"""

from __future__ import annotations

import math
import timeit
from dataclasses import dataclass
from typing import Any

__all__ = ["auto_timeit", "Timing"]

_UNITS = (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9))


@dataclass(frozen=True)
class Timing:
    """What :func:`auto_timeit` measured: seconds per loop in each repeat."""

    times: tuple[float, ...]
    number: int
    repeat: int

    @property
    def best(self) -> float:
        """The fastest repeat, in seconds per loop (the least disturbed one)."""
        return min(self.times)

    @property
    def mean(self) -> float:
        """The mean over repeats, in seconds per loop."""
        return sum(self.times) / len(self.times)

    def __str__(self) -> str:
        value, unit = self.best, "s"
        for unit, scale in _UNITS:
            if self.best >= scale:
                value = self.best / scale
                break
        else:
            value = self.best / _UNITS[-1][1]
        return (f"{value:8.4g} {unit} per loop (best of {self.repeat}, "
                f"{self.number} loops each)")


def auto_timeit(stmt: Any = "pass", setup: Any = "pass", time: float = 1.0,
                max_time: float = 30.0, repeat: int = 5, globals: dict[str, Any] | None = None,
                display: bool = True) -> Timing:
    """Time ``stmt`` (a string or a callable), choosing the number of loops.

    The number of loops per repeat is chosen so that each repeat takes about
    ``time`` seconds; if ``repeat`` repeats would take longer than
    ``max_time``, fewer are run (at least one). The result is printed when
    ``display`` and returned as a :class:`Timing`.
    """
    if time <= 0 or max_time <= 0 or repeat < 1:
        raise ValueError("time and max_time must be positive and repeat at least 1")
    timer = timeit.Timer(stmt, setup, globals=globals)
    number, first = 1, timer.timeit(1)
    while first < time / 10 and number < 10**9:  # grow until a repeat is measurable
        number *= 10
        first = timer.timeit(number)
    per_loop = first / number
    number = max(1, min(number * 10, math.ceil(time / per_loop) if per_loop > 0 else number))
    repeats = max(1, min(repeat, int(max_time / max(per_loop * number, 1e-9))))
    times = tuple(t / number for t in timer.repeat(repeat=repeats, number=number))
    result = Timing(times, number, repeats)
    if display:
        print(result)
    return result
