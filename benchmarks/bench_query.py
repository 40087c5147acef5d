"""Are get_runs_with queries fast whatever the levels of the parameters and the order of the conditions?

The targets of the query part of the performance issue, at 1,000,000 runs:

- every order of writing the same 2 or 3 conditions runs within 1.5x of the
  fastest order (``Query.order`` puts the most selective condition first);
- a selective query (<= 100 hits) runs within 3x of the same lookup on a
  hand-written wide table: one row per run with the columns a query returns
  (position, id, run_type, parameters, state) and one indexed column per
  parameter, ``ANALYZE``d, queried with plain sqlite3 in this process. Both
  return the matching runs' rows in batch order. runstore is measured at
  ``Store.query`` (rows) and at ``get_runs_with`` (which also makes Run
  objects), each against the same wide-table query in its best plan: the
  one SQLite chooses or one column's index forced with INDEXED BY, whichever
  is faster (without stat4, SQLite guesses how much a range matches, and
  sometimes scans the table in position order instead).

Level structures: one store of factorial runs ``{'val': A*B + C}`` for each,
built with ``add_factorial_runs`` (timed apart). Conditions on a scalar result
(``result__val__ge=...``) are timed on the first structure after computing
its runs.

Every time is this process's CPU time (``time.process_time``: the machines
are shared, and CPU time leaves out the time other processes hold the
cores; the queries read a store in the page cache), the best of several
repetitions with the variants of one query interleaved, so the ratios
compare variants measured together. Also shown:
"plan / best" is the chosen plan's SQL time over the fastest plan among
those driven by each condition in turn (forced, probes left out), and the
probes' share of the query. A query repeated on a store that did not change
takes its conditions and its counts from the time before (see
``runstore.query.Known``); "new/w" times it with nothing kept, as for
values not queried before.

Run it:

    BENCH_DIR=/tmp python benchmarks/bench_query.py [--runs 1000000] [--keep DIR]

``--keep DIR`` builds the stores in DIR once and reuses them on later runs.
``--before REV`` also times ``Store.query`` as it was at git revision REV
(its ``runstore/query.py`` and the body of ``Store.query`` then), in the same
run: the "was ms" column.
It prints a table and writes it to benchmarks/results/bench_query.txt.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_runs import Trivial  # noqa: E402

from report import Report  # noqa: E402

import runstore  # noqa: E402
from runstore.query import Query  # noqa: E402
from runstore.slots import slots_of  # noqa: E402
from runstore.store import RunRow  # noqa: E402

#: name -> levels of A, B, C (their product is the number of runs at 1,000,000).
STRUCTURES = {
    "A 10, B 1,000, C 100": (10, 1_000, 100),
    "A 100, B 100, C 100 (every condition broad)": (100, 100, 100),
    "A 2, B 20, C 25,000": (2, 20, 25_000),
}

#: The queries of each structure (values are chosen for 1,000,000 runs).
QUERIES: dict[str, list[dict[str, Any]]] = {
    "A 10, B 1,000, C 100": [
        {"A": 3, "B": 7}, {"A": 3, "C": 7}, {"B": 7, "C": 7}, {"A": 3, "B": 7, "C": 7},
        {"A__ge": 9, "B__lt": 2, "C__lt": 5}, {"A__ge": 9, "B__lt": 10, "C__lt": 50},
    ],
    "A 100, B 100, C 100 (every condition broad)": [
        {"A": 3, "B": 7}, {"A": 3, "B": 7, "C": 7}, {"A": 3, "B__lt": 50},
        {"A__lt": 10, "B__ge": 90, "C__lt": 1},
    ],
    "A 2, B 20, C 25,000": [
        {"A": 1, "B": 3}, {"A": 1, "C": 7}, {"A": 1, "B": 3, "C": 7},
        {"A__ge": 1, "B__lt": 5, "C__lt": 100},
    ],
}

RESULT_QUERIES: list[dict[str, Any]] = [
    {"result__val__ge": 9080}, {"result__val__ge": 9000},
    {"result__val__ge": 9000, "A": 9}, {"result__val__ge": 9080, "A": 9, "C__ge": 90},
]

_SQL_OP = {"eq": "=", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


def scaled(levels: tuple[int, int, int], runs: int) -> tuple[int, int, int]:
    """The levels for fewer runs (--runs): C shrinks first."""
    a, b, c = levels
    return a, b, max(1, c * runs // 1_000_000)


# -- building ----------------------------------------------------------------------

def build(folder: Path, levels: tuple[int, int, int]) -> tuple[runstore.Batch, float]:
    """The batch of a structure, and the seconds it took to register (0 if reused)."""
    existed = (folder / "_res" / "q.db").exists()
    t0 = time.perf_counter()
    batch = runstore.Batch("q", path=folder)
    if not existed:
        a, b, c = levels
        batch.add_factorial_runs(Trivial, {"A": list(range(a)), "B": list(range(b)),
                                           "C": list(range(c))})
    return batch, 0.0 if existed else time.perf_counter() - t0


def compute(batch: runstore.Batch) -> float:
    batch.add_run(Trivial, {"A": 0, "B": 0, "C": 0})  # the class, for a reused store
    t0 = time.perf_counter()
    batch(verbose=0)
    return time.perf_counter() - t0


def build_wide(batch: runstore.Batch, path: Path, with_val: bool) -> sqlite3.Connection:
    """The hand-written wide table of the batch's runs, indexed and analysed."""
    if not path.exists():
        conn = sqlite3.connect(path)
        conn.execute("ATTACH ? AS s", (f"file:{batch.store.path}?mode=ro",))
        val = ", val" if with_val else ""
        conn.execute("CREATE TABLE wide (position INTEGER PRIMARY KEY, id TEXT, run_type TEXT, "
                     f"parameters TEXT, state TEXT, A, B, C{val})")
        join = ("LEFT JOIN s.result_values v ON v.run_key = e.run_key AND v.key = 'val'"
                if with_val else "")
        conn.execute(
            f"INSERT INTO wide SELECT e.position, r.id, r.run_type, r.parameters, r.state, "
            f"pa.num, pb.num, pc.num{', v.num' if with_val else ''} FROM s.entries e "
            "JOIN s.runs r ON r.key = e.run_key "
            "JOIN s.parameters pa ON pa.run_key = e.run_key AND pa.name = 'A' "
            "JOIN s.parameters pb ON pb.run_key = e.run_key AND pb.name = 'B' "
            f"JOIN s.parameters pc ON pc.run_key = e.run_key AND pc.name = 'C' {join}")
        for column in ("A", "B", "C") + (("val",) if with_val else ()):
            conn.execute(f"CREATE INDEX wide_{column} ON wide ({column})")
        conn.commit()
        conn.execute("DETACH s")
        conn.execute("ANALYZE")
        conn.commit()
        conn.close()
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.execute("PRAGMA cache_size = -131072")  # as runstore's connections
    return conn


def wide_columns(conditions: dict[str, Any]) -> list[str]:
    return [key.removeprefix("result__").partition("__")[0] for key in conditions]


def wide_sql(conditions: dict[str, Any], index: str | None = None) -> tuple[str, list[Any]]:
    """The wide table's query; with ``index``, through that column's index (INDEXED BY)."""
    where, args = [], []
    for key, value in conditions.items():
        key = key.removeprefix("result__")
        name, _, op = key.partition("__")
        where.append(f"{name} {_SQL_OP[op or 'eq']} ?")
        args.append(value)
    hint = f" INDEXED BY wide_{index}" if index else ""
    return (f"SELECT position, id, run_type, parameters, state FROM wide{hint} WHERE "
            + " AND ".join(where) + " ORDER BY position", args)


# -- timing ------------------------------------------------------------------------

def best_times(variants: dict[str, Callable[[], Any]], budget: float = 2.0) -> dict[str, float]:
    """The best time of each variant, the variants interleaved."""
    first = {}
    for name, fn in variants.items():
        fn()  # warm the caches
        t0 = time.process_time()
        fn()
        first[name] = time.process_time() - t0
    reps = max(8, min(60, int(budget / max(sum(first.values()), 1e-6))))
    best = dict(first)
    for _ in range(reps):
        for name, fn in variants.items():
            t0 = time.process_time()
            fn()
            best[name] = min(best[name], time.process_time() - t0)
    return best


def forced(store: runstore.Store, batch_id: int, conditions: dict[str, Any],
           driver: str | None) -> Callable[[], Any]:
    """The query's SQL alone, driven by ``driver`` (None: the plan Query.order chooses)."""
    with store._reading() as conn:  # noqa: SLF001 - a benchmark of the internals
        query = Query(conditions)
        query.check_names(conn)
        query.order(conn)
        if driver is not None:
            query.conditions.sort(key=lambda c: c.label != driver)
        sql, args = query.sql(batch_id, slots_of(conn, batch_id))

    def run() -> Any:
        with store._reading() as conn:  # noqa: SLF001
            return conn.connection.driver_connection.execute(sql, args).fetchall()
    return run


def sql_alone(store: runstore.Store, batch_id: int, conditions: dict[str, Any],
              driver: str, raw: sqlite3.Connection) -> Callable[[], Any]:
    """The SQL driven by ``driver`` on a plain sqlite3 connection, as the wide table is timed.

    No read transaction of runstore's, no ordering, no Python around it: the
    fastest of these over the drivers is the least these tables allow.
    """
    with store._reading() as conn:  # noqa: SLF001
        query = Query(conditions)
        query.check_names(conn)
        query.order(conn)
        query.conditions.sort(key=lambda c: c.label != driver)
        sql, args = query.sql(batch_id, slots_of(conn, batch_id))
    return lambda: raw.execute(sql, args).fetchall()


def anew(store: runstore.Store, batch_id: int, conditions: dict[str, Any]
         ) -> Callable[[], Any]:
    """Store.query as the first query of its values: nothing kept from an earlier query
    (the conditions are made anew, and counted anew)."""
    def run() -> Any:
        runstore.query._parsed.cache_clear()  # noqa: SLF001 - a benchmark of the internals
        kept = store._kept  # noqa: SLF001
        if kept is not None:
            kept[2].version = None  # what it knows is forgotten at the next query
        return store.query(batch_id, conditions)
    return run


def probes(store: runstore.Store, conditions: dict[str, Any]) -> Callable[[], Any]:
    """What Query.order costs, made anew: a read transaction, counting each condition's rows."""
    def run() -> Any:
        runstore.query._parsed.cache_clear()  # noqa: SLF001 - as anew() does
        with store._reading_sqlite3() as (raw, _):  # noqa: SLF001
            Query(conditions).order(raw)
    return run


def query_before(rev: str) -> Callable[[runstore.Store, int, dict[str, Any]], list[RunRow]]:
    """``Store.query`` as it was at ``rev``: through ``Query.rows`` on the sqlite3
    connection where ``rev`` has it, else as before it (through SQLAlchemy)."""
    text = subprocess.run(["git", "-C", str(HERE.parent), "show", f"{rev}:runstore/query.py"],
                          check=True, capture_output=True, text=True).stdout
    with tempfile.TemporaryDirectory(prefix="runstore-bench-") as folder:
        path = Path(folder) / "query_before.py"
        path.write_text(text)
        spec = importlib.util.spec_from_file_location("runstore._query_before", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)

    def query(store: runstore.Store, batch: int, conditions: dict[str, Any]) -> list[RunRow]:
        old = module.Query(conditions)
        with store._reading() as conn:  # noqa: SLF001
            if hasattr(old, "rows"):  # as Store.query calls it since Query.rows
                raw = conn.connection.driver_connection
                return [RunRow(*row) for row in old.rows(raw, batch)]
            old.check_names(conn)
            old.order(conn)
            sql, args = old.sql(batch)
            return [RunRow(*row) for row in conn.exec_driver_sql(sql, tuple(args))]
    return query


def plans(store: runstore.Store, batch_id: int, orders: list[dict[str, Any]]) -> int:
    """How many different SQL statements (with arguments) the orders of writing give."""
    found = set()
    with store._reading() as conn:  # noqa: SLF001
        for conditions in orders:
            query = Query(conditions)
            query.order(conn.connection.driver_connection)
            sql, args = query.sql(batch_id, slots_of(conn, batch_id))
            found.add((sql, repr(args)))
    return len(found)


def measure(batch: runstore.Batch, wide: sqlite3.Connection, conditions: dict[str, Any],
            before: Callable[..., list[RunRow]] | None = None) -> dict[str, Any]:
    store, batch_id = batch.store, batch._id  # noqa: SLF001
    keys = list(conditions)
    perms = {" ".join(p): (lambda p=p: store.query(batch_id, {k: conditions[k] for k in p}))
             for p in itertools.permutations(keys)}
    sql, args = wide_sql(conditions)
    rows = store.query(batch_id, conditions)
    wide_rows = wide.execute(sql, args).fetchall()
    if [(r.position, r.id) for r in rows] != [(r[0], r[1]) for r in wide_rows]:
        raise RuntimeError(f"{conditions}: runstore and the wide table disagree")
    labels = [Query({k: v}).conditions[0].label for k, v in conditions.items()]
    raw = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True)
    variants: dict[str, Callable[[], Any]] = {
        **{f"perm {name}": fn for name, fn in perms.items()},
        "get_runs_with": lambda: batch.get_runs_with(**conditions),
        "anew": anew(store, batch_id, conditions),
        "wide": lambda: wide.execute(sql, args).fetchall(),
        **{f"wide {column}": (lambda q=wide_sql(conditions, column): wide.execute(*q).fetchall())
           for column in wide_columns(conditions)},
        "plan": forced(store, batch_id, conditions, None),
        **{f"driver {label}": forced(store, batch_id, conditions, label) for label in labels},
        **{f"alone {label}": sql_alone(store, batch_id, conditions, label, raw)
           for label in labels},
        "probes": probes(store, conditions),
    }
    if before is not None:
        if [r.id for r in before(store, batch_id, conditions)] != [r.id for r in rows]:
            raise RuntimeError(f"{conditions}: the query before disagrees")
        variants.update({f"was {name}": (lambda p=p: before(store, batch_id,
                                                            {k: conditions[k] for k in p}))
                         for name, p in zip(perms, itertools.permutations(keys))})
    t = best_times(variants)
    raw.close()
    perm_times = [t[f"perm {name}"] for name in perms]
    # The orders again, timed among themselves: the other variants interleaved
    # with them above add their own noise to a comparison of equals.
    by_order = best_times(perms)
    orders_alone = [by_order[name] for name in perms]
    orders = [{k: conditions[k] for k in p} for p in itertools.permutations(keys)]
    drivers = {label: t[f"driver {label}"] for label in labels}
    return {"hits": len(rows), "plans": plans(store, batch_id, orders),
            "perms": max(orders_alone) / min(orders_alone), "query": min(perm_times),
            "get_runs_with": t["get_runs_with"], "anew": t["anew"], "planner": t["wide"],
            "wide": min(t[k] for k in t if k.startswith("wide")), "plan": t["plan"],
            "best_driver": min(drivers, key=drivers.__getitem__),
            "driver_time": min(drivers.values()), "probes": t["probes"],
            "alone": min(t[f"alone {label}"] for label in labels),
            "was": min((t[k] for k in t if k.startswith("was ")), default=None)}


# -- the table ---------------------------------------------------------------------

HEADER = ("  {:<36} {:>7} {:>5} {:>6} {:>9} {:>7} {:>7} {:>7} {:>7} {:>9} {:>7} {:>8} "
          "{:>8} {:>8}".format("conditions", "hits", "plans", "perms", "query ms", "/wide",
                               "new/w", "grw/w", "sql/w", "plan/best", "probes", "wide ms",
                               "planner", "was ms"))


def row(conditions: dict[str, Any], m: dict[str, Any]) -> str:
    text = ", ".join(f"{k}={v}" for k, v in conditions.items())
    mark = "*" if m["hits"] <= 100 else " "
    was = f"{m['was'] * 1e3:8.2f}" if m["was"] is not None else ""
    return ("  {:<36} {:>6,}{} {:>5} {:>6.2f} {:>9.2f} {:>7.2f} {:>7.2f} {:>7.2f} {:>7.2f} "
            "{:>9.2f} {:>6.0f}% {:>8.3f} {:>8.3f} {:>8}").format(
        text, m["hits"], mark, m["plans"], m["perms"], m["query"] * 1e3,
        m["query"] / m["wide"], m["anew"] / m["wide"], m["get_runs_with"] / m["wide"],
        m["alone"] / m["wide"],
        m["plan"] / m["driver_time"],
        100 * m["probes"] / m["anew"], m["wide"] * 1e3, m["planner"] * 1e3, was)


LEGEND = """\
  plans      how many different SQL statements the orders of writing run (1: one plan)
  perms      slowest order of writing the conditions / fastest (target <= 1.5),
             the orders timed among themselves
  query ms   Store.query, the fastest order (rows in batch order), repeated as the
             wide table's query is: its conditions and counts kept from the time
             before (the store did not change)
  /wide      Store.query / the same lookup on the wide table, its best plan (target
             <= 3 where hits are marked *, <= 100)
  new/w      Store.query with nothing kept from an earlier query (its conditions
             made and counted anew, as for values not queried before) / wide
  grw/w      get_runs_with (Run objects) / the wide table's best plan
  sql/w      runstore's SQL alone, driven by the best condition, on a plain sqlite3
             connection as the wide table is queried / the wide table's best plan:
             the least runstore's tables allow, whatever the ordering
  plan/best  SQL of the chosen plan / SQL driven by the best condition (forced)
  probes     a read transaction and Query.order's counts, as a share of the query
             made anew (what a query asked again does not count)
  wide ms    the wide table's best plan: SQLite's choice, or one column's index
             forced (INDEXED BY)
  planner    the wide table, the plan SQLite chooses (ANALYZEd, without stat4)
  was ms     Store.query at --before REV, the fastest order"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="build the stores here once and reuse them")
    parser.add_argument("--no-results", action="store_true", help="skip computing the runs")
    parser.add_argument("--before", metavar="REV", help="also time Store.query as at REV")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="runstore-bench-",
                                              dir=os.environ.get("BENCH_DIR")))
    before = query_before(args.before) if args.before else None
    report = Report(f"get_runs_with at {args.runs:,} runs")
    say = report.say
    try:
        for i, (title, levels) in enumerate(STRUCTURES.items()):
            levels = scaled(levels, args.runs)
            folder = root / f"s{i}-{args.runs}"
            batch, built = build(folder, levels)
            n = len(batch.run)
            say(f"{title}: {n:,} runs" + (f", registered by add_factorial_runs in {built:.1f} s"
                                          if built else " (store reused)"))
            results = i == 0 and not args.no_results
            if results:
                done = batch.store.state_counts(batch._id).get("done", 0)  # noqa: SLF001
                if done < n:
                    say(f"  computed by batch() in {compute(batch):.1f} s")
            wide = build_wide(batch, folder / "wide.db", with_val=results)
            say(HEADER)
            for conditions in QUERIES[title] + (RESULT_QUERIES if results else []):
                say(row(conditions, measure(batch, wide, conditions, before)))
            wide.close()
            batch.store.close()
            say()
        say(LEGEND)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    report.write("bench_query" if args.runs == 1_000_000 else f"bench_query_{args.runs}")


if __name__ == "__main__":
    main()
