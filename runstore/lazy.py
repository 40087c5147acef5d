"""Arrays of a result read a slice at a time from their side file (no SQL). Internal module.

``run.arrays`` maps each array's key path in the result (``"field"``,
``"fields/E"``) to a :class:`LazyArray`, which knows the array's dtype and
shape from the result and reads nothing until it is indexed: then it opens
the side file, checks the dataset as every read does (links, virtual and
external datasets refused; dtype and shape as the result says), reads only
the box of the array the index touches, and closes the file. A 2 GB array
costs the memory of the slice taken, not of the array.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from .arrays import ArrayStore, Expected, expected_array
from .encoding import stored_array
from .errors import ArrayFileError

__all__ = ["LazyArray", "ResultArrays"]

#: Where a run's arrays are now: its side file's name (it changes when
#: ``gc`` rewrites the file), asked again when the file read fails.
Locate = Callable[[], str | None]


class LazyArray:
    """One array of a stored result, read when indexed (see the module documentation).

    Index it as a numpy array (``a[10:20, ::2]``, ``a[..., 0]``, ``a[[1, 5]]``,
    ``a[mask]``); :meth:`read` (or ``np.asarray(a)``) reads it whole and
    checks its CRC-32. A slice is not checked against the CRC, which covers
    the whole array.
    """

    def __init__(self, store: ArrayStore, filename: str | None, locate: Locate, run_id: str,
                 name: str, payload: Mapping[str, Any]) -> None:
        self._store, self._locate, self._payload = store, locate, dict(payload)
        self._filename = filename
        self._key = f"{run_id}/{name}"
        self._expected: Expected = expected_array(payload, name)

    @property
    def dtype(self) -> np.dtype[Any]:
        """The array's dtype."""
        return self._expected[0]

    @property
    def shape(self) -> tuple[int, ...]:
        """The array's shape."""
        return self._expected[1]

    @property
    def ndim(self) -> int:
        """The number of dimensions."""
        return len(self.shape)

    @property
    def size(self) -> int:
        """The number of elements."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        """The bytes the whole array takes in memory."""
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d array")
        return self.shape[0]

    def __getitem__(self, index: Any) -> Any:
        box, local = _plan(index, self.shape)
        if box is None:  # an index this module does not plan: read all, index here
            return self.read()[index]
        return self._read_box(box)[local]

    def read(self) -> np.ndarray:
        """The whole array, checked against the CRC-32 recorded in the result."""
        whole = self._read_box(tuple(slice(0, n) for n in self.shape))
        return stored_array(self._payload, whole, f"result array {self._key}")

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        array = self.read()
        return array if dtype is None else array.astype(dtype)

    def _read_box(self, box: tuple[slice, ...]) -> np.ndarray:
        filename = self._filename
        if filename is None:
            raise ArrayFileError("(none)", f"is not recorded for {self._key}")
        try:
            return self._store.read_box(filename, self._key, self._expected, box)
        except ArrayFileError:
            moved = self._locate()  # `runstore gc` may have rewritten the file
            if moved is None or moved == filename:
                raise
            self._filename = moved
            return self._store.read_box(moved, self._key, self._expected, box)

    def __repr__(self) -> str:
        return f"<LazyArray {self._key} {self.dtype.str}{self.shape}>"


class ResultArrays(Mapping[str, LazyArray]):
    """The arrays of a run's result by key path, as :class:`LazyArray` s (read-only)."""

    def __init__(self, arrays: Mapping[str, LazyArray]) -> None:
        self._arrays = dict(arrays)

    def __getitem__(self, path: str) -> LazyArray:
        return self._arrays[path]

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)

    def __repr__(self) -> str:
        return f"<ResultArrays {list(self._arrays)}>"


# -- turning a numpy index into a box to read and an index into the box ----------


def _plan(index: Any, shape: tuple[int, ...]
          ) -> tuple[tuple[slice, ...] | None, tuple[Any, ...]]:
    """The box of the array ``index`` touches, and the same index relative to the box.

    ``box`` holds one positive-step slice per axis (what HDF5 reads);
    ``array[index] == array[box][local]`` for every index numpy takes. Box
    is None for indexes not planned here (they read the whole array).
    """
    items = _expanded(index, len(shape))
    if items is None:
        return None, ()
    box: list[slice] = []
    local: list[Any] = []
    axis = 0
    for item in items:
        if item is None:
            local.append(None)
            continue
        part = _axis_plan(item, shape[axis])
        if part is None:
            return None, ()
        box.append(part[0])
        local.append(part[1])
        axis += 1
    return tuple(box), tuple(local)


def _expanded(index: Any, ndim: int) -> list[Any] | None:
    """The index as one item per axis (and None for new axes), Ellipsis expanded."""
    items = list(index) if isinstance(index, tuple) else [index]
    items = [np.nonzero(item) if isinstance(item, np.ndarray) and item.dtype == bool
             and item.ndim > 1 else (item,) for item in items]
    flat = [part for group in items for part in group]
    if sum(part is Ellipsis for part in flat) > 1:
        return None
    used = sum(part is not None and part is not Ellipsis for part in flat)
    if used > ndim:
        return None  # numpy says what is wrong
    if Ellipsis in [p for p in flat if not isinstance(p, np.ndarray)]:
        at = next(i for i, p in enumerate(flat) if p is Ellipsis)
        flat[at:at + 1] = [slice(None)] * (ndim - used)
    else:
        flat += [slice(None)] * (ndim - used)
    return flat


def _axis_plan(item: Any, n: int) -> tuple[slice, Any] | None:
    """(the part of one axis to read, the index into it) for one index item."""
    if isinstance(item, slice):
        steps = range(*item.indices(n))
        if not steps:
            return slice(0, 0), slice(None)
        lo, hi = min(steps[0], steps[-1]), max(steps[0], steps[-1]) + 1
        step = abs(steps.step)
        return slice(lo, hi, step), slice(None) if steps.step > 0 else slice(None, None, -1)
    if isinstance(item, (bool, np.bool_)):
        return None
    try:
        i = operator.index(item)
    except TypeError:
        return _array_plan(item, n)
    if not -n <= i < n:
        return None  # numpy raises its IndexError
    i %= n
    return slice(i, i + 1), 0


def _array_plan(item: Any, n: int) -> tuple[slice, Any] | None:
    """An integer or boolean array index on one axis: its bounding range."""
    try:
        values = np.asarray(item)
    except (TypeError, ValueError):
        return None
    if values.dtype == bool:
        if values.shape != (n,):
            return None
        values = np.nonzero(values)[0]
    elif values.dtype.kind not in "iu" and values.size:
        return None
    values = values.astype(np.int64)
    if values.size == 0:
        return slice(0, 0), values
    if values.min() < -n or values.max() >= n:
        return None
    values = values % n
    lo, hi = int(values.min()), int(values.max()) + 1
    return slice(lo, hi), values - lo
