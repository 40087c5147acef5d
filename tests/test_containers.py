"""runstore.containers: the mmfutils semantics, with its flaws fixed."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
from hypothesis import given

from runstore.containers import Container, ContainerDict, ContainerList, Object
from runstore.errors import ReservedNameError

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
