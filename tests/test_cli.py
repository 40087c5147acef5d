"""The runstore command line."""

from __future__ import annotations

import doctest
import re
import select
import shlex
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import runstore
from runstore import Store
from runstore.schema import SCHEMA_REVISION

ROOT = Path(__file__).resolve().parent.parent


def runstore_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "runstore", *args], cwd=cwd,
                          capture_output=True, text=True)


def test_upgrade_reports_the_revision(tmp_path):
    path = tmp_path / "s.db"
    Store(path).close()
    result = runstore_cli("upgrade", str(path))
    assert result.returncode == 0
    assert result.stdout.strip() == f"{path} is already at schema revision {SCHEMA_REVISION}."


def test_upgrade_brings_an_older_store_to_the_current_schema(tmp_path):
    fixture = Path(__file__).parent / "fixtures" / "store-0001"
    shutil.copytree(fixture, tmp_path / "old")
    path = tmp_path / "old" / "_res" / "fixture.db"
    result = runstore_cli("upgrade", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"{path} upgraded from schema revision 0001 to {SCHEMA_REVISION}.")


def test_upgrade_of_a_newer_store_fails_with_the_fix_and_no_traceback(tmp_path):
    path = tmp_path / "s.db"
    Store(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE alembic_version SET version_num = '9999'")
    result = runstore_cli("upgrade", str(path))
    assert result.returncode == 6  # ExitCode.VERSION
    assert "newer than this runstore knows" in result.stderr
    assert "pip install -U runstore" in result.stderr and "Traceback" not in result.stderr


def test_help_lists_the_commands():
    result = runstore_cli("--help")
    assert result.returncode == 0 and "upgrade" in result.stdout


def page_examples(page: Path) -> tuple[str, list[tuple[str, str]]]:
    """A docs page's setup script and its ``$ runstore ...`` lines with their output."""
    text = page.read_text()
    script = re.search(r"\.\. code-block:: python\n\n((?:    .*\n|\n)+)", text).group(1)
    examples: list[tuple[str, str]] = []
    for block in re.findall(r"\.\. code-block:: console\n\n((?:    .*\n|\n)+)", text):
        for chunk in re.split(r"^\$ ", textwrap.dedent(block), flags=re.M)[1:]:
            command, _, output = chunk.partition("\n")
            examples.append((command, output.rstrip("\n") + "\n" if output.strip() else ""))
    return textwrap.dedent(script), examples


@pytest.mark.slow
def test_the_command_line_page_runs_as_written(tmp_path):
    script, examples = page_examples(ROOT / "docs" / "cli.rst")
    (tmp_path / "example.py").write_text(script)
    subprocess.run([sys.executable, "example.py"], cwd=tmp_path, check=True,
                   capture_output=True)
    # what `runstore import-batchpy` reads: a _res/ folder batchpy wrote
    shutil.copytree(ROOT / "tests" / "fixtures" / "batchpy" / "batchpy-1.3.0",
                    tmp_path / "old" / "_res")
    documented = {shlex.split(command)[1] for command, _ in examples}
    from runstore.cli import main

    assert documented == set(main.commands), "every command has an example on docs/cli.rst"
    checker = doctest.OutputChecker()
    for command, expected in examples:
        argv = shlex.split(command)
        assert argv[0] == "runstore"
        result = (runstore_cli(*argv[1:], cwd=tmp_path) if argv[1] != "ui"
                  else first_words_of_server(argv[1:], tmp_path))
        assert result.returncode == 0, (command, result.stderr)
        assert checker.check_output(expected, result.stdout, doctest.ELLIPSIS), (
            f"$ {command}\nexpected:\n{expected}\ngot:\n{result.stdout}")
    assert (tmp_path / "val.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def first_words_of_server(args, cwd):
    """What a command that serves until stopped (``runstore ui``) prints first; then stopped."""
    process = subprocess.Popen([sys.executable, "-m", "runstore", *args], cwd=cwd,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([process.stdout], [], [], 60)
        line = process.stdout.readline() if ready else ""
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    return subprocess.CompletedProcess(args, 0 if line else 1, line, err)


@pytest.fixture
def example_store(in_tmp):
    from runstore import Batch

    from .runs import Arrays, ExampleRun, Flaky

    batch = Batch("example")
    batch.add_factorial_runs(ExampleRun, {"A": [1, 2, 3, 4], "B": [[1, 2], [2, 5, 8]],
                                          "operator": [min, max]})
    batch(verbose=0)
    arrays = Batch("arrays", store=batch.store)
    arrays.add_factorial_runs(Arrays, {"n": [2, 3, 4]})
    arrays(verbose=0)
    flaky = Batch("flaky", store=batch.store)
    flaky.add_factorial_runs(Flaky, {"x": [0, 1]})
    with pytest.raises(runstore.RunsFailedError):
        flaky(verbose=0)
    return batch


def csv_ids(result):
    assert result.returncode == 0, result.stderr
    return [line.split(",")[0] for line in result.stdout.splitlines()[1:]]


@pytest.mark.parametrize("filters, conditions", [
    (["A>=3", "operator=max"], {"A__ge": 3, "operator": max}),
    (["B=[2, 5, 8]", "A != 2"], {"B": [2, 5, 8], "A__ne": 2}),
    (["A__in=[1, 4]", "operator=min"], {"A__in": [1, 4], "operator": min}),
    (["A<2.5"], {"A__lt": 2.5}),
    (["A=2.0000001"], {"A": 2.0000001}),
    ([], {}),
])
def test_runs_selects_what_get_runs_with_selects(example_store, filters, conditions):
    expected = [r.id for r in example_store.get_runs_with(**conditions)] if conditions else \
        list(example_store.run.ids())
    result = runstore_cli("runs", "_res/example.db", "--batch", "example", "--csv", *filters)
    assert csv_ids(result) == expected and expected


def test_runs_table_and_limit(example_store):
    result = runstore_cli("runs", "_res/example.db", "--batch", "example", "--limit", "3")
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["id", "state", "A", "B", "operator", "val"]
    assert len(lines) == 5 and lines[-1] == "(16 runs; 13 more not shown, see --limit)"
    assert lines[1].split()[:3] == [example_store.run[0].id[:12], "done", "1"]


@pytest.mark.parametrize("args, message", [
    (["--batch", "example", "A>>3"], "cannot read the filter 'A>>3'"),
    (["--batch", "example", "Z=3"], "no run has a parameter 'Z'"),
    (["--batch", "example", "A__near=3"], "unknown operator"),
    (["--batch", "nope"], "no batch 'nope'"),
    ([], "has the batches ['example', 'arrays', 'flaky']; choose one with --batch NAME"),
])
def test_runs_errors_say_what_to_do(example_store, args, message):
    result = runstore_cli("runs", "_res/example.db", *args)
    assert result.returncode in (2, 3)  # usage, or not found
    assert message in result.stderr and "Traceback" not in result.stderr


def test_show_a_failed_run_gives_its_error_and_traceback(example_store):
    failed = runstore.Batch("flaky", store=example_store.store).run[1]
    result = runstore_cli("show", "_res/example.db", failed.id[:8])
    assert result.returncode == 0, result.stderr
    assert "  state     failed" in result.stdout
    assert "ValueError: odd x=1 is not allowed" in result.stdout
    assert "Traceback (most recent call last)" in result.stdout


def test_show_refuses_unknown_and_ambiguous_ids(example_store):
    ids = [r.id for r in example_store.run]
    prefixes = {}
    for rid in ids:
        prefixes.setdefault(rid[:1], []).append(rid)
    shared = next(p for p, group in prefixes.items() if len(group) > 1)
    result = runstore_cli("show", "_res/example.db", shared * 4)
    assert result.returncode == 3 and "no run with id" in result.stderr
    common = next(p for p, group in prefixes.items() if len(group) > 1)
    group = prefixes[common]
    length = next(n for n in range(1, 40) if len({g[:n] for g in group}) > 1)
    if length >= 4:
        result = runstore_cli("show", "_res/example.db", group[0][:length - 1])
        assert "it is the start of several ids" in result.stderr
    result = runstore_cli("show", "_res/example.db", "xyz")
    assert "give 4 to 40 hex digits" in result.stderr


def test_sql_only_reads(example_store):
    result = runstore_cli("sql", "_res/example.db", "delete from runs")
    assert result.returncode == 5  # refused
    assert "only reads" in result.stderr and "Traceback" not in result.stderr
    assert len(runstore.Batch("example", store="_res/example.db").run) == 16
    result = runstore_cli("sql", "_res/example.db", "select count(*) as n from runs", "--csv")
    assert result.stdout.splitlines() == ["n", "21"]


def test_gc_drops_orphans_and_cleared_arrays_and_keeps_the_rest(example_store):
    import os
    import time

    import numpy as np

    store = example_store.store
    arrays = runstore.Batch("arrays", store=store)
    kept = {r.id: r.result for r in arrays.run[1:]}
    (old_file,) = store.arrays.files()
    arrays.run[0].clear()
    folder = store.arrays.directory
    # Named as earlier runstores named side files (no writer in the name):
    # their age decides. A file not named so is not the store's, whatever its age.
    orphan = folder / "0000000000000001-0123456789ab.h5"
    young = folder / "0000000000000002-0123456789ab.h5"
    unrelated = folder / "0-orphan.h5"
    for path in (orphan, young, unrelated):
        shutil.copy(folder / old_file, path)
    hour_ago = time.time() - 3600
    os.utime(orphan, (hour_ago, hour_ago))
    os.utime(unrelated, (hour_ago, hour_ago))
    dry = runstore_cli("gc", "_res/example.db", "--dry-run")
    assert "would delete 1 side files" in dry.stdout and "would rewrite 1 side files" in dry.stdout
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [old_file, orphan.name, young.name, unrelated.name])
    result = runstore_cli("gc", "_res/example.db")
    assert result.returncode == 0, result.stderr
    assert "deleted 1 side files" in result.stdout
    assert "rewrote 1 side files without the 1 arrays" in result.stdout
    left = sorted(p.name for p in folder.iterdir())
    assert young.name in left and orphan.name not in left and old_file not in left
    assert unrelated.name in left
    (fresh,) = [name for name in left if name not in (young.name, unrelated.name)]
    import h5py

    with h5py.File(folder / fresh) as f:
        assert sorted(f) == sorted(kept)
    reopened = runstore.Batch("arrays", store="_res/example.db")
    for run in reopened.run[1:]:
        for key in ("x", "m", "z"):
            assert np.array_equal(run.result[key], kept[run.id][key])
    young.unlink()
    assert reopened.store.check().ok
    with pytest.warns(runstore.UncomputedRunsWarning, match="runstore worker"):
        reopened(verbose=0)  # a batch that does not know the class cannot compute it
    from .runs import Arrays

    reopened.add_run(Arrays, {"n": 2})
    reopened(verbose=0)
    assert reopened.run[0].done


def test_plot_draws_one_line_per_hue(example_store):
    import matplotlib

    matplotlib.use("Agg")
    ax = example_store.plot("A", "val", hue="operator", where={"B": [2, 5, 8]})
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert sorted(lines) == ["operator=max", "operator=min"]
    xs = list(lines["operator=max"].get_xdata())
    assert xs == [1, 2, 3, 4]
    expected = sorted((r.parameters["A"], r.result["val"])
                      for r in example_store.get_runs_with(operator=max, B=[2, 5, 8]))
    assert list(zip(xs, lines["operator=max"].get_ydata())) == expected
    with pytest.raises(runstore.errors.QueryError, match="no column 'nope'"):
        example_store.plot("A", "nope")
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.mark.parametrize("where", ["store", "bundle"])
def test_show_gives_the_scalars_and_names_the_arrays_whose_file_is_missing(tmp_path, where):
    from .runs import Arrays

    batch = runstore.Batch("arrays", path=tmp_path)
    batch.add_factorial_runs(Arrays, {"n": [3]})
    batch(verbose=0)
    (run,) = batch.run
    if where == "bundle":
        db, h5 = batch.export(tmp_path / "shared")
        h5.unlink()
    else:
        db = Path(batch.store.path)
        record = batch.store.run_record(run.id)
        (db.parent / "arrays.arrays" / record["array_file"]).unlink()
    batch.store.close()
    shown = runstore_cli("show", str(db), run.id[:10])
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "  stats.label = 'n=3'\n" in out and "  stats.n = 3\n" in out
    assert "  m: array int16 (3, 3) (not loaded)\n" in out
    assert "  x: array float64 (3,) (not loaded)\n" in out
    assert "(arrays not loaded: the array file" in out and "is missing (there is no" in out
    if where == "bundle":  # looked for beside the bundle, not in a folder it never has
        assert "shared.h5" in out and ".arrays" not in out
