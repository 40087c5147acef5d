"""Consistency checks of a store, repairs, and garbage collection. Internal module.

:func:`check_store` (``Store.check``, ``runstore check``) compares what the
tables say with what they and the side files hold: SQLite's integrity, run
ids against their stored parameters, the typed query rows against the
parameter and result documents, every array of every done run against the
dtype, shape and CRC-32 its result records, and files no run points into.
It reads the runs in chunks and never stops at damage: whatever it cannot
read is reported as a problem.

Repairs and garbage collection (:func:`collect_garbage`) delete or reset
only what provably belongs to the store: side files of its own folder whose
names follow :data:`runstore.arrays.SIDE_FILE_PATTERN`, that are regular
files (never a symbolic link, folder or FIFO), that no row points into, and
whose writer is dead (or, when that cannot be told, that are older than a
minimum age). A bundle is refused unless the caller says it is one
(``bundle=True``); then only the bundle's own ``.h5`` is considered.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from .counts import MISCOUNTED, count_all, recount
from .slots import MISFILLED, refill_all, slots_of
from .arrays import ArrayStore, MemoryArrayStore, side_file_writer
from .encoding import Indexed, canonical_json, indexed, stored_array
from .errors import BundleRepairError, StoreUnreadableError
from .identity import run_id_of_pairs
from .progress import progress_bar
from .results import array_name, array_payloads, scalars_of_tree
from .schema import RunState

if TYPE_CHECKING:
    from .store import Store

__all__ = ["CheckReport", "check_store", "GcReport", "collect_garbage", "ORPHAN_AGE",
           "BUNDLE_MARK", "bundle_evidence"]


#: Seconds after which a side file no row points into is garbage when its
#: writer cannot be told alive or dead (a file from another host, or named
#: by an earlier runstore): a writer renames its file moments before
#: committing the rows that point into it.
ORPHAN_AGE = 600.0
#: ``PRAGMA user_version`` of a bundle (:meth:`Store.seal`); stores keep 0.
BUNDLE_MARK = 1
#: Runs read (and checked) at a time.
_CHUNK = 256
#: Bytes of arrays read from a side file at a time (a larger array alone).
_READ_BYTES = 64 * 2**20


# -- reports -------------------------------------------------------------------------


@dataclass
class CheckReport:
    """What :meth:`Store.check` found, and what it repaired (or would repair)."""

    path: str
    integrity: list[str] = field(default_factory=list)
    wrong_ids: list[str] = field(default_factory=list)
    custom_ids: int = 0
    #: Runs whose stored documents cannot be read, with the problem.
    unreadable: dict[str, str] = field(default_factory=dict)
    #: Done runs whose arrays are missing, unreadable or damaged, with the problem.
    missing_arrays: dict[str, str] = field(default_factory=dict)
    #: Runs whose typed query rows disagree with their documents, with what differs.
    wrong_rows: dict[str, str] = field(default_factory=dict)
    #: Typed rows and batch entries of runs that do not exist.
    stray_rows: dict[str, int] = field(default_factory=dict)
    #: Values whose count of runs in ``parameter_counts`` is wrong (or missing).
    wrong_counts: int = 0
    #: Slots of batch entries (``entries.v0`` ...) that differ from ``parameters``.
    wrong_slots: int = 0
    orphan_files: list[str] = field(default_factory=list)
    partial_files: list[str] = field(default_factory=list)
    #: Entries named like side files that are not regular files (never deleted).
    strange_files: list[str] = field(default_factory=list)
    #: Files no row points into (yet) whose writer is alive: not a problem.
    in_flight_files: list[str] = field(default_factory=list)
    #: Done runs reset to pending because of damage (or that would be), with why.
    reset: dict[str, str] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    dry_run: bool = False
    bundle: bool = False

    @property
    def ok(self) -> bool:
        """Whether nothing is wrong (runs with custom ids are not a problem)."""
        return not (self.integrity or self.wrong_ids or self.unreadable
                    or self.missing_arrays or self.wrong_rows or self.stray_rows
                    or self.wrong_counts or self.wrong_slots
                    or self.orphan_files or self.partial_files or self.strange_files)

    def problems(self) -> list[str]:
        """One line per problem found."""
        lines = [f"SQLite integrity: {problem}" for problem in self.integrity]
        lines += [f"run {rid}: its id does not match its stored parameters (changed "
                  "outside runstore); remove it or restore the store" for rid in self.wrong_ids]
        lines += [f"run {rid}: {problem}" for rid, problem in self.unreadable.items()]
        lines += [f"run {rid}: arrays {problem}" for rid, problem in self.missing_arrays.items()]
        lines += [f"run {rid}: typed query rows {problem}"
                  for rid, problem in self.wrong_rows.items()]
        lines += [f"{count} rows of {table} belong to no run"
                  for table, count in self.stray_rows.items()]
        if self.wrong_counts:
            lines.append(f"parameter_counts: the counts of {self.wrong_counts} parameter "
                         "values are wrong (they order query conditions; what queries "
                         "match is not affected)")
        if self.wrong_slots:
            lines.append(f"entries: {self.wrong_slots} numbers copied from the parameters "
                         "rows (the slots v0, v1 ...) differ from them: queries on those "
                         "parameters can miss runs or find wrong ones; runstore check --fix "
                         "copies them again")
        lines += [f"side file no run points into: {name}" for name in self.orphan_files]
        lines += [f"half-written side file: {name}" for name in self.partial_files]
        lines += [f"not a regular file where a side file is named: {name} (left alone)"
                  for name in self.strange_files]
        return lines

    def __str__(self) -> str:
        kind = "bundle " if self.bundle else ""
        lines = [f"{kind}{self.path}: " + ("no problems found" if self.ok else
                                           "problems found")]
        lines += [f"  {line}" for line in self.problems()]
        if self.custom_ids:
            lines.append(f"  {self.custom_ids} runs have ids from a custom generate_id "
                         "(not recomputed)")
        lines += [f"  in use by a live writer (kept): {name}" for name in self.in_flight_files]
        would = "would " if self.dry_run else ""
        lines += [f"  {would}reset run {rid}: pending again, to be computed again ({why})"
                  for rid, why in self.reset.items()]
        lines += [f"  {would}delete {name}" for name in self.deleted]
        lines += [f"  {'would repair' if self.dry_run else 'repaired'}: {what}"
                  for what in self.repaired]
        if self.dry_run:
            lines.append("  (dry run: nothing was changed)")
        elif not self.ok and not (self.repaired or self.reset or self.deleted):
            lines.append("  `runstore check --fix STORE` repairs what can be repaired "
                         "(`--fix --dry-run` first says what it would change)")
        return "\n".join(lines)


@dataclass
class GcReport:
    """What :meth:`Store.gc` removed (or, in a dry run, would remove)."""

    path: str
    dry_run: bool = False
    orphan_files: list[str] = field(default_factory=list)
    rewritten: dict[str, int] = field(default_factory=dict)
    freed_bytes: int = 0
    db_bytes: tuple[int, int] = (0, 0)
    #: Files no row points into that were kept, with why (writer alive, too young).
    kept: dict[str, str] = field(default_factory=dict)
    bundle: bool = False

    def __str__(self) -> str:
        delete, rewrite, free = (("would delete", "would rewrite", "would free at most")
                                 if self.dry_run else ("deleted", "rewrote", "freed"))
        dropped = sum(self.rewritten.values())
        lines = [f"{'bundle ' if self.bundle else ''}{self.path}:",
                 f"  {delete} {len(self.orphan_files)} side files no run points into"]
        lines += [f"    {name}" for name in self.orphan_files]
        lines.append(f"  {rewrite} {len(self.rewritten)} side files without the {dropped} "
                     "arrays of runs cleared or computed again")
        lines += [f"    {name} ({count} arrays)" for name, count in self.rewritten.items()]
        lines += [f"  kept {name}: {why}" for name, why in self.kept.items()]
        lines.append(f"  {free} {self.freed_bytes / 1e6:.1f} MB of side files")
        if self.dry_run:
            lines.append("  (dry run: nothing was changed)")
        else:
            before, after = self.db_bytes
            lines.append(f"  compacted the SQLite file: {before / 1e6:.1f} MB -> "
                         f"{after / 1e6:.1f} MB")
        return "\n".join(lines)


# -- what belongs to the store ---------------------------------------------------------


def bundle_evidence(path: str) -> str | None:
    """Why the SQLite file at ``path`` is a bundle, or ``None`` if it is a store.

    A bundle is marked by ``PRAGMA user_version = 1`` (:meth:`Store.seal`).
    One written by an earlier runstore is recognised by having no
    ``<name>.arrays/`` folder and every run's arrays in the one ``<stem>.h5``
    beside it (or, without arrays, by its rollback journal: stores use WAL).
    Reads the file with SQLite, read-only.
    """
    if path == ":memory:":
        return None
    from .store import arrays_folder

    from .storefile import reading_uri, survey_path

    db = Path(path)
    survey_path(db, readonly=True)  # refuses, unchanged, what is not a runstore file
    try:
        conn = sqlite3.connect(reading_uri(db), uri=True)
    except sqlite3.Error:
        return None
    try:
        conn.execute("PRAGMA trusted_schema = OFF")
        conn.execute("PRAGMA query_only = ON")
        if conn.execute("PRAGMA user_version").fetchone()[0] == BUNDLE_MARK:
            return f"it is marked as a bundle (PRAGMA user_version = {BUNDLE_MARK})"
        if arrays_folder(db).exists():
            return None
        names = [r[0] for r in conn.execute(
            "SELECT DISTINCT array_file FROM runs WHERE array_file IS NOT NULL LIMIT 2")]
        own = db.with_suffix(".h5").name
        if names == [own]:
            return (f"every run's arrays are in {own} beside it and it has no "
                    f"{arrays_folder(db).name}/ folder (a bundle of an earlier runstore)")
        if not names and conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete":
            return ("it has no arrays, no arrays folder and a rollback journal where "
                    "stores use WAL (a bundle of an earlier runstore)")
    except sqlite3.Error:
        return None  # not readable: whoever asked reports the damage
    finally:
        conn.close()
    return None


@dataclass
class _Scope:
    """The files a check or gc may consider: the store's folder, or a bundle's ``.h5``."""

    arrays: ArrayStore
    bundle_file: str | None = None

    def files(self) -> list[str]:
        if self.bundle_file is None:
            return self.arrays.files()
        return [self.bundle_file] if self._regular(self.bundle_file) else []

    def partial_files(self) -> list[str]:
        if self.bundle_file is None:
            return self.arrays.partial_files()
        name = self.bundle_file + ".part"
        return [name] if self._regular(name) else []

    def strange(self) -> list[str]:
        if isinstance(self.arrays, MemoryArrayStore):
            return []
        if self.bundle_file is None:
            return self.arrays.strange_entries()
        return [name for name in (self.bundle_file, self.bundle_file + ".part")
                if os.path.lexists(self.arrays.directory / name) and not self._regular(name)]

    def _regular(self, name: str) -> bool:
        try:
            return stat.S_ISREG((self.arrays.directory / name).lstat().st_mode)
        except OSError:
            return False

    def remove(self, name: str) -> None:
        if self.bundle_file is None:
            self.arrays.remove(name)
        elif self._regular(name):  # the bundle's own .h5 or .h5.part, never a link
            (self.arrays.directory / name).unlink()

    def verdict(self, name: str, now: float, min_age: float) -> str | None:
        """Why an unreferenced file must be kept, or ``None`` if it may be deleted."""
        writer = side_file_writer(name)
        if writer == "alive":
            return "its writer is alive"
        if writer == "dead":
            return None
        try:
            age = now - (self.arrays.directory / name).lstat().st_mtime
        except OSError:
            return "it vanished"
        if age <= min_age:
            return (f"it is {age:.0f} s old, younger than {min_age:.0f} s, and its writer "
                    "cannot be told dead")
        return None


def _scope(store: Store, bundle: bool, action: str | None) -> _Scope:
    """The scope of a check or gc; refuse to change a bundle not declared one, and back."""
    evidence = bundle_evidence(store.path)
    if action is not None and evidence is not None and not bundle:
        raise BundleRepairError(store.path, action, evidence)
    if bundle and evidence is None:
        raise BundleRepairError(store.path, action or "check", None)
    if evidence is None or isinstance(store.arrays, MemoryArrayStore):
        return _Scope(store.arrays)
    db = Path(store.path)
    return _Scope(ArrayStore(db.parent), db.with_suffix(".h5").name)


# -- check ------------------------------------------------------------------------------


@dataclass
class _Row:
    key: int
    id: str
    run_type: str
    state: str
    parameters: str
    result: str | None
    array_file: str | None


def check_store(store: Store, fix: bool = False, dry_run: bool = False,
                bundle: bool = False, progress: bool | None = False) -> CheckReport:
    """Report a store's inconsistencies; with ``fix=True``, repair what can be.

    Checks SQLite's integrity; recomputes every run id from its stored
    parameters; compares the typed query rows (``parameters``,
    ``result_values``) with the rows the documents give, and the runs counted
    per value (``parameter_counts``) with those rows; checks every array
    of every done run against the dtype, shape and CRC-32 in its result; and
    finds files no run points into. Never stops at damage: what cannot be
    read is reported.

    Repairs (``fix=True``): wrong typed rows are rebuilt from the documents,
    wrong counts counted again, and numbers copied into batch entries
    (slots) copied again; done runs whose result or arrays are damaged go back to pending (each
    reported); typed rows of no run are deleted; side files no row points
    into are deleted when their writer is dead, or (writer unknown) when
    older than :data:`ORPHAN_AGE`. Runs whose id does not match their
    parameters are only reported. ``dry_run=True`` says what would be
    repaired and changes nothing. A bundle is refused for ``fix=True``
    unless ``bundle=True``.
    """
    scope = _scope(store, bundle, "repair" if fix and not dry_run else None)
    report = CheckReport(store.path, dry_run=dry_run and fix, bundle=scope.bundle_file is not None)
    _integrity(store, report)
    if fix and report.integrity:  # writing into a damaged file can only make it worse
        fix = False
        report.repaired.append("nothing: SQLite reports damage in the file, so nothing "
                               "was changed; restore the store from a copy (or salvage "
                               "it with sqlite3's .recover) and check again")
    referenced: set[str] = set()
    _check_runs(store, scope, report, referenced, fix, dry_run, progress)
    _check_stray_rows(store, report, fix, dry_run)
    _check_counts(store, report, fix and not report.integrity, dry_run)
    _check_slots(store, report, fix and not report.integrity, dry_run)
    _check_files(scope, report, referenced)
    if fix and report.integrity:
        report.repaired.append("no file deleted: not every row could be read, so no "
                               "file is proven unused")
    elif fix:
        _delete_orphans(store, scope, report, dry_run)
    return report


def _integrity(store: Store, report: CheckReport) -> None:
    try:
        with store._reading() as conn:
            report.integrity = [str(row[0]) for row in conn.exec_driver_sql(
                "PRAGMA integrity_check(100)") if row[0] != "ok"]
    # A damaged file can make SQLite raise anything from "malformed" to I/O errors.
    except sa.exc.DBAPIError as exc:
        report.integrity.append(f"SQLite cannot check the file ({exc.orig})")


def _chunks_of_runs(store: Store, report: CheckReport) -> Iterator[list[_Row]]:
    """The runs in chunks of :data:`_CHUNK`, by key; stops (reporting) at unreadable pages."""
    after = -(2**63)
    while True:
        try:
            with store._reading() as conn:
                rows = [_Row(*row) for row in conn.exec_driver_sql(
                    "SELECT key, id, run_type, state, parameters, result, array_file "
                    "FROM runs WHERE key > ? ORDER BY key LIMIT ?", (after, _CHUNK))]
        except sa.exc.DBAPIError as exc:
            report.integrity.append(f"the runs after key {after} cannot be read "
                                    f"({exc.orig}); they are not checked")
            return
        if not rows:
            return
        yield rows
        after = rows[-1].key


def _count_runs(store: Store) -> int | None:
    try:
        with store._reading() as conn:
            count: int = conn.exec_driver_sql("SELECT COUNT(*) FROM runs").scalar_one()
            return count
    except sa.exc.DBAPIError:
        return None


def _check_runs(store: Store, scope: _Scope, report: CheckReport, referenced: set[str],
                fix: bool, dry_run: bool, progress: bool | None) -> None:
    """Check every run, chunk by chunk (repairing each chunk as it goes)."""
    disable = None if progress is None else not progress
    with progress_bar(total=_count_runs(store), disable=disable, unit="runs",
                      desc="checking") as bar:
        for rows in _chunks_of_runs(store, report):
            referenced.update(r.array_file for r in rows if r.array_file is not None)
            try:
                typed = _typed_rows(store, [r.key for r in rows])
            except sa.exc.DBAPIError as exc:
                report.integrity.append(f"the typed rows of runs {rows[0].key} to "
                                        f"{rows[-1].key} cannot be read ({exc.orig})")
                typed = None
            expected = {r.key: _check_documents(r, report) for r in rows}
            rebuild = ({} if typed is None else
                       _compare_typed(rows, expected, typed, report))
            _check_arrays(scope, rows, expected, report)
            if fix:
                _repair_runs(store, rows, expected, rebuild, report, dry_run)
            bar.update(len(rows))


@dataclass
class _Expected:
    """What a run's documents say its typed rows and arrays are."""

    parameters: dict[str, Indexed] | None = None
    scalars: dict[str, Indexed] | None = None
    arrays: list[dict[str, Any]] = field(default_factory=list)
    result_ok: bool = True


def _check_documents(row: _Row, report: CheckReport) -> _Expected:
    """Read a run's documents, recompute its id; report what cannot be read."""
    expected = _Expected()
    try:
        document = json.loads(row.parameters)
        values = document["values"]
        if document.get("custom_id"):
            report.custom_ids += 1
        elif run_id_of_pairs(row.run_type, canonical_json(values)) != row.id:
            report.wrong_ids.append(row.id)
        expected.parameters = {str(name): indexed(tree) for name, tree in values}
    # A checker reports damage of any kind in a document (bad JSON, NULs,
    # nesting too deep to decode, wrong shapes of data) instead of stopping.
    except Exception as exc:  # noqa: BLE001
        report.unreadable[row.id] = f"parameters cannot be read ({_describe(exc)})"
    if row.state != RunState.DONE.value:
        expected.scalars = {}
        return expected
    try:
        if row.result is None:
            raise ValueError("a done run without a result")
        tree = json.loads(row.result)
        expected.scalars = scalars_of_tree(tree)
        expected.arrays = list(array_payloads(tree))
        for payload in expected.arrays:
            array_name(payload)
            np.dtype(payload["dtype"])
            tuple(int(n) for n in payload["shape"])
    except Exception as exc:  # noqa: BLE001 (as above)
        expected.result_ok = False
        report.unreadable.setdefault(row.id, f"result cannot be read ({_describe(exc)})")
    return expected


def _describe(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def _typed_rows(store: Store, keys: Sequence[int]
                ) -> dict[str, dict[int, dict[str, tuple[Any, ...]]]]:
    """The ``parameters`` and ``result_values`` rows of some runs, by table, run key, name."""
    found: dict[str, dict[int, dict[str, tuple[Any, ...]]]] = {
        "parameters": {}, "result_values": {}}
    marks = ",".join("?" * len(keys))
    with store._reading() as conn:
        for table, name in (("parameters", "name"), ("result_values", "key")):
            for key, label, *typed in conn.exec_driver_sql(
                    f"SELECT run_key, {name}, kind, num, text, canonical FROM {table} "
                    f"WHERE run_key IN ({marks})", tuple(keys)):
                found[table].setdefault(key, {})[label] = tuple(typed)
    return found


def _compare_typed(rows: list[_Row], expected: dict[int, _Expected],
                   typed: dict[str, dict[int, dict[str, tuple[Any, ...]]]],
                   report: CheckReport) -> dict[int, set[str]]:
    """Report runs whose typed rows differ; return the tables to rebuild per run key."""
    rebuild: dict[int, set[str]] = {}
    for row in rows:
        facts = expected[row.key]
        for table, forms in (("parameters", facts.parameters),
                             ("result_values", facts.scalars)):
            if forms is None:
                continue  # the document cannot be read: reported already
            stored = typed[table].get(row.key, {})
            differs = sorted(name for name in forms.keys() | stored.keys()
                             if name not in forms or name not in stored
                             or not _same(forms[name], stored[name]))
            if differs:
                rebuild.setdefault(row.key, set()).add(table)
                shown = ", ".join(repr(name) for name in differs[:5])
                previous = report.wrong_rows.get(row.id)
                text = f"in {table} differ from the run's documents ({shown})"
                report.wrong_rows[row.id] = f"{previous}; {text}" if previous else text
    return rebuild


def _same(form: Indexed, stored: tuple[Any, ...]) -> bool:
    kind, number, text, canonical = stored
    if (kind, text, canonical) != (form.kind, form.text, form.canonical):
        return False
    if form.number is None or number is None:
        return form.number is None and number is None
    # NUMERIC affinity stores 3.0 as 3: equal as numbers is what a query sees.
    return bool(number == form.number) and isinstance(number, (int, float))


def _check_arrays(scope: _Scope, rows: list[_Row], expected: dict[int, _Expected],
                  report: CheckReport) -> None:
    """Check the arrays of a chunk's done runs against their payloads (CRC-32 too)."""
    by_file: dict[str, list[_Row]] = {}
    for row in rows:
        facts = expected[row.key]
        if row.state != RunState.DONE.value or not facts.result_ok or not facts.arrays:
            continue
        if row.array_file is None:
            report.missing_arrays[row.id] = "are not recorded in any side file"
            continue
        by_file.setdefault(row.array_file, []).append(row)
    for filename, runs in by_file.items():
        problem = _unusable(scope.arrays, filename)
        if problem is not None:
            for row in runs:
                report.missing_arrays[row.id] = f"side file {filename} {problem}"
            continue
        for row in runs:
            found = _verify_run(scope.arrays, filename, row.id, expected[row.key].arrays)
            if found is not None:
                report.missing_arrays[row.id] = found


def _unusable(arrays: ArrayStore, filename: str) -> str | None:
    """Why a side file named in a row cannot be read, or ``None``."""
    if isinstance(arrays, MemoryArrayStore):
        return None
    try:
        path = arrays.path(filename)
        mode = os.stat(path).st_mode  # a link to a regular file is read through
    except FileNotFoundError:
        return f"is missing from {arrays.directory}"
    except (OSError, ValueError) as exc:
        return f"cannot be used ({_describe(exc)})"
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else (
            "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file")
        return f"is {kind}, not a side file"
    return None


def _verify_run(arrays: ArrayStore, filename: str, run_id: str,
                payloads: list[dict[str, Any]]) -> str | None:
    """Read a run's arrays, a bounded amount at a time; return the first problem."""
    groups: list[list[dict[str, Any]]] = [[]]
    size = 0
    for payload in payloads:
        nbytes = np.dtype(payload["dtype"]).itemsize * int(np.prod(payload["shape"]))
        if groups[-1] and size + nbytes > _READ_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(payload)
        size += nbytes
    for group in groups:
        problem = _verify_group(arrays, filename, run_id, group)
        if problem is not None:
            return problem
    return None


def _verify_group(arrays: ArrayStore, filename: str, run_id: str,
                  payloads: list[dict[str, Any]]) -> str | None:
    if not payloads:
        return None
    keys = {f"{run_id}/{array_name(p)}": p for p in payloads}
    try:
        found = arrays.read_many(filename, list(keys))
        for key, payload in keys.items():
            stored_array(payload, found[key], f"array {key}")
    # Whatever a damaged file makes h5py or the decoder raise is a finding.
    except Exception as exc:  # noqa: BLE001
        return f"in {filename} are damaged ({_describe(exc)})"
    return None


def _repair_runs(store: Store, rows: list[_Row], expected: dict[int, _Expected],
                 rebuild: dict[int, set[str]], report: CheckReport, dry_run: bool) -> None:
    """Reset a chunk's damaged done runs and rebuild its wrong typed rows."""
    wrong = set(report.wrong_ids)
    damaged = {row.id: report.missing_arrays.get(row.id) or report.unreadable[row.id]
               for row in rows if row.state == RunState.DONE.value and row.id not in wrong
               and (row.id in report.missing_arrays
                    or (not expected[row.key].result_ok and expected[row.key].parameters
                        is not None))}
    ids = {row.key: row.id for row in rows}
    fixable = {key: tables for key, tables in rebuild.items()
               if ids[key] not in wrong and ids[key] not in damaged}
    if not dry_run and damaged:
        store.reset(list(damaged), [RunState.DONE])
    report.reset.update({rid: f"arrays {why}" if rid in report.missing_arrays else why
                         for rid, why in damaged.items()})
    if fixable and not dry_run:
        with store._writing("rebuild typed rows") as conn:
            for key, tables in fixable.items():
                _rebuild_typed(conn, key, expected[key], tables)
    if fixable:
        report.repaired.append(f"typed query rows of {len(fixable)} runs rebuilt from "
                               "their documents")


def _rebuild_typed(conn: sa.Connection, key: int, facts: _Expected, tables: set[str]
                   ) -> None:
    for table, name, forms in (("parameters", "name", facts.parameters),
                               ("result_values", "key", facts.scalars)):
        if table not in tables or forms is None:
            continue
        counted = table == "parameters"
        if counted:
            recount(conn, [key], -1)
        conn.exec_driver_sql(f"DELETE FROM {table} WHERE run_key = ?", (key,))
        if forms:
            conn.exec_driver_sql(
                f"INSERT INTO {table} (run_key, {name}, kind, num, text, canonical) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(key, label, f.kind, f.number, f.text, f.canonical)
                 for label, f in forms.items()])
            if counted:
                recount(conn, [key], 1)


def _check_stray_rows(store: Store, report: CheckReport, fix: bool, dry_run: bool) -> None:
    """Find (and with ``fix``, delete) typed rows of no run; report entries of no run."""
    try:
        with store._reading() as conn:
            for table in ("parameters", "result_values", "entries"):
                count = conn.exec_driver_sql(
                    f"SELECT COUNT(*) FROM {table} WHERE run_key NOT IN "
                    "(SELECT key FROM runs)").scalar_one()
                if count:
                    report.stray_rows[table] = int(count)
    except sa.exc.DBAPIError as exc:
        report.integrity.append(f"the typed rows cannot be read ({exc.orig})")
        return
    stray = [t for t in report.stray_rows if t != "entries"]
    if fix and stray:
        if not dry_run:
            with store._writing("delete rows of no run") as conn:
                if "parameters" in stray:  # their values are counted out with them
                    recount(conn, [r[0] for r in conn.exec_driver_sql(
                        "SELECT DISTINCT run_key FROM parameters WHERE run_key NOT IN "
                        "(SELECT key FROM runs)")], -1)
                for table in stray:
                    conn.exec_driver_sql(f"DELETE FROM {table} WHERE run_key NOT IN "
                                         "(SELECT key FROM runs)")
        report.repaired += [f"deleted {report.stray_rows[t]} rows of {t} that belong to "
                            "no run" for t in stray]


def _check_counts(store: Store, report: CheckReport, fix: bool, dry_run: bool) -> None:
    """Compare ``parameter_counts`` with the ``parameters`` rows; with ``fix``, count again."""
    try:
        with store._reading() as conn:
            report.wrong_counts = int(conn.exec_driver_sql(MISCOUNTED).scalar_one())
    except sa.exc.DBAPIError as exc:
        report.integrity.append(f"the parameter counts cannot be read ({exc.orig})")
        return
    if fix and report.wrong_counts:
        if not dry_run:
            with store._writing("count parameter values") as conn:
                count_all(conn)
        report.repaired.append("parameter_counts counted again from the parameters rows")


def _check_slots(store: Store, report: CheckReport, fix: bool, dry_run: bool) -> None:
    """Compare the slots of every batch's entries with ``parameters``; with ``fix``, fill again."""
    try:
        with store._reading() as conn:
            for (batch,) in conn.exec_driver_sql("SELECT id FROM batches").all():
                for name, slot in slots_of(conn, batch).items():
                    report.wrong_slots += int(conn.exec_driver_sql(
                        MISFILLED.format(slot=slot), (batch, name)).scalar_one())
    except sa.exc.DBAPIError as exc:
        report.integrity.append(f"the batches' entries cannot be read ({exc.orig})")
        return
    if fix and report.wrong_slots:
        if not dry_run:
            with store._writing("copy numeric parameters into entries") as conn:
                refill_all(conn)
        report.repaired.append("the slots of entries copied again from the parameters rows")


def _check_files(scope: _Scope, report: CheckReport, referenced: set[str]) -> None:
    for name in scope.files():
        if name not in referenced:
            target = (report.in_flight_files if side_file_writer(name) == "alive"
                      else report.orphan_files)
            target.append(name)
    for name in scope.partial_files():
        target = (report.in_flight_files if side_file_writer(name) == "alive"
                  else report.partial_files)
        target.append(name)
    report.strange_files = scope.strange()


def _delete_orphans(store: Store, scope: _Scope, report: CheckReport, dry_run: bool
                    ) -> None:
    """Delete the unreferenced files a dead writer left (or, writer unknown, old ones)."""
    candidates = report.orphan_files + report.partial_files
    if not candidates:
        return
    referenced = _referenced_files(store)  # again: rows may have been added meanwhile
    now = time.time()
    for name in candidates:
        if name in referenced or scope.verdict(name, now, ORPHAN_AGE) is not None:
            continue
        if not dry_run:
            scope.remove(name)
        report.deleted.append(name)


def _referenced_files(store: Store) -> set[str]:
    """Every side file some row points into (raising if the rows cannot be read)."""
    try:
        with store._reading() as conn:
            return {row[0] for row in conn.exec_driver_sql(
                "SELECT DISTINCT array_file FROM runs WHERE array_file IS NOT NULL")}
    except sa.exc.DBAPIError as exc:
        raise StoreUnreadableError(store.path, str(exc.orig)) from exc


# -- garbage collection --------------------------------------------------------------------


def collect_garbage(store: Store, min_age: float = ORPHAN_AGE, dry_run: bool = False,
                    bundle: bool = False) -> GcReport:
    """Remove what no run needs any more, and compact the store.

    - side files of the store no run points into, and half-written ones,
      whose writer is dead, or (when that cannot be told: another host, a
      file named by an earlier runstore) older than ``min_age`` seconds; a
      live writer's file is always kept;
    - the arrays of runs that were cleared or computed again, by rewriting
      each side file that holds them without them (the rows are pointed at the
      new file in one transaction; the old file is deleted after);
    - free pages of the SQLite file (``VACUUM``).

    Only the store's own side files are considered (see the module's
    description); a bundle is refused unless ``bundle=True``, and then only
    its own ``.h5`` is considered (rewritten in place, under a temporary
    name first). ``dry_run=True`` says what would be done and changes nothing.
    """
    report = GcReport(store.path, dry_run)
    if store.path == ":memory:":
        return report
    scope = _scope(store, bundle, None if dry_run else "collect garbage in")
    report.bundle = scope.bundle_file is not None
    referenced: dict[str, set[str]] = {}
    try:
        with store._reading() as conn:
            damage = [str(r[0]) for r in conn.exec_driver_sql("PRAGMA quick_check(5)")]
            if damage != ["ok"]:
                raise StoreUnreadableError(store.path, "; ".join(damage))
            for rid, filename in conn.exec_driver_sql(
                    "SELECT id, array_file FROM runs WHERE array_file IS NOT NULL"):
                referenced.setdefault(filename, set()).add(rid)
    except sa.exc.DBAPIError as exc:
        raise StoreUnreadableError(store.path, str(exc.orig)) from exc
    _collect_orphans(scope, referenced, min_age, dry_run, report)
    own = set(scope.files())
    for filename, keep in referenced.items():
        if filename in own:
            _rewrite(store, scope, filename, keep, dry_run, report)
    if not dry_run:
        try:
            report.db_bytes = store.vacuum()
        except sqlite3.Error as exc:
            raise StoreUnreadableError(store.path, f"VACUUM failed: {exc}") from exc
    return report


def _collect_orphans(scope: _Scope, referenced: dict[str, set[str]], min_age: float,
                     dry_run: bool, report: GcReport) -> None:
    now = time.time()
    directory = scope.arrays.directory
    for name in scope.files() + scope.partial_files():
        if name in referenced:
            continue
        why = scope.verdict(name, now, min_age)
        if why is not None:
            report.kept[name] = why
            continue
        try:
            size = (directory / name).lstat().st_size
        except OSError:
            continue
        report.orphan_files.append(name)
        report.freed_bytes += size
        if not dry_run:
            scope.remove(name)


def _rewrite(store: Store, scope: _Scope, filename: str, keep: set[str], dry_run: bool,
             report: GcReport) -> None:
    """Rewrite a side file without the arrays of runs that no longer point into it."""
    try:
        garbage = set(scope.arrays.groups(filename)) - keep
    except (OSError, ValueError):
        return  # unreadable: `check` reports it
    if not garbage:
        return
    report.rewritten[filename] = len(garbage)
    directory = scope.arrays.directory
    size = (directory / filename).stat().st_size
    if dry_run:
        report.freed_bytes += size  # at most; the kept arrays are written again
        return
    if scope.bundle_file is not None:  # the bundle's one file, replaced whole
        scope.arrays.pack({filename: sorted(keep)}, directory / filename)
        report.freed_bytes += size - (directory / filename).stat().st_size
        return
    fresh = scope.arrays.repack(filename, sorted(keep))
    with store._writing("rewrite side files") as conn:
        conn.exec_driver_sql("UPDATE runs SET array_file = ? WHERE array_file = ?",
                             (fresh, filename))
    report.freed_bytes += size - (directory / fresh).stat().st_size
    scope.arrays.remove(filename)
