"""Hypothesis strategies shared by the tests, and an independent equality oracle."""

from __future__ import annotations

import keyword
import math
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from runstore.containers import Container, ContainerDict, ContainerList, Object
from runstore.summary import ResultDict

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
    # run.result gives a dict result as a ResultDict: that dict, printed short
    # (tests/test_summary.py pins its type and what it holds). Compared as the dict.
    a, b = (dict(v) if type(v) is ResultDict else v for v in (a, b))
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


# -- wild values: everything a user might throw at a store (values area) ---------------
# Strings with lone surrogates and NULs, ints of any size, numpy scalars and arrays
# of many dtypes and byte orders, containers with arbitrary keys. A store must
# either refuse each with a runstore error or give it back exactly.

_surrogates = st.integers(0xD800, 0xDFFF).map(chr)
wild_text = st.one_of(
    st.text(max_size=6),
    st.lists(st.one_of(st.characters(), _surrogates, st.just("\x00")), max_size=6).map(
        "".join),
)
wild_ints = st.one_of(
    st.integers(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 2**64 - 1, 2**64, 10**400,
                     -(10**400), (1 << 14_000) - 1, 1 << 14_001]),
)
wild_scalars = st.one_of(
    st.none(), st.booleans(), wild_ints, st.floats(), wild_text, st.binary(max_size=6),
    st.complex_numbers(),
)
_dtypes = st.one_of(
    hnp.scalar_dtypes(), hnp.unicode_string_dtypes(max_len=3),
    hnp.byte_string_dtypes(max_len=3), hnp.datetime64_dtypes(), hnp.timedelta64_dtypes(),
    hnp.integer_dtypes(endianness="?"), hnp.floating_dtypes(endianness="?"),
    hnp.complex_number_dtypes(endianness="?"),
    st.sampled_from([np.dtype(np.longdouble), np.dtype(np.clongdouble)]),
)
wild_arrays = hnp.arrays(dtype=_dtypes,
                         shape=hnp.array_shapes(min_dims=0, max_dims=2, min_side=0,
                                                max_side=3))
wild_numpy_scalars = st.one_of(
    hnp.arrays(dtype=_dtypes, shape=()).map(lambda a: a[()]),
    st.sampled_from([np.uint64(2**64 - 1), np.int64(-(2**63)), np.longdouble(1.5)]),
)
_wild_keys = st.one_of(wild_scalars.filter(_not_nan), st.tuples(wild_ints, wild_text))


def _wild_collections(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(_wild_keys, children, max_size=4),
        st.frozensets(st.one_of(wild_ints, wild_text), max_size=3),
        st.builds(lambda items: Container(**items), st.dictionaries(names, children,
                                                                     max_size=3)),
    )


wild_values = st.recursive(
    st.one_of(wild_scalars, wild_numpy_scalars, wild_arrays, st.sampled_from([max, len])),
    _wild_collections,
    max_leaves=10,
)
