"""How far is runstore's per-run overhead above a hand-written floor doing the same work?

The floor is plain ``sqlite3`` (WAL, ``synchronous = NORMAL`` and the page cache
runstore asks for, one transaction, ``executemany``) writing the rows runstore
writes, into the same tables with the same indexes (the DDL of
``runstore.schema``, compiled for SQLite): each run's id (runstore's canonical
encoding and BLAKE2b, through its identity functions, each parameter level
encoded once), its parameters document, its typed parameter rows, its entry in
the batch (with its numbers copied into the entry's slots), its result (a flat
dict, encoded by runstore's ``encode``) with its typed result rows and
provenance. It calls the same ``run()`` of the same
class. What it leaves out is what makes a
store more than a script: claims and leases, crash safety between chunks of
work, checks of the file, views, batches shared by processes.

W1  register + run + commit the trivial sweep of bench_store.py
    ({'val': A*B + C}, 100,000 runs; 10,000 with --quick), in this process.
W2  re-run the fully cached batch in a new process (import excluded): the
    floor computes the ids and finds them all stored and done.

Both tools are timed in the same run, interleaved, best of ``--repeat``;
the table gives runstore / floor (targets: W1 <= 1.5x, W2 <= 2x). Before
timing, a small sweep checks that both wrote the same rows.

Run it:

    python benchmarks/bench_floor.py [--quick] [--repeat 3]

It prints a table and writes it to benchmarks/results/bench_floor.txt
(bench_floor_quick.txt with --quick).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite as sqlite_dialect

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_runs import Trivial  # noqa: E402
from bench_store import W2_SCRIPT, grid, in_dir, timed  # noqa: E402

from report import Report  # noqa: E402

import runstore  # noqa: E402
from runstore.encoding import canonical_json, encode, indexed  # noqa: E402
from runstore.identity import run_id_of_pairs, type_name  # noqa: E402
from runstore.run import code_fingerprint  # noqa: E402
from runstore.schema import SLOTS, Base  # noqa: E402


def schema_sql() -> list[str]:
    """runstore's tables and indexes, as SQLite DDL."""
    dialect = sqlite_dialect.dialect()
    statements = []
    for table in Base.metadata.sorted_tables:
        statements.append(str(sa.schema.CreateTable(table).compile(dialect=dialect)))
        statements += [str(sa.schema.CreateIndex(index).compile(dialect=dialect))
                       for index in table.indexes]
    return statements


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA cache_size = -131072")
    return conn


def identities(cls: type, levels: dict[str, list]) -> Iterator[tuple[str, str, dict, list]]:
    """Id, parameters document, parameters and typed forms of each run of a factorial design.

    Each level is encoded once (runstore's ``encode``, ``canonical_json`` and
    ``indexed``); a run's canonical text is assembled from the texts of its
    levels, in the order of the parameter names, and hashed by runstore's
    ``run_id_of_pairs`` (BLAKE2b). The floor knows its workload: every
    parameter is given (no defaults to merge), none is private or an array.
    """
    rtype = type_name(cls)
    names = list(levels)
    order = sorted(range(len(names)), key=names.__getitem__)
    coded = []
    for name, values in levels.items():
        trees = [encode(value) for value in values]
        coded.append([(value, f"[{canonical_json(name)},{canonical_json(tree)}]",
                       (name, indexed(tree))) for value, tree in zip(values, trees)])
    for combo in itertools.product(*coded):
        pairs = "[" + ",".join([combo[i][1] for i in order]) + "]"
        yield (run_id_of_pairs(rtype, pairs), f'{{"values":{pairs}}}',
               dict(zip(names, [level[0] for level in combo])), [level[2] for level in combo])


def flat_result(value: dict) -> tuple[str, list]:
    """The canonical JSON and typed rows of a result that is a flat dict of scalars."""
    tree = encode(value)
    return canonical_json(tree), [(key, indexed(item)) for key, item in tree[1]]


def floor_sweep(path: Path, levels: dict[str, list[int]]) -> None:
    """W1 by hand: compute every run and write all its rows in one transaction."""
    cls, rtype = Trivial, type_name(Trivial)
    instance = cls.__new__(cls)
    constant = (code_fingerprint(cls), runstore.__version__, sys.version.split()[0],
                socket.gethostname(), os.getpid())
    runs, parameters, entries, results = [], [], [], []
    # Every parameter is a number: each has its slot, in name order (runstore.slots).
    order = sorted(range(len(levels)), key=list(levels).__getitem__)
    for key, (rid, document, given, forms) in enumerate(identities(cls, levels), start=1):
        started, t0 = time.time(), time.perf_counter()
        value = instance.run(**given)
        runtime = time.perf_counter() - t0
        result, scalars = flat_result(value)
        runs.append((key, rid, rtype, document, result, started, time.time(), runtime,
                     *constant))
        parameters += [(key, name, f.kind, f.number, f.text, f.canonical) for name, f in forms]
        entries.append((1, key - 1, key, *[forms[i][1].number for i in order]))
        results += [(key, name, f.kind, f.number, f.text, f.canonical) for name, f in scalars]
    conn = connect(path)
    conn.execute("BEGIN IMMEDIATE")
    for statement in schema_sql():
        conn.execute(statement)
    conn.execute("INSERT INTO batches (id, name, created_at) VALUES (1, 'w1', ?)", (time.time(),))
    conn.executemany(
        "INSERT INTO runs (key, id, run_type, state, parameters, result, started_at, "
        "finished_at, runtime, code_fingerprint, runstore_version, python_version, host, pid, "
        "attempts) VALUES (?, ?, ?, 'done', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)", runs)
    conn.executemany("INSERT INTO parameters (run_key, name, kind, num, text, canonical) "
                     "VALUES (?, ?, ?, ?, ?, ?)", parameters)
    slots = "".join(f", v{i}" for i in range(len(levels)))
    conn.executemany(f"INSERT INTO entries (batch_id, position, run_key{slots}) VALUES "
                     f"(?, ?, ?{', ?' * len(levels)})", entries)
    conn.executemany("INSERT INTO result_values (run_key, key, kind, num, text, canonical) "
                     "VALUES (?, ?, ?, ?, ?, ?)", results)
    conn.execute("COMMIT")
    conn.close()


FLOOR_W2 = """
import sys, time, json
t0 = time.perf_counter()
sys.path.insert(0, sys.argv[1])
import sqlite3
from bench_floor import Trivial, connect, identities
t1 = time.perf_counter()
ids = [run[0] for run in identities(Trivial, json.loads(sys.argv[3]))]
conn = connect(sys.argv[2])
stored = dict(conn.execute("SELECT r.id, r.state FROM entries e JOIN runs r ON r.key = e.run_key "
                           "WHERE e.batch_id = 1"))
todo = [rid for rid in ids if stored.get(rid) != "done"]
conn.close()
if todo:
    raise SystemExit(f"{len(todo)} runs not stored and done")
t2 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "rerun": t2 - t1, "runs": len(ids)}))
"""


def runstore_sweep(folder: Path, levels: dict[str, list[int]]) -> Path:
    batch = runstore.Batch("w2", path=folder)  # the batch bench_store's W2 script re-runs
    batch.add_factorial_runs(Trivial, levels)
    batch(verbose=0)
    path = Path(batch.store.path)
    batch.store.close()
    return path


def rerun(script: str, where: Path, levels: dict[str, list[int]]) -> dict[str, float]:
    args = [sys.executable, "-c", script, str(HERE), str(where), json.dumps(levels)]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


# -- the same rows ------------------------------------------------------------------------

ROWS = {
    "runs": "SELECT id, run_type, state, parameters, result, attempts, code_fingerprint, "
            "runstore_version, python_version, host, pid FROM runs",
    "parameters": "SELECT r.id, p.name, p.kind, p.num, p.text, p.canonical "
                  "FROM parameters p JOIN runs r ON r.key = p.run_key",
    "result_values": "SELECT r.id, v.key, v.kind, v.num, v.text, v.canonical "
                     "FROM result_values v JOIN runs r ON r.key = v.run_key",
    "entries": "SELECT e.position, r.id, " + ", ".join(f"e.v{i}" for i in range(SLOTS))
               + " FROM entries e JOIN runs r ON r.key = e.run_key",
}


def same_rows(folder: Path, levels: dict[str, list[int]]) -> int:
    """Check that runstore and the floor store the same rows; return the run count."""
    theirs = runstore_sweep(folder / "runstore", levels)
    floor_sweep(folder / "floor.db", levels)
    mine, ours = sqlite3.connect(folder / "floor.db"), sqlite3.connect(theirs)
    for table, sql in ROWS.items():
        a, b = sorted(mine.execute(sql)), sorted(ours.execute(sql))
        if a != b:
            diff = next((x, y) for x, y in zip(a, b) if x != y) if len(a) == len(b) else (
                len(a), len(b))
            raise SystemExit(f"the floor's {table} rows differ from runstore's: {diff}")
    count = mine.execute("SELECT count(*) FROM runs").fetchone()[0]
    mine.close()
    ours.close()
    return count


# -- the table ------------------------------------------------------------------------------

def measure(folder: Path, n: int, repeat: int) -> dict[str, float]:
    levels = grid(n)
    best = {"runstore W1": float("inf"), "floor W1": float("inf"),
            "runstore W2": float("inf"), "floor W2": float("inf")}
    for rep in range(repeat):  # interleaved: both see the same state of the machine
        t = timed(lambda: runstore_sweep(folder / f"r{rep}", levels))
        best["runstore W1"] = min(best["runstore W1"], t)
        t = timed(lambda: floor_sweep(folder / f"f{rep}.db", levels))
        best["floor W1"] = min(best["floor W1"], t)
    for rep in range(repeat):
        out = rerun(W2_SCRIPT, folder / "r0", levels)
        best["runstore W2"] = min(best["runstore W2"], out["rerun"])
        out = rerun(FLOOR_W2, folder / "f0.db", levels)
        best["floor W2"] = min(best["floor W2"], out["rerun"])
    best["runs"] = len(list(itertools.product(*levels.values())))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 runs instead of 100,000")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many (default 3)")
    args = parser.parse_args()
    n = 10_000 if args.quick else 100_000
    report = Report("per-run overhead against a hand-written floor")
    checked = in_dir(lambda d: same_rows(d, grid(2_000)))
    report.say(f"same rows in runstore and the floor: checked on {checked:,} runs")
    report.say()
    best = in_dir(lambda d: measure(d, n, args.repeat))
    report.say(f"{int(best['runs']):,} trivial runs, best of {args.repeat}, interleaved")
    report.say("  workload                                  runstore     floor   runstore/floor")
    for w, what, target in (("W1", "register + run + commit", 1.5),
                            ("W2", "re-run fully cached (new process)", 2.0)):
        r, f = best[f"runstore {w}"], best[f"floor {w}"]
        report.say(f"  {w} {what:<36} {r:8.2f} s {f:7.2f} s   {r / f:5.2f}x   "
                   f"(target <= {target}x: {'met' if r / f <= target else 'missed'})")
    report.write("bench_floor_quick" if args.quick else "bench_floor")


if __name__ == "__main__":
    main()
