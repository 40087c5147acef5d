"""The file format page is enough: its reader, run without runstore, reads every value."""

from __future__ import annotations

import pickle
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import runstore
from runstore import Batch
from runstore.containers import Container
from runstore.encoding import qualified_name

from .strategies import strictly_equal

PAGE = Path(__file__).resolve().parent.parent / "docs" / "format.rst"


def reader_code() -> str:
    """The Python code block of the page's section 'Reading a bundle without runstore'."""
    text = PAGE.read_text()
    section = text.split("Reading a bundle without runstore", 1)[1]
    block = section.split(".. code-block:: python", 1)[1]
    lines = []
    for line in block.splitlines()[1:]:
        if line and not line.startswith("    "):
            break
        lines.append(line[4:])
    return "\n".join(lines)


class EveryKind(runstore.Run):
    """Parameters and results of every kind runstore stores."""

    def run(self, i=0, f=0.5, nan=float("nan"), b=True, s="s", none=None, raw=b"\x00\xff",
            z=1 - 2j, lst=[1, 2.5], tup=(1, "a"), st=frozenset({3}), d={"k": [1]},  # noqa: B006
            fn=max, obj=None, vec=None, _quiet=True):
        rng = np.random.default_rng(i)
        return {
            "x": rng.normal(size=5),
            "fields": {"E": np.arange(6, dtype=np.int16).reshape(2, 3),
                       "odd/key": np.array([True, False]), "": np.float32(1.5) * np.ones(2)},
            "snaps": [np.zeros(3, dtype=np.complex64), np.array(["ab", "c"]),
                      np.array(["2026-01-01"], dtype="datetime64[D]")],
            "scalar": np.array(3.25), "empty": np.empty((0, 2)),
            "stats": {"mean": float(i) / 3, "n": i, "ok": i % 2 == 0, "label": f"n={i}"},
            "none": None, "c": 1j, "fn": min, "obj": obj, "tags": {"a", "b"},
        }


@pytest.fixture
def made(tmp_path):
    batch = Batch("every", path=tmp_path)
    obj = Container(a=1, b=[2.0, "x"])
    for i in range(3):
        batch.add_run(EveryKind, {"i": i, "obj": obj, "vec": np.arange(i + 1.0)})
    batch(verbose=0)
    batch.add_run(EveryKind, {"i": 99, "s": "pending"})  # never computed
    bundle, _ = batch.export(tmp_path / "shared")
    return batch, bundle, tmp_path


def as_read(value: Any) -> Any:
    """What the page's reader gives for a value runstore gives."""
    if isinstance(value, runstore.encoding.FunctionRef):
        return {"callable": value.name}
    if isinstance(value, runstore.containers.Object):
        return {"object": qualified_name(type(value)),
                **{k: as_read(v) for k, v in value.__getstate__().items()}}
    if callable(value):
        return {"callable": qualified_name(value)}
    if isinstance(value, dict):
        return {k: as_read(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_read(v) for v in value]
    if isinstance(value, tuple):
        return tuple(as_read(v) for v in value)
    return value


def same(read: Any, expected: Any) -> bool:
    if isinstance(expected, dict):
        return isinstance(read, dict) and read.keys() == expected.keys() and all(
            same(read[k], expected[k]) for k in expected)
    if isinstance(expected, (list, tuple)):
        return type(read) is type(expected) and len(read) == len(expected) and all(
            map(same, read, expected))
    return strictly_equal(read, expected)


def run_reader(db: Path, out: Path) -> list[dict[str, Any]]:
    """Run the page's reader in a process where runstore cannot be imported."""
    script = (
        "import sys\n"
        "sys.modules['runstore'] = None  # importing runstore fails here\n"
        + reader_code() + "\n"
        "import pickle\n"
        f"runs = read_runs({str(db)!r})\n"
        "assert not [m for m in sys.modules if m.startswith('runstore') and sys.modules[m]]\n"
        f"open({str(out)!r}, 'wb').write(pickle.dumps(runs))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return pickle.loads(out.read_bytes())


@pytest.mark.parametrize("which", ["bundle", "store"])
def test_the_pages_reader_reads_every_value_without_runstore(made, which):
    batch, bundle, tmp_path = made
    db = bundle if which == "bundle" else tmp_path / "_res" / "every.db"
    runs = run_reader(db, tmp_path / f"{which}.pickle")
    expected = list(runstore.open_bundle(bundle).run) if which == "bundle" else list(batch.run)
    assert [r["id"] for r in runs] == [run.id for run in expected]
    assert [r["state"] for r in runs] == ["done"] * 3 + ["pending"]
    for read, run in zip(runs, expected):
        assert read["run_type"] == f"{EveryKind.__module__}.EveryKind"
        parameters = dict(run.parameters)
        vec = parameters.pop("vec")
        assert isinstance(read["parameters"].pop("vec"), dict) == (vec is not None)
        assert read["parameters"].pop("_quiet") is True  # private: passed to run, not hashed
        assert same(read["parameters"], as_read(parameters)), read["parameters"]
        if run.done:
            assert same(read["result"], as_read(run.result)), (read["result"], run.result)
        else:
            assert read["result"] is None


def test_the_reader_block_is_found_and_is_the_whole_reader():
    code = reader_code()
    assert "def read_runs(" in code and "def decode(" in code and "def read_array(" in code
    assert re.search(r"^import h5py$", code, re.MULTILINE)
