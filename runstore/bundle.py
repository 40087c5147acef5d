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
from collections.abc import Iterable
from pathlib import Path

from .batch import Batch
from .errors import BundleError
from .run import Run
from .store import Store

__all__ = ["export", "open_bundle", "bundle_paths"]


def bundle_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The ``.db`` and ``.h5`` files of a bundle named ``path`` (with or without ``.db``)."""
    db = Path(path)
    if db.suffix != ".db":
        db = db.with_name(db.name + ".db")
    return db, db.with_suffix(".h5")


def export(batch: Batch, path: str | os.PathLike[str], runs: Iterable[Run] | None = None
           ) -> tuple[Path, Path]:
    """Write a bundle of a batch's runs (all, or those given); return its two files.

    The arrays are packed into the ``.h5`` file first (written under a
    temporary name, then renamed); only then is the ``.db`` written.
    """
    db, h5 = bundle_paths(path)
    for existing in (db, h5):
        if existing.exists():
            raise BundleError(f"{existing} exists; remove it or choose another bundle path")
    selected = list(batch.run) if runs is None else list(runs)
    rows = batch.store.rows_of(batch._id, [run.id for run in selected])
    if len(rows) != len({run.id for run in selected}):
        raise BundleError(f"some of the runs given are not in batch {batch.name!r}")
    by_file: dict[str, list[str]] = {}
    for row in rows:
        filename = batch.store.run_record(row.id)["array_file"]
        if filename:
            by_file.setdefault(filename, []).append(row.id)
    db.parent.mkdir(parents=True, exist_ok=True)
    if by_file:
        batch.store.arrays.pack(by_file, h5)
    target = Store(db, arrays=db.parent)
    batch.store.copy_runs([row.key for row in rows], target, batch.name,
                          h5.name if by_file else None)
    target.seal()
    return db, h5


def open_bundle(path: str | os.PathLike[str], allow_pickle: bool = False) -> Batch:
    """Open a bundle read-only as a batch of result runs."""
    db, _ = bundle_paths(path)
    store = Store(db, readonly=True, allow_pickle=allow_pickle, arrays=db.parent)
    names = store.batch_names()
    if len(names) != 1:
        raise BundleError(f"{db} holds {len(names)} batches ({names}); a bundle holds one")
    return Batch(names[0], store=store)
