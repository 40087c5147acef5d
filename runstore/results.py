"""Encoding of run results into SQL-ready scalars and arrays (no SQL). Internal module.

A result is any value :func:`runstore.encoding.encode` accepts, normally a dict
or a :class:`~runstore.containers.Container`. It is stored three ways at once:

- the encoded tree (canonical JSON), from which the result is rebuilt exactly;
- its numpy arrays, each named by its key path in the result (see
  :func:`name_arrays`) with a CRC-32 of each (checked when loaded), for an
  HDF5 side file;
- one typed row per scalar (None, bool, int, float, str, complex as
  structured) under its key, nested dict keys joined with ``.``, so that
  results can be queried with SQL. A result that is not a mapping is stored
  under the key ``value``.

Values with no canonical encoding are refused with an error naming the key,
unless pickling was allowed: then they are stored as pickles, which only a
store opened with ``allow_pickle=True`` will load. Top-level keys name query
rows: a string key must be a name (valid Unicode, no NUL; it may be empty); another
key (an int ...) is kept exactly in the result, and its row is named by its
``str``, which must be such a name. Keys of nested dicts that are not such
strings stay in the result but give no query row. Two keys that would give
the same query row (``'a.b'`` and ``'a'['b']``, or ``1`` and ``'1'``) are
refused.
"""

from __future__ import annotations

import base64
import pickle
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import containers
from .encoding import (
    Indexed,
    NamedArrays,
    Tree,
    canonical_json,
    check_name,
    decode,
    encode,
    indexed,
    indexed_number,
    short_repr,
)
from .errors import DecodingError, EncodingError, UnstorableValueError

__all__ = ["EncodedResult", "encode_result", "decode_result", "PICKLE_TAG", "array_payloads",
           "array_name", "array_paths", "name_arrays", "path_component", "scalars_of_tree"]

#: The tag of pickled values in result trees (only with allow_pickle).
PICKLE_TAG = "pickle"


@dataclass
class EncodedResult:
    """A result ready for the store."""

    tree: Tree
    json: str
    scalars: dict[str, Indexed]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    #: The CRC-32 of each array, by name (as in its payload).
    checksums: dict[str, int] = field(default_factory=dict)


def encode_result(result: Any, allow_pickle: bool = False) -> EncodedResult:
    """Encode a result, checking all of it; raise :class:`EncodingError` naming any bad key.

    Everything the store will write is checked here, so that a bad result
    fails its own run only: top-level keys must be names
    (:func:`~runstore.encoding.check_name`), every value must encode, and no
    two keys may give the same query row (``'a.b'`` and ``'a'['b']``).
    """
    if type(result) is dict:
        flat = _flat_result(result)
        if flat is not None:
            return flat
    return _encode_any(result, allow_pickle)


def _encode_any(result: Any, allow_pickle: bool) -> EncodedResult:
    """:func:`encode_result` of any result."""
    arrays = NamedArrays()
    if isinstance(result, (dict, containers.ContainerDict, containers.Container)):
        items = dict(result.items()) if isinstance(result, dict) else result.__getstate__()
        for key in items:
            _check_key(key)
        encoded_items = {
            key: _encode_value(value, f"result key {key!r}", arrays, allow_pickle)
            for key, value in items.items()
        }
        tree = _rebuild_tree(result, encoded_items)
    else:
        encoded_items = {"value": _encode_value(result, "result", arrays, allow_pickle)}
        tree = encoded_items["value"]
    scalars: dict[str, Indexed] = {}
    origins: dict[str, str] = {}
    for key, item in encoded_items.items():
        _collect_scalars(str(key), item, scalars, origins, repr(key))
    if arrays:
        arrays, checksums = name_arrays(tree, arrays)
    else:
        checksums = {}
    return EncodedResult(tree, canonical_json(tree), scalars, arrays, checksums)


def _flat_result(result: dict[Any, Any]) -> EncodedResult | None:
    """:func:`encode_result` of a dict of plain scalars, or None for any other dict.

    The common result (``{"val": 3.5, "ok": True}``) has nothing to check
    beyond its keys and its values' types: its keys are ASCII strings without
    NUL characters, and its values ``None``, booleans, 64-bit ints, finite
    floats or ASCII strings, which encode as themselves (``-0.0`` as ``0.0``)
    and give one query row each under their keys. The same tree, text and
    rows as the general path.
    """
    values: dict[str, Any] = {}
    scalars: dict[str, Indexed] = {}
    for key, value in result.items():
        if type(key) is not str or not key.isascii() or "\x00" in key:
            return None
        kind = type(value)
        # Each value's query row, as indexed() makes it (its canonical JSON
        # as canonical_json() writes it), without looking up its type again.
        if kind is float or kind is int:
            form = indexed_number(value)
            if form is None:  # beyond 64 bits, or not finite
                return None
            scalars[key] = form
            value = form.number  # (-0.0 is 0.0)
        elif kind is str:
            if not value.isascii():
                return None
            scalars[key] = Indexed("text", None, value, canonical_json(value))
        elif value is None or kind is bool:
            scalars[key] = indexed(value)
        else:
            return None
        values[key] = value
    # As encode() does, the items sorted by their keys' JSON; and the tree's
    # JSON as canonical_json writes it, from the values' JSON in their rows.
    ordered = sorted([(canonical_json(key), key) for key in values])
    tree: Tree = ["dict", [[key, values[key]] for _, key in ordered]]
    text = ",".join([f"[{key_json},{scalars[key].canonical}]" for key_json, key in ordered])
    return EncodedResult(tree, f'["dict",[{text}]]', scalars, NamedArrays(), {})


def _check_key(key: Any) -> None:
    """A top-level key names a query row: a name, or a value whose ``str`` is one."""
    what = f"the result key {short_repr(key)}"
    if type(key) is not str:
        encode(key, what)  # kept exactly in the result's tree
        key = str(key)
    check_name(key, what, allow_empty=True)


def _encode_value(value: Any, path: str, arrays: dict[str, np.ndarray],
                  allow_pickle: bool) -> Tree:
    try:
        return encode(value, path, arrays)
    except EncodingError as exc:
        if not allow_pickle:
            raise
        try:
            data = pickle.dumps(value, protocol=4)
        except Exception as failed:  # e.g. too deep for pickle as well
            raise exc from failed
        return [PICKLE_TAG, base64.b64encode(data).decode("ascii")]


def _rebuild_tree(result: Any, items: dict[Any, Tree]) -> Tree:
    """The tree of the whole result, from the trees of its items."""
    pairs = sorted(([encode(k), v] for k, v in items.items()),
                   key=lambda pair: canonical_json(pair[0]))
    if isinstance(result, dict):
        return ["dict", pairs]
    name = f"{type(result).__module__}.{type(result).__qualname__}"
    return ["object", [name, [[k, v] for k, v in sorted(items.items())]]]


def _collect_scalars(key: str, tree: Tree, out: dict[str, Indexed],
                     origins: dict[str, str] | None, origin: str) -> None:
    """Add the query rows of one value; ``origins`` (when checking) finds clashes.

    Nested dicts give rows ``key.subkey`` for their string keys without NUL
    characters (other keys stay in the result, without a row of their own).
    """
    if isinstance(tree, list) and tree and tree[0] == "dict":
        for key_tree, value_tree in tree[1]:
            if isinstance(key_tree, str) and "\x00" not in key_tree:
                _collect_scalars(f"{key}.{key_tree}", value_tree, out, origins,
                                 f"{origin}[{key_tree!r}]")
        return
    if isinstance(tree, list) and tree and tree[0] in ("ndarray", PICKLE_TAG):
        return
    form = indexed(tree)
    if form.kind != "structured" or (isinstance(tree, list) and tree[0] == "complex"):
        if origins is not None:
            if key in origins:
                raise UnstorableValueError(
                    f"the result key {origins[key]}", "str", f"it and the result key "
                    f"{origin} both give the query row {key!r}",
                    "Rename one of them (keys of nested dicts are joined with '.')")
            origins[key] = origin
        elif not (_is_text(key) and "\x00" not in key and (
                form.text is None or _is_text(form.text))):
            raise DecodingError(f"result key {key!r}", "a key or string that is not "
                                "valid Unicode text, or a NUL in a key")
        out[key] = form


def _is_text(value: str) -> bool:
    """Whether UTF-8 can encode the string (it holds no lone surrogates)."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
    """The path an array of a result is stored under in its run's HDF5 group.

    A ``/``-separated path (``fields/E``; ``0``, ``1`` ... in files written
    before runstore named arrays by key path). Refused (a
    :class:`~runstore.errors.DecodingError`) unless every component is a
    plain HDF5 link name: not empty, ``.`` or ``..``, and without NUL.
    """
    name = payload.get("name") or payload.get("digest")
    if not isinstance(name, str) or not name or "\x00" in name or any(
            part in ("", ".", "..") for part in name.split("/")):
        raise DecodingError("result", f"the array name {name!r}")
    return name


# -- array names: key paths --------------------------------------------------------


def name_arrays(tree: Tree, arrays: Mapping[str, np.ndarray]
                ) -> tuple[NamedArrays, dict[str, int]]:
    """Name a result's arrays by their key paths; return them and their CRC-32s by name.

    ``arrays`` holds the arrays under the positional names the encoder gave
    them; the payloads in ``tree`` are renamed in place. An array's name is
    the path of keys that leads to it, ``/``-separated, each key escaped by
    :func:`path_component`: ``{"fields": {"E": a}}`` gives ``fields/E``, a list
    item its index, an object's attribute its name, and a result that is not
    a mapping (or an object) starts with ``value``. An array whose path
    another array already took, or that would be a group of another's path
    (keys ``1`` and ``'1'``), or that has no key path (inside a dict key),
    is named ``~<n>``, ``n`` its position in the tree's order (which no
    escaped key starts with). Names follow from the tree alone, so equal
    results name their arrays alike.
    """
    named, checksums = NamedArrays(), {}
    for name, payload in array_paths(tree):
        named[name] = arrays[payload["name"]]
        payload["name"] = name
        checksums[name] = payload["crc32"]
    return named, checksums


def array_paths(tree: Tree) -> list[tuple[str, dict[str, Any]]]:
    """The key path of each array of a result, with its payload, in the tree's order.

    The names :func:`name_arrays` gives (whatever names the payloads hold:
    arrays stored by position in older files get their key paths too).
    """
    found: list[tuple[list[str] | None, dict[str, Any]]] = []
    if isinstance(tree, list) and len(tree) == 2 and tree[0] in ("dict", "object"):
        _array_paths(tree, [], found)
    else:
        _array_paths(tree, ["value"], found)
    seen = {id(payload) for _, payload in found}
    found += [(None, payload) for payload in array_payloads(tree) if id(payload) not in seen]
    datasets: set[str] = set()
    groups: set[str] = set()
    return [(_unique_name(path, position, datasets, groups), payload)
            for position, (path, payload) in enumerate(found)]


def _unique_name(path: list[str] | None, position: int, datasets: set[str],
                 groups: set[str]) -> str:
    """The key path as a name, or ``~<position>`` if it clashes with names taken."""
    if path is not None:
        name = "/".join(path)
        prefixes = ["/".join(path[:i]) for i in range(1, len(path))]
        if name not in datasets and name not in groups and not any(
                prefix in datasets for prefix in prefixes):
            datasets.add(name)
            groups.update(prefixes)
            return name
    return f"~{position}"


def _array_paths(tree: Tree, path: list[str],
                 out: list[tuple[list[str] | None, dict[str, Any]]]) -> None:
    """Append the (escaped key path, payload) of each array in ``tree``, in tree order."""
    if not (isinstance(tree, list) and len(tree) == 2):
        return
    tag, payload = tree
    if tag == "ndarray" and isinstance(payload, dict):
        out.append((path, payload))
    elif tag == "dict":
        for key_tree, value_tree in payload:
            _array_paths(value_tree, path + [path_component(_key_text(key_tree))], out)
    elif tag == "object":
        for attr, value_tree in payload[1]:
            _array_paths(value_tree, path + [path_component(attr)], out)
    elif tag in ("list", "tuple", "set", "frozenset"):
        for index, item in enumerate(payload):
            _array_paths(item, path + [str(index)], out)


def _key_text(key_tree: Tree) -> str:
    """A dict key as text: itself if a string, else the ``str`` of its decoded value."""
    if isinstance(key_tree, str):
        return key_tree
    try:
        return str(decode(key_tree, None, False, "result key"))
    except Exception:  # a key whose str() fails: named by its encoding instead
        return canonical_json(key_tree)


#: Characters escaped in names of HDF5 groups and datasets ('~' only leading).
_ESCAPES = {"%": "%25", "/": "%2F", "\x00": "%00"}
#: Components HDF5 (or a reader) would take for something else.
_SPECIAL = {"": "%", ".": "%2E", "..": "%2E%2E"}


def path_component(key: str) -> str:
    """A key as one HDF5 link name, unambiguously.

    ``%``, ``/`` and NUL are percent-encoded (``%25``, ``%2F``, ``%00``), and
    so is a leading ``~`` (``%7E``); the keys ``.``, ``..`` and ``''``
    become ``%2E``, ``%2E%2E`` and ``%``.

    >>> path_component("a/b"), path_component("~x"), path_component("..")
    ('a%2Fb', '%7Ex', '%2E%2E')
    """
    special = _SPECIAL.get(key)
    if special is not None:
        return special
    if "%" in key or "/" in key or "\x00" in key:
        key = "".join(_ESCAPES.get(char, char) for char in key)
    return "%7E" + key[1:] if key.startswith("~") else key


def scalars_of_tree(tree: Tree) -> dict[str, Indexed]:
    """The typed scalar rows of a result, rebuilt from its encoded tree.

    The same rows :func:`encode_result` gives (used to import runs, so that
    the query rows always follow from the stored result).
    """
    out: dict[str, Indexed] = {}
    if isinstance(tree, list) and len(tree) == 2 and tree[0] == "dict":
        for key_tree, value_tree in tree[1]:
            key = decode(key_tree, None, False, "result key")
            _collect_scalars(str(key), value_tree, out, None, "")
    elif isinstance(tree, list) and len(tree) == 2 and tree[0] == "object":
        for key, value_tree in tree[1][1]:
            _collect_scalars(str(key), value_tree, out, None, "")
    else:
        _collect_scalars("value", tree, out, None, "")
    return out
