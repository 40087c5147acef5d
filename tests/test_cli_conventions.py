"""The command line's conventions: store discovery, '-' for standard streams, one-line
errors with documented exit codes, click-formatted help, ``runstore schema``."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import runstore
from runstore.cli import main
from runstore.exitcodes import PREFIX, ExitCode

ROOT = Path(__file__).resolve().parent.parent

#: What each command needs besides STORE, so that only the bad argument is wrong.
EXTRA = {
    "show": ["abcd"],
    "sql": ["select 1"],
    "bundle": ["out"],
    "plot": ["--x", "A", "--y", "val", "-o", "p.png"],
    "export": ["--csv", "x.csv"],
    "remove": ["--all"],
}


def runstore_cli(*args, cwd=None, stdin=None):
    return subprocess.run([sys.executable, "-m", "runstore", *args], cwd=cwd,
                          capture_output=True, input=stdin)


def invoke(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def assert_one_line(result, code=None):
    """A failure: one line on stderr, in the common form, with a known exit code."""
    err = result.stderr if isinstance(result.stderr, str) else result.stderr.decode()
    status = getattr(result, "exit_code", getattr(result, "returncode", None))
    assert "Traceback" not in err, err
    assert err.startswith(PREFIX) and err.count("\n") == 1, err
    assert status in {c.value for c in ExitCode} and status != 0, (status, err)
    if code is not None:
        assert status == code, (status, err)


def arguments(command, store):
    """A command line of ``command`` with ``store`` where a store goes."""
    if command == "import":
        return [command, store, "mine.db"]
    if command == "import-batchpy":
        return [command, "--allow-pickle", ".", store]
    return [command, store, *EXTRA.get(command, [])]


@pytest.fixture
def text_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("notes.txt").write_text("not a store\n")
    Path("notes.db").write_text("not a store either\n")
    return tmp_path


@pytest.mark.parametrize("command", sorted(main.commands))
def test_every_command_fails_in_one_line_with_its_exit_code(command, text_files):
    # Naming nothing that exists: not found.
    assert_one_line(invoke(*arguments(command, "nowhere/x.db")),
                    ExitCode.OS_ERROR if command == "import-batchpy" else ExitCode.NOT_FOUND)
    # A text file, whatever its name: not a store.
    for name in ("notes.txt", "notes.db"):
        result = invoke(*arguments(command, name))
        if command == "import-batchpy":
            assert_one_line(result)  # the folder holds no batchpy files: told so
        else:
            assert_one_line(result, ExitCode.DAMAGED)
        assert Path(name).read_text().startswith("not a store")
    # An unknown option: usage.
    assert_one_line(invoke(command, "--no-such-option"), ExitCode.USAGE)
    # No store given, and none here (or a required argument left out).
    result = invoke(command)
    assert_one_line(result)
    assert result.exit_code in (ExitCode.USAGE, ExitCode.NOT_FOUND)
    # A store is not read from standard input.
    if command not in ("import-batchpy",):
        assert_one_line(invoke(*arguments(command, "-")), ExitCode.USAGE)


def test_unknown_commands_and_bad_values_are_usage_errors(text_files):
    assert_one_line(invoke("nope"), ExitCode.USAGE)
    assert_one_line(invoke("runs", "--limit", "-3"), ExitCode.USAGE)
    assert_one_line(invoke("runs", "--limit", "many"), ExitCode.USAGE)


def test_runstore_alone_prints_its_help_and_succeeds():
    alone = runstore_cli()
    assert (alone.returncode, alone.stderr) == (0, b"")
    assert alone.stdout.startswith(b"Usage: runstore [OPTIONS] COMMAND [ARGS]...")
    assert b"Commands:" in alone.stdout and b"worker" in alone.stdout
    assert alone.stdout == runstore_cli("--help").stdout


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A folder with a store in _res/, as a batch makes it."""
    monkeypatch.chdir(tmp_path)
    from .runs import ExampleRun

    batch = runstore.Batch("example")
    batch.add_factorial_runs(ExampleRun, {"A": [1, 2, 3, 4], "operator": [min, max]})
    batch(verbose=0)
    batch.store.close()
    return tmp_path


def test_the_tracebacks_of_issue_14_are_one_line_errors(project):
    Path("notes.txt").write_text("hello\n")
    cases = [
        (["runs", "A>=1" + "0" * 400], ExitCode.OK),
        (["runs", "A=1e999999"], ExitCode.OK),
        (["upgrade", "notes.txt"], ExitCode.DAMAGED),
        (["plot", "--x", "A", "--y", "val", "-o", "out.xyz"], ExitCode.USAGE),
        (["export", "--csv", "nodir/x.csv"], ExitCode.OS_ERROR),
        (["worker", "--import", "no_such_module"], ExitCode.UNAVAILABLE),
        (["bundle", "example", "nodir/out"], ExitCode.OS_ERROR),
        (["import", "_res/example.db", "nodir/mine.db"], ExitCode.OS_ERROR),
    ]
    for args, code in cases:
        done = runstore_cli(*args)
        assert b"Traceback" not in done.stderr, (args, done.stderr)
        if code == ExitCode.OK:
            assert done.returncode == 0, (args, done.stderr)
        else:
            assert_one_line(done, code)
    assert Path("notes.txt").read_text() == "hello\n"


def test_a_batch_name_never_resolves_past_a_store_that_cannot_be_read(tmp_path, monkeypatch):
    from .runs import Sweep

    monkeypatch.chdir(tmp_path)
    for name in ("x", "y"):
        batch = runstore.Batch(name)
        batch.add_factorial_runs(Sweep, {"A": [1]})
        batch.store.close()
    Path("_res/other.db").write_bytes(runstore_path_bytes := Path("_res/y.db").read_bytes())
    assert runstore_path_bytes  # a copy of y.db: it holds a batch 'y' too
    with sqlite3.connect("_res/x.db") as db:  # written by a newer runstore
        db.execute("UPDATE alembic_version SET version_num = '9999'")
    db.close()
    own = runstore_cli("runs", "x")  # its own store, x.db, cannot be read: said
    assert own.returncode == ExitCode.VERSION and b"_res/x.db has schema revision" in own.stderr
    both = runstore_cli("runs", "y")  # held by two readable stores: they are named
    assert both.returncode == ExitCode.NOT_FOUND and b"2 stores hold a batch 'y'" in both.stderr
    Path("_res/other.db").unlink()
    assert runstore_cli("runs", "y").returncode == 0
    nowhere = runstore_cli("runs", "z")
    assert nowhere.returncode == ExitCode.NOT_FOUND
    assert b"_res/x.db cannot be read, so its batches are unknown" in nowhere.stderr


def test_a_folder_without_stores_named_like_a_batch_leaves_the_name_to_the_batch(project):
    Path("example").mkdir()  # say, where the user keeps the batch's figures
    assert invoke("runs", "example", "A>=4").stdout.count("done") == 2
    Path("other").mkdir()
    missing = invoke("runs", "other")
    assert missing.exit_code == ExitCode.NOT_FOUND and "no runstore store in other" in (
        missing.output)
    assert invoke("runs", "./example").exit_code == ExitCode.NOT_FOUND  # a path: the folder


def test_a_store_is_found_from_a_folder_below_its_project_as_git_finds_a_repository(project):
    Path("figures/2026").mkdir(parents=True)
    os.chdir("figures/2026")
    status = runstore_cli("status")
    assert status.returncode == 0 and status.stdout.split()[5:7] == [b"example", b"0"]
    assert status.stderr == b"runstore: using the stores of ../../_res\n"  # said where
    assert invoke("runs", "example", "A>=4").stdout.count("done") == 2
    assert invoke("runs", "A>=4").stdout.count("done") == 2
    Path("example").mkdir()  # a folder named like the batch does not hide it here either
    assert invoke("runs", "example", "A>=4").stdout.count("done") == 2
    os.chdir(project)
    Path("figures/_res").mkdir()  # an empty _res/ on the way is no store
    Path("figures/_res/note.txt").write_text("not a store")
    Path("figures/stray.db").write_bytes(Path("_res/example.db").read_bytes())
    os.chdir("figures/2026")  # above, only _res/ folders count: not figures/stray.db
    assert "../../_res" in runstore_cli("status").stderr.decode()


def test_a_store_is_found_in_the_current_folder_and_its_res(project):
    assert invoke("status").stdout.split()[5:7] == ["example", "0"]
    assert invoke("runs", "example", "A>=4").stdout.count("done") == 2
    assert invoke("runs", "A>=4").stdout.count("done") == 2  # a filter, not a store
    assert invoke("runs", "_res", "A>=4").stdout.count("done") == 2
    assert invoke("runs", "_res/example.db", "A>=4").stdout.count("done") == 2
    rid = runstore.Batch("example", store="_res/example.db").run[0].id
    assert invoke("show", rid[:8]).stdout.startswith(f"run {rid}")
    os.chdir("_res")
    assert invoke("runs", "--limit", "0").exit_code == 0


MAKER = """
import subprocess, sys
import runstore
from tests.runs import Sweep

batch = runstore.Batch("live")
batch.add_factorial_runs(Sweep, {"A": [1, 2, 3]})
batch(verbose=0)
# The store is still open here: what the command line sees while its maker runs.
done = subprocess.run([sys.executable, "-m", "runstore", "status"], capture_output=True,
                      text=True)
print(done.returncode)
print(done.stdout, done.stderr)
"""


def test_a_store_is_found_while_the_process_that_made_it_has_it_open(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", MAKER], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    code, *shown = done.stdout.split()
    assert code == "0", done.stdout
    assert shown[5:7] == ["live", "0"] and shown[8] == "3", done.stdout


def test_discovery_counts_only_runstore_files_and_leaves_others_untouched(project):
    foreign = Path("other.sqlite")
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE t (x)")
    foreign_bytes = foreign.read_bytes()
    Path("data.db").write_text("x,y\n1,2\n")
    assert invoke("status").exit_code == 0
    assert foreign.read_bytes() == foreign_bytes
    assert sorted(p.name for p in Path().iterdir()) == [
        "_res", "data.db", "other.sqlite"]


def test_several_or_no_stores_are_told_with_their_paths(project, tmp_path, tmp_path_factory):
    Path("mine").mkdir()
    assert runstore_cli("import", "_res/example.db", "mine/copy.db").returncode == 0
    Path("copy.db").write_bytes(Path("mine/copy.db").read_bytes())
    result = invoke("status")
    assert_one_line(result, ExitCode.NOT_FOUND)
    assert "copy.db, _res/example.db" in result.stderr
    result = invoke("runs", "example")
    assert_one_line(result, ExitCode.NOT_FOUND)
    assert "2 stores hold a batch 'example'" in result.stderr
    os.chdir(tmp_path / "mine")
    assert invoke("status").exit_code == 0
    empty = tmp_path_factory.mktemp("empty")  # no store here, nor above
    os.chdir(empty)
    result = invoke("status")
    assert_one_line(result, ExitCode.NOT_FOUND)
    assert ("no runstore store in the current folder, its _res/ folder or the folders "
            "above them") in result.stderr


def test_dash_is_standard_output_and_input(project):
    done = runstore_cli("export", "--csv", "-")
    assert done.returncode == 0
    lines = done.stdout.decode().splitlines()
    assert lines[0].startswith("id,position,state") and len(lines) == 9
    assert done.stderr.decode() == "wrote 8 runs of batch 'example' to standard output\n"
    assert not Path("-").exists()
    image = runstore_cli("plot", "--x", "A", "--y", "val", "--hue", "operator", "-o", "-")
    assert image.returncode == 0 and image.stdout[:8] == b"\x89PNG\r\n\x1a\n"
    query = runstore_cli("sql", "example", "-", stdin=b"select count(*) as n from example")
    assert query.stdout.decode().split() == ["n", "8"]
    # One argument that is '-' or holds a space is the query, on the store found here.
    query = runstore_cli("sql", "-", stdin=b"select count(*) as n from example")
    assert query.returncode == 0 and query.stdout.decode().split() == ["n", "8"]
    query = runstore_cli("sql", "select max(A) as m from example")
    assert query.returncode == 0 and query.stdout.decode().split() == ["m", "4"]
    assert runstore_cli("sql").stdout.decode().startswith("example: id, position")


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 8 KiB filesystem (tmpfs), to fill."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_leaves_no_partial_file_and_an_old_one_as_it_was(project, tiny_disk):
    (tiny_disk / "kept.svg").write_text("an earlier figure")
    for args, name in [(("plot", "--x", "A", "--y", "val", "--hue", "operator"), "kept.svg"),
                       (("plot", "--x", "A", "--y", "val", "--hue", "operator"), "new.svg")]:
        done = runstore_cli(*args, "-o", str(tiny_disk / name))
        assert_one_line(done, ExitCode.OS_ERROR)
        err = done.stderr.decode()
        assert f"cannot write {tiny_disk / name}: No space left on device" in err, err
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["kept.svg"]
    assert (tiny_disk / "kept.svg").read_text() == "an earlier figure"
    done = runstore_cli("export", "--csv", str(tiny_disk / "small.csv"))
    assert done.returncode == 0 and (tiny_disk / "small.csv").read_text().count("\n") == 9
    assert runstore_cli("export", "--csv", "/dev/null").returncode == 0
    assert Path("/dev/null").is_char_device()


def test_schema_shows_parameters_levels_and_result_shapes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from .runs import Arrays, ExampleRun

    batch = runstore.Batch("example")
    batch.add_factorial_runs(ExampleRun, {"A": list(range(10)), "operator": [min, max]})
    batch(verbose=0)
    arrays = runstore.Batch("arrays", store=batch.store)
    arrays.add_factorial_runs(Arrays, {"n": [2, 3]})
    arrays(verbose=0)
    batch.store.close()
    out = invoke("schema", "--batch", "example").stdout.splitlines()
    assert out[0] == "batch example: 20 runs (20 done)"
    assert out[1].split() == ["parameter", "A", "int", "0,", "1,", "2,", "...,", "8,", "9",
                              "(10", "levels,", "2", "runs", "each)"]
    assert out[-1].split() == ["result", "val", "int", "20", "runs"]
    out = invoke("schema", "arrays").stdout
    assert "result m" in out and "array int16" in out and "shape (2, 2), (3, 3)" in out
    assert "result stats.mean" in out
    assert invoke("schema").stdout.count("batch ") == 2


def test_floats_read_as_floats_and_counts_agree_in_number(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from .runs import Arrays, Sweep

    batch = runstore.Batch("floats")
    batch.add_factorial_runs(Sweep, {"A": [1.0, 2.5], "B": [2.0], "C": [0, 10**6]})
    batch(verbose=0)
    arrays = runstore.Batch("one", store=batch.store)
    arrays.add_run(Arrays, {"n": 3})
    arrays(verbose=0)
    batch.store.close()
    rows = invoke("runs", "floats", "C=0").stdout.splitlines()
    assert rows[0].split() == ["id", "state", "A", "B", "C", "val"]
    assert [row.split()[2:] for row in rows[1:3]] == [["1.0", "2.0", "0", "2.0"],
                                                      ["2.5", "2.0", "0", "5.0"]]
    assert invoke("runs", "floats", "C>0", "A=2.5").stdout.splitlines()[-1] == "(1 run)"
    big = invoke("runs", "floats", "C>0", "A=1").stdout.splitlines()[1].split()
    assert big[4:] == ["1000000", "1000002.0"]  # an int stays an int, a float a float
    from runstore.views import float_text

    assert [float_text(x) for x in (0.1 + 0.2, 12345678.25, -0.0, 1e-7, float("inf"))] == [
        "0.3", "1.23457e+07", "-0.0", "1e-07", "inf"]
    out = invoke("schema", "floats").stdout.splitlines()
    assert out[1].split()[1:] == ["A", "float", "1.0,", "2.5", "(2", "runs", "each)"]
    one = invoke("schema", "one").stdout.splitlines()
    assert one[0] == "batch one: 1 run (1 done)"
    assert [line for line in one if "result c " in line][0].split() == [
        "result", "c", "complex", "1", "run"]
    assert [line for line in one if "result x " in line][0].split()[-4:] == [
        "shape", "(3,),", "1", "run"]


def test_booleans_read_as_booleans_and_filter_as_shown(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from .runs import Anything

    batch = runstore.Batch("flags")
    batch.add_factorial_runs(Anything, {"on": [True, False], "x": [1, 2]})
    batch(verbose=0)
    batch.store.close()
    rows = [row.split() for row in invoke("runs", "flags").stdout.splitlines()]
    at = rows[0].index("on")
    assert [row[at] for row in rows[1:5]] == ["True", "True", "False", "False"]
    shown = [row.split() for row in invoke("runs", "flags", "on=False").stdout.splitlines()]
    assert [row[at] for row in shown[1:-1]] == ["False", "False"] and shown[-1] == ["(2", "runs)"]
    assert "on=False" in invoke("plot", "--x", "x", "--y", "x", "-o", "p.png").stderr


@pytest.mark.parametrize("command", sorted(main.commands))
def test_help_is_formatted_by_click(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"Usage: runstore {command} ")
    assert all(len(line) <= 80 for line in lines), result.stdout
    text = [line for line in lines if line.strip() and not line.startswith("Usage")]
    assert all(line.startswith("  ") for line in text if not line.endswith(":")), lines


def test_runs_help_is_not_over_indented():
    lines = invoke("runs", "--help").stdout.splitlines()
    filters = next(line for line in lines if "Each FILTER" in line)
    assert filters.startswith("  Each FILTER")


def test_every_exit_code_is_documented():
    page = (ROOT / "docs" / "cli.rst").read_text()
    for code in ExitCode:
        assert f"``{code.value}``" in page and code.name in page, code


def test_a_store_written_before_the_mark_is_found_by_its_tables(tmp_path, monkeypatch):
    import shutil

    from runstore.discovery import stores_in

    shutil.copytree(ROOT / "tests" / "fixtures" / "store-0001", tmp_path / "old")
    monkeypatch.chdir(tmp_path / "old")
    before = sorted(p.name for p in Path("_res").iterdir())
    assert stores_in(Path(".")) == [Path("_res/fixture.db")]
    assert sorted(p.name for p in Path("_res").iterdir()) == before  # no -wal, no -shm
    result = invoke("status")  # found, and too old to read without an upgrade
    assert_one_line(result, ExitCode.VERSION)
    assert "runstore upgrade" in result.stderr


def test_a_store_in_a_folder_whose_name_is_not_utf8_works_from_python_and_the_cli(tmp_path):
    from .runs import Sweep

    folder = tmp_path / os.fsdecode(b"caf\xe9")  # Latin-1 bytes, as an old disk holds them
    batch = runstore.Batch("x", path=folder)
    batch.add_factorial_runs(Sweep, {"A": [1, 2]})
    batch(verbose=0)
    rid = batch.run[0].id
    batch.store.close()
    db = os.fsencode(folder / "_res" / "x.db")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    for args, expected in (([b"runs", db], b"(2 runs)"), ([b"status", db], b"x "),
                           ([b"show", db, rid[:8].encode()], f"run {rid}".encode()),
                           ([b"export", db, b"--csv", b"-"], b"id,")):
        done = subprocess.run([sys.executable, "-m", "runstore", *args], capture_output=True,
                              env=env)
        assert done.returncode == 0, (args, done.stderr)
        assert expected in done.stdout, (args, done.stdout)
    (found,) = runstore.Batch("x", path=folder).get_runs_with(A=2)
    assert found.done and found.result == {"val": 0}  # A*B + C with B = C = 0
    missing = subprocess.run([sys.executable, "-m", "runstore", "runs",
                              os.fsencode(folder / "_res" / "nope.db")],
                             capture_output=True, env=env)
    assert missing.returncode == ExitCode.NOT_FOUND and b"does not exist" in missing.stderr
