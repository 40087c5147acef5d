"""Run identity: the 40-hex id of a run type and its parameters (no SQL, no files).

A run id is the BLAKE2b-160 digest (40 hex digits) of the canonical JSON text
of ``["runstore.run", SCHEME_VERSION, run_type, [[name, value], ...]]``, where
``run_type`` is the run class's :func:`type_name`, the pairs are sorted by
parameter name and each value is its :func:`runstore.encoding.encode` tree.
The id therefore changes with any parameter name, value or type, and with the
run type; it does not change with dict order, memory layout of arrays, the
Python process or its hash seed. The scheme is frozen: ids pinned in the tests
never change, and a change of scheme gets a new :data:`SCHEME_VERSION`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, MutableMapping
from typing import Any

import numpy as np

from .encoding import Tree, canonical_json, check_name, encode, short_repr

__all__ = ["SCHEME_VERSION", "type_name", "encode_parameters", "run_id", "run_id_of_pairs",
           "RunIds", "compute_id"]

#: Version of the id scheme. Scheme 1 hashes encoding version 1; the golden-id
#: tests fail if either changes, and a changed encoding needs a new scheme.
SCHEME_VERSION = 1


_TYPE_NAMES: dict[type, str] = {}


def type_name(cls: type) -> str:
    """Return the name that identifies a run class in run ids.

    It is ``module.QualifiedName``, unless the class declares its own name in
    a ``__runstore_name__`` class attribute; declare one to keep ids stable
    when the class moves to another module.
    """
    found = _TYPE_NAMES.get(cls)
    if found is None:
        found = _TYPE_NAMES[cls] = _type_name(cls)
    return found


def _type_name(cls: type) -> str:
    declared = cls.__dict__.get("__runstore_name__")
    if declared is not None:
        if not isinstance(declared, str) or not declared:
            raise TypeError(
                f"{cls.__qualname__}.__runstore_name__ must be a non-empty string, "
                f"got {declared!r}"
            )
        return declared
    return f"{cls.__module__}.{cls.__qualname__}"


def encode_parameters(
    parameters: Mapping[str, Any],
    arrays: MutableMapping[str, np.ndarray] | None = None,
) -> dict[str, Tree]:
    """Encode every parameter, naming the parameter in any error.

    Raises
    ------
    EncodingError
        If a name is not a non-empty string of valid Unicode without NUL
        characters (see :func:`runstore.encoding.check_name`), or a value
        cannot be encoded.
    """
    encoded: dict[str, Tree] = {}
    for name, value in parameters.items():
        check_name(name, f"the parameter name {short_repr(name)}")
        encoded[name] = encode(value, f"parameter {name!r}", arrays)
    return encoded


def run_id(run_type: str, encoded: Mapping[str, Tree]) -> str:
    """Return the run id of a run type and its already encoded parameters."""
    pairs = canonical_json([[name, encoded[name]] for name in sorted(encoded)])
    return run_id_of_pairs(run_type, pairs)


def run_id_of_pairs(run_type: str, pairs: str) -> str:
    """Return the run id from the canonical JSON of the sorted parameter pairs.

    The hashed text is ``canonical_json(["runstore.run", SCHEME_VERSION,
    run_type, pairs])``, written here without serializing the pairs again.
    """
    text = f'["runstore.run",{SCHEME_VERSION},{canonical_json(run_type)},{pairs}]'
    return hashlib.blake2b(text.encode("ascii"), digest_size=20).hexdigest()


class RunIds:
    """:func:`run_id_of_pairs` for many runs of one run type.

    The hashed text of every run of the type begins the same way; that
    beginning is hashed once, and each call hashes only the rest of its text
    (the pairs and the closing bracket) from a copy of that state: the same
    text as :func:`run_id_of_pairs` hashes, so the same id.

    Examples
    --------
    >>> RunIds("example.Run")('[["A",1],["B",2]]')
    '29bbaad45af25b6adce4e878162387f16eb7b6b1'
    """

    __slots__ = ("_head",)

    def __init__(self, run_type: str) -> None:
        head = f'["runstore.run",{SCHEME_VERSION},{canonical_json(run_type)},'
        self._head = hashlib.blake2b(head.encode("ascii"), digest_size=20)

    def __call__(self, pairs: str) -> str:
        digest = self._head.copy()
        digest.update(pairs.encode("ascii"))
        digest.update(b"]")
        return digest.hexdigest()


def compute_id(run_type: type | str, parameters: Mapping[str, Any]) -> str:
    """Return the run id of a run class (or type name) and its parameters.

    Examples
    --------
    >>> compute_id("example.Run", {"A": 1, "B": 2})
    '29bbaad45af25b6adce4e878162387f16eb7b6b1'
    """
    name = run_type if isinstance(run_type, str) else type_name(run_type)
    return run_id(name, encode_parameters(parameters))

