"""The ``runstore`` command line: one small function per command.

Reading commands (``status``, ``runs``, ``show``, ``schema``, ``sql``,
``export``, ``bundle``, ``plot``, ``ui``) open the store read-only, and work on
bundles as well. ``worker``, ``import``, ``import-batchpy``, ``remove``,
``check``, ``gc`` and ``upgrade`` write. Which store a STORE argument means
(or its absence) is :mod:`runstore.discovery`'s; how a failure is reported,
and with which exit code, :mod:`runstore.exitcodes`'.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from .errors import DecodingError, RunstoreError
from .exitcodes import Commands, ExitCode, Failure, os_error

if TYPE_CHECKING:
    from .batch import Batch
    from .discovery import Target
    from .store import Store

__all__ = ["main"]

FILTER_HELP = ("Each FILTER is NAME OP VALUE, with OP one of = != < <= > >= and VALUE a "
               "Python literal or a function's name: 'A>=3' operator=max 'B=[2, 5, 8]' "
               "'label=\"x\"'; NAME__in=[...] matches any of the values. NAME is a "
               "parameter or a scalar result ('val>20', 'stats.mean<0.5'; "
               "result__NAME when a parameter has the same name). Quote filters "
               "with < or > for the shell.")
STORE_HELP = ("STORE is a store's .db file (or a bundle's); a folder, for the one store in "
              "it or its _res/; a batch's name, for the one store found as when STORE is "
              "left out that holds it; or, left out, the one store in the current folder "
              "or its _res/, else in the nearest _res/ above.")
#: A STORE argument that may be left out (see :mod:`runstore.discovery`).
store_argument = click.argument("store", required=False, metavar="[STORE]")


def target(store: str | None, must_exist: bool = True) -> Target:
    """The store a STORE argument means (see :mod:`runstore.discovery`)."""
    from .discovery import resolve

    if store == "-":
        raise Failure("a store cannot be read from standard input ('-'): SQLite opens it as "
                      "a file; give its path", ExitCode.USAGE)
    return resolve(store, must_exist=must_exist)


@contextlib.contextmanager
def output(path: str, binary: bool = False) -> Iterator[IO[Any]]:
    """The file to write, or standard output for '-'; a file that cannot be opened is told.

    The file is written beside ``path`` under a hidden name and renamed to it
    once complete: a failure (a full disk) leaves no partial file, and an
    existing file at ``path`` as it was.
    """
    import errno

    if path == "-":
        yield click.get_binary_stream("stdout") if binary else click.get_text_stream("stdout")
        return
    target = Path(path)
    if target.exists() and not target.is_file() and not target.is_dir():
        # /dev/null, a FIFO, a terminal: written where it is, never replaced.
        try:
            f = open(path, "wb" if binary else "w", newline=None if binary else "")
        except OSError as exc:
            raise Failure(os_error(exc, "write"), ExitCode.OS_ERROR) from None
        with f:
            yield f
        return
    part = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        if target.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        f = open(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666),
                 "wb" if binary else "w", newline=None if binary else "")
    except OSError as exc:
        exc.filename = path  # the name the user gave, not the hidden one
        raise Failure(os_error(exc, "write"), ExitCode.OS_ERROR) from None
    try:
        with f:
            yield f
        os.replace(part, target)
    except BaseException as exc:
        part.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise Failure(f"cannot write {path}: {exc.strerror}; nothing was written there. "
                          "Free some space, or give a path on another disk",
                          ExitCode.OS_ERROR) from None
        raise


def _named(path: str) -> str:
    return "standard output" if path == "-" else path


def tell(message: str, to_stdout: bool = True) -> None:
    """Say what was done: on stdout, or on stderr when stdout carries the data."""
    click.echo(message, err=not to_stdout)


def open_store(path: str, readonly: bool = True) -> Store:
    """Open a store file, or a bundle's ``.db`` (its ``.h5`` beside it)."""
    from .store import Store, arrays_folder

    db = Path(path)
    _regular(db)
    from .check import bundle_evidence

    beside = None
    if not arrays_folder(db).exists() and (db.with_suffix(".h5").exists()
                                           or bundle_evidence(str(db)) is not None):
        beside = db.parent  # a bundle: its arrays are in the .h5 beside it
    return Store(db, readonly=readonly, arrays=beside)


def _regular(db: Path) -> None:
    """Refuse a path that is not a regular file without opening it (a FIFO would block)."""
    from .storefile import require_regular_files

    require_regular_files(db)


def choose_batch(store: Store, name: str | None) -> Batch:
    """The batch named, or the store's only batch."""
    from .batch import Batch

    if name is None:
        names = store.batch_names()
        if len(names) != 1:
            raise click.UsageError(f"{store.path} has the batches {names}; choose one with "
                                   "--batch NAME")
        name = names[0]
    return Batch(name, store=store)


def conditions(store: Store, filters: tuple[str, ...]) -> dict[str, Any]:
    """``get_runs_with`` keywords from command-line filters."""
    from .query import filter_conditions

    return filter_conditions(store, filters)


def echo_table(columns: list[str], rows: list[tuple[Any, ...]], as_csv: bool = False,
               full_ids: bool = False, whole: bool = False) -> None:
    """Print rows as aligned columns, or as CSV."""
    from .views import display, shortened

    if as_csv:
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
        return
    cells = [[display(v) if whole else shortened(display(v)) for v in row]
             for row in rows]  # CSV has them whole
    if "id" in columns and not full_ids:
        at = columns.index("id")
        for row in cells:
            row[at] = row[at][:12]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


@click.group(name="runstore", cls=Commands, epilog=STORE_HELP + " A failure is one line on "
             "standard error, 'runstore: error: ...', with the exit status " + ", ".join(
                 f"{code.value} {code.name.lower().replace('_', ' ')}" for code in ExitCode
                 if code) + ".")
@click.version_option(package_name="runstore")
def main() -> None:
    """Run batches of calculations once, and keep their results."""


@main.command(epilog=STORE_HELP)
@store_argument
def status(store: str | None) -> None:
    """Show STORE's runs per batch and state, and the runs in flight."""
    import time

    opened = open_store(target(store).path)
    counts = opened.counts_by_batch()
    states = ("pending", "running", "done", "failed")
    width = max([len("batch")] + [len(name) for name in counts])
    click.echo(f"{'batch':<{width}}  " + "  ".join(f"{s:>8}" for s in states))
    for name, by_state in counts.items():
        click.echo(f"{name:<{width}}  " + "  ".join(f"{by_state.get(s, 0):>8}" for s in states))
    running = opened.in_flight()
    if running:
        click.echo(f"\n{len(running)} runs in flight:")
        now = time.time()
        for run in running[:50]:
            left = (run["lease_expires"] or now) - now
            click.echo(f"  {run['id'][:12]}  {run['run_type']}  on {run['host']} pid "
                       f"{run['pid']}  attempt {run['attempts']}  lease {left:.0f} s")
    opened.close()


@main.command(epilog=STORE_HELP)
@store_argument
@click.option("--batch", "batch_name", help="Only this batch (default: every batch).")
@click.option("--processes", default=1, show_default=True, type=click.IntRange(min=1),
              help="Worker processes to run on this host.")
@click.option("--import", "modules", multiple=True, metavar="MODULE",
              help="Import MODULE first (for run classes its name does not locate).")
@click.option("-v", "--verbose", is_flag=True, help="Show a progress bar per batch.")
def worker(store: str | None, batch_name: str | None, processes: int,
           modules: tuple[str, ...], verbose: bool) -> None:
    """Compute STORE's pending runs until none is left, beside other workers.

    Run classes are imported by the module path the store names (this is the
    step that allows importing code; opening a store never does), from the
    installed packages, PYTHONPATH and, after them, the current folder. Runs
    whose class cannot be imported are left pending, and the worker ends with
    an error saying so.
    """
    import importlib

    from .progress import summary
    from .worker import work, work_in_processes

    found = target(store)
    store, batch_name = found.path, batch_name or found.batch
    # As `python script.py` finds the modules beside it: last, shadowing nothing installed.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    for module in modules:  # told here in one line, not from inside a worker process
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise Failure(f"--import {module}: cannot import it ({exc}); check the name, and "
                          "that it can be imported from here (its folder on PYTHONPATH)",
                          ExitCode.UNAVAILABLE) from None
    before = _states(store, batch_name)
    skipped: dict[str, str] = {}
    try:
        if processes > 1:
            computed = work_in_processes(store, processes, batch_name, modules)
        else:
            computed = sum(work(store, batch_name, modules, verbose=int(verbose),
                                skipped=skipped).values())
    except KeyboardInterrupt:
        after = _states(store, batch_name)
        raise KeyboardInterrupt(
            f"interrupted: {after.get('done', 0)} of {sum(after.values())} results kept; "
            "run the worker again to resume") from None
    after = _states(store, batch_name)  # this worker's runs only: others may work beside it
    click.echo(summary(before, computed, pending=after.get("pending", 0)))
    if skipped and after.get("pending", 0):
        raise Failure(f"{after['pending']} runs left pending: {next(iter(skipped.values()))}",
                      ExitCode.UNAVAILABLE)


def _states(store: str, batch_name: str | None) -> dict[str, int]:
    """The runs of STORE (or of one batch) by state, summed over its batches."""
    opened = open_store(store)
    try:
        by_batch = opened.counts_by_batch()
    finally:
        opened.close()
    total: dict[str, int] = {}
    for name, counts in by_batch.items():
        if batch_name in (None, name):
            for state, n in counts.items():
                total[state] = total.get(state, 0) + n
    return total


@main.command(epilog=STORE_HELP + " FILE '-' is standard output (then what was written "
              "is told on standard error).")
@store_argument
@click.option("--batch", "batch_name", help="The batch (default: the only one).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, allow_dash=True),
              metavar="FILE", help="Write CSV to FILE.")
@click.option("--parquet", "parquet_path", type=click.Path(dir_okay=False, allow_dash=True),
              metavar="FILE", help="Write Parquet to FILE (needs pandas and pyarrow).")
def export(store: str | None, batch_name: str | None, csv_path: str | None,
           parquet_path: str | None) -> None:
    """Export a batch's table (its SQL view) as CSV or Parquet."""
    import csv

    if not (csv_path or parquet_path):
        raise click.UsageError("give --csv FILE and/or --parquet FILE")
    if csv_path == parquet_path == "-":
        raise click.UsageError("only one of --csv and --parquet can write to standard output")
    found = target(store)
    opened = open_store(found.path)
    batch = choose_batch(opened, batch_name or found.batch)
    batch_name = batch.name
    if csv_path:
        from .table import batch_table, csv_cell

        table = batch_table(opened, batch._id)
        with output(csv_path) as f:
            writer = csv.writer(f)
            writer.writerow(table.columns)
            writer.writerows([csv_cell(v) for v in row] for row in table.rows)
        tell(f"wrote {len(table.rows)} runs of batch {batch_name!r} to {_named(csv_path)}",
             "-" not in (csv_path, parquet_path))
    if parquet_path:
        frame = batch.to_dataframe()
        try:
            import io

            from .table import for_parquet

            data = io.BytesIO()
            for_parquet(frame).to_parquet(data)
        except ImportError as exc:
            from .errors import OptionalDependencyError

            raise OptionalDependencyError("pyarrow", "dataframe", "--parquet") from exc
        with output(parquet_path, binary=True) as f:
            f.write(data.getvalue())
        tell(f"wrote {len(frame)} runs of batch {batch_name!r} to {_named(parquet_path)}",
             "-" not in (csv_path, parquet_path))
    opened.close()


@main.command(epilog=FILTER_HELP + "\n\n" + STORE_HELP)
@store_argument
@click.argument("filters", nargs=-1, metavar="[FILTER]...")
@click.option("--batch", "batch_name", help="The batch (default: the only one).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=0),
              help="Show at most this many runs (0: all).")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV: every run, full ids.")
def runs(store: str | None, filters: tuple[str, ...], batch_name: str | None, limit: int,
         as_csv: bool) -> None:
    """List a batch's runs that match every FILTER: id, state, parameters, scalar results.

    (CSV adds each run's runtime and finished_at; `runstore show` gives everything about one run.)

    \b
    Examples:
      runstore runs example.db 'A>=3' operator=max
      runstore runs example 'A__in=[1, 2]' --csv > runs.csv
    """
    store, filters = store_and_filters(store, filters)
    found = target(store)
    opened = open_store(found.path)
    batch = choose_batch(opened, batch_name or found.batch)
    wanted = conditions(opened, filters)
    ids = [row.id for row in opened.query(batch._id, wanted)] if wanted else None
    if as_csv:
        from .table import batch_table, csv_cell

        table = batch_table(opened, batch._id, ids)
        columns, rows = table.columns, [tuple(csv_cell(v) for v in r) for r in table.rows]
    else:
        columns, rows = opened.view_rows(batch._id, ids)
    hidden = {"position"} if as_csv else {"position", "runtime", "finished_at"}
    keep = [i for i, c in enumerate(columns) if c not in hidden]
    columns, rows = [columns[i] for i in keep], [tuple(r[i] for i in keep) for r in rows]
    if as_csv:
        echo_table(columns, rows, as_csv=True)
    else:
        shown = rows if limit == 0 else rows[:limit]
        echo_table(columns, shown)
        more = len(rows) - len(shown)
        click.echo(f"({len(rows)} run{'' if len(rows) == 1 else 's'}"
                   + (f"; {more} more not shown, see --limit)" if more else ")"))
    opened.close()


def store_and_filters(store: str | None, filters: tuple[str, ...]
                      ) -> tuple[str | None, tuple[str, ...]]:
    """A first argument that is a filter (and no file) is a filter: STORE was left out."""
    import os
    import re

    if store is not None and not os.path.lexists(store) and re.match(
            r"^\s*[\w.]+\s*(=|!=|<|>)", store):
        return None, (store, *filters)
    return store, filters


@main.command(epilog=STORE_HELP)
@click.argument("store", metavar="[STORE]")
@click.argument("run", required=False, metavar="RUN")
def show(store: str, run: str | None) -> None:
    """Show one run: state, parameters, results, provenance and error.

    RUN is the run's id, or enough of its first digits to tell it apart.
    """
    import os

    import numpy as np

    from .batch import Batch
    from .summary import summary

    named: str | None = store
    if run is None:  # one argument: the run, in the store found here
        if os.path.lexists(store):
            raise click.UsageError(f"which run of {store}? give RUN after it (its id, or "
                                   "the first digits of it; `runstore runs` lists them)")
        named, run = None, store
    opened = open_store(target(named).path)
    rid = opened.find_run(run)
    held = opened.batches_of(rid)
    found = Batch(held[0][0], store=opened).run[held[0][1]]
    record = opened.run_record(rid)
    click.echo(f"run {rid}")
    click.echo(f"  type      {record['run_type']}")
    click.echo(f"  state     {record['state']}")
    click.echo("  batches   " + ", ".join(f"{name} (position {pos})" for name, pos in held))

    def section(title: str, load: Any) -> None:
        click.echo(title)
        try:
            items = load()
        except RunstoreError as exc:
            click.echo(f"  cannot be loaded: {exc}")
            return
        for key, value in items:
            if isinstance(value, np.ndarray) and value.ndim > 0:
                click.echo(f"  {key}: array {value.dtype} {value.shape}")
            elif isinstance(value, _Unloaded):
                click.echo(f"  {key}: {value}")
            else:  # large arrays inside lists or tuples summarised
                click.echo(f"  {key} = {summary(value)}")

    section("parameters", lambda: found.parameters.items())
    if record["state"] == "done":
        unloaded: list[str] = []
        section("result", lambda: _result_items(found, record["result"], unloaded))
        for problem in unloaded:
            click.echo(f"  (arrays not loaded: {problem})")
    if record["error_type"]:
        click.echo(f"error\n  {record['error_type']}: {record['error_message']}")
        if record["traceback"]:
            click.echo("  " + record["traceback"].rstrip().replace("\n", "\n  "))
    provenance = {k: v for k, v in found.provenance.items() if v is not None}
    if record["state"] in ("done", "failed") and provenance:
        from datetime import datetime

        click.echo("provenance")
        for key, value in provenance.items():
            if key in ("started_at", "finished_at"):
                value = datetime.fromtimestamp(value).isoformat(sep=" ", timespec="seconds")
            elif key == "runtime":
                value = f"{value:.3g} s"
            click.echo(f"  {key} = {value}")
    opened.close()


def _result_items(run: Any, document: str, unloaded: list[str]) -> list[tuple[str, Any]]:
    """A done run's result items; without its arrays (each named) if they cannot be loaded."""
    import json

    from .errors import ArrayFileError
    from .results import decode_result

    try:
        return _flat(run.result)
    except ArrayFileError as exc:
        unloaded.append(str(exc))
    try:
        tree = json.loads(document)
    except ValueError as exc:
        raise DecodingError("the result", f"a malformed document ({exc})") from None
    return _flat(decode_result(_arrays_named(tree), {}, import_code=False,
                               allow_pickle=False))


class _Unloaded(str):
    """What ``runstore show`` says of an array it cannot load."""


def _arrays_named(tree: Any) -> Any:
    """A result tree whose arrays are replaced by text naming their type and shape."""
    if isinstance(tree, list):
        if len(tree) == 2 and tree[0] == "ndarray" and isinstance(tree[1], dict):
            import numpy as np

            payload = tree[1]
            try:
                dtype: Any = np.dtype(payload.get("dtype"))
            except (TypeError, ValueError):
                dtype = payload.get("dtype")
            return _Unloaded(f"array {dtype} {tuple(payload.get('shape') or ())} (not loaded)")
        return [_arrays_named(item) for item in tree]
    return tree


def _flat(result: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """A result's items, nested dicts flattened into dotted keys."""
    if not isinstance(result, dict):
        return [(prefix or "value", result)]
    items: list[tuple[str, Any]] = []
    for key, value in result.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        items += _flat(value, name) if isinstance(value, dict) and value else [(name, value)]
    return items


@main.command(epilog=STORE_HELP)
@click.argument("store", required=False)
@click.argument("query", required=False)
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV.")
def sql(store: str | None, query: str | None, as_csv: bool) -> None:
    """Run a read-only SQL QUERY on STORE and print the rows.

    Each batch is a view named after it, with a row per run and a column per
    parameter and scalar result. Without QUERY, list the views and their columns;
    QUERY '-' reads the query from standard input. A single argument that is
    '-' or holds a space is the QUERY, on the store found here.

    \b
    Example:
      runstore sql example.db "select A, val from example where A >= 3"
    """
    import sqlite3

    from .guard import bound_queries, query_time_limit, read_only_authorizer

    from .storefile import reading_uri, survey_path

    if query is None and store is not None and (store == "-" or any(
            c.isspace() for c in store)):
        store, query = None, store
    store = target(store).path
    if query == "-":
        query = click.get_text_stream("stdin").read()
    db = Path(store)
    _regular(db)
    survey_path(db, readonly=True)  # a file that is not runstore's is refused unchanged
    conn = sqlite3.connect(reading_uri(db), uri=True)
    try:
        conn.execute("PRAGMA trusted_schema = OFF")
        conn.execute("PRAGMA query_only = ON")
        # The file may come from anyone, and so may the query: it may only read
        # (no ATTACH, which creates files; no writes, setting pragmas or
        # extensions), and each statement is stopped after the time limit.
        conn.set_authorizer(read_only_authorizer)
        bound_queries(conn, query_time_limit)
        if query is None:
            _list_views(conn, store)
            return
        cursor = conn.execute(query)
        columns = [d[0] for d in cursor.description or []]
        echo_table(columns, [tuple(row) for row in cursor.fetchall()], as_csv, full_ids=True,
                   whole=True)
    except sqlite3.Error as exc:
        text = str(exc)
        code = (ExitCode.REFUSED if "readonly" in text or "not authorized" in text
                else ExitCode.FAILED if "interrupted" in text else ExitCode.USAGE)
        raise Failure(_sql_error(exc, store), code) from None
    finally:
        conn.close()


def _list_views(conn: Any, store: str) -> None:
    views = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'view' ORDER BY name")]
    for view in views:
        cursor = conn.execute(f'SELECT * FROM "{view.replace(chr(34), chr(34) * 2)}" LIMIT 0')
        click.echo(f"{view}: " + ", ".join(d[0] for d in cursor.description))
    if not views:
        click.echo(f"{store} has no batch views")


def _sql_error(exc: Exception, store: str) -> str:
    """What to tell about a failed `runstore sql` statement."""
    from .guard import query_time_limit

    text = str(exc).rstrip(".")
    if "interrupted" in text:
        return (f"SQL error: the query took longer than {query_time_limit():g} s and was "
                "stopped. If the query is right, the file may be hostile or damaged (its "
                "views may never end); for a large file you trust, raise the limit with "
                "RUNSTORE_QUERY_TIME_LIMIT=SECONDS")
    if "readonly" in text or "not authorized" in text:
        return (f"SQL error: {text}. `runstore sql` only reads: writes, ATTACH/DETACH, "
                "pragmas that change settings and extensions are refused. Change runs with "
                "runstore's Python API (Run.clear, Batch(...)) so that ids and files stay "
                "consistent")
    return (f"SQL error: {text}. `runstore sql {store}` lists the batch views and their "
            "columns; the tables are described in the SQL how-to.")


@main.command(epilog=STORE_HELP)
@click.argument("store")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--batch", "batch_name", help="The batch (default: the only one).")
@click.option("--where", "filters", multiple=True, metavar="FILTER",
              help="Only the runs matching FILTER (as in `runstore runs`); repeatable.")
def bundle(store: str, out: str, batch_name: str | None, filters: tuple[str, ...]) -> None:
    """Write a bundle OUT.db + OUT.h5 of a batch's runs, to share them.

    \b
    Example:
      runstore bundle example.db shared --where 'A>=3' --where operator=max
    """
    if out == "-":
        raise click.UsageError("a bundle is two files (OUT.db and OUT.h5), not a stream: "
                               "give OUT a name, not '-'")
    found = target(store)
    opened = open_store(found.path)
    batch = choose_batch(opened, batch_name or found.batch)
    wanted = conditions(opened, filters)
    selected = batch.get_runs_with(**wanted) if wanted else None
    _require_folder(out, "write the bundle")
    db, h5 = batch.export(out, selected)
    count = len(selected) if selected is not None else len(batch.run)
    files = f"{db} and {h5}" if h5.exists() else f"{db} (no arrays)"
    click.echo(f"wrote {count} runs of batch {batch.name!r} to {files}")
    opened.close()


def _require_folder(path: str, doing: str) -> None:
    """Refuse a path whose folder does not exist, before anything is written."""
    folder = Path(path).parent
    if not folder.is_dir():
        raise Failure(f"cannot {doing} {path}: the folder {folder} does not exist; create it "
                      "first, or give another path", ExitCode.OS_ERROR)


@main.command("import")
@click.argument("bundle_path", metavar="BUNDLE")
@click.argument("store")
@click.option("--batch", "batch_name", help="The batch to add the runs to "
              "(default: the bundle's batch name).")
@click.option("--trust", is_flag=True, help="Trust the bundle: its runs may name code that "
              "is then imported (only for bundles whose author you trust).")
def import_(bundle_path: str, store: str, batch_name: str | None, trust: bool) -> None:
    """Add the runs of BUNDLE (its .db) to STORE, which is created if needed.

    A run STORE already holds is not added twice; one it holds pending or
    failed takes the bundle's result. A run with the same id but different
    content is an error, and then nothing is imported. What the bundle
    brings stays data (functions and classes it names are never imported)
    unless --trust is given; runs with custom ids need --trust.
    """
    from .bundle import import_bundle

    bundle_path = target(bundle_path).path
    store = target(store, must_exist=False).path
    _require_folder(store, "write the store")
    report = import_bundle(bundle_path, store, batch_name, trust=trust)
    click.echo(f"{store}: {report}")


@main.command("import-batchpy")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.argument("store")
@click.option("--allow-pickle", is_flag=True, help="Read the result files, which are "
              "pickles (reading a pickle can run code: only for files you trust).")
@click.option("--batch", "batches", multiple=True, metavar="NAME",
              help="Only the batch NAME (repeatable; default: every batch in FOLDER).")
@click.option("--allow-module", "modules", multiple=True, metavar="MODULE",
              help="Let the files build objects of MODULE and its submodules, e.g. "
                   "pandas (repeatable; this runs MODULE's code).")
@click.option("--store-pickles", is_flag=True, help="Keep results without a canonical "
              "encoding as pickles (opens STORE with allow_pickle=True).")
@click.option("--progress/--no-progress", default=None,
              help="Show a progress bar (default: on a terminal).")
def import_batchpy_(folder: str, store: str, allow_pickle: bool, batches: tuple[str, ...],
                    modules: tuple[str, ...], store_pickles: bool,
                    progress: bool | None) -> None:
    """Import batchpy's result files (FOLDER/<batch>_<id>.npy) into STORE.

    Each file becomes a done run, with batchpy's id, in the batch of its
    name in STORE (created if needed). Importing again adds nothing. Files
    that cannot be imported are listed with the reason, and the exit status
    is then 1; the others are imported. The files are pickles: nothing is
    read without --allow-pickle.
    """
    from .errors import BatchpyPickleRefusedError
    from .legacy import import_batchpy
    from .store import Store

    store = target(store, must_exist=False).path
    _require_folder(store, "write the store")
    # Without --allow-pickle, STORE is refused before it is opened (or created).
    opened = Store(store, allow_pickle=True) if store_pickles and allow_pickle else None
    try:
        report = import_batchpy(folder, opened or store, allow_pickle=allow_pickle,
                                allow_modules=modules, batches=batches or None,
                                progress=progress)
    except BatchpyPickleRefusedError as exc:
        raise BatchpyPickleRefusedError(exc.folder, exc.count, "--allow-pickle") from None
    finally:
        if opened is not None:
            opened.close()
    click.echo(f"{store}:\n" + "\n".join(f"  {line}" for line in str(report).splitlines()))
    if not report.ok:
        sys.exit(1)


@main.command(epilog=FILTER_HELP + "\n\n" + STORE_HELP)
@store_argument
@click.argument("filters", nargs=-1, metavar="[FILTER]...")
@click.option("--batch", "batch_name", help="The batch (default: the only one).")
@click.option("--run", "run_ids", multiple=True, metavar="ID",
              help="A run to remove, by id or a unique prefix of it (repeatable).")
@click.option("--all", "every", is_flag=True, help="Remove every run of the batch.")
@click.option("--delete-unheld", is_flag=True,
              help="Also delete, with their results, the removed runs that no other "
                   "batch holds (then `runstore gc` frees their arrays).")
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
def remove(store: str | None, filters: tuple[str, ...], batch_name: str | None,
           run_ids: tuple[str, ...], every: bool, delete_unheld: bool, dry_run: bool) -> None:
    """Take runs out of a batch: those matching every FILTER, the --run ones, or --all.

    The runs after them move up. Removed runs stay in STORE with their
    results, for the other batches that hold them and for adding them again
    without computing them; --delete-unheld deletes those no batch holds.

    \b
    Examples:
      runstore remove example.db 'A>=8' --dry-run
      runstore remove example.db --run 2531b46b01ce --delete-unheld
    """
    store, filters = store_and_filters(store, filters)
    if not (filters or run_ids or every):
        raise click.UsageError("say which runs to remove: FILTERs, --run ID, or --all")
    if every and (filters or run_ids):
        raise click.UsageError("--all removes every run; give it without FILTERs or --run")
    from .check import bundle_evidence

    found = target(store)
    store, batch_name = found.path, batch_name or found.batch
    _regular(Path(store))
    if bundle_evidence(store) is not None:
        raise Failure(f"{store} is a bundle, which is shared as it was made; import it "
                      "into a store (runstore import) and remove runs there", ExitCode.REFUSED)
    opened = open_store(store, readonly=dry_run)
    try:
        batch = choose_batch(opened, batch_name)
        ids = [opened.find_run(prefix) for prefix in run_ids]
        if filters:
            ids += [row.id for row in opened.query(batch._id, conditions(opened, filters))]
        elif every:
            ids = list(batch.run.ids())
        ids = list(dict.fromkeys(ids))
        if dry_run:
            click.echo(f"would remove {len(ids)} of the {len(batch.run)} runs of batch "
                       f"{batch.name!r} (dry run: nothing was changed)")
            return
        done = batch.remove(ids, delete_unheld=delete_unheld)
        lines = [f"removed {done.removed} runs from batch {batch.name!r} of {store}; "
                 f"{len(batch.run)} remain"]
        if done.shared:
            lines.append(f"  {done.shared} of them are still held by other batches")
        if delete_unheld:
            lines.append(f"  deleted {done.deleted} runs no batch held, with their results "
                         "(`runstore gc` frees their arrays)")
            if done.running:
                lines.append(f"  kept {done.running} runs being computed")
        else:
            lines.append(f"  {done.removed - done.shared} runs no batch holds stay in the "
                         "store with their results (--delete-unheld deletes them)")
        click.echo("\n".join(lines))
    finally:
        opened.close()


@main.command(epilog=STORE_HELP)
@store_argument
@click.option("--dry-run", is_flag=True,
              help="Only say what would be removed; change nothing.")
@click.option("--min-age", default=600.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds after which a side file no run points into is garbage when "
                   "its writer cannot be told alive or dead (another host, or a file "
                   "named by an earlier runstore). A live writer's file is always kept.")
@click.option("--bundle", is_flag=True,
              help="STORE is a bundle: change it anyway, touching only its own .h5.")
def gc(store: str | None, dry_run: bool, min_age: float, bundle: bool) -> None:
    """Remove side files and arrays no run needs, and compact STORE.

    Deletes STORE's own side files (in its .arrays folder, named as runstore
    names them) that no run points into and whose writer is dead (or,
    writer unknown, older than --min-age); rewrites side files without the
    arrays of runs that were cleared or computed again; VACUUMs the SQLite
    file. Refuses a bundle unless --bundle is given. Best run while no one
    else is using the store.
    """
    from .check import bundle_evidence

    store = target(store).path
    _regular(Path(store))
    evidence = bundle_evidence(store)
    _refuse_mismatch(store, evidence, bundle, None if dry_run else "collect garbage in")
    opened = _open_checked(store, readonly=dry_run, is_bundle=evidence is not None)
    try:
        click.echo(str(opened.gc(min_age=min_age, dry_run=dry_run, bundle=bundle)))
    finally:
        _close_checked(opened, evidence is not None and not dry_run)


def _refuse_mismatch(store: str, evidence: str | None, bundle: bool, action: str | None
                     ) -> None:
    """Refuse, before opening it for writing, a bundle not declared one (and back)."""
    from .errors import BundleRepairError

    if bundle and evidence is None:
        raise BundleRepairError(store, action or "check", None)
    if action is not None and evidence is not None and not bundle:
        raise BundleRepairError(store, action, evidence)


def _open_checked(store: str, readonly: bool, is_bundle: bool) -> Store:
    """Open a store (or a bundle, its .h5 beside it) for check or gc; SQLite errors told."""
    import sqlalchemy as sa

    from .errors import NotAStoreError
    from .store import Store

    try:
        return Store(store, readonly=readonly, arrays=Path(store).parent if is_bundle
                     else None)
    except sa.exc.DBAPIError as exc:
        raise NotAStoreError(store, f"SQLite cannot read it ({exc.orig}); restore it "
                             "from a copy") from None


def _close_checked(opened: Store, reseal: bool) -> None:
    """Close; a bundle opened for writing is sealed again (rollback journal, marked)."""
    if reseal:
        opened.seal()
    else:
        opened.close()


@main.command(epilog=STORE_HELP + " OUTPUT '-' is standard output (PNG, or the format "
              "--format names). " + FILTER_HELP)
@store_argument
@click.option("--x", "x", required=True, help="The column along the x axis (a parameter).")
@click.option("--y", "y", required=True, help="The column along the y axis (a result).")
@click.option("--hue", help="One line per value of this column.")
@click.option("--col", help="One panel per value of this column, side by side.")
@click.option("--row", help="One panel per value of this column, one above the other.")
@click.option("--where", "filters", multiple=True, metavar="FILTER",
              help="Only the runs matching FILTER, as `runstore runs` takes it "
                   "(repeatable: all must match).")
@click.option("--batch", "batch_name", help="The batch (default: the only one).")
@click.option("-o", "--output", "out", required=True,
              type=click.Path(dir_okay=False, allow_dash=True),
              help="The image file to write (its suffix picks the format: .png, .pdf, .svg).")
@click.option("--format", "fmt", help="The image format, if not OUTPUT's suffix (png, pdf, "
              "svg ...).")
def plot(store: str | None, x: str, y: str, hue: str | None, col: str | None,
         row: str | None, filters: tuple[str, ...], batch_name: str | None, out: str,
         fmt: str | None) -> None:
    """Plot a result against a parameter: lines by --hue, panels by --col, --row.

    A line only joins runs whose parameters agree in everything but --x: a
    parameter that takes several values among the plotted runs must be
    shown (--hue, --col, --row) or fixed (--where), else the plot is refused
    and the parameters named.

    \b
    Examples:
      runstore plot example.db --x A --y val --hue operator -o val.png
      runstore plot --x A --y val --col operator --where 'A>=2' -o val.pdf
    """
    try:
        import matplotlib
    except ImportError:
        from .errors import OptionalDependencyError

        raise OptionalDependencyError("matplotlib", "plot", "runstore plot") from None
    matplotlib.use("Agg")
    fmt = _image_format(out, fmt)
    found = target(store)
    opened = open_store(found.path)
    batch = choose_batch(opened, batch_name or found.batch)
    drawn = batch.plot(x, y, hue=hue, col=col, row=row, where=list(filters) or None)
    panels = list(drawn.flat) if col or row else [drawn]
    lines = sum(len(panel.get_lines()) for panel in panels)
    if not lines:  # an empty image would hide a filter that matches nothing
        opened.close()
        chosen = f" matching {' '.join(filters)}" if filters else ""
        raise Failure(f"nothing to plot, so {_named(out)} was not written: no run of batch "
                      f"{batch.name!r}{chosen} has values of both {x} and {y} (runs that "
                      "are not computed have no result); see `runstore runs` for what the "
                      "batch holds")
    with output(out, binary=True) as f:
        panels[0].figure.savefig(f, format=fmt, dpi=120, bbox_inches="tight")
    shown = (f" in {len(panels)} panel{'' if len(panels) == 1 else 's'}" if col or row
             else "")
    tell(f"wrote {_named(out)} ({lines} lines{shown})", out != "-")
    opened.close()


def _image_format(out: str, fmt: str | None) -> str:
    """The format to write an image in: --format, else OUTPUT's suffix (PNG for '-')."""
    from matplotlib.figure import Figure

    known = Figure().canvas.get_supported_filetypes()
    if fmt is None:
        suffix = Path(out).suffix.lstrip(".").lower()
        if out == "-":
            suffix = "png"
        if suffix not in known:
            raise click.UsageError(
                f"cannot tell the image format of {out!r} from its suffix: give it one of "
                f"{', '.join('.' + k for k in sorted(known))}, or --format")
        return suffix
    if fmt.lower() not in known:
        raise click.UsageError(f"--format {fmt}: not an image format matplotlib writes; "
                               f"give one of {', '.join(sorted(known))}")
    return fmt.lower()


@main.command(epilog=STORE_HELP)
@store_argument
@click.option("--port", default=0, type=click.IntRange(0, 65535),
              help="The port to serve on (default: a free one).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="The address to serve on. Whoever can reach it can read the store: "
                   "give another only on a network you trust.")
@click.option("--no-browser", is_flag=True, help="Only print the address; open no browser.")
def ui(store: str | None, port: int, host: str, no_browser: bool) -> None:
    """Serve a read-only view of STORE to a web browser, until Ctrl-C.

    Pages: the batches with their runs by state (updating while runs
    complete); a batch's runs, filtered as `runstore runs` filters them and
    sorted by any column; a run's parameters, results, arrays (drawn),
    error and provenance; a plot of a batch. Nothing is written to STORE,
    and nothing named in it is imported: bundles are safe to browse.
    Needs the ui extra (pip install 'runstore[ui]').

    \b
    Example:
      runstore ui example.db --port 8765
    """
    import webbrowser
    from urllib.parse import quote

    from .webview import require_packages, bind, serve

    found = target(store)
    open_store(found.path).close()  # what is not a store is told before serving
    require_packages()
    try:
        sock = bind(host, port)
    except OSError as exc:
        raise Failure(f"cannot serve on {host}:{port}: {exc.strerror or exc}; give another "
                      "--port, or leave it out for a free one", ExitCode.OS_ERROR) from None

    def started(url: str) -> None:
        click.echo(f"serving {found.path} read-only at {url}  (Ctrl-C stops)")
        sys.stdout.flush()
        if not no_browser:
            webbrowser.open(url)

    start_at = "/" if found.batch is None else f"/batches/{quote(found.batch)}"
    with sock:
        try:
            serve(lambda: open_store(found.path), found.path, sock, host, started, start_at)
        except KeyboardInterrupt:  # Ctrl-C is how the view is meant to end: not a failure
            pass
    click.echo("stopped")


@main.command(epilog=STORE_HELP)
@store_argument
@click.option("--fix", is_flag=True, help="Repair what can be repaired, saying what was done.")
@click.option("--dry-run", is_flag=True,
              help="With --fix: only say what would be repaired; change nothing.")
@click.option("--bundle", is_flag=True,
              help="With --fix: STORE is a bundle; repair it anyway, touching only its own .h5.")
def check(store: str | None, fix: bool, dry_run: bool, bundle: bool) -> None:
    """Check STORE: SQLite integrity, run ids, typed query rows, arrays, leftover files.

    Every array of every done run is read and compared with the dtype, shape
    and CRC-32 its result records. Without --fix nothing is written. With
    --fix, wrong query rows are rebuilt, done runs with damaged results or
    arrays become pending (each is listed), and leftover side files of dead
    writers are deleted; a bundle is refused unless --bundle is given.
    Exits with status 1 if problems remain.
    """
    from .check import bundle_evidence

    if dry_run and not fix:
        raise click.UsageError("--dry-run goes with --fix (a check without --fix "
                               "changes nothing)")
    store = target(store).path
    _regular(Path(store))
    evidence = bundle_evidence(store)
    _refuse_mismatch(store, evidence, bundle, "repair" if fix and not dry_run else None)
    opened = _open_checked(store, readonly=not fix or dry_run, is_bundle=evidence is not None)
    try:
        report = opened.check(fix=fix, dry_run=dry_run, bundle=bundle, progress=None)
        click.echo(str(report))
        if fix and not dry_run and not report.ok:
            report = opened.check(progress=None)
            click.echo("after the repairs: " + ("no problems remain" if report.ok else
                                                "these problems remain:"))
            for line in report.problems():
                click.echo(f"  {line}")
    finally:
        _close_checked(opened, evidence is not None and fix and not dry_run)
    if not report.ok:
        sys.exit(1)


@main.command(epilog=STORE_HELP)
@store_argument
@click.option("--batch", "batch_name", help="Only this batch (default: every batch).")
def schema(store: str | None, batch_name: str | None) -> None:
    """Show each batch's parameters (types, levels, counts) and result keys (types, shapes).

    Levels are a parameter's distinct values, each with the number of runs
    that has it; only the first and last are shown when there are many.
    Nothing is imported and no array is read.
    """
    from .overview import batch_overview, overview_lines

    found = target(store)
    opened = open_store(found.path)
    try:
        names = opened.batch_names()
        wanted = batch_name or found.batch
        if wanted is not None:
            choose_batch(opened, wanted)  # an unknown name is told
            names = [wanted]
        for i, name in enumerate(names):
            view = batch_overview(opened, choose_batch(opened, name)._id, name)
            click.echo(("\n" if i else "") + "\n".join(overview_lines(view)))
    finally:
        opened.close()


@main.command(epilog=STORE_HELP)
@store_argument
def upgrade(store: str | None) -> None:
    """Upgrade STORE's schema to the one this runstore uses."""
    from . import migration
    from .store import Store
    from .storefile import survey_path

    store = target(store).path
    survey_path(Path(store), readonly=True)  # a file that is not a store is refused unchanged
    before = migration.revision_of(store)
    Store(store).close()  # opening writable upgrades
    after = migration.revision_of(store)
    if before == after:
        click.echo(f"{store} is already at schema revision {after}.")
    else:
        click.echo(f"{store} upgraded from schema revision {before} to {after}.")


def run() -> None:
    """Entry point: run ``main``; a failure is one line on stderr and an exit code."""
    main()
