"""Objects defined by a few attributes, and attribute-bag containers.

An :class:`Object` is defined by the attributes set before the base
``Object.__init__`` runs (its *defining* attributes, listed by
``picklable_attributes``). Everything set later, in ``__init__`` after the base
call or in :meth:`Object.init`, is temporary: it is rebuilt by ``init()`` and is
never pickled, persisted or hashed. ``init()`` runs at the end of construction,
after unpickling, after :func:`copy.copy`, and after loading from a store.

As in mmfutils, :class:`Object` is :class:`ObjectMixin` (pickling of the
defining attributes alone, the ``_strict`` and ``_check`` options) over
:class:`ObjectBase` (defining attributes, ``init()``, ``initialized``,
``repr``). Defining attributes must pickle: a value that cannot is refused
when it is set, with :class:`~runstore.errors.UnpicklableAttributeError`.

The containers are Objects whose defining attributes are given as keyword
arguments:

- :class:`Container`: an attribute bag (``len``, ``in`` tests names, iteration
  yields values in name order);
- :class:`ContainerList`: the same, also a read-write sequence of its values;
- :class:`ContainerDict`: the same, also a full mutable mapping of its names.

Defining attributes are kept in lexicographic order of their names, unless
an order is given with ``picklable_attributes``.
"""

from __future__ import annotations

import bisect
import functools
import math
import pickle
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any, ClassVar, TypeVar, overload

import numpy as np

from .errors import ReservedNameError, StrictAttributeError, UnpicklableAttributeError
from .interfaces import IContainer, IPersistent, implementer

__all__ = ["ObjectBase", "ObjectMixin", "Object", "Container", "ContainerList", "ContainerDict"]

# Instance attributes that the base classes themselves keep; never defining.
_INTERNAL = frozenset({"_defining", "initialized", "_initializing", "_strict", "_check"})

# Options a constructor takes besides the defining attributes: the order of
# the defining attributes, and per-object settings of ObjectMixin's options.
_OPTIONS = ("picklable_attributes", "_strict", "_check")

_F = TypeVar("_F", bound=Callable[..., None])


def _flags_initialized(init: _F) -> _F:
    """Wrap a subclass's ``init`` so that completing it sets ``initialized``.

    While it runs, the object is *initializing*: a strict object then accepts
    any attribute, since ``init()`` is where derived state is built.
    """

    @functools.wraps(init)
    def init_then_flag(self: ObjectBase, *args: Any, **kwargs: Any) -> None:
        state = self.__dict__
        state["_initializing"] = state.get("_initializing", 0) + 1
        try:
            init(self, *args, **kwargs)
        finally:
            state["_initializing"] -= 1
            if not state["_initializing"]:
                del state["_initializing"]
        state["initialized"] = True

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


def _constructed(obj: object) -> bool:
    """Whether an object's construction (or loading) finished: init() completed once."""
    return "initialized" in obj.__dict__


class ObjectBase:
    """Defining attributes, deferred initialization, ``initialized`` and ``repr``.

    The attributes set before ``ObjectBase.__init__`` runs, and the keyword
    arguments given to it, are the object's defining attributes; then
    :meth:`init` runs. Setting a defining attribute later clears
    :attr:`initialized` until ``init()`` runs again. ``repr`` shows what
    :meth:`_getstate` returns.

    ObjectBase alone does not customise pickling (a pickle holds the whole
    ``__dict__`` and ``init()`` does not run on loading); :class:`Object`,
    which adds :class:`ObjectMixin`, is what runstore pickles and stores.

    ``picklable_attributes=[...]`` given to the constructor (or assigned
    before the base ``__init__``) fixes the defining attributes and their
    order; keyword arguments not listed there are set as temporary
    attributes.

    Examples
    --------
    >>> class A(ObjectBase):
    ...     def __init__(self, x=0):
    ...         super().__init__(x=x)
    ...     def init(self):
    ...         self.x1 = self.x + 1
    ...         super().init()
    >>> a = A(x=1)
    >>> a, a.x1, a.initialized
    (A(x=1), 2, True)
    >>> a.x = 2
    >>> a.initialized
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
        order = kwargs.pop("picklable_attributes", None)
        for option in _OPTIONS[1:]:
            if option in kwargs:
                self.__dict__[option] = kwargs.pop(option)
        for name, value in kwargs.items():
            setattr(self, name, value)
        if order is not None:
            self.picklable_attributes = order
        elif "_defining" not in self.__dict__:
            self.__dict__["_defining"] = sorted(
                name for name in self.__dict__ if name not in _INTERNAL
            )
        self._check_state()
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
        """The names of the defining attributes, in order.

        The order is lexicographic unless it was set: assigning a sequence of
        names (at construction, with ``picklable_attributes=[...]``, or later)
        makes exactly those attributes defining, in that order.
        """
        return tuple(self.__dict__.get("_defining", ()))

    @picklable_attributes.setter
    def picklable_attributes(self, names: Iterable[str]) -> None:
        owner = type(self).__name__
        if isinstance(names, str):
            raise TypeError(
                f"picklable_attributes of {owner} must be a sequence of attribute "
                f"names, got the string {names!r}; write [{names!r}] for one name"
            )
        names = list(names)
        for name in names:
            if not isinstance(name, str) or name in _INTERNAL or name in _OPTIONS:
                raise ValueError(
                    f"picklable_attributes of {owner} cannot list {name!r}: it is "
                    f"not an attribute name an object can persist"
                )
            if not hasattr(self, name):
                raise ValueError(
                    f"picklable_attributes of {owner} lists {name!r}, which is not "
                    f"an attribute of the object: set it first (as a keyword argument "
                    f"or before the base __init__), or leave it out"
                )
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(
                f"picklable_attributes of {owner} lists {', '.join(repeated)} more "
                f"than once; list each defining attribute once"
            )
        constructed = _constructed(self)
        if constructed:
            for name in names:
                self._check_attribute_value(name, getattr(self, name))
        self.__dict__["_defining"] = names
        if constructed:
            self.__dict__["initialized"] = False

    def _check_attribute(self, key: str, value: Any = None) -> bool:
        """Return whether setting ``key`` to ``value`` invalidates the object.

        Called for every attribute assignment; subclasses extend it (mmfutils'
        hook of the same name), and may raise to refuse the assignment.
        """
        return key in self.__dict__.get("_defining", ())

    def _check_attribute_value(self, key: str, value: Any) -> None:
        """Refuse a value for a defining attribute; ObjectBase accepts any."""

    def _check_state(self) -> None:
        """Check every defining attribute, at the end of construction."""
        for name in self.picklable_attributes:
            self._check_attribute_value(name, getattr(self, name))

    def _getstate(self) -> dict[str, Any]:
        """Return the state to persist: ``{name: value}`` of the defining attributes.

        This is what ``repr`` shows, what equality compares and (with
        :class:`ObjectMixin`) what is pickled, stored and hashed. Override it
        to customise the state, e.g. to store a raw value rather than what a
        property computes; the keys become the defining attributes when the
        object is loaded.
        """
        return {name: getattr(self, name) for name in self.picklable_attributes}

    def __setattr__(self, name: str, value: Any) -> None:
        if self._check_attribute(name, value) and _constructed(self):
            self.__dict__["initialized"] = False
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        object.__delattr__(self, name)
        defining = self.__dict__.get("_defining", [])
        if name in defining:
            defining.remove(name)
            self.__dict__["initialized"] = False

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={value!r}" for name, value in self._getstate().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ObjectBase):
            return NotImplemented
        if type(self) is not type(other):
            return False
        mine, theirs = self._getstate(), other._getstate()
        return mine.keys() == theirs.keys() and all(
            values_equal(mine[name], theirs[name]) for name in mine
        )

    __hash__ = None  # type: ignore[assignment]  # mutable: not hashable


class _Discard:
    """A file that forgets what is written to it: pickling only to test it."""

    def write(self, data: bytes) -> int:
        return len(data)


def _pickle_failure(value: Any) -> str | None:
    """Return why ``value`` cannot be pickled, or None if it can.

    Arrays are passed out of band (protocol 5), so checking a large array
    neither copies nor serializes its data.
    """
    try:
        pickle.Pickler(_Discard(), protocol=5, buffer_callback=lambda buffer: None).dump(value)
    except Exception as failed:  # whatever pickling raises, the value cannot persist
        return f"{type(failed).__name__}: {failed}"
    return None


class ObjectMixin:
    """Mixin for :class:`ObjectBase`: pickling of the defining attributes, and checks.

    A pickle holds what :meth:`ObjectBase._getstate` returns (the defining
    attributes) and nothing else; loading it restores them and runs
    ``init()``. Class attributes (as in mmfutils) tune the checks:

    ``_check = True``
        A defining attribute must pickle: a value that cannot (a lambda, a
        local function, an open file) raises
        :class:`~runstore.errors.UnpicklableAttributeError` at construction
        and whenever it is set. ``False`` turns the check off.
    ``_strict = False``
        If true, setting an attribute that is not defining, after
        construction and outside ``init()``, raises
        :class:`~runstore.errors.StrictAttributeError`: a typo can no longer
        create a stray attribute. ``_strict`` (and ``_check``) may also be given
        per object, as a keyword argument of the constructor.
    ``_independent_attributes = ()``
        Names that may always be set (also on strict objects) and never clear
        ``initialized``.
    ``_dependent_attributes = ()``
        Temporary names that may be set on strict objects; setting one clears
        ``initialized``, as for a defining attribute.

    Examples
    --------
    >>> class A(ObjectMixin, ObjectBase):
    ...     _strict = True
    ...     def __init__(self, x=0):
    ...         self.x = x
    ...         super().__init__()
    >>> a = A(x=1)
    >>> a.y = 2
    Traceback (most recent call last):
      ...
    runstore.errors.StrictAttributeError: cannot set 'y' on this A: it is strict ...
    """

    _check: ClassVar[bool] = True
    _strict: ClassVar[bool] = False
    _independent_attributes: ClassVar[Sequence[str]] = ()
    _dependent_attributes: ClassVar[Sequence[str]] = ()
    #: Names a strict object always accepts: the base classes' own settings.
    _reserved_attributes: ClassVar[Sequence[str]] = (
        "initialized", "picklable_attributes", "_independent_attributes",
        "_dependent_attributes", "_strict", "_check", "_reserved_attributes",
    )

    def _check_attribute(self, key: str, value: Any = None) -> bool:
        state = self.__dict__
        defining = key in state.get("_defining", ())
        if defining and _constructed(self):
            self._check_attribute_value(key, value)
        if key in self._independent_attributes:
            return False
        if defining or key in self._dependent_attributes:
            return True
        if (self._strict and _constructed(self) and not state.get("_initializing")
                and key not in self._reserved_attributes):
            raise StrictAttributeError(key, type(self).__name__,
                                       tuple(state.get("_defining", ())))
        return False

    def _check_attribute_value(self, key: str, value: Any) -> None:
        """Raise UnpicklableAttributeError if ``value`` cannot be pickled (and ``_check``)."""
        if not self._check:
            return
        reason = _pickle_failure(value)
        if reason is not None:
            raise UnpicklableAttributeError(
                key, type(self).__name__, type(value).__qualname__, reason)

    def __getstate__(self) -> dict[str, Any]:
        return dict(self._getstate())  # type: ignore[attr-defined]

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__["_defining"] = list(state)
        self.init()  # type: ignore[attr-defined]



@implementer(IPersistent)
class Object(ObjectMixin, ObjectBase):
    """Base class for objects defined by a few attributes.

    Set every defining attribute in ``__init__``, then call
    ``Object.__init__(self)`` (keyword arguments given to it are set as
    defining attributes too). Put expensive, derived state in :meth:`init`.
    Only the defining attributes are pickled, stored and hashed; each must
    pickle (see :class:`ObjectMixin` for ``_check``, ``_strict`` and the
    other options), and :meth:`~ObjectBase._getstate` may be overridden to
    customise what is persisted.

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
        options = {name: kwargs.pop(name) for name in _OPTIONS if name in kwargs}
        items = _pairs(args, kwargs)
        for name in items:
            self._check_name(name)
        Object.__init__(self, **items, **options)

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
            self._check_attribute_value(key, value)
            if defining == sorted(defining):
                bisect.insort(defining, key)  # keep name order
            else:
                defining.append(key)  # after an order that was given
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
