"""runstore.containers: the mmfutils semantics, with its flaws fixed."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
from hypothesis import given

from runstore.containers import (
    Container,
    ContainerDict,
    ContainerList,
    Object,
    ObjectBase,
    ObjectMixin,
)
from runstore.encoding import canonical_json, decode, encode
from runstore.errors import (
    EncodingError,
    ReservedNameError,
    StrictAttributeError,
    UnpicklableAttributeError,
)

from .strategies import containers


INIT_LOG = []


class State(Object):
    """The FFT-derivative object of the mmfutils document, in Python 3."""

    def __init__(self, N, L=1.0):
        self.N = N
        self.L = L
        Object.__init__(self)

    def init(self):
        INIT_LOG.append(self.N)
        dx = self.L / self.N
        self.x = np.arange(self.N, dtype=float) * dx - self.L / 2.0
        self.k = 2 * np.pi * np.fft.fftfreq(self.N, dx)
        if self.N % 2 == 0:
            self.k[self.N // 2] = 0.0

    def compute_derivative(self, f):
        return np.fft.ifft(self.k * 1j * np.fft.fft(f)).real


def test_state_example_from_the_mmfutils_document():
    s = State(256)
    assert repr(s) == "State(L=1.0, N=256)"
    assert s.picklable_attributes == ("L", "N")
    f = np.exp(3 * np.cos(2 * np.pi * s.x / s.L)) / 15
    df = (-2.0 * np.pi / 5.0 * np.exp(3 * np.cos(2 * np.pi * s.x / s.L))
          * np.sin(2 * np.pi * s.x / s.L) / s.L)
    assert np.allclose(s.compute_derivative(f), df)


def test_pickle_holds_only_defining_attributes_and_reruns_init():
    s = State(256)
    data = pickle.dumps(s)
    # x and k are 2 x 256 floats (4 kB); the pickle must not carry them.
    assert len(data) < 200
    INIT_LOG.clear()
    s1 = pickle.loads(data)
    assert INIT_LOG == [256]  # init ran again after unpickling
    assert s1.x.shape == (256,) and s1.initialized
    assert s1 == s


def test_init_runs_after_copy_and_deepcopy():
    s = State(8)
    for clone in (copy.copy(s), copy.deepcopy(s)):
        INIT_LOG.clear()
        assert clone == s and clone.initialized
        assert clone.x is not s.x  # rebuilt by init, not shared
    INIT_LOG.clear()
    copy.copy(s)
    assert INIT_LOG == [8]


def test_initialized_cleared_by_defining_change_and_set_by_init():
    s = State(256)
    assert s.initialized
    s.x = None  # temporary attribute: no effect on the flag
    assert s.initialized
    s.N = 64
    assert not s.initialized
    s.L = 2.0
    s.init()
    assert s.initialized and s.x.shape == (64,)
    assert repr(s) == "State(L=2.0, N=64)"


def test_subclass_init_without_super_still_sets_flag():
    class Plain(Object):
        def __init__(self):
            self.a = 1
            super().__init__()

        def init(self):
            self.b = self.a + 1

    p = Plain()
    assert p.initialized and p.b == 2 and p.picklable_attributes == ("a",)


def test_equality_by_type_and_defining_attributes():
    a, b = Container(x=np.arange(3), y=1), Container(x=np.arange(3), y=1)
    assert a == b
    b.temporary = "ignored"
    assert a == b
    assert a != Container(x=np.arange(3), y=2)
    assert a != ContainerDict(x=np.arange(3), y=1)  # another type
    assert Container(x=np.arange(3)) != Container(x=np.arange(3.0))  # another dtype


def test_container_example_from_the_mmfutils_document():
    c = Container(a=1, c=2, b="Hi there")
    assert repr(c) == "Container(a=1, b='Hi there', c=2)"
    assert tuple(c) == (1, "Hi there", 2)
    assert len(c) == 3 and "b" in c and "z" not in c
    c.b = "Ho there"
    assert repr(c) == "Container(a=1, b='Ho there', c=2)"
    c.large_temporary_array = np.ones((256, 256))
    assert repr(c) == "Container(a=1, b='Ho there', c=2)"
    c1 = pickle.loads(pickle.dumps(c))
    assert repr(c1) == "Container(a=1, b='Ho there', c=2)"
    with pytest.raises(AttributeError, match="large_temporary_array"):
        c1.large_temporary_array


def test_container_list_is_a_read_write_sequence():
    cl = ContainerList(a=1, b=2, c=3, d=4)
    assert list(cl) == [1, 2, 3, 4] and len(cl) == 4
    assert cl[0] == 1 and cl[-1] == 4
    assert cl[1:3] == ContainerList(b=2, c=3)
    assert 3 in cl and "c" not in cl  # a sequence: membership of values
    assert cl.index(3) == 2 and cl.count(4) == 1 and list(reversed(cl)) == [4, 3, 2, 1]
    cl[0] = 10
    cl[2:] = [30, 40]
    assert (cl.a, cl.c, cl.d) == (10, 30, 40)
    with pytest.raises(ValueError, match="as many values as it holds"):
        cl[2:] = [1, 2, 3]
    del cl[1]
    assert cl == ContainerList(a=10, c=30, d=40)
    assert pickle.loads(pickle.dumps(cl)) == cl
    with pytest.raises(IndexError):
        cl[5]


def test_container_dict_is_a_full_mutable_mapping():
    cd = ContainerDict(a=1)
    with pytest.raises(KeyError):  # mmfutils raised AttributeError
        cd["missing"]
    assert cd.get("missing", "default") == "default"
    cd["new"] = 2  # mmfutils forgot keys set this way
    assert cd.picklable_attributes == ("a", "new")
    again = pickle.loads(pickle.dumps(cd))
    assert again == cd and again["new"] == 2 and again.new == 2
    assert dict(cd) == {"a": 1, "new": 2} and list(cd) == ["a", "new"]
    cd.update({"b": 3}, c=4)
    assert cd.pop("b") == 3 and cd.setdefault("z", 9) == 9
    del cd["z"]
    with pytest.raises(KeyError):
        del cd["z"]
    assert sorted(cd.items()) == [("a", 1), ("c", 4), ("new", 2)]
    cd.temporary = 5  # attribute assignment of a new name stays temporary
    assert "temporary" not in cd and "temporary" not in pickle.loads(pickle.dumps(cd)).__dict__


def test_conversions_between_containers_dicts_and_pairs():
    c = Container(a=1, b=2)
    assert ContainerList(c) == ContainerList(a=1, b=2)
    assert ContainerDict(ContainerList(c)) == ContainerDict(a=1, b=2)
    assert Container(ContainerDict(a=1, b=2)) == c
    assert Container({"a": 1, "b": 2}) == c
    assert Container([("a", 1), ("b", 2)]) == c
    assert Container({"a": 1}, b=2) == c
    with pytest.raises(TypeError, match="at most one positional"):
        Container({"a": 1}, {"b": 2})


def test_keys_that_shadow_methods_or_are_not_strings_are_refused():
    with pytest.raises(ReservedNameError, match="'keys' cannot be a key of a ContainerDict"):
        ContainerDict(keys=1)
    with pytest.raises(ReservedNameError, match="'init'"):
        Container(init=1)
    cd = ContainerDict()
    with pytest.raises(ReservedNameError):
        cd["items"] = 1
    with pytest.raises(TypeError, match="keys must be strings"):
        cd[1] = 1


@given(containers)
def test_containers_survive_pickle(container):
    again = pickle.loads(pickle.dumps(container))
    assert again == container and type(again) is type(container)
    assert again.picklable_attributes == container.picklable_attributes


# -- mmfutils' options: _strict, picklable_attributes, _check, _getstate ----------


class Strict(Object):
    _strict = True
    _independent_attributes = ("note",)

    def __init__(self, a=1):
        self.a = a
        super().__init__()

    def init(self):
        self.derived = 2 * self.a  # init() may build any temporary state


def test_strict_object_refuses_an_undeclared_attribute_and_says_what_to_do():
    s = Strict()
    with pytest.raises(StrictAttributeError, match=r"cannot set 'typo' on this Strict") as info:
        s.typo = 1
    assert isinstance(info.value, AttributeError)
    assert info.value.name == "typo" and info.value.defining == ("a",)
    assert "before Object.__init__" in str(info.value) and "init()" in str(info.value)
    assert "typo" not in s.__dict__


def test_strict_object_accepts_defining_independent_and_init_attributes():
    s = Strict(a=3)
    assert s.derived == 6
    s.a = 4  # defining
    assert not s.initialized
    s.init()
    assert s.derived == 8 and s.initialized
    s.note = "kept"  # declared independent: allowed, does not invalidate
    assert s.initialized
    s._strict = False  # the options themselves stay settable
    s.other = 1
    assert pickle.loads(pickle.dumps(s)).picklable_attributes == ("a",)


def test_strict_given_at_construction_is_an_option_not_a_defining_attribute():
    c = Container(a=1, _strict=True)
    assert c.picklable_attributes == ("a",) and repr(c) == "Container(a=1)"
    with pytest.raises(AttributeError, match="'b'"):
        c.b = 2
    cd = ContainerDict(a=1, _strict=True)
    cd["b"] = 2  # a new key is defining, so a strict mapping takes it
    assert cd.b == 2 and cd.picklable_attributes == ("a", "b")
    assert Container(a=1).__dict__.get("_strict") is None  # the class default holds


def test_picklable_attributes_at_construction_fix_order_and_selection():
    c = Container(a=1, b=2, c=3, picklable_attributes=["b", "a"])
    assert repr(c) == "Container(b=2, a=1)"
    assert c.picklable_attributes == ("b", "a") and list(c) == [2, 1] and len(c) == 2
    assert c.c == 3 and "c" not in c  # set, but temporary
    again = pickle.loads(pickle.dumps(c))
    assert again.picklable_attributes == ("b", "a") and not hasattr(again, "c")
    assert copy.copy(c).picklable_attributes == ("b", "a")
    c.picklable_attributes = ["a", "b"]
    assert repr(c) == "Container(a=1, b=2)" and not c.initialized
    # The order is presentation only: the stored encoding, hence run ids, sort names.
    reordered = Container(a=1, b=2, picklable_attributes=["b", "a"])
    assert canonical_json(encode(reordered)) == canonical_json(encode(Container(a=1, b=2)))
    loaded = decode(encode(reordered))
    assert loaded == reordered and loaded.picklable_attributes == ("a", "b")


def test_picklable_attributes_set_before_base_init_of_an_object():
    class Ordered(Object):
        def __init__(self):
            self.z, self.y = 1, 2
            self.picklable_attributes = ["z", "y"]
            super().__init__()

    o = Ordered()
    assert repr(o) == "Ordered(z=1, y=2)" and o.initialized
    cd = ContainerDict(b=1, a=2, picklable_attributes=["b", "a"])
    cd["c"] = 3  # added after the given order
    assert list(cd) == ["b", "a", "c"]


def test_picklable_attributes_naming_nothing_or_twice_are_refused():
    with pytest.raises(ValueError, match="lists 'z', which is not an attribute"):
        Container(a=1, picklable_attributes=["a", "z"])
    with pytest.raises(ValueError, match="lists a more than once"):
        Container(a=1, picklable_attributes=["a", "a"])
    with pytest.raises(TypeError, match=r"write \['a'\] for one name"):
        Container(a=1, picklable_attributes="a")
    c = Container(a=1)
    with pytest.raises(ValueError, match="cannot list 'initialized'"):
        c.picklable_attributes = ["initialized"]
    assert c.picklable_attributes == ("a",) and c.initialized


def square(x):
    return x * x


class WithFunction(Object):
    def __init__(self, f=square):
        self.f = f
        super().__init__()


def test_an_unpicklable_defining_attribute_is_refused_at_construction():
    with pytest.raises(UnpicklableAttributeError, match="attribute 'f' of WithFunction") as info:
        WithFunction(f=lambda x: x**2)
    assert isinstance(info.value, ValueError)
    assert info.value.name == "f" and info.value.value_type == "function"
    assert "def at module level" in str(info.value) and "_check = False" in str(info.value)
    with pytest.raises(ValueError, match="'g' of Container"):
        Container(a=1, g=lambda: 0)
    assert pickle.loads(pickle.dumps(WithFunction())).f is square  # a module function is fine


def test_an_unpicklable_value_is_refused_when_a_defining_attribute_is_set():
    w = WithFunction()
    with pytest.raises(ValueError, match="'f'"):
        w.f = lambda x: x
    assert w.f is square and w.initialized  # unchanged
    w.temporary = lambda x: x  # temporary attributes are never pickled: any value
    cd = ContainerDict(a=1)
    with pytest.raises(ValueError, match="'b' of ContainerDict"):
        cd["b"] = lambda: 0
    assert "b" not in cd and cd.picklable_attributes == ("a",)


def test_check_false_turns_the_pickle_check_off_and_large_arrays_pass_it():
    class Unchecked(WithFunction):
        _check = False

    assert Unchecked(f=len).f is len
    local = lambda x: x  # noqa: E731  (the point is a value pickle refuses)
    assert Unchecked(f=local).f is local
    big = Container(x=np.zeros(10**7))  # checked without copying its 80 MB
    assert big.x.shape == (10**7,)


class RawState(ContainerDict):
    """mmfutils' Issue4: ``a = 2*b`` unless set; _getstate keeps the raw values."""

    def __init__(self, **kw):
        self.a = 1.0
        self.b = None
        super().__init__()
        self.update(kw)

    def _getstate(self):
        return {key: self.__dict__[key] for key in self.picklable_attributes}

    def __getattribute__(self, key):
        if key not in ("a", "b"):
            return super().__getattribute__(key)
        a, b = self.__dict__["a"], self.__dict__["b"]
        return {"a": 2 * b if a is None else a, "b": a / 2 if b is None else b}[key]


def test_getstate_hook_customises_repr_pickles_equality_and_stored_state():
    r = RawState(a=6)
    assert (r.a, r.b) == (6, 3.0)
    assert repr(r) == "RawState(a=6, b=None)"
    assert r.__getstate__() == {"a": 6, "b": None}
    again = pickle.loads(pickle.dumps(r))
    assert again == r and again.__dict__["b"] is None and again.b == 3.0
    assert r != RawState(a=6, b=3.0)  # the raw states differ
    assert encode(r) == ["object", ["tests.test_containers.RawState", [["a", 6], ["b", None]]]]


class Mixed(ObjectMixin, ObjectBase):  # mmfutils' own example composition
    def __init__(self, x=0):
        self.x = x
        super().__init__()

    def init(self):
        self.x1 = self.x + 1


class Bare(ObjectBase):  # no pickling support: the whole __dict__ is pickled
    def __init__(self, x=0):
        super().__init__(x=x)


def test_object_is_object_mixin_over_object_base_as_in_mmfutils():
    assert Object.__mro__[1:3] == (ObjectMixin, ObjectBase)
    m = Mixed(x=1)
    again = pickle.loads(pickle.dumps(m))
    assert again.x1 == 2 and again.picklable_attributes == ("x",)
    assert "x1" not in m.__getstate__()
    b = Bare(x=1)
    b.temporary = 5
    assert repr(b) == "Bare(x=1)" and b.picklable_attributes == ("x",)
    assert pickle.loads(pickle.dumps(b)).temporary == 5
    with pytest.raises(EncodingError, match="no canonical encoding"):
        encode(b)  # runstore stores Objects only
