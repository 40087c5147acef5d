"""Hypothesis strategies shared by the tests, and an independent equality oracle."""

from __future__ import annotations

import keyword
import math
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from runstore.containers import Container, ContainerDict, ContainerList, Object

# Names that are valid identifiers, not keywords and not reserved by the containers.
_RESERVED = {name for cls in (ContainerDict, ContainerList) for name in dir(cls)} | {
    "initialized", "_defining"
}
names = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,11}", fullmatch=True).filter(
    lambda n: not keyword.iskeyword(n) and n not in _RESERVED
)

hashable_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.complex_numbers(allow_nan=False),
)

numpy_scalars = st.one_of(
    st.integers(-(2**31), 2**31 - 1).map(np.int64),
    st.floats(allow_nan=False, width=32).map(np.float32),
    st.floats(allow_nan=False).map(np.float64),
    st.booleans().map(np.bool_),
)

arrays = hnp.arrays(
    dtype=st.one_of(
        hnp.integer_dtypes(), hnp.floating_dtypes(), hnp.complex_number_dtypes(),
        hnp.boolean_dtypes(),
    ),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=4),
)


def _collections(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(st.one_of(st.text(max_size=6), st.integers(-5, 5)),
                        children, max_size=4),
        st.frozensets(hashable_scalars.filter(_not_nan), max_size=4),
        st.sets(st.text(max_size=6), max_size=4),
    )


def _not_nan(value: Any) -> bool:
    return not (isinstance(value, float) and math.isnan(value))


values = st.recursive(
    st.one_of(hashable_scalars, numpy_scalars, arrays, st.sampled_from([max, min, sum, len])),
    _collections,
    max_leaves=12,
)

parameters = st.dictionaries(names, values, max_size=5)

containers = st.builds(
    lambda cls, items: cls(**items),
    st.sampled_from([Container, ContainerList, ContainerDict]),
    st.dictionaries(names, st.one_of(hashable_scalars, arrays), max_size=5),
)


def strictly_equal(a: Any, b: Any) -> bool:
    """Equality that keeps types apart, written independently of the encoding.

    Values are equal when they have the same type (numpy scalars counting as
    the Python value they hold) and equal content; -0.0 equals 0.0 and NaN
    equals NaN; arrays are equal when dtype (byte order aside), shape and
    bytes are.
    """
    if isinstance(a, np.generic):
        a = a.item()
    if isinstance(b, np.generic):
        b = b.item()
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, complex):
        return strictly_equal(a.real, b.real) and strictly_equal(a.imag, b.imag)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(map(strictly_equal, a, b))
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            any(strictly_equal(k, k2) and strictly_equal(v, b[k2]) for k2 in b)
            for k, v in a.items()
        )
    if isinstance(a, (set, frozenset)):
        return len(a) == len(b) and all(any(strictly_equal(x, y) for y in b) for x in a)
    if isinstance(a, np.ndarray):
        a_, b_ = (x.astype(x.dtype.newbyteorder("<")) for x in (a, b))
        return a_.dtype == b_.dtype and a.shape == b.shape and (
            a_.tobytes() == b_.tobytes()
        )
    if isinstance(a, Object):
        sa, sb = a.__getstate__(), b.__getstate__()
        return sa.keys() == sb.keys() and all(strictly_equal(sa[k], sb[k]) for k in sa)
    return bool(a == b)
