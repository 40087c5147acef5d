"""Bundles: selected runs in a ``.db`` + ``.h5`` pair, to share results.

A bundle is a small store: a SQLite file (self-contained, no write-ahead log)
with the runs, their typed parameters, results and provenance, and one HDF5
file beside it with their arrays, each array with the CRC-32 recorded in its
run's result. :func:`open_bundle` opens it read-only as a batch of
:class:`~runstore.ResultRun`\\ s: no run class is needed, nothing is imported
or unpickled (unless asked), and reading never modifies the files.
"""

from __future__ import annotations

import os
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .arrays import RunInfo
from .batch import Batch, check_batch_name
from .encoding import canonical_json, indexed, stored_array
from .errors import (ArrayFileError, BundleError, CustomIdRefusedError, DecodingError,
                     ReadOnlyStoreError, RunNotFound, UnsafeArrayFileError)
from .identity import run_id_of_pairs
from .results import array_name, array_payloads, scalars_of_tree
from .run import Run, with_origin
from .store import Adopted, Store, _chunks

__all__ = ["export", "open_bundle", "import_bundle", "import_runs", "ImportReport",
           "bundle_paths"]


def bundle_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The ``.db`` and ``.h5`` files of a bundle named ``path`` (with or without ``.db``)."""
    db = Path(path)
    if db.suffix != ".db":
        db = db.with_name(db.name + ".db")
    return db, db.with_suffix(".h5")


def export(batch: Batch, path: str | os.PathLike[str], runs: Iterable[Run] | None = None
           ) -> tuple[Path, Path]:
    """Write a bundle of a batch's runs (all, or those given); return its two files.

    The bundle is one consistent snapshot of the store: the runs' rows and
    the arrays they point to are read inside one read transaction, so runs
    that other processes complete, clear or recompute meanwhile are written
    either as they were before or not at all changed. The arrays are packed
    into the ``.h5`` file first, the ``.db`` is written under a temporary
    name, and both are in place only when complete; on an error neither is
    left behind.
    """
    db, h5 = bundle_paths(path)
    for existing in (db, h5):
        if existing.exists():
            raise BundleError(f"{existing} exists; remove it or choose another bundle path")
    selected = list(batch.run) if runs is None else list(runs)
    db.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(_EXPORT_ATTEMPTS):
        try:
            with batch.store.snapshot():
                _write_bundle(batch, selected, db, h5)
            return db, h5
        except UnsafeArrayFileError:
            raise
        except ArrayFileError:
            # `runstore gc` may have moved arrays to a new side file after the
            # snapshot began; a new snapshot sees the new file.
            if attempt == _EXPORT_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


#: How many snapshots an export tries when side files are rewritten under it.
_EXPORT_ATTEMPTS = 3


def _write_bundle(batch: Batch, selected: Sequence[Run], db: Path, h5: Path) -> None:
    """Write the bundle's two files from the store's current snapshot."""
    rows = batch.store.rows_of(batch._id, [run.id for run in selected])
    if len(rows) != len({run.id for run in selected}):
        raise BundleError(f"some of the runs given are not in batch {batch.name!r}")
    records = batch.store.records([row.id for row in rows])
    by_file: dict[str, list[str]] = {}
    for rid, record in records.items():
        if record["array_file"]:
            by_file.setdefault(record["array_file"], []).append(rid)
    partial = db.with_name(db.name + ".part")
    partial.unlink(missing_ok=True)
    try:
        if by_file:
            try:
                batch.store.arrays.pack(by_file, h5, {
                    rid: _run_info(record) for rid, record in records.items()})
            except ArrayFileError:
                raise
            except (OSError, KeyError) as exc:
                raise ArrayFileError(str(h5), f"could not be packed ({exc})") from exc
        target = Store(partial, arrays=db.parent, _private=True)  # nobody else opens it
        try:
            batch.store.copy_runs([row.key for row in rows], target, batch.name,
                                  h5.name if by_file else None)
            target.seal()
        finally:
            target.close()
        os.replace(partial, db)
    except BaseException:
        for leftover in (partial, h5):
            leftover.unlink(missing_ok=True)
        raise


def open_bundle(path: str | os.PathLike[str], allow_pickle: bool = False) -> Batch:
    """Open a bundle read-only as a batch of result runs.

    Nothing named in the files is imported and nothing is unpickled (unless
    ``allow_pickle``): parameters that name functions or classes come back as
    :class:`~runstore.encoding.FunctionRef` / :class:`~runstore.encoding.ObjectRef`.
    """
    db, _ = bundle_paths(path)
    if db.exists() and not db.is_file():  # a FIFO would block whoever reads it
        raise BundleError(f"{db} is not a regular file; a bundle is a .db file and its .h5")
    store = Store(db, readonly=True, allow_pickle=allow_pickle, arrays=db.parent)
    names = store.batch_names()
    if len(names) != 1:
        raise BundleError(f"{db} holds {len(names)} batches ({names}); a bundle holds one")
    return Batch(names[0], store=store)


@dataclass
class ImportReport:
    """What :func:`import_bundle` / :func:`import_runs` did."""

    #: Runs new to the store, added with their states and results.
    added: int = 0
    #: Runs the store held pending or failed, now done with the incoming result.
    completed: int = 0
    #: Runs the store already held (the same run, nothing to take).
    present: int = 0

    def __str__(self) -> str:
        return (f"{self.added} runs added, {self.completed} completed with the incoming "
                f"results, {self.present} already in the store")


def import_bundle(path: str | os.PathLike[str], store: Store | str | os.PathLike[str],
                  batch: str | None = None, trust: bool = False) -> ImportReport:
    """Add the runs of a bundle to a store, in a batch named ``batch`` (default: the bundle's).

    A run the store already holds is not duplicated; a run it holds pending
    or failed takes the bundle's result. A run with the same id but
    different content (parameters, run type, or result when both are done)
    is an error, and so is a run whose id does not match its parameters;
    both are found before anything is written. Arrays are checked against
    their checksums as they are copied.

    What the bundle brings stays data: the store records that the runs'
    parameters and results came from ``path``, and they are never decoded by
    importing the functions and classes they name, not even when the run's
    class is defined, until the user vouches for them (adding the same run
    with their own code vouches for its parameters, never for an imported
    result) or trusts them (:meth:`Store.trust_runs`). Runs with custom ids
    (which cannot be checked against their parameters) are refused.
    ``trust=True`` trusts the whole bundle: only for files whose author you
    trust.
    """
    if batch is not None:
        check_batch_name(batch)  # before a store is created for it
    source = open_bundle(path)
    target = store if isinstance(store, Store) else Store(store)
    try:
        return import_runs(source, target, batch, trust=trust)
    finally:
        source.store.close()
        if target is not store:
            target.close()


def import_runs(source: Batch, store: Store, batch: str | None = None,
                run_ids: Sequence[str] | None = None, trust: bool = False) -> ImportReport:
    """Add runs of ``source`` (all, or ``run_ids``) to a batch of another store.

    See :func:`import_bundle`, which applies it to a bundle (and for ``trust``).
    """
    if batch is not None:
        check_batch_name(batch)  # before anything is opened or written
    if store.readonly:
        raise ReadOnlyStoreError(store.path, "import runs")
    if os.path.abspath(source.store.path) == os.path.abspath(store.path):
        raise BundleError(f"{store.path} is the store the runs come from; use "
                          "Batch.add_resultrun(ids) to add them to another of its batches")
    if run_ids is None:
        ids = list(source.run.ids())
    else:
        ids = list(dict.fromkeys(run_ids))
        found = {row.id for row in source.store.rows_of(source._id, ids)}
        missing = [rid for rid in ids if rid not in found]
        if missing:
            raise RunNotFound(missing[0], f"batch {source.name!r} of {source.store.path} "
                              f"({len(missing)} of {len(ids)} ids missing; none was added)")
    report = ImportReport()
    conflicts: list[str] = []
    # Two passes: every run is checked before anything is written, and only a
    # chunk of runs is held in memory at a time (so each is read twice).
    for chunk in _chunks(ids):
        incoming = [_adopted(record, source.store.path, trust)
                    for record in source.store.records(chunk).values()]
        existing = store.records(chunk)
        for run in incoming:
            mine = existing.get(run.record["id"])
            if mine is not None and _differs(mine, run.record):
                conflicts.append(run.record["id"])
    if conflicts:
        raise BundleError(
            f"{len(conflicts)} runs of {source.store.path} have the id of a different run in "
            f"{store.path} (e.g. {conflicts[0]}): same id, different parameters or result. "
            "Nothing was imported. Import into another store, or clear those runs in "
            "this one (Run.clear()) to take the incoming results")
    target = store.batch_id(batch or source.name)
    assert target is not None  # the store is writable
    for chunk in _chunks(ids):
        existing = store.records(chunk)  # a guess: adopt_runs decides in its transaction
        with source.store.snapshot():  # each run's row and arrays as they were together
            records = source.store.records(chunk)
            runs = [_adopted(records[rid], source.store.path, trust) for rid in chunk]
            takes = [run for run in runs if run.record["state"] == "done" and (
                run.record["id"] not in existing
                or existing[run.record["id"]]["state"] in ("pending", "failed"))]
            arrays = {run.record["id"]: _arrays_of(source.store, run) for run in takes}
        arrays = {rid: named for rid, named in arrays.items() if named}
        infos = {run.record["id"]: _run_info(run.record) for run in takes}
        filename = store.arrays.write(arrays, infos) if arrays else None
        added, completed = store.adopt_runs(target, runs, filename, with_arrays=arrays)
        report.added += added
        report.completed += completed
        report.present += len(runs) - added - completed
    return report


def _run_info(record: dict[str, Any]) -> RunInfo:
    """What a side file records about a run beside its arrays, from its row."""
    info = RunInfo(run_type=record["run_type"], parameters=record["parameters"])
    if record.get("result") is not None:
        payloads = list(array_payloads(json.loads(record["result"])))
        info["arrays"] = [array_name(p) for p in payloads]
        info["checksums"] = {array_name(p): p["crc32"] for p in payloads
                             if isinstance(p.get("crc32"), int)}
    return info


def _adopted(record: dict[str, Any], where: str, trust: bool = False) -> Adopted:
    """Check a run read from another store; rebuild its typed rows from its documents.

    Unless ``trust``, the run is marked as coming from ``where``: its
    parameters document gets an ``origin``, and so do its row's
    ``parameters_origin`` and (if done) ``result_origin``.
    """
    rid = record["id"]
    try:
        document = json.loads(record["parameters"])
        values = document["values"]
        if document.get("custom_id"):
            if not trust:
                raise CustomIdRefusedError(rid, where)
        elif run_id_of_pairs(record["run_type"], canonical_json(values)) != rid:
            raise BundleError(f"run {rid} of {where}: its id does not match its parameters "
                              "(the file was changed outside runstore). Nothing was imported")
        parameters = {str(name): indexed(tree) for name, tree in values}
        tree = json.loads(record["result"]) if record["result"] is not None else None
        scalars = scalars_of_tree(tree) if record["state"] == "done" else {}
        for payload in array_payloads(tree):
            array_name(payload)
        origin = None if trust else os.path.abspath(where)
        marked = dict(record, parameters=with_origin(record["parameters"], origin),
                      parameters_origin=origin,
                      result_origin=origin if record["state"] == "done" else None)
    except BundleError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, DecodingError) as exc:
        raise BundleError(f"run {rid} of {where} cannot be read ({exc}). Nothing was "
                          "imported") from exc
    return Adopted(marked, parameters, scalars)


def _differs(mine: dict[str, Any], theirs: dict[str, Any]) -> bool:
    if mine["run_type"] != theirs["run_type"]:
        return True
    if _values(mine["parameters"]) != _values(theirs["parameters"]):
        return True
    if mine["state"] == theirs["state"] == "done":
        return _canonical(mine["result"]) != _canonical(theirs["result"])
    return False


def _values(document: str) -> str:
    return canonical_json(json.loads(document)["values"])


def _canonical(text: str | None) -> str | None:
    return None if text is None else canonical_json(json.loads(text))


def _arrays_of(store: Store, run: Adopted) -> dict[str, np.ndarray]:
    """Read a run's arrays from its store, checked against their payloads and checksums."""
    rid = run.record["id"]
    payloads = {array_name(p): p for p in array_payloads(json.loads(run.record["result"]))}
    if not payloads:
        return {}
    try:
        found = store.load_arrays(rid, run.record["array_file"], list(payloads), payloads)
        for name, payload in payloads.items():
            stored_array(payload, found[name], f"run {rid} array {name}")
    except (DecodingError, ArrayFileError) as exc:
        raise BundleError(f"{exc}; the runs before it were imported, it and the runs "
                          "after it were not (`runstore check` tells what is damaged)") from exc
    return found
