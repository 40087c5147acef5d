"""runstore.encoding: canonical, typed, safe to decode."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
from hypothesis import given

from runstore import Batch, Container, ContainerDict, ContainerList, Object
from runstore.encoding import (
    ArrayRef,
    FunctionRef,
    ObjectRef,
    canonical_json,
    decode,
    encode,
    indexed,
    qualified_name,
)
from runstore.errors import DecodingError, EncodingError, UnresolvedReferenceError

from .runs import Anything
from .strategies import containers, strictly_equal, values


class Grid(Object):
    def __init__(self, N, L=1.0):
        self.N = N
        self.L = L
        Object.__init__(self)

    def init(self):
        self.x = np.linspace(0, self.L, self.N)


def module_level_function(x):
    return x


def text(value):
    return canonical_json(encode(value))


@pytest.mark.parametrize("value, expected", [
    (None, "null"),
    (True, "true"),
    (1, "1"),
    (1.0, "1.0"),
    ("1", '"1"'),
    (-0.0, "0.0"),
    (math.nan, '["float","nan"]'),
    (-math.inf, '["float","-inf"]'),
    (2**80, "1208925819614629174706176"),
    (1 + 2j, '["complex",[1.0,2.0]]'),
    (b"\x00\xff", '["bytes","AP8="]'),
    ([1, 2], '["list",[1,2]]'),
    ((1, 2), '["tuple",[1,2]]'),
    ({"b": 2, "a": 1}, '["dict",[["a",1],["b",2]]]'),
    ({3: "x", "3": "y"}, '["dict",[["3","y"],[3,"x"]]]'),
    ({"b", "a"}, '["set",["a","b"]]'),
    (frozenset({2, 1}), '["frozenset",[1,2]]'),
    (np.float64(2.5), "2.5"),
    (np.int32(7), "7"),
    (np.bool_(True), "true"),
    (np.str_("s"), '"s"'),
    (max, '["callable","builtins.max"]'),
    (np.sum, '["callable","numpy.sum"]'),
    (np.sin, '["callable","numpy.sin"]'),
    (float, '["callable","builtins.float"]'),
])
def test_encoding_of_each_supported_type(value, expected):
    assert text(value) == expected


def test_distinct_types_encode_differently():
    forms = [text(v) for v in (1, 1.0, True, "1", [1], (1,), {1}, frozenset({1}), 1 + 0j)]
    assert len(set(forms)) == len(forms)
    assert text([1, 2]) != text((1, 2))


def test_dict_order_does_not_matter():
    assert text({"a": 1, "b": 2}) == text({"b": 2, "a": 1})


def test_numpy_scalars_encode_as_their_python_value():
    assert text(np.float64(2.5)) == text(2.5)
    assert text(np.int64(3)) == text(3) != text(3.0)


def test_equal_arrays_share_an_encoding_and_one_element_changes_it():
    a = np.arange(12, dtype=float).reshape(3, 4)
    b = a.copy()
    assert text(a) == text(b)
    # layout and byte order do not matter; dtype, shape and content do
    assert text(np.asfortranarray(a)) == text(a)
    assert text(a.astype(">f8")) == text(a)
    b[1, 2] = 99.0
    assert text(a) != text(b)
    assert text(a) != text(a.reshape(4, 3))
    assert text(a) != text(a.astype(np.float32))


def test_arrays_are_collected_by_digest_for_the_caller():
    arrays = {}
    tree = encode({"x": np.arange(3)}, arrays=arrays)
    (digest,) = arrays
    assert digest in canonical_json(tree)
    back = decode(tree, arrays=arrays)
    assert np.array_equal(back["x"], np.arange(3))
    assert decode(tree) == {"x": ArrayRef("<i8", (3,), digest)}


def test_object_encodes_by_class_and_defining_attributes():
    g = Grid(4)
    g.scratch = "temporary, not encoded"
    assert encode(g) == ["object", [f"{Grid.__module__}.Grid", [["L", 1.0], ["N", 4]]]]
    assert text(Grid(4)) != text(Grid(5))
    assert text(Container(N=4, L=1.0)) != text(Grid(4))


@pytest.mark.parametrize("value, reason", [
    (lambda x: x, "lambda"),
    (object(), "no canonical encoding"),
    (np.array([object()]), "plain numeric"),
    (np.zeros(2, dtype=[("a", "i4")]), "plain numeric"),
    (np.datetime64("2020-01-01"), "numpy scalar type"),
    ([].append, "no importable module|names a different object"),
])
def test_unencodable_values_raise_a_clear_error(value, reason):
    with pytest.raises(EncodingError, match=reason) as info:
        encode({"k": [0, value]}, path="parameter 'p'")
    assert "parameter 'p'['k'][1]" in str(info.value)
    assert isinstance(info.value, TypeError)


def test_locally_defined_function_is_refused_with_the_line_to_move():
    def local(x, scale=2.0):
        return x

    with pytest.raises(EncodingError) as info:
        encode(local, path="parameter 'f'")
    message = str(info.value)
    assert "test_locally_defined_function_is_refused_with_the_line_to_move.<locals>.local is " \
        "defined inside test_locally_defined_function_is_refused_with_the_line_to_move()" in message
    assert "Move 'def local(x, scale=2.0): ...' out of" in message
    assert f"to the top level of module {__name__}" in message


def test_a_lambda_is_refused_with_a_def_that_replaces_it():
    with pytest.raises(EncodingError) as info:
        encode(lambda x, y=3: x ** 2 + y, path="parameter 'C'")
    fix = str(info.value).split("pass that function: ")[1]
    assert fix == "'def C(x, y=3): return x ** 2 + y'"
    namespace: dict = {}
    exec(fix.strip("'"), namespace)  # the line given is a working definition
    assert namespace["C"](2) == 7


def test_two_lambdas_on_one_line_are_told_apart_by_their_arguments():
    pair = {"f": [lambda a: a + 1, lambda b, c: b * c]}
    with pytest.raises(EncodingError, match=r"'def g\(b, c\): return b \* c'"):
        encode(pair["f"][1], path="parameter 'g'")
    same = [lambda a: 1, lambda a: 2]
    # Which one cannot be told from the source: a general form, still a def.
    with pytest.raises(EncodingError, match=r"'def h\(\.\.\.\): return \.\.\.'"):
        encode(same[0], path="parameter 'h'")


def test_a_lambda_as_a_batch_parameter_is_refused_and_nothing_is_added(in_tmp):
    batch = Batch("lambdas")
    with pytest.raises(EncodingError, match=r"parameter 'f'.*'def f\(x\): return x \+ 1'"):
        batch.add_factorial_runs(Anything, {"f": [abs, lambda x: x + 1]})
    assert len(batch.run) == 0


def test_function_refs_compare_and_refuse_to_be_called():
    ref = decode(encode(max))
    assert isinstance(ref, FunctionRef)
    assert ref == max and ref == FunctionRef("builtins.max") and ref != min
    with pytest.raises(UnresolvedReferenceError, match=r"resolve\(\)"):
        ref([1, 2])
    assert ref.resolve() is max
    assert decode(encode(module_level_function), import_code=True) is module_level_function


def test_decoding_never_imports_code_named_in_the_data():
    name = "runstore_test_module_that_must_not_be_imported"
    tree = ["list", [["callable", f"{name}.f"],
                     ["object", [f"{name}.C", [["a", 1]]]]]]
    ref, obj = decode(json.loads(canonical_json(tree)))
    assert name not in sys.modules
    assert ref == FunctionRef(f"{name}.f")
    assert isinstance(obj, ObjectRef) and obj.class_name == f"{name}.C" and obj.a == 1
    assert encode([ref, obj]) == tree  # references encode like what they name
    with pytest.raises(ImportError):
        obj.resolve()


def test_user_objects_come_back_as_refs_unless_code_import_is_allowed():
    tree = encode(Grid(8, 2.0))
    ref = decode(tree)
    assert isinstance(ref, ObjectRef) and (ref.N, ref.L) == (8, 2.0)
    rebuilt = decode(tree, import_code=True)
    assert rebuilt == Grid(8, 2.0) and rebuilt.x.shape == (8,)  # init() ran
    assert ref.resolve() == rebuilt


@pytest.mark.parametrize("tree, found", [
    ({"a": 1}, "where a \\[tag, payload\\] pair belongs"),
    (["nope", 1], "unknown tag 'nope'"),
    (["list", 5], "where a list belongs"),
    (["float", "big"], "malformed 'float' payload"),
    (["ndarray", {"dtype": "O", "shape": [1], "digest": "00"}], "array dtype"),
    (["object", [5, []]], "class name"),
    (["dict", [[["list", []], 1]]], "malformed 'dict' payload"),
    (float("nan"), "non-finite"),
])
def test_invalid_trees_raise_decoding_errors(tree, found):
    with pytest.raises(DecodingError, match=found) as info:
        decode(["list", [tree]])
    assert "value[0]" in str(info.value) and "runstore check" in str(info.value)


def test_qualified_name_of_builtins_and_classes():
    assert qualified_name(len) == "builtins.len"
    assert qualified_name(Grid) == f"{Grid.__module__}.Grid"


@pytest.mark.parametrize("value, kind, number, text_", [
    (None, "null", None, None),
    (True, "bool", None, None),
    (3, "int", 3, None),
    (2**70, "int", float(2**70), None),
    (2.5, "float", 2.5, None),
    (math.inf, "float", math.inf, None),
    (math.nan, "float", None, None),
    ("abc", "text", None, "abc"),
    ([2, 5, 8], "structured", None, None),
    (max, "structured", None, None),
])
def test_indexed_forms(value, kind, number, text_):
    form = indexed(encode(value))
    assert (form.kind, form.number, form.text) == (kind, number, text_)
    assert form.canonical == text(value)


@given(values)
def test_round_trip_through_canonical_text(value):
    arrays = {}
    tree = encode(value, arrays=arrays)
    stored = json.loads(canonical_json(tree))
    back = decode(stored, arrays=arrays)
    assert canonical_json(encode(back)) == canonical_json(tree)
    if not any(isinstance(v, (FunctionRef,)) for v in _leaves(back)):
        assert strictly_equal(back, value)


@given(containers)
def test_containers_round_trip_through_encode_and_decode(container):
    arrays = {}
    back = decode(json.loads(canonical_json(encode(container, arrays=arrays))), arrays=arrays)
    assert type(back) is type(container) and back == container
    assert isinstance(back, (Container, ContainerList, ContainerDict))


def _leaves(value):
    if isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from _leaves(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    else:
        yield value
