"""Canonical, typed encoding of parameter and result values (no SQL, no files).

:func:`encode` turns a value into a tree of JSON values in which every Python
type runstore supports keeps its identity: ``1``, ``1.0``, ``True`` and ``"1"``
stay distinct, so do lists and tuples, dict keys are sorted, numpy scalars
become their Python value and numpy arrays are named by dtype, shape and a
digest of their content. :func:`canonical_json` serializes a tree to one exact
text, which is what run ids hash (see :mod:`runstore.identity`) and what the
store keeps. :func:`decode` rebuilds values from a tree without importing any
code: callables and objects of user classes come back as references
(:class:`FunctionRef`, :class:`ObjectRef`) unless the caller opts in.
:func:`indexed` derives the typed form (number, text or structured) a store
indexes for queries.

The encoding (version :data:`ENCODING_VERSION`):

====================  ==========================================================
value                 tree
====================  ==========================================================
None, bool, str       itself
int                   itself (JSON integer, arbitrary size)
float                 itself (JSON number with a fraction or exponent);
                      ``-0.0`` becomes ``0.0``; NaN and infinities become
                      ``["float", "nan" | "inf" | "-inf"]``
complex               ``["complex", [real, imag]]``
bytes                 ``["bytes", "<base64>"]``
list, tuple           ``["list", [items]]``, ``["tuple", [items]]``
set, frozenset        ``["set", [items]]``, ``["frozenset", [items]]``, items
                      sorted by their canonical JSON
dict                  ``["dict", [[key, value], ...]]`` sorted by the canonical
                      JSON of the keys
numpy scalar          the tree of ``value.item()``
numpy array           ``["ndarray", {"dtype": "<f8", "shape": [...],
                      "digest": "<40 hex>"}]``, little-endian, C order
function, class       ``["callable", "module.qualname"]``
Object, Container     ``["object", ["module.qualname", [[name, value], ...]]]``
====================  ==========================================================

What is refused, with an :class:`~runstore.errors.UnstorableValueError` naming
the place (everything else comes back exactly): strings that are not valid
Unicode (lone surrogates, in values, keys and names alike; NUL characters are
fine in values), ints of more than :data:`MAX_INT_BITS` bits, containers that
contain themselves, containers nested more than :data:`MAX_DEPTH` deep, and
numpy scalars without an exact Python value (long doubles; datetimes are
refused as unsupported). Names (see :func:`check_name`) are also refused
when empty or holding a NUL.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import math
import pickle
import reprlib
import sys
import zlib
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Union

import numpy as np

from . import containers
from .errors import (
    DecodingError,
    EncodingError,
    PickleRefusedError,
    UnresolvedReferenceError,
    UnstorableValueError,
)
from .interfaces import IReference, implementer
from .summary import ResultDict

__all__ = [
    "ENCODING_VERSION",
    "MAX_DEPTH",
    "MAX_INT_BITS",
    "Tree",
    "encode",
    "decode",
    "canonical_json",
    "array_digest",
    "qualified_name",
    "FunctionRef",
    "ObjectRef",
    "ArrayRef",
    "NamedArrays",
    "Indexed",
    "indexed",
    "indexed_number",
    "check_name",
    "short_repr",
]

#: Version of the encoding; part of every run id (see :mod:`runstore.identity`).
ENCODING_VERSION = 1

#: The deepest nesting of containers (lists, tuples, sets, dicts, Objects) a
#: value may have: ``[[1]]`` is 2 deep. Deeper values are refused with an
#: :class:`~runstore.errors.UnstorableValueError` (rather than exhausting the
#: interpreter's stack while encoding, storing or loading them).
MAX_DEPTH = 100
#: The most bits an int may have (about 4,200 decimal digits, below Python's
#: 4,300-digit limit on converting ints to text); larger ints are refused.
MAX_INT_BITS = 14_000

#: An encoded value: JSON scalars, and two-item lists ``[tag, payload]``.
Tree = Union[None, bool, int, float, str, list[Any], dict[str, Any]]

#: The classes :func:`decode` rebuilds without being asked: runstore's own.
_TRUSTED_CLASSES: dict[str, type[containers.Object]] = {
    f"runstore.containers.{cls.__name__}": cls
    for cls in (
        containers.Container,
        containers.ContainerList,
        containers.ContainerDict,
    )
}

_HINT_UNSUPPORTED = (
    "Supported are None, bool, int, float, complex, str, bytes, lists, tuples, "
    "sets, dicts, numpy scalars and arrays, importable functions and classes, "
    "and runstore.containers.Object instances. Convert the value to one of "
    "these, pass its defining values as separate parameters, or override "
    "Run.generate_id"
)


def array_digest(array: np.ndarray) -> str:
    """Return the 40-hex digest of an array's dtype, shape and content.

    The array is taken little-endian and C-contiguous first, so equal arrays
    share a digest whatever their memory layout or byte order.
    """
    normal = _normalized_array(array)
    h = hashlib.blake2b(digest_size=20)
    h.update(canonical_json([normal.dtype.str, list(normal.shape)]).encode("ascii"))
    h.update(normal.tobytes())
    return h.hexdigest()


def _normalized_array(array: np.ndarray) -> np.ndarray:
    dtype = array.dtype
    if dtype.byteorder == ">" or (dtype.byteorder == "=" and sys.byteorder == "big"):
        dtype = dtype.newbyteorder("<")
    return np.asarray(array, dtype=dtype, order="C")


def qualified_name(obj: Any, path: str = "value") -> str:
    """Return the importable ``module.qualname`` of a function or class.

    Raises
    ------
    EncodingError
        If ``obj`` is a lambda, is defined inside a function, or cannot be
        found again under its name.
    """
    module: str | None
    qualname: str | None
    if isinstance(obj, np.ufunc):
        module, qualname = "numpy", obj.__name__
    else:
        module = getattr(obj, "__module__", None)
        qualname = getattr(obj, "__qualname__", None)
    kind = type(obj).__name__
    if not module or not qualname:
        raise EncodingError(
            path, kind, "it has no importable module and qualified name",
            "Pass a module-level function, or the name of the function as a "
            "string, and look it up inside run()",
        )
    if "<lambda>" in qualname:
        raise EncodingError(
            path, kind, "a lambda has no name that identifies it (all lambdas "
            "would look the same, and runs would share results they do not share)",
            f"Define it with def at the top level of a module and pass that "
            f"function: {_module_level_def(obj, path)}",
        )
    if "<locals>" in qualname:
        outer = qualname.split(".<locals>")[0]
        raise EncodingError(
            path, kind, f"{qualname} is defined inside {outer}(), so it cannot be found "
            "again by name (another call could define a different one)",
            f"Move {_module_level_def(obj, path)} out of {outer}() to the top level of "
            f"module {module}, or pass its settings as parameters",
        )
    found = _lookup(module, qualname)
    if found is not _MISSING and found is not obj and found != obj:
        raise EncodingError(
            path, kind, f"{module}.{qualname} names a different object",
            "Pass the module-level object itself",
        )
    return f"{module}.{qualname}"


def _module_level_def(obj: Any, path: str) -> str:
    """The one line that defines a lambda or local function at module level, if it can be told."""
    import ast
    import inspect
    import keyword
    import re
    import textwrap

    code = getattr(obj, "__code__", None)
    if code is None:
        return "a def"
    if obj.__name__ != "<lambda>":
        try:
            return f"'def {obj.__name__}{inspect.signature(obj)}: ...'"
        except (TypeError, ValueError):
            return f"'def {obj.__name__}(...): ...'"
    named = re.match(r"parameter '([A-Za-z_]\w*)'", path)
    name = named.group(1) if named and not keyword.iskeyword(named.group(1)) else "function"
    try:
        source = textwrap.dedent(inspect.getsource(obj))
        tree = ast.parse(source if not source.lstrip().startswith((".", ")", "]", "}"))
                         else "(" + source)
    except (OSError, TypeError, SyntaxError):
        return f"'def {name}(...): return ...'"
    argnames = code.co_varnames[:code.co_argcount]
    found = [node for node in ast.walk(tree) if isinstance(node, ast.Lambda)
             and tuple(a.arg for a in node.args.args) == argnames]
    if len(found) != 1:
        return f"'def {name}(...): return ...'"
    node = found[0]
    return f"'def {name}({ast.unparse(node.args)}): return {ast.unparse(node.body)}'"


_MISSING = object()
_INT64 = 2**63


def _lookup(module: str, qualname: str) -> Any:
    """Find ``module.qualname`` among loaded modules, without importing."""
    target: Any = sys.modules.get(module, _MISSING)
    for part in qualname.split("."):
        target = getattr(target, part, _MISSING)
    return target


def _type_name(value: Any) -> str:
    cls = type(value)
    return cls.__qualname__ if cls.__module__ == "builtins" else (
        f"{cls.__module__}.{cls.__qualname__}"
    )


_JSON_ENCODER = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=True, allow_nan=False, sort_keys=True)
_JSON_STRING = json.encoder.encode_basestring_ascii  # what that encoder uses for str
_JSON_SCALARS = {None: "null", True: "true", False: "false"}


def canonical_json(tree: Tree) -> str:
    """Serialize an encoded tree to its one canonical JSON text (ASCII)."""
    # Scalars take a shortcut that writes exactly what json.dumps writes.
    if isinstance(tree, str):
        return _JSON_STRING(tree)
    if tree is None or isinstance(tree, bool):
        return _JSON_SCALARS[tree]
    if isinstance(tree, int):
        return int.__repr__(tree)
    if isinstance(tree, float) and math.isfinite(tree):
        return float.__repr__(tree)
    return _JSON_ENCODER.encode(tree)


def _sorted_items(items: list[list[Any]]) -> list[list[Any]]:
    return sorted(items, key=lambda pair: canonical_json(pair[0]))


def encode(
    value: Any,
    path: str = "value",
    arrays: MutableMapping[str, np.ndarray] | None = None,
) -> Tree:
    """Encode ``value`` canonically (see the module documentation).

    Parameters
    ----------
    value
        The value to encode.
    path
        How to name the value in an error message, e.g. ``"parameter 'B'"``.
    arrays
        If given, every numpy array met is stored here under its digest, so
        that the caller can keep the content the tree only names.

    Raises
    ------
    EncodingError
        If the value, or anything inside it, has no canonical encoding. The
        message names the place (``parameter 'B'[2]``) and says what to do.
    """
    return _encode(value, path, _Walk(arrays))


class _Walk:
    """The state of one :func:`encode` call: where arrays go, and the containers
    being encoded (the path from the top value down), to refuse cycles and depth."""

    __slots__ = ("arrays", "active")

    def __init__(self, arrays: MutableMapping[str, np.ndarray] | None) -> None:
        self.arrays = arrays
        self.active: set[int] = set()

    def enter(self, value: Any, path: str) -> int:
        """Note that ``value`` (a container) is being encoded; return its key."""
        key = id(value)
        active = self.active
        if key not in active and len(active) < MAX_DEPTH:  # the common case, quickly
            active.add(key)
            return key
        if key in active:
            raise UnstorableValueError(
                path, _type_name(value), "it contains itself (it refers back to a "
                "container it is inside of), so it has no finite encoding",
                "Store the data without the reference cycle, e.g. a copy that holds "
                "the values rather than the containing object")
        if len(self.active) >= MAX_DEPTH:
            raise UnstorableValueError(
                path if len(path) <= 100 else f"{path[:80]}...{path[-12:]}", _type_name(value), f"it is nested more than {MAX_DEPTH} levels "
                "deep (runstore.encoding.MAX_DEPTH)",
                "Flatten it: a dict with joined keys, a list of records, or an array")
        self.active.add(key)
        return key


def _encode(value: Any, path: str, walk: _Walk) -> Tree:
    encoder = _ENCODERS.get(type(value))
    if encoder is not None:
        return encoder(value, path, walk)
    if isinstance(value, np.generic):
        item = value.item()
        if isinstance(value, (np.datetime64, np.timedelta64, np.void)) or (
                isinstance(item, np.generic)):
            raise EncodingError(
                path, _type_name(value), "this numpy scalar type has no exact Python "
                "value", "Convert it (float(x), complex(x)), or keep it in an array "
                "(np.asarray(x)), which is stored with its dtype. " + _HINT_UNSUPPORTED,
            )
        return _encode(item, path, walk)
    if isinstance(value, containers.Object):
        key = walk.enter(value, path)
        tree = _encode_object(type(value), value.__getstate__(), path, walk)
        walk.active.discard(key)
        return tree
    if isinstance(value, np.ufunc) or (callable(value) and hasattr(value, "__qualname__")):
        return ["callable", qualified_name(value, path)]
    raise EncodingError(
        path, _type_name(value), "runstore has no canonical encoding for it",
        _HINT_UNSUPPORTED,
    )


def _encode_object(cls: type, state: Mapping[str, Any], path: str, walk: _Walk) -> Tree:
    name = qualified_name(cls, path)
    return ["object", [name, _encode_state(state, path, walk)]]


def _encode_state(state: Mapping[str, Any], path: str, walk: _Walk) -> list[list[Any]]:
    """The ``[[attribute, tree], ...]`` of an Object's state, sorted by name."""
    for attr in state:
        check_name(attr, f"the attribute name {short_repr(attr)} of {path}")
    return [[attr, _encode(state[attr], f"{path}.{attr}", walk)] for attr in sorted(state)]


def _encode_int(value: int, path: str, walk: _Walk) -> Tree:
    if value.bit_length() <= MAX_INT_BITS:
        return value
    raise UnstorableValueError(
        path, "int", f"it has {value.bit_length():,} bits, more than the "
        f"{MAX_INT_BITS:,} runstore stores (runstore.encoding.MAX_INT_BITS)",
        "Store it as bytes (n.to_bytes(...)) or as a float, or pass what it is "
        "computed from instead")


def _encode_str(value: str, path: str, walk: _Walk) -> Tree:
    if not value.isascii():
        _check_text(value, path, "str")
    return value


def _check_text(value: str, path: str, kind: str) -> None:
    """Refuse strings UTF-8 cannot encode (lone surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UnstorableValueError(
            path, kind, f"it is not valid Unicode text: character {exc.start} is the lone "
            f"surrogate {value[exc.start]!r}, which UTF-8 cannot encode (os.listdir and "
            "sys.argv give such strings for names that are not UTF-8)",
            "Pass the raw name as bytes (os.fsencode(name)), or repair the text "
            "(name.encode('utf-8', 'surrogateescape').decode('utf-8', 'replace'))"
        ) from None


def check_name(name: Any, what: str, allow_empty: bool = False) -> str:
    """Check that a parameter name, result key or attribute name can be stored; return it.

    A name must be a non-empty string (empty only if ``allow_empty``) of valid
    Unicode (no lone surrogates) without NUL characters: names become SQL
    column names and HDF5 attributes.

    Raises
    ------
    EncodingError
        If ``name`` is not a string (an :class:`~runstore.errors.EncodingError`,
        a ``TypeError``), or is empty or holds a NUL or a lone surrogate (an
        :class:`~runstore.errors.UnstorableValueError`, also a ``ValueError``).
    """
    if type(name) is not str:
        raise EncodingError(
            what, _type_name(name), "names must be strings",
            "Use a non-empty str (e.g. str(name))")
    if "\x00" in name or not (name or allow_empty):
        raise UnstorableValueError(
            what, "str", "names must be non-empty and may not contain the NUL character "
            "(they become SQL column names)", "Choose another name")
    if not name.isascii():
        _check_text(name, what, "str")
    return name


def short_repr(value: Any) -> str:
    """A ``repr`` for messages that is short and cannot fail (deep, huge, cyclic values)."""
    if type(value) is str and len(value) <= 60:
        return repr(value)
    if type(value) is int and -_INT64 <= value < _INT64:
        return repr(value)
    try:
        return _REPR.repr(value)
    except Exception:  # a repr of the user's that raises: say what it is instead
        return f"<{_type_name(value)} object>"


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 4, 60, 60, 40


def _encode_float(value: float, path: str, walk: _Walk) -> Tree:
    if math.isfinite(value):
        return value + 0.0  # -0.0 + 0.0 is 0.0
    return ["float", "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")]


def _encode_sequence(tag: str) -> Callable[[Any, str, _Walk], Tree]:
    def encode_items(value: Any, path: str, walk: _Walk) -> Tree:
        key = walk.enter(value, path)
        tree = [tag, [_encode(item, f"{path}[{i}]", walk) for i, item in enumerate(value)]]
        walk.active.discard(key)
        return tree
    return encode_items


def _encode_set(tag: str) -> Callable[[Any, str, _Walk], Tree]:
    def encode_items(value: Any, path: str, walk: _Walk) -> Tree:
        key = walk.enter(value, path)
        items = [_encode(item, f"{path}{{}}", walk) for item in value]
        walk.active.discard(key)
        return [tag, sorted(items, key=canonical_json)]
    return encode_items


def _encode_dict(value: dict[Any, Any], path: str, walk: _Walk) -> Tree:
    marker = walk.enter(value, path)
    items = []
    for key, item in value.items():
        shown = short_repr(key)
        items.append([_encode(key, f"{path} key {shown}", walk),
                      _encode(item, f"{path}[{shown}]", walk)])
    walk.active.discard(marker)
    return ["dict", _sorted_items(items)]


def _encode_array(value: np.ndarray, path: str, walk: _Walk) -> Tree:
    if value.dtype.hasobject or value.dtype.fields is not None:
        raise EncodingError(
            path, f"numpy array of dtype {value.dtype}",
            "only arrays of plain numeric, boolean, string or datetime dtypes "
            "have a canonical encoding",
            "Convert it to a plain dtype, or split a structured array into a dict "
            "of arrays",
        )
    normal = _normalized_array(value)
    arrays = walk.arrays
    if isinstance(arrays, NamedArrays):  # stored beside a result: name and checksum
        name = str(len(arrays))
        arrays[name] = normal
        return ["ndarray", {"dtype": normal.dtype.str, "shape": list(normal.shape),
                            "name": name, "crc32": _crc32(normal)}]
    digest = array_digest(normal)
    if arrays is not None:
        arrays[digest] = normal
    return ["ndarray", {"dtype": normal.dtype.str, "shape": list(normal.shape),
                        "digest": digest}]


def _crc32(array: np.ndarray) -> int:
    # As bytes: buffers of some dtypes (datetime64) cannot be exported directly.
    return zlib.crc32(np.ascontiguousarray(array).reshape(-1).view(np.uint8).data)


class NamedArrays(dict[str, np.ndarray]):
    """Collects the arrays of a result under positional names, not digests.

    Passed as ``arrays`` to :func:`encode`, it makes arrays encode as
    ``["ndarray", {"dtype", "shape", "name", "crc32"}]``: no content digest
    (hashing would halve the write speed of large results), a CRC-32 of the
    content instead, which :func:`decode` checks. Run ids never use it.
    """


def _encode_complex(value: complex, path: str, walk: _Walk) -> Tree:
    return ["complex", [_encode_float(value.real, path, walk),
                        _encode_float(value.imag, path, walk)]]


def _itself(value: Any, path: str, walk: _Walk) -> Tree:
    return value  # type: ignore[no-any-return]


_ENCODERS: dict[type, Callable[[Any, str, _Walk], Tree]] = {
    type(None): _itself,
    bool: _itself,
    int: _encode_int,
    str: _encode_str,
    float: _encode_float,
    complex: _encode_complex,
    bytes: lambda value, path, walk: ["bytes", base64.b64encode(value).decode("ascii")],
    list: _encode_sequence("list"),
    tuple: _encode_sequence("tuple"),
    set: _encode_set("set"),
    frozenset: _encode_set("frozenset"),
    dict: _encode_dict,
    # run.result of a dict result: the dict it is (same tree, same run id).
    ResultDict: _encode_dict,
    np.ndarray: _encode_array,
}


# -- references: what decoding gives instead of importing code ------------------


@implementer(IReference)
class FunctionRef:
    """A function or class named in a store, not imported.

    Compares equal to another reference of the same name and to the function
    it names; :meth:`resolve` imports it.
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def resolve(self) -> Any:
        """Import the named module and return the function or class."""
        parts = self.name.split(".")
        for split in range(len(parts) - 1, 0, -1):
            module, rest = ".".join(parts[:split]), ".".join(parts[split:])
            try:
                target: Any = importlib.import_module(module)
            except ImportError:
                continue
            for part in rest.split("."):
                target = getattr(target, part)
            return target
        raise ImportError(f"cannot import {self.name!r}: no module of it is importable")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise UnresolvedReferenceError(self.name, "call")

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FunctionRef):
            return self.name == other.name
        try:
            return callable(other) and qualified_name(other) == self.name
        except EncodingError:
            return False

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f"FunctionRef({self.name!r})"


@dataclass(frozen=True, eq=True)
class ArrayRef:
    """An array named by its digest (or name) whose content was not supplied."""

    dtype: str
    shape: tuple[int, ...]
    digest: str


@implementer(IReference)
class ObjectRef:
    """An :class:`~runstore.containers.Object` of a class that was not imported.

    It keeps the class name and the defining attributes (readable as
    attributes), encodes exactly as the original object did, and
    :meth:`resolve` imports the class and rebuilds the object.
    """

    def __init__(self, class_name: str, state: Mapping[str, Any]) -> None:
        self.__dict__["class_name"] = class_name
        self.__dict__["state"] = dict(state)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["state"][name]
        except KeyError:
            raise AttributeError(
                f"{self.class_name} reference has no attribute {name!r}"
            ) from None

    def resolve(self) -> containers.Object:
        """Import the class, rebuild the object and run its ``init()``."""
        cls = FunctionRef(self.class_name).resolve()
        return _rebuild(cls, self.state, self.class_name)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ObjectRef):
            return NotImplemented
        return self.class_name == other.class_name and self.state.keys() == (
            other.state.keys()
        ) and all(containers.values_equal(self.state[k], other.state[k])
                  for k in self.state)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in sorted(self.state.items()))
        return f"ObjectRef({self.class_name!r}, {args})"


def _rebuild(cls: Any, state: Mapping[str, Any], name: str) -> containers.Object:
    if not (isinstance(cls, type) and issubclass(cls, containers.Object)):
        raise DecodingError(f"object of class {name!r}", "a name that is not an Object subclass")
    obj = cls.__new__(cls)
    obj.__setstate__(state)
    return obj


def _encode_object_ref(value: ObjectRef, path: str, walk: _Walk) -> Tree:
    key = walk.enter(value, path)
    tree = ["object", [value.class_name, _encode_state(value.state, path, walk)]]
    walk.active.discard(key)
    return tree


_ENCODERS[FunctionRef] = lambda value, path, walk: ["callable", value.name]
_ENCODERS[ObjectRef] = _encode_object_ref
_ENCODERS[ArrayRef] = lambda value, path, walk: ["ndarray", {
    "dtype": value.dtype, "shape": list(value.shape), "digest": value.digest}]
# (a result's named array reloaded without its content cannot be encoded again:
# its ArrayRef carries a name, not a digest, and ids only use parameters.)


# -- decoding ---------------------------------------------------------------------


def decode(
    tree: Tree,
    arrays: Mapping[str, np.ndarray] | None = None,
    import_code: bool = False,
    path: str = "value",
    allow_pickle: bool = False,
) -> Any:
    """Rebuild a value from its encoded tree, never importing code by default.

    Parameters
    ----------
    tree
        An encoded tree, as :func:`encode` made it or as parsed from
        :func:`canonical_json` text.
    arrays
        Array contents by digest; an array whose digest is missing comes back
        as an :class:`ArrayRef`.
    import_code
        If true, callables and objects of user classes are imported and
        rebuilt. If false (the default), they come back as
        :class:`FunctionRef` and :class:`ObjectRef`; runstore's own containers
        are always rebuilt.
    allow_pickle
        Results of a store created with ``allow_pickle=True`` may hold pickled
        values (tag ``"pickle"``). Unpickling can run code, so they are only
        loaded when this is true; otherwise they raise :class:`DecodingError`.

    Raises
    ------
    DecodingError
        If the tree is not a valid encoding.
    """
    if tree is None or isinstance(tree, (bool, int, str)):  # the common case, quickly
        return tree
    return _decode(tree, _Options(arrays, import_code, allow_pickle), path)


@dataclass(frozen=True)
class _Options:
    arrays: Mapping[str, np.ndarray] | None
    import_code: bool
    allow_pickle: bool


def _decode(tree: Any, opts: _Options, path: str) -> Any:
    if tree is None or isinstance(tree, (bool, int, str)):
        return tree
    if isinstance(tree, float):
        if not math.isfinite(tree):
            raise DecodingError(path, f"the non-finite number {tree!r} untagged")
        return tree
    if not (isinstance(tree, list) and len(tree) == 2 and isinstance(tree[0], str)):
        raise DecodingError(path, f"{_describe(tree)} where a [tag, payload] pair belongs")
    tag, payload = tree
    decoder = _DECODERS.get(tag)
    if decoder is None:
        raise DecodingError(path, f"the unknown tag {tag!r}")
    try:
        return decoder(payload, opts, path)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        if isinstance(exc, DecodingError):
            raise
        raise DecodingError(path, f"a malformed {tag!r} payload ({exc})") from exc


def _describe(tree: Any) -> str:
    text = repr(tree)
    return text if len(text) < 60 else text[:57] + "..."


def _decode_items(payload: Any, opts: _Options, path: str) -> list[Any]:
    if not isinstance(payload, list):
        raise DecodingError(path, f"{_describe(payload)} where a list belongs")
    return [_decode(item, opts, f"{path}[{i}]") for i, item in enumerate(payload)]


def _decode_float(payload: Any, *_: Any) -> float:
    return {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}[payload]


def _decode_dict(payload: Any, opts: _Options, path: str) -> dict[Any, Any]:
    if not isinstance(payload, list):
        raise DecodingError(path, f"{_describe(payload)} where a list of pairs belongs")
    result = {}
    for key_tree, value_tree in payload:
        key = _decode(key_tree, opts, f"{path} key")
        result[key] = _decode(value_tree, opts, f"{path}[{key!r}]")
    return result


def _decode_array(payload: Any, opts: _Options, path: str) -> Any:
    dtype, shape = payload["dtype"], tuple(payload["shape"])
    ref = payload["digest"] if "digest" in payload else payload["name"]
    if not isinstance(dtype, str) or np.dtype(dtype).hasobject:
        raise DecodingError(path, f"the array dtype {dtype!r}")
    found = None if opts.arrays is None else opts.arrays.get(ref)
    if found is None:
        return ArrayRef(dtype, shape, ref)
    return stored_array(payload, found, path)


def stored_array(payload: dict[str, Any], found: np.ndarray, path: str) -> np.ndarray:
    """Check an array read from a side file against its ``ndarray`` payload; return it.

    Arrays of dtypes HDF5 has no type for are stored as raw bytes (an extra
    axis of ``uint8``) and are viewed back as their dtype here. Raises
    :class:`~runstore.errors.DecodingError` if the dtype, shape or CRC-32
    does not match.
    """
    dtype, shape = payload["dtype"], tuple(payload["shape"])
    ref = payload.get("digest") or payload.get("name")
    wanted = np.dtype(dtype)
    if wanted.hasobject:
        raise DecodingError(path, f"the array dtype {dtype!r}")
    if wanted != np.uint8 and found.dtype == np.uint8 and found.shape == (
            shape + (wanted.itemsize,)):
        found = found.reshape(-1).view(wanted).reshape(shape)  # stored as raw bytes
    if found.dtype.str != dtype or found.shape != shape:
        raise DecodingError(path, f"an array of {found.dtype.str}{found.shape} stored "
                            f"for {ref}, expected {dtype}{shape}")
    if "crc32" in payload and _crc32(found) != payload["crc32"]:
        raise DecodingError(path, f"an array whose content does not match its checksum "
                            f"(array {ref})")
    return found


def _decode_callable(payload: Any, opts: _Options, path: str) -> Any:
    if not isinstance(payload, str):
        raise DecodingError(path, f"{_describe(payload)} where a callable's name belongs")
    ref = FunctionRef(payload)
    return ref.resolve() if opts.import_code else ref


def _decode_object(payload: Any, opts: _Options, path: str) -> Any:
    name, items = payload
    if not isinstance(name, str):
        raise DecodingError(path, f"{_describe(name)} where a class name belongs")
    state = {}
    for attr, item in items:
        if not isinstance(attr, str):
            raise DecodingError(path, f"the attribute name {_describe(attr)}")
        state[attr] = _decode(item, opts, f"{path}.{attr}")
    trusted = _TRUSTED_CLASSES.get(name)
    if trusted is not None:
        return _rebuild(trusted, state, name)
    ref = ObjectRef(name, state)
    return ref.resolve() if opts.import_code else ref


def _decode_pickle(payload: Any, opts: _Options, path: str) -> Any:
    if not opts.allow_pickle:
        raise PickleRefusedError(path)
    return pickle.loads(base64.b64decode(payload.encode("ascii"), validate=True))


def _decode_complex(payload: Any, opts: _Options, path: str) -> complex:
    real, imag = (_decode(x, opts, path) for x in payload)
    return complex(real, imag)


_DECODERS: dict[str, Callable[[Any, _Options, str], Any]] = {
    "float": _decode_float,
    "complex": _decode_complex,
    "bytes": lambda p, o, path: base64.b64decode(p.encode("ascii"), validate=True),
    "list": _decode_items,
    "tuple": lambda p, o, path: tuple(_decode_items(p, o, path)),
    "set": lambda p, o, path: set(_decode_items(p, o, path)),
    "frozenset": lambda p, o, path: frozenset(_decode_items(p, o, path)),
    "dict": _decode_dict,
    "ndarray": _decode_array,
    "callable": _decode_callable,
    "object": _decode_object,
    "pickle": _decode_pickle,
}


# -- the typed form a store indexes -------------------------------------------------


class Indexed(NamedTuple):
    """How a store indexes one encoded value.

    A named tuple (immutable, as a frozen dataclass would be): one is made
    for every parameter and every scalar result of every run, and a frozen
    dataclass took five times as long to make.

    Attributes
    ----------
    kind : str
        ``"null"``, ``"bool"``, ``"int"``, ``"float"``, ``"text"`` or
        ``"structured"``.
    number : int | float | None
        The numeric value, set exactly for ``int`` and ``float`` values (not
        for booleans, nor for NaN); integers beyond 64 bits keep their
        nearest float (infinite beyond the range of floats), and queries
        decide exactly from ``canonical`` where that float is ambiguous. So a
        store can index numbers alone and query them without checking kinds.
    text : str | None
        The string, for ``text``.
    canonical : str
        The canonical JSON of the value, for every kind; structured values
        (lists, arrays, callables, objects ...) compare by it.
    """

    kind: str
    number: int | float | None
    text: str | None
    canonical: str


def _approximate(number: int) -> float:
    """The nearest float of an int beyond 64 bits; ints beyond the floats are infinite."""
    try:
        return float(number)
    except OverflowError:
        return math.inf if number > 0 else -math.inf


def indexed_number(value: Any) -> Indexed | None:
    """``indexed(encode(value))`` of a 64-bit int or a finite float, else None.

    The usual parameter, result and query values, made without the walk of
    :func:`encode` (they encode as themselves, ``-0.0`` as ``0.0``).
    """
    kind = type(value)
    if kind is int:
        if -_INT64 <= value < _INT64:
            return Indexed("int", value, None, int.__repr__(value))
    elif kind is float and math.isfinite(value):
        value += 0.0  # as encode() does: -0.0 is 0.0
        return Indexed("float", value, None, float.__repr__(value))
    return None


def indexed(tree: Tree) -> Indexed:
    """Return the typed, indexable form of an encoded value."""
    canonical = canonical_json(tree)
    if tree is None:
        return Indexed("null", None, None, canonical)
    if isinstance(tree, bool):  # no number: numeric queries never match booleans
        return Indexed("bool", None, None, canonical)
    if isinstance(tree, int):
        return Indexed("int", tree if -_INT64 <= tree < _INT64 else _approximate(tree),
                       None, canonical)
    if isinstance(tree, float):
        return Indexed("float", tree, None, canonical)
    if isinstance(tree, str):
        return Indexed("text", None, tree, canonical)
    if isinstance(tree, list) and tree and tree[0] == "float":
        value = _decode_float(tree[1])
        return Indexed("float", None if math.isnan(value) else value, None, canonical)
    return Indexed("structured", None, None, canonical)
