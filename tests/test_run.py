"""Run objects are the same run when they are the same run of the same batch (batchpy's semantics)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings

import runstore
from runstore import Batch
from runstore.errors import RunError

from .runs import Echo, ExampleRun
from .strategies import values


def test_the_same_run_of_the_same_batch_is_equal_however_it_was_reached(in_tmp):
    batch = Batch("example")
    batch.add_factorial_runs(ExampleRun, {"A": [1, 2, 3], "operator": [min, max]})
    first = batch.run[0]
    assert first == batch.run[0] and hash(first) == hash(batch.run[0])
    assert first is not batch.run[0]  # new objects, the same run
    assert first in batch.get_runs_with(A=1) and batch.run[1] in batch.get_runs_with(A=1)
    assert batch.run[2] not in batch.get_runs_with(A=1)
    assert batch.run.index(batch.run[4]) == 4 and list(batch.run).index(batch.run[3]) == 3
    assert len({*batch.run, *batch.run}) == 6
    reopened = Batch("example")  # another object over the same store and batch
    assert reopened.run[5] == batch.run[5] and reopened.run == batch.run
    assert batch.run == list(reopened.run) and batch.run == tuple(batch.run)
    assert batch.run != list(batch.run)[:-1] and batch.run != list(reversed(batch.run))


def test_the_same_id_in_another_batch_or_store_is_another_run(in_tmp):
    one = Batch("one")
    one.add_run(Echo, {"x": 1})
    two = Batch("two", store=one.store)  # the same store, another batch
    two.add_run(Echo, {"x": 1})
    elsewhere = Batch("one", path="elsewhere")  # another store, the same batch name
    elsewhere.add_run(Echo, {"x": 1})
    ids = {one.run[0].id, two.run[0].id, elsewhere.run[0].id}
    assert len(ids) == 1
    assert one.run[0] != two.run[0] and one.run[0] != elsewhere.run[0]
    assert Echo(x=1) == Echo(x=1) and Echo(x=1) != one.run[0]  # runs without a batch
    assert one.run[0] != "not a run"


def test_an_empty_batch_equals_an_empty_list(in_tmp):
    batch = Batch("empty")
    assert batch.run == [] and batch.run == () and not (batch.run != [])
    batch.add_run(Echo, {"x": 1})
    assert batch.run != []
    with pytest.raises(TypeError):
        hash(batch.run)


def test_load_gives_the_stored_result_and_computes_nothing(in_tmp):
    batch = Batch("loaded")
    batch.add_run(Echo, {"i": 0, "x": 2.5})
    run = batch.run[0]
    assert run.load() is None and run.state == "pending"  # not computed by loading
    batch(verbose=0)
    assert batch.run[0].load() == {"r": 2.5}
    assert run.load() == {"r": 2.5}  # the same object sees the result once stored


def test_the_done_setter_clears_or_refuses(in_tmp):
    batch = Batch("flags")
    batch.add_factorial_runs(Echo, {"i": [0, 1]})
    with pytest.raises(RunError, match="cannot be marked done: compute it"):
        batch.run[0].done = True
    assert batch.run[0].state == "pending"
    batch(verbose=0)
    run = batch.run[0]
    run.done = True  # already done: nothing to do
    assert run.done
    run.done = False  # as clear(): pending again, its result forgotten
    assert not run.done and run.state == "pending" and run.result is None
    assert batch.run[0].state == "pending" and batch.run[1].done
    batch(verbose=0)
    assert batch.run[0].result == {"r": None}
    assert isinstance(RunError("x"), runstore.RunstoreError)


def test_a_run_list_finds_runs_by_id_and_knows_what_it_holds(in_tmp):
    batch = Batch("found")
    batch.add_factorial_runs(Echo, {"i": list(range(5))})
    other = Batch("other", store=batch.store)
    other.add_factorial_runs(Echo, {"i": list(range(5))})  # the same ids, another batch
    fourth = batch.run[3]
    assert batch.run.index(fourth) == 3 and fourth in batch.run
    assert batch.run.index(fourth, 2, 4) == 3
    for start, stop in ((4, None), (0, 3)):
        with pytest.raises(ValueError, match="is not in batch 'found'"):
            batch.run.index(fourth, start, stop)
    assert other.run[3] not in batch.run and Echo(i=3) not in batch.run
    assert "not a run" not in batch.run
    with pytest.raises(ValueError):
        batch.run.index(other.run[3])


class _Defaults(runstore.Run):
    def run(self, z=1.5, a="x", m=None, **extra):
        return {"z": z}


class _Private(runstore.Run):
    def run(self, a=0, _seed=1):
        return {"a": a}


def _packed_one_by_one(cls, levels):
    """What pack gives run by run, without a memo: the general path."""
    from runstore.run import pack

    names = list(levels)
    return [pack(cls, dict(zip(names, combo))) for combo in itertools.product(*levels.values())]


@pytest.mark.parametrize("cls, levels", [
    (_Defaults, {"z": [3, 1, 2.5], "a": ["p", "q"]}),  # given out of name order, m a default
    (_Defaults, {"m": [[1, 2], {"k": None}], "extra": [True, False, 7]}),
    (_Defaults, {"z": [1, 1, 1.0]}),  # the same run twice
    (_Private, {"a": [1, 2]}), (_Private, {"_seed": [1, 2], "a": [3]}),
])
def test_a_factorial_design_packs_as_each_run_alone(cls, levels):
    from runstore.run import Packer

    fast = Packer(cls, {}).factorial(levels)
    if fast is None:  # a private parameter: the packer does not take this way
        assert cls is _Private
        return
    fast = [(rid, doc, repr(forms)) for rid, doc, forms in fast]
    memoized = Packer(cls, {})
    names = list(levels)
    assert fast == [(rid, doc, repr(forms)) for rid, doc, forms in (
        memoized(dict(zip(names, combo))) for combo in itertools.product(*levels.values()))]
    assert [(rid, doc) for rid, doc, _ in fast] == [
        (rid, doc) for rid, doc, _ in _packed_one_by_one(cls, levels)]


@pytest.mark.parametrize("levels", [{"nope": [1]}, {"z": [1, object()]}, {"z": []}, {1: [2]}])
def test_a_factorial_design_that_cannot_take_the_fast_way_is_packed_run_by_run(levels):
    from runstore.run import Packer

    assert Packer(_Private, {}).factorial(levels) is None


@given(values)
@settings(max_examples=300, deadline=None)
def test_parameters_read_off_their_forms_are_those_decoding_gives(value):
    from runstore.run import pack, plain_parameters, unpack

    _, document, forms = pack(Echo, {"i": 1, "x": value})
    read = plain_parameters(Echo, document, forms)
    public, private = unpack(document, import_code=True)
    if value is None or type(value) in (bool, str) or (
            type(value) is int and -2**63 <= value < 2**63):
        assert read is not None  # a plain value: no decoding
    if read is not None:
        assert list(read) == ["i", "x"] and not private
        assert read == public and [type(v) for v in read.values()] == [
            type(public[k]) for k in read]
