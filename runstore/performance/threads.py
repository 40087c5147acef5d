"""How many threads numerical libraries use: BLAS, OpenMP, numexpr and FFTW.

:func:`set_num_threads` sets them all at once, through threadpoolctl for the
BLAS and OpenMP runtimes loaded in the process, and through the functions in
:data:`SET_THREAD_HOOKS` for the rest (numexpr's, FFTW's, and any you add).
The worker pool gives each of its processes an even share of the cores with
it, so that N processes do not each start one thread per core.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["set_num_threads", "get_num_threads", "SET_THREAD_HOOKS"]

#: Functions that :func:`set_num_threads` calls with the thread count, as in
#: mmfutils: add a function of one int to have your own library follow. It
#: holds numexpr's ``set_num_threads`` and ``set_vml_num_threads`` (and
#: mkl-service's ``set_num_threads``) when they are installed, and
#: :func:`runstore.performance.fft.set_num_threads` once that module is
#: imported (:func:`set_num_threads` imports it).
SET_THREAD_HOOKS: set[Callable[[int], Any]] = set()


def _add_installed_hooks() -> None:
    try:
        import numexpr
    except ImportError:
        pass
    else:
        SET_THREAD_HOOKS.update((numexpr.set_num_threads, numexpr.set_vml_num_threads))
    try:
        import mkl  # mkl-service; threadpoolctl reaches MKL too, this is mmfutils' way
    except ImportError:
        pass
    else:
        SET_THREAD_HOOKS.add(mkl.set_num_threads)


_add_installed_hooks()


def set_num_threads(threads: int) -> dict[str, int]:
    """Use at most ``threads`` threads in BLAS, OpenMP, numexpr and FFTW, from now on.

    Every function in :data:`SET_THREAD_HOOKS` is called with ``threads``
    too. Returns the libraries set, with their previous thread counts (BLAS
    and OpenMP libraries by their internal API name, ``numexpr`` and
    ``fftw``). numexpr is set only when it is installed. FFTW plans made
    before keep the threads they were made with.
    """
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"threads must be a whole number >= 1, got {threads!r}")
    from threadpoolctl import threadpool_info, threadpool_limits

    from . import fft

    try:  # loaded first, so that the limits below reach its OpenMP runtime too
        import pyfftw  # noqa: F401
    except ImportError:
        pass
    before: dict[str, int] = {}
    for pool in threadpool_info():
        before[pool["internal_api"]] = pool["num_threads"]
    threadpool_limits(limits=threads)
    numexpr = _numexpr()
    if numexpr is not None and numexpr.set_num_threads in SET_THREAD_HOOKS:
        before["numexpr"] = numexpr.get_num_threads()
    before["fftw"] = fft.get_num_threads()
    fft.set_num_threads(threads)
    for hook in list(SET_THREAD_HOOKS):  # a copy: a hook may add or remove hooks
        hook(threads)
    return before


def get_num_threads() -> dict[str, int]:
    """The threads each library would use now (as :func:`set_num_threads` names them)."""
    from threadpoolctl import threadpool_info

    from . import fft

    found = {pool["internal_api"]: pool["num_threads"] for pool in threadpool_info()}
    numexpr = _numexpr()
    if numexpr is not None:
        found["numexpr"] = numexpr.get_num_threads()
    found["fftw"] = fft.get_num_threads()
    return found


def _numexpr() -> Any:
    try:
        import numexpr
    except ImportError:
        return None
    return numexpr
