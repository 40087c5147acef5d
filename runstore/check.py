"""Consistency checks of a store, repairs, and garbage collection. Internal module.

:func:`check_store` (``Store.check``, ``runstore check``) compares what the
tables say with what they and the side files hold: SQLite's integrity, run
ids against their stored parameters, done runs against their arrays, and
files no run points into.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from .encoding import canonical_json
from .identity import run_id_of_pairs
from .results import array_name, array_payloads
from .schema import RunState

if TYPE_CHECKING:
    from .store import Store

__all__ = ["CheckReport", "check_store", "GcReport", "collect_garbage", "ORPHAN_AGE"]


#: Seconds after which a side file no row points into is garbage (a writer
#: renames its file moments before committing the rows that point into it).
ORPHAN_AGE = 600.0


@dataclass
class CheckReport:
    """What :meth:`Store.check` found, and what it repaired."""

    path: str
    integrity: list[str] = field(default_factory=list)
    wrong_ids: list[str] = field(default_factory=list)
    custom_ids: int = 0
    missing_arrays: dict[str, str] = field(default_factory=dict)
    orphan_files: list[str] = field(default_factory=list)
    partial_files: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether nothing is wrong (runs with custom ids are not a problem)."""
        return not (self.integrity or self.wrong_ids or self.missing_arrays
                    or self.orphan_files or self.partial_files)

    def __str__(self) -> str:
        lines = [f"{self.path}: " + ("no problems found" if self.ok else "problems found")]
        lines += [f"  SQLite integrity: {problem}" for problem in self.integrity]
        if self.wrong_ids:
            lines.append(f"  {len(self.wrong_ids)} runs whose id does not match their "
                         f"stored parameters (changed outside runstore), e.g. "
                         f"{self.wrong_ids[0]}; remove them or restore the store")
        if self.custom_ids:
            lines.append(f"  {self.custom_ids} runs have ids from a custom generate_id "
                         "(not recomputed)")
        for rid, problem in list(self.missing_arrays.items())[:20]:
            lines.append(f"  run {rid}: arrays {problem}")
        if len(self.missing_arrays) > 20:
            lines.append(f"  ... and {len(self.missing_arrays) - 20} more runs")
        if self.orphan_files:
            lines.append(f"  {len(self.orphan_files)} side files no run points into: "
                         f"{', '.join(self.orphan_files[:5])}")
        if self.partial_files:
            lines.append(f"  {len(self.partial_files)} half-written side files: "
                         f"{', '.join(self.partial_files[:5])}")
        lines += [f"  repaired: {what}" for what in self.repaired]
        if not self.ok and not self.repaired:
            lines.append("  `runstore check --fix STORE` repairs what can be repaired")
        return "\n".join(lines)


def _array_specs(tree: Any) -> Iterator[tuple[str, tuple[int, ...]]]:
    """The (name, shape) of the arrays in a result tree."""
    for payload in array_payloads(tree):
        yield array_name(payload), tuple(payload["shape"])


def check_store(store: Store, fix: bool = False) -> CheckReport:
    """Report a store's inconsistencies; with ``fix=True``, repair what can be.

    Checks SQLite's integrity, recomputes every run id from its stored
    parameters, checks that every done run's arrays are in its side file,
    and finds side files no run points into and half-written ``.part``
    files. Repairs: done runs whose arrays are missing or unreadable go
    back to pending (to be computed again); orphaned and half-written
    files older than ten minutes are deleted (younger ones may belong to a
    writer about to commit). Runs whose id does not match their parameters
    are only reported: the store was changed outside runstore.
    """
    report = CheckReport(store.path)
    with store._reading() as conn:
        report.integrity = [row[0] for row in conn.exec_driver_sql(
            "PRAGMA integrity_check") if row[0] != "ok"]
        _check_ids(conn, report)
        referenced = _check_arrays(store, conn, report)
    now = time.time()
    for name in store.arrays.files():
        if name not in referenced:
            report.orphan_files.append(name)
    report.partial_files = store.arrays.partial_files()
    if fix:
        _repair(store, report, now)
    return report


def _check_ids(conn: sa.Connection, report: CheckReport) -> None:
    result = conn.exec_driver_sql("SELECT id, run_type, parameters FROM runs")
    while rows := result.fetchmany(10_000):
        for rid, rtype, document in rows:
            data = json.loads(document)
            if data.get("custom_id"):
                report.custom_ids += 1
            elif run_id_of_pairs(rtype, canonical_json(data["values"])) != rid:
                report.wrong_ids.append(rid)


def _check_arrays(store: Store, conn: sa.Connection, report: CheckReport) -> set[str]:
    """Check the arrays of done runs; return the side files rows point into."""
    by_file: dict[str | None, list[tuple[str, list[tuple[str, tuple[int, ...]]]]]] = {}
    result = conn.exec_driver_sql(
        "SELECT id, array_file, result FROM runs WHERE state = 'done'")
    while rows := result.fetchmany(10_000):
        for rid, filename, result_json in rows:
            wanted = list(_array_specs(json.loads(result_json)))
            if wanted or filename:
                by_file.setdefault(filename, []).append((rid, wanted))
    for filename, runs in by_file.items():
        if filename is None:
            for rid, _ in runs:
                report.missing_arrays[rid] = "no side file is recorded"
            continue
        for rid, problem in store.arrays.verify(filename, runs).items():
            report.missing_arrays[rid] = problem
    return {name for name in by_file if name is not None}


def _repair(store: Store, report: CheckReport, now: float) -> None:
    if report.missing_arrays:
        count = store.reset(list(report.missing_arrays), [RunState.DONE])
        report.repaired.append(f"{count} runs with missing or unreadable arrays are "
                               "pending again")
    for name in report.orphan_files + report.partial_files:
        path = store.arrays.directory / name
        if path.exists() and now - path.stat().st_mtime > ORPHAN_AGE:
            path.unlink()
            report.repaired.append(f"deleted {name}")


@dataclass
class GcReport:
    """What :meth:`Store.gc` removed (or, in a dry run, would remove)."""

    path: str
    dry_run: bool = False
    orphan_files: list[str] = field(default_factory=list)
    rewritten: dict[str, int] = field(default_factory=dict)
    freed_bytes: int = 0
    db_bytes: tuple[int, int] = (0, 0)

    def __str__(self) -> str:
        delete, rewrite, free = (("would delete", "would rewrite", "would free at most")
                                 if self.dry_run else ("deleted", "rewrote", "freed"))
        dropped = sum(self.rewritten.values())
        lines = [
            f"{self.path}:",
            f"  {delete} {len(self.orphan_files)} side files no run points into",
            f"  {rewrite} {len(self.rewritten)} side files without the {dropped} arrays "
            "of runs cleared or computed again",
            f"  {free} {self.freed_bytes / 1e6:.1f} MB of side files",
        ]
        if not self.dry_run:
            before, after = self.db_bytes
            lines.append(f"  compacted the SQLite file: {before / 1e6:.1f} MB -> "
                         f"{after / 1e6:.1f} MB")
        return "\n".join(lines)


def collect_garbage(store: Store, min_age: float = ORPHAN_AGE, dry_run: bool = False
                    ) -> GcReport:
    """Remove what no run needs any more, and compact the store.

    - side files no run points into, and half-written ones, older than
      ``min_age`` seconds (younger ones may belong to a writer about to commit);
    - the arrays of runs that were cleared or computed again, by rewriting
      each side file that holds them without them (the rows are pointed at the
      new file in one transaction; the old file is deleted after);
    - free pages of the SQLite file (``VACUUM``).
    """
    report = GcReport(store.path, dry_run)
    if store.path == ":memory:":
        return report
    with store._reading() as conn:
        referenced: dict[str, set[str]] = {}
        for rid, filename in conn.exec_driver_sql(
                "SELECT id, array_file FROM runs WHERE array_file IS NOT NULL"):
            referenced.setdefault(filename, set()).add(rid)
    now = time.time()
    directory = store.arrays.directory
    for name in store.arrays.files() + store.arrays.partial_files():
        path = directory / name
        if name not in referenced and now - path.stat().st_mtime > min_age:
            report.orphan_files.append(name)
            report.freed_bytes += path.stat().st_size
            if not dry_run:
                path.unlink()
    for filename, keep in referenced.items():
        if not (directory / filename).exists():
            continue  # `check` reports it
        garbage = set(store.arrays.groups(filename)) - keep
        if not garbage:
            continue
        report.rewritten[filename] = len(garbage)
        size = (directory / filename).stat().st_size
        if dry_run:
            report.freed_bytes += size  # at most; the kept arrays are written again
            continue
        fresh = store.arrays.repack(filename, sorted(keep))
        with store._writing("rewrite side files") as conn:
            conn.exec_driver_sql("UPDATE runs SET array_file = ? WHERE array_file = ?",
                                 (fresh, filename))
        report.freed_bytes += size - (directory / fresh).stat().st_size
        store.arrays.remove(filename)
    if not dry_run:
        report.db_bytes = store.vacuum()
    return report
