"""Encoding of run results into SQL-ready scalars and arrays (no SQL). Internal module.

A result is any value :func:`runstore.encoding.encode` accepts, normally a dict
or a :class:`~runstore.containers.Container`. It is stored three ways at once:

- the encoded tree (canonical JSON), from which the result is rebuilt exactly;
- its numpy arrays, named ``0``, ``1`` ... with a CRC-32 of each (checked
  when loaded), for an HDF5 side file;
- one typed row per scalar (None, bool, int, float, str, complex as
  structured) under its key, nested dict keys joined with ``.``, so that
  results can be queried with SQL. A result that is not a mapping is stored
  under the key ``value``.

Values with no canonical encoding are refused with an error naming the key,
unless pickling was allowed: then they are stored as pickles, which only a
store opened with ``allow_pickle=True`` will load.
"""

from __future__ import annotations

import base64
import pickle
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import containers
from .encoding import Indexed, NamedArrays, Tree, canonical_json, decode, encode, indexed
from .errors import DecodingError, EncodingError

__all__ = ["EncodedResult", "encode_result", "decode_result", "PICKLE_TAG", "array_payloads",
           "array_name", "scalars_of_tree"]

#: The tag of pickled values in result trees (only with allow_pickle).
PICKLE_TAG = "pickle"


@dataclass
class EncodedResult:
    """A result ready for the store."""

    tree: Tree
    json: str
    scalars: dict[str, Indexed]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def encode_result(result: Any, allow_pickle: bool = False) -> EncodedResult:
    """Encode a result; raise :class:`EncodingError` naming any bad key."""
    arrays = NamedArrays()
    if isinstance(result, (dict, containers.ContainerDict, containers.Container)):
        items = dict(result.items()) if isinstance(result, dict) else result.__getstate__()
        encoded_items = {
            key: _encode_value(value, f"result key {key!r}", arrays, allow_pickle)
            for key, value in items.items()
        }
        tree = _rebuild_tree(result, encoded_items)
    else:
        encoded_items = {"value": _encode_value(result, "result", arrays, allow_pickle)}
        tree = encoded_items["value"]
    scalars: dict[str, Indexed] = {}
    for key, item in encoded_items.items():
        _collect_scalars(str(key), item, scalars)
    return EncodedResult(tree, canonical_json(tree), scalars, arrays)


def _encode_value(value: Any, path: str, arrays: dict[str, np.ndarray],
                  allow_pickle: bool) -> Tree:
    try:
        return encode(value, path, arrays)
    except EncodingError:
        if not allow_pickle:
            raise
        return [PICKLE_TAG, base64.b64encode(pickle.dumps(value, protocol=4)).decode("ascii")]



def _rebuild_tree(result: Any, items: dict[Any, Tree]) -> Tree:
    """The tree of the whole result, from the trees of its items."""
    pairs = sorted(([encode(k), v] for k, v in items.items()),
                   key=lambda pair: canonical_json(pair[0]))
    if isinstance(result, dict):
        return ["dict", pairs]
    name = f"{type(result).__module__}.{type(result).__qualname__}"
    return ["object", [name, [[k, v] for k, v in sorted(items.items())]]]


def _collect_scalars(key: str, tree: Tree, out: dict[str, Indexed]) -> None:
    if isinstance(tree, list) and tree and tree[0] == "dict":
        for key_tree, value_tree in tree[1]:
            if isinstance(key_tree, str):
                _collect_scalars(f"{key}.{key_tree}", value_tree, out)
        return
    if isinstance(tree, list) and tree and tree[0] in ("ndarray", PICKLE_TAG):
        return
    form = indexed(tree)
    if form.kind != "structured" or (isinstance(tree, list) and tree[0] == "complex"):
        out[key] = form


def decode_result(tree: Tree, arrays: Mapping[str, np.ndarray], import_code: bool,
                  allow_pickle: bool) -> Any:
    """Rebuild a result from its tree and its arrays."""
    return decode(tree, arrays=arrays, import_code=import_code, path="result",
                  allow_pickle=allow_pickle)


def array_payloads(tree: Tree) -> Iterator[dict[str, Any]]:
    """The ``ndarray`` payloads (dtype, shape, name, crc32) in a result tree."""
    if isinstance(tree, list):
        if len(tree) == 2 and tree[0] == "ndarray" and isinstance(tree[1], dict):
            yield tree[1]
        else:
            for item in tree:
                yield from array_payloads(item)


def array_name(payload: Mapping[str, Any]) -> str:
    """The name an array of a result is stored under in its run's HDF5 group."""
    name = payload.get("name") or payload.get("digest")
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        raise DecodingError("result", f"the array name {name!r}")
    return name


def scalars_of_tree(tree: Tree) -> dict[str, Indexed]:
    """The typed scalar rows of a result, rebuilt from its encoded tree.

    The same rows :func:`encode_result` gives (used to import runs, so that
    the query rows always follow from the stored result).
    """
    out: dict[str, Indexed] = {}
    if isinstance(tree, list) and len(tree) == 2 and tree[0] == "dict":
        for key_tree, value_tree in tree[1]:
            key = decode(key_tree, None, False, "result key")
            _collect_scalars(str(key), value_tree, out)
    elif isinstance(tree, list) and len(tree) == 2 and tree[0] == "object":
        for key, value_tree in tree[1][1]:
            _collect_scalars(str(key), value_tree, out)
    else:
        _collect_scalars("value", tree, out)
    return out
