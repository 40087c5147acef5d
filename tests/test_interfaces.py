"""runstore.interfaces: zope declarations, verification and rendering."""

from __future__ import annotations

import concurrent.futures
import importlib
import inspect
import pkgutil
import subprocess
import sys

import numpy as np
import pytest
from zope.interface import implementedBy
from zope.interface.exceptions import BrokenImplementation, BrokenMethodImplementation

import runstore
from runstore import Batch, ResultRun, Run, Store
from runstore.arrays import ArrayStore, MemoryArrayStore
from runstore.containers import Container, ContainerDict, ContainerList, Object
from runstore.encoding import FunctionRef, ObjectRef
from runstore.interfaces import (
    Attribute,
    IExecutor,
    Interface,
    IRun,
    describe_interface,
    implementer,
    verifyClass,
    verifyObject,
)


class IAdder(Interface):
    """Interface for objects that support addition."""

    value = Attribute("value", "Current value of object")

    def add(other):
        """Return self + other."""


def test_broken_signature_fails_verify_class():
    @implementer(IAdder)
    class AdderBroken:
        def add(self, one, another):
            return one + another

    with pytest.raises(BrokenMethodImplementation, match="too many arguments"):
        verifyClass(IAdder, AdderBroken)


def test_missing_attribute_fails_only_verify_object():
    @implementer(IAdder)
    class AdderBroken:
        def add(self, other):
            return other

    assert verifyClass(IAdder, AdderBroken)
    with pytest.raises(BrokenImplementation, match="value attribute was not provided"):
        verifyObject(IAdder, AdderBroken())


def test_correct_adder_passes_both():
    @implementer(IAdder)
    class Adder:
        def __init__(self, value=0):
            self.value = value

        def add(self, other):
            return self.value + other

    assert verifyClass(IAdder, Adder) and verifyObject(IAdder, Adder())


def test_describe_interface_as_rst_html_and_ipython():
    rst = describe_interface(IAdder, format="rst")
    assert rst.startswith("``IAdder``") and "``add(other)`` -- Return self + other." in rst
    html = describe_interface(IAdder, format="html")
    assert '<tt class="docutils literal">value</tt>' in html or "<code" in html
    assert "Current value of object" in html and "<html" not in html
    shown = describe_interface(IRun, format="ipython")
    assert "generate_id(parameters)" in shown._repr_html_()
    # mmfutils' alias and case-insensitive names
    assert describe_interface(IAdder, format="Jupyter")._repr_html_() == html
    assert describe_interface(IAdder, format="RST") == rst


def test_describe_interface_defaults_to_a_notebook_display_as_mmfutils():
    from IPython.display import HTML

    shown = describe_interface(IAdder)
    assert isinstance(shown, HTML)
    assert shown._repr_html_() == describe_interface(IAdder, format="html")


@pytest.mark.parametrize("fmt", ["pdf", "", 3])
def test_describe_interface_refuses_unknown_formats_like_mmfutils(fmt):
    with pytest.raises(NotImplementedError, match="use 'rst' .* 'html' .* 'ipython'") as info:
        describe_interface(IAdder, format=fmt)
    assert repr(fmt) in str(info.value)


WITHOUT_IPYTHON = """
import sys
sys.modules["IPython"] = None  # as if not installed
from runstore.interfaces import IRun, describe_interface
print(type(describe_interface(IRun)).__name__)
print(describe_interface(IRun) == describe_interface(IRun, format="rst"))
try:
    describe_interface(IRun, format="ipython")
except ImportError as exc:
    print(type(exc).__name__, exc.name)
"""


def test_describe_interface_without_ipython_returns_rst_by_default():
    out = subprocess.run([sys.executable, "-c", WITHOUT_IPYTHON], capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["str", "True", "OptionalDependencyError", "ipython"]


class Grid(Object):
    def __init__(self, N=4):
        self.N = N
        Object.__init__(self)


class Square(Run):
    def run(self, x=1):
        return {"y": x * x}


def _result_run(tmp):
    batch = Batch("b", path=tmp)
    batch.add_run(Square, {"x": 2})
    ids = [r.id for r in batch.run]
    other = Batch("other", store=batch.store)
    other.add_resultrun(ids)
    return other.run[0]


# One instance of every runstore class that declares an interface.
INSTANCES = {
    Object: lambda tmp: Grid(),
    Container: lambda tmp: Container(a=1),
    ContainerList: lambda tmp: ContainerList(a=1),
    ContainerDict: lambda tmp: ContainerDict(a=np.zeros(2)),
    FunctionRef: lambda tmp: FunctionRef("builtins.max"),
    ObjectRef: lambda tmp: ObjectRef("example.State", {"N": 1}),
    Run: lambda tmp: Batch("b", path=tmp).add_run(Square, {"x": 3}),
    ResultRun: _result_run,
    Store: lambda tmp: Store(tmp / "s.db"),
    ArrayStore: lambda tmp: ArrayStore(tmp / "arrays"),
    MemoryArrayStore: lambda tmp: MemoryArrayStore(),
}


def _implementations():
    for info in pkgutil.walk_packages(runstore.__path__, "runstore."):
        if info.name.endswith("__main__") or info.name.startswith("runstore.migrations"):
            continue  # entry points and Alembic scripts run when imported
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and list(implementedBy(cls)):
                yield cls


def test_every_implementation_is_verified_with_an_instance(tmp_path):
    found = set(_implementations())
    assert found == set(INSTANCES), "add an instance of each new implementation above"
    for cls in found:
        instance = INSTANCES[cls](tmp_path)
        assert isinstance(instance, cls)
        for iface in implementedBy(cls).flattened():
            if iface is Interface:
                continue
            assert verifyClass(iface, cls)
            assert verifyObject(iface, instance)


def test_standard_executors_provide_the_executor_interface():
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        assert verifyObject(IExecutor, pool, tentative=True)
