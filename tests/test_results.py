"""runstore.results: a result's arrays are named by their key paths, unambiguously."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import runstore
from runstore import Batch
from runstore.containers import Container
from runstore.results import array_name, array_payloads, encode_result, path_component

from .strategies import strictly_equal


def names_of(result) -> list[str]:
    encoded = encode_result(result)
    in_tree = sorted(array_name(p) for p in array_payloads(encoded.tree))
    assert in_tree == sorted(encoded.arrays) == sorted(encoded.checksums)
    return sorted(encoded.arrays)


class Fields(Container):
    def __init__(self, E=None, B=None):
        self.E, self.B = E, B
        super().__init__()


def test_arrays_are_named_by_their_key_paths():
    a = np.arange(3.0)
    result = {"t": a, "fields": {"E": a, "B": a}, "snaps": [a, a], "pair": (a, {"q": a}),
              "n": 3}
    assert names_of(result) == ["fields/B", "fields/E", "pair/0", "pair/1/q", "snaps/0",
                                "snaps/1", "t"]


def test_a_result_that_is_not_a_mapping_is_under_value():
    assert names_of(np.ones(2)) == ["value"]
    assert names_of([np.ones(2), {"x": np.ones(1)}]) == ["value/0", "value/1/x"]


def test_the_attributes_of_containers_are_keys():
    assert names_of(Fields(E=np.ones(2), B=np.zeros(2))) == ["B", "E"]
    assert names_of({"f": Fields(E=np.ones(2))}) == ["f/E"]


@pytest.mark.parametrize("key, component", [
    ("a/b", "a%2Fb"), ("%", "%25"), ("50%/x", "50%25%2Fx"), (".", "%2E"),
    ("..", "%2E%2E"), ("", "%"), ("~x", "%7Ex"), ("x~", "x~"), ("a\x00b", "a%00b"),
    ("é λ ∑", "é λ ∑"), ("...", "..."), (" ", " ")])
def test_odd_keys_are_escaped_into_one_link_name(key, component):
    assert path_component(key) == component
    assert names_of({"k": {key: np.ones(1)}}) == [f"k/{component}"]


def test_keys_that_are_not_strings_are_named_by_their_str():
    assert names_of({1.5: np.ones(1), None: np.ones(1), (1, "a/b"): np.ones(1),
                     True: np.ones(1)}) == ["(1, 'a%2Fb')", "1.5", "None", "True"]


def test_clashing_keys_get_unique_names_that_no_key_gives():
    # 1 and '1' give the same name; '1' as a group would hold the array of 1.
    assert names_of({1: np.ones(1), "1": np.ones(1)}) == ["1", "~1"]
    assert names_of({1: np.ones(1), "1": {"x": np.ones(1)}}) == ["1/x", "~1"]
    assert names_of({"a": {1: np.ones(1), "1": {"x": np.ones(1)}}}) == ["a/1/x", "~1"]


def test_names_follow_from_the_result_not_the_insertion_order():
    a = np.ones(1)
    assert encode_result({1: a, "1": a}).json == encode_result({"1": a, 1: a}).json


class Odd(runstore.Run):
    def run(self, which=0):
        a = np.arange(4.0).reshape(2, 2)
        return {
            "t": a, "fields": {"E": a + 1, "B": [a + 2, {"deep": a + 3}]},
            "a/b": a + 4, "%": a + 5, ".": a + 6, "..": a + 7, "": a + 8, "~": a + 9,
            1: a + 10, "1": {"x": a + 11}, "é": np.array(["ü", "ß"]),
            "when": np.array(["2024-01-01"], dtype="datetime64[D]"),
            "obj": Fields(E=a + 12, B=np.float16(3)),
        }


def test_odd_results_round_trip_exactly_through_real_side_files(tmp_path):
    batch = Batch("odd", path=tmp_path)
    run = batch.add_run(Odd, {})
    batch(verbose=0)
    again = Batch("odd", path=tmp_path).add_run(Odd, {})  # reopened: read from the file
    assert again.done and strictly_equal(again.result, Odd.run(None))
    tree = json.loads(batch.store.run_record(run.id)["result"])
    names = {array_name(p) for p in array_payloads(tree)}
    with h5py.File(run.filename, "r") as f:
        stored: set[str] = set()
        f[run.id].visititems(lambda name, obj: stored.add(name) if isinstance(
            obj, h5py.Dataset) else None)
    assert stored == names
    assert {"t", "fields/E", "fields/B/0", "fields/B/1/deep", "a%2Fb", "%25", "%2E",
            "%2E%2E", "%", "%7E", "1/x", "é", "when", "obj/E"} < names


keys = st.one_of(st.text(max_size=4), st.integers(-3, 3), st.sampled_from(
    [".", "..", "", "/", "%", "~", "~0", "%2F", "a/b", 1.0, None]))
results = st.recursive(
    st.builds(lambda n: np.arange(n, dtype=np.int32), st.integers(0, 3)),
    lambda children: st.one_of(st.lists(children, max_size=3),
                               st.dictionaries(keys, children, max_size=4)),
    max_leaves=8)


@given(result=st.dictionaries(st.text(min_size=1, max_size=4).filter(
    lambda k: "\x00" not in k), results, max_size=4))
def test_every_array_gets_a_distinct_name_that_is_not_a_group_of_another(result):
    names = names_of(result)
    assert len(set(names)) == len(names)
    groups = {"/".join(n.split("/")[:i]) for n in names for i in range(1, n.count("/") + 1)}
    assert not groups & set(names)
    for name in names:
        assert all(part not in ("", ".", "..") and "\x00" not in part
                   for part in name.split("/"))


class _Mapping(dict):
    """A dict subclass: encoded by the general path, never the flat one."""


def _same_encoding(result: dict) -> None:
    try:
        general = encode_result(_Mapping(result))
    except runstore.errors.EncodingError as exc:
        with pytest.raises(type(exc)) as raised:
            encode_result(result)
        assert str(raised.value) == str(exc)
        return
    fast = encode_result(result)
    assert fast.json == general.json
    assert repr(fast.tree) == repr(general.tree)
    assert repr(list(fast.scalars.items())) == repr(list(general.scalars.items()))
    assert (fast.arrays, fast.checksums) == (general.arrays, general.checksums)


@pytest.mark.parametrize("result", [
    {}, {"val": 3}, {"b": 1.5, "a": -0.0, "c": True, "d": None, "e": "x"},
    {"": 1, "a b": 2, 'q"': 3, "z\\": 4, "~": 5, "A": 6},  # keys whose JSON sorts otherwise
    {"big": 2**63, "small": -2**63, "edge": 2**63 - 1}, {"nan": float("nan")},
    {"inf": float("-inf")}, {"é": 1}, {"s": "é"}, {"n": {"x": 1}}, {1: 2}, {"a\x00": 1},
    {"l": [1, 2]}, {"arr": np.ones(2)}, {"f": np.float64(2.5)}])
def test_flat_results_encode_as_the_general_path_does(result):
    _same_encoding(result)


_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5))


@given(st.dictionaries(st.text(max_size=4), _SCALARS, max_size=6))
def test_any_dict_of_scalars_encodes_as_the_general_path_does(result):
    _same_encoding(result)
