"""Objects defined by a few attributes, and attribute-bag containers.

An :class:`Object` is defined by the attributes set before the base
``Object.__init__`` runs (its *defining* attributes, listed by
``picklable_attributes``). Everything set later, in ``__init__`` after the base
call or in :meth:`Object.init`, is temporary: it is rebuilt by ``init()`` and is
never pickled, persisted or hashed. ``init()`` runs at the end of construction,
after unpickling, after :func:`copy.copy`, and after loading from a store.

The containers are Objects whose defining attributes are given as keyword
arguments:

- :class:`Container`: an attribute bag (``len``, ``in`` tests names, iteration
  yields values in name order);
- :class:`ContainerList`: the same, also a read-write sequence of its values;
- :class:`ContainerDict`: the same, also a full mutable mapping of its names.

Defining attributes are kept in lexicographic order of their names.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any, TypeVar, overload

import numpy as np

from .errors import ReservedNameError
from .interfaces import IContainer, IPersistent, implementer

__all__ = ["Object", "Container", "ContainerList", "ContainerDict"]

# Instance attributes that Object itself keeps; never defining.
_INTERNAL = frozenset({"_defining", "initialized"})

_F = TypeVar("_F", bound=Callable[..., None])


def _flags_initialized(init: _F) -> _F:
    """Wrap a subclass's ``init`` so that completing it sets ``initialized``."""

    @functools.wraps(init)
    def init_then_flag(self: Object, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.__dict__["initialized"] = True

    init_then_flag.__runstore_flags_initialized__ = True  # type: ignore[attr-defined]
    return init_then_flag  # type: ignore[return-value]


def values_equal(a: Any, b: Any) -> bool:
    """Return whether two attribute values are equal, comparing arrays whole.

    Arrays are equal when their dtypes (byte order aside), shapes and values
    are; NaN equals NaN, in arrays, floats and inside lists, tuples and dicts.
    """
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.dtype.newbyteorder("<") == b.dtype.newbyteorder("<")
            and bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
        )
    if type(a) is not type(b):
        return bool(a == b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(map(values_equal, a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(values_equal(a[k], b[k]) for k in a)
    if isinstance(a, complex):
        return values_equal(a.real, b.real) and values_equal(a.imag, b.imag)
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return bool(a == b)


@implementer(IPersistent)
class Object:
    """Base class for objects defined by a few attributes.

    Set every defining attribute in ``__init__``, then call
    ``Object.__init__(self)`` (keyword arguments given to it are set as
    defining attributes too). Put expensive, derived state in :meth:`init`.

    Examples
    --------
    >>> class Grid(Object):
    ...     def __init__(self, N, L=1.0):
    ...         self.N = N
    ...         self.L = L
    ...         Object.__init__(self)
    ...     def init(self):
    ...         self.dx = self.L / self.N
    >>> g = Grid(4)
    >>> g
    Grid(L=1.0, N=4)
    >>> g.picklable_attributes, g.dx, g.initialized
    (('L', 'N'), 0.25, True)
    >>> g.N = 8
    >>> g.initialized
    False
    """

    #: Whether :meth:`init` has run since a defining attribute last changed.
    initialized: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("init")
        if init is not None and not hasattr(init, "__runstore_flags_initialized__"):
            cls.init = _flags_initialized(init)  # type: ignore[method-assign]

    def __init__(self, **kwargs: Any) -> None:
        for name, value in kwargs.items():
            setattr(self, name, value)
        self.__dict__["_defining"] = sorted(
            name for name in self.__dict__ if name not in _INTERNAL
        )
        self.init()

    def init(self) -> None:
        """Finish initialization from the defining attributes.

        Called at the end of construction, after unpickling, after copying and
        after loading from a store. Override it to build derived (temporary)
        state; calling it sets :attr:`initialized`.
        """
        self.__dict__["initialized"] = True

    @property
    def picklable_attributes(self) -> tuple[str, ...]:
        """The names of the defining attributes, in lexicographic order."""
        return tuple(self.__dict__.get("_defining", ()))

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.__dict__.get("_defining", ()):
            self.__dict__["initialized"] = False
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        object.__delattr__(self, name)
        defining = self.__dict__.get("_defining", [])
        if name in defining:
            defining.remove(name)
            self.__dict__["initialized"] = False

    def __getstate__(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.picklable_attributes}

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__["_defining"] = sorted(state)
        self.init()

    def __repr__(self) -> str:
        args = ", ".join(
            f"{name}={getattr(self, name)!r}" for name in self.picklable_attributes
        )
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Object):
            return NotImplemented
        if type(self) is not type(other):
            return False
        mine, theirs = self.__getstate__(), other.__getstate__()
        return mine.keys() == theirs.keys() and all(
            values_equal(mine[name], theirs[name]) for name in mine
        )

    __hash__ = None  # type: ignore[assignment]  # mutable: not hashable


def _pairs(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Collect the items given to a container constructor."""
    if len(args) > 1:
        raise TypeError(
            f"a container takes at most one positional argument (a container, a "
            f"mapping or an iterable of (name, value) pairs), got {len(args)}"
        )
    items: dict[str, Any] = {}
    if args:
        (source,) = args
        items.update(source.__getstate__() if isinstance(source, Object) else source)
    items.update(kwargs)
    return items


@implementer(IContainer)
class Container(Object):
    """An attribute bag: defining attributes given as keyword arguments.

    ``len(c)`` counts the defining attributes, ``name in c`` tests their
    names, and iterating yields their values in name order. Attributes set
    later with ``c.name = value`` are temporary and are not pickled.

    Examples
    --------
    >>> c = Container(a=1, c=2, b='Hi there')
    >>> c
    Container(a=1, b='Hi there', c=2)
    >>> tuple(c), len(c), 'b' in c
    ((1, 'Hi there', 2), 3, True)
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        items = _pairs(args, kwargs)
        for name in items:
            self._check_name(name)
        Object.__init__(self, **items)

    @classmethod
    def _check_name(cls, name: object) -> None:
        if not isinstance(name, str):
            raise TypeError(
                f"container keys must be strings, got {name!r} of type "
                f"{type(name).__name__}; convert the key with str() first"
            )
        if name in _INTERNAL or hasattr(cls, name):
            raise ReservedNameError(name, cls.__name__)

    def __len__(self) -> int:
        return len(self.picklable_attributes)

    def __iter__(self) -> Iterator[Any]:
        return (getattr(self, name) for name in self.picklable_attributes)

    def __contains__(self, name: object) -> bool:
        return name in self.picklable_attributes


_C = TypeVar("_C", bound="ContainerList")


class ContainerList(Container, Sequence[Any]):
    """A container that is also a read-write sequence of its values.

    Items are the values in name order; ``cl[i]`` and ``cl[i:j]`` read them,
    ``cl[i] = v`` and ``cl[i:j] = values`` replace them (a slice assignment
    must keep the length, since new items would have no names), and
    ``del cl[i]`` removes the attribute. ``x in cl`` tests values, as for any
    sequence.

    Examples
    --------
    >>> cl = ContainerList(a=1, b=2, c=3)
    >>> cl[0], cl[-1], list(cl[1:])
    (1, 3, [2, 3])
    >>> cl[1] = 20
    >>> cl.b
    20
    """

    @overload
    def __getitem__(self, index: int) -> Any: ...

    @overload
    def __getitem__(self: _C, index: slice) -> _C: ...

    def __getitem__(self, index: int | slice) -> Any:
        names = self.picklable_attributes
        if isinstance(index, slice):
            return type(self)(**{name: getattr(self, name) for name in names[index]})
        return getattr(self, names[index])

    def __setitem__(self, index: int | slice, value: Any) -> None:
        names = self.picklable_attributes
        if isinstance(index, slice):
            selected, values = names[index], list(value)
            if len(values) != len(selected):
                raise ValueError(
                    f"a slice of a ContainerList can only be replaced by as many "
                    f"values as it holds ({len(selected)}), got {len(values)}: new "
                    f"items would have no names. Use a ContainerDict to add items."
                )
            for name, item in zip(selected, values):
                setattr(self, name, item)
        else:
            setattr(self, names[index], value)

    def __delitem__(self, index: int | slice) -> None:
        names = self.picklable_attributes
        selected = names[index] if isinstance(index, slice) else (names[index],)
        for name in selected:
            delattr(self, name)

    def __iter__(self) -> Iterator[Any]:
        return Container.__iter__(self)

    def __contains__(self, value: object) -> bool:
        return any(values_equal(item, value) for item in self)

    def __len__(self) -> int:
        return Container.__len__(self)


class ContainerDict(Container, MutableMapping[str, Any]):
    """A container that is also a mutable mapping from names to values.

    A missing key raises :class:`KeyError`, ``get(key, default)`` works, and
    ``cd['new'] = value`` adds a defining attribute (so it is pickled and
    persisted). Iteration yields the names, as for any mapping.

    Examples
    --------
    >>> cd = ContainerDict(a=1)
    >>> cd['b'] = 2
    >>> cd, cd.b, cd.get('z', 0), sorted(cd)
    (ContainerDict(a=1, b=2), 2, 0, ['a', 'b'])
    """

    def __getitem__(self, key: str) -> Any:
        if key not in self.picklable_attributes:
            raise KeyError(key)
        return getattr(self, key)

    def __setitem__(self, key: str, value: Any) -> None:
        self._check_name(key)
        defining: list[str] = self.__dict__["_defining"]
        if key not in defining:
            bisect.insort(defining, key)
        setattr(self, key, value)
        self.__dict__["initialized"] = False

    def __delitem__(self, key: str) -> None:
        if key not in self.picklable_attributes:
            raise KeyError(key)
        delattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.picklable_attributes)

    def __contains__(self, key: object) -> bool:
        return key in self.picklable_attributes

    def __len__(self) -> int:
        return Container.__len__(self)

    def update(self, *args: Any, **kwargs: Any) -> None:
        """Set several keys, from a mapping, container, or (key, value) pairs."""
        for key, value in _pairs(args, kwargs).items():
            self[key] = value
