"""Short text for values people look at: large arrays summarised, small ones whole.

A run's result may hold arrays of millions of numbers; the tables that show
runs (a run's HTML in Jupyter, ``runstore show``) show each such array in
one line: dtype, shape, range and its first and last few values, as
numpy's own summarised repr does, only shorter::

    <array float64 (1000,), min -3.107, max 3.217: [0.1257, -0.1321, 0.6404, ..., -1.341, -1.402]>

Arrays of at most :data:`WHOLE` elements are shown whole, by numpy's repr.
Long lists and tuples are cut the same way. Nothing here changes a value:
``run.result`` holds exactly what the run returned. A dict result comes as a
:class:`ResultDict`, the same dict, whose repr (at a Python or IPython
prompt) is its :func:`summary`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["WHOLE", "summary", "array_summary", "ResultDict", "shown_short"]

#: Arrays (and lists, tuples) of at most this many elements are shown whole.
WHOLE = 20
#: How many values a summary shows at each end.
_EDGE = 3
#: The most characters one shown value (a string in an array ...) takes.
_ITEM = 40


def summary(value: Any) -> str:
    """``repr(value)``, with large arrays (also inside dicts, lists, tuples) summarised."""
    if isinstance(value, np.ndarray):
        return array_summary(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{summary(k)}: {summary(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return _sequence_summary(value)
    return repr(value)


class ResultDict(dict[Any, Any]):
    """A dict result as :attr:`Run.result <runstore.Run.result>` gives it: shown short.

    It is the dict the run returned: an instance of ``dict``, equal to it,
    with the same keys and the same values of the same types (nested dicts
    stay plain dicts). Only its repr differs, so that a result of large arrays
    prints in a few lines, not as thousands of numbers: each large array
    (also inside lists, tuples and nested dicts) as one line of dtype, shape,
    range and a few values (see :func:`summary`). Copying or pickling it gives
    a plain dict; it encodes (as a parameter, or in another result) as the
    dict it is, with the same run id.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return summary(self)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """In IPython and Jupyter: a key per line when long, large arrays summarised."""
        with printer.group(1, "{", "}"):
            for i, (key, value) in enumerate(self.items()):
                if i:
                    printer.text(",")
                    printer.breakable()
                printer.text(f"{summary(key)}: {summary(value)}")

    def __reduce__(self) -> tuple[type[dict[Any, Any]], tuple[dict[Any, Any]]]:
        # A pickle (or copy) is a plain dict: it loads without runstore.
        return dict, (dict(self),)


def shown_short(result: Any) -> Any:
    """A loaded result as ``run.result`` gives it: a dict as a :class:`ResultDict`.

    Other results are given as they are: a subclass of a list or an ndarray
    would be a different value (numpy prints an array of more than
    ``np.get_printoptions()["threshold"]`` elements summarised itself).
    """
    return ResultDict(result) if type(result) is dict else result


def _sequence_summary(value: list[Any] | tuple[Any, ...]) -> str:
    """A list or tuple, its middle items left out when it has more than WHOLE."""
    opening, closing = ("[", "]") if isinstance(value, list) else ("(", ")")
    if len(value) > WHOLE:
        shown = [summary(v) for v in value[:_EDGE]] + ["..."] + [
            summary(v) for v in value[-_EDGE:]]
        return f"{opening}{', '.join(shown)}{closing} ({len(value)} items)"
    if isinstance(value, tuple) and len(value) == 1:
        return f"({summary(value[0])},)"
    return opening + ", ".join(summary(v) for v in value) + closing


def array_summary(array: np.ndarray) -> str:
    """One line for an array: numpy's repr if it is small, else dtype, shape, range, ends."""
    if array.size <= WHOLE:
        return repr(array)
    flat = array.reshape(-1)
    ends = [_item(v) for v in flat[:_EDGE]] + ["..."] + [_item(v) for v in flat[-_EDGE:]]
    return (f"<array {array.dtype} {array.shape}{_range(array)}: "
            f"[{', '.join(ends)}]>")


def _range(array: np.ndarray) -> str:
    """``, min ..., max ...`` of real numbers (NaNs counted apart), ``, n True`` of booleans."""
    kind = array.dtype.kind
    if kind == "b":
        return f", {int(np.count_nonzero(array))} True"
    if kind in "iu":
        return f", min {_item(array.min())}, max {_item(array.max())}"
    if kind != "f":
        return ""
    finite = np.isfinite(array)
    if finite.all():
        return f", min {_item(array.min())}, max {_item(array.max())}"
    counts = [f"{int(n)} {name}" for n, name in (
        (np.count_nonzero(np.isnan(array)), "NaN"),
        (np.count_nonzero(np.isposinf(array)), "inf"),
        (np.count_nonzero(np.isneginf(array)), "-inf")) if n]
    if finite.any():
        values = array[finite]
        counts = [f"min {_item(values.min())}", f"max {_item(values.max())}"] + counts
    return ", " + ", ".join(counts)


def _item(value: Any) -> str:
    """One value of an array, short: numbers to 4 significant digits."""
    item = value.item() if isinstance(value, np.generic) else value
    if isinstance(item, bool) or isinstance(item, int):
        text = str(item)
    elif isinstance(item, (float, complex)):
        text = f"{item:.4g}"
    else:
        text = repr(item)
    return text if len(text) <= _ITEM else text[:_ITEM - 3] + "..."
