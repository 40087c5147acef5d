"""batchpy's results: a ``_res/`` folder of pickled ``.npy`` files, read into a store.

batchpy, the package runstore grows from, kept each run's result as
``_res/<batch name>_<run id>.npy``: an ``.npy`` file holding a pickled dict,
``{'res': result, 'id': run id, 'runtime': seconds, 'parameters': {...}}``
(files of batchpy before 1.0 lack ``parameters``, and the oldest also
``runtime``). :func:`import_batchpy` reads such a folder into a store: each
file becomes a done result run of run type :data:`RUN_TYPE`, with batchpy's
id, in the batch of its file name.

Reading a pickle can run code, so nothing is read unless the caller allows
it (``allow_pickle=True``); even then the files are read by an unpickler that
builds only what results of plain values hold (Python's built-in values,
numpy arrays, scalars and dtypes, ``OrderedDict``, ``datetime`` values) and
refuses any other name a file asks to import, unless the caller names its
module (``allow_modules``). What the files bring stays data, as for a
bundle: each run records the file it came from.
"""

from __future__ import annotations

import collections
import datetime
import json
import math
import os
import pickle
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from .arrays import RunInfo
from .encoding import canonical_json, indexed
from .errors import (BatchNameError, BatchpyImportError, BatchpyPickleRefusedError,
                     EncodingError, ReadOnlyStoreError)
from .identity import encode_parameters
from .progress import progress_bar
from .results import encode_result
from .run import array_documents
from .schema import Base, RunState
from .store import Adopted, Store

__all__ = ["import_batchpy", "BatchpyReport", "BatchCounts", "RUN_TYPE"]

#: The run type of runs imported from batchpy, which did not record run classes.
#: It names no importable class, so such a run is never computed.
RUN_TYPE = "batchpy"

#: ``<batch name>_<40 hex digits>.npy``: the batch name may itself hold ``_``.
_RESULT_FILE = re.compile(r"(?P<batch>.+)_(?P<id>[0-9a-f]{40})\.npy\Z", re.S)
#: What ``Batch.save_ids()`` of batchpy wrote: the batch's ids, in its order.
_ID_LIST = re.compile(r"(?P<batch>.+)_ids\.npy\Z", re.S)
#: Files read, encoded and committed together (one side file, one transaction).
_CHUNK = 200


@dataclass
class BatchCounts:
    """What :func:`import_batchpy` did with one batch's files."""

    #: Runs taken into the store: new to it, or completing a pending or failed run.
    imported: int = 0
    #: Runs the store held already with the same result (added to the batch if needed).
    present: int = 0


@dataclass
class BatchpyReport:
    """What :func:`import_batchpy` did: per batch, and each file it could not import."""

    #: Counts by batch name.
    batches: dict[str, BatchCounts] = field(default_factory=dict)
    #: ``(file, reason)`` of each file not imported; the others were.
    failed: list[tuple[str, str]] = field(default_factory=list)
    #: The id lists found (``<batch>_ids.npy``, batchpy's ``save_ids``): not results,
    #: but they gave their batch's order.
    id_lists: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every result file was imported (or was in the store already)."""
        return not self.failed

    def __str__(self) -> str:
        width = max([len(name) for name in self.batches] + [5])
        lines = [f"{name:<{width}}  {c.imported} imported, {c.present} already in the store"
                 for name, c in self.batches.items()]
        if not self.batches:
            lines.append("no batchpy results imported")
        if self.failed:
            lines.append(f"{len(self.failed)} files could not be imported (the others were):")
            lines += [f"  {path}: {reason}" for path, reason in self.failed]
        return "\n".join(lines)


def import_batchpy(folder: str | os.PathLike[str], store: Store | str | os.PathLike[str], *,
                   allow_pickle: bool = False, allow_modules: Iterable[str] = (),
                   batches: Iterable[str] | None = None, progress: bool | None = False
                   ) -> BatchpyReport:
    """Import the results in a batchpy ``_res/`` folder into a store.

    Each ``<batch>_<id>.npy`` file becomes a done run in the store's batch
    named ``<batch>`` (created if needed; the batch name is the file name up
    to the 40-hex-digit id). The run keeps batchpy's id, so lists of ids
    saved by batchpy (``np.load('_res/<batch>_ids.npy')``) work with
    :meth:`Batch.add_resultrun <runstore.Batch.add_resultrun>`; its run
    type is :data:`RUN_TYPE`; its parameters are those batchpy saved
    (functions and classes as the names batchpy saved for them, none for
    files of batchpy before 1.0), its runtime batchpy's, and its
    ``finished_at`` the file's modification time. Arrays in results go to
    the store's side files. A batch's runs are in the order of its
    ``<batch>_ids.npy`` if there is one, then by file name.

    Importing again adds nothing: a run the store holds with the same
    result counts as present. A file that cannot be imported (damaged,
    truncated, not a batchpy result, a run whose id the store holds with a
    different result, a result without a canonical encoding) is reported in
    :attr:`BatchpyReport.failed` with the reason and skipped; files are
    committed in chunks, so whatever was imported stays imported.

    Parameters
    ----------
    folder
        The ``_res/`` folder.
    store
        A store, or the path of one (created if it does not exist). Results
        with no canonical encoding are refused, unless the store was opened
        with ``allow_pickle=True``: then they are kept as pickles, which load
        only where the store is opened with ``allow_pickle=True``, once the
        runs are trusted (:meth:`Store.trust_runs <runstore.Store.trust_runs>`).
    allow_pickle
        Read the files, which are pickles (reading a pickle can run code).
        Without it nothing is read: :class:`~runstore.errors.BatchpyPickleRefusedError`.
    allow_modules
        Modules (with their submodules) whose classes and functions the
        files may name, e.g. ``["pandas"]`` for results holding DataFrames.
        Naming a module lets the files run its code; by default only plain
        values and numpy arrays are built.
    batches
        Import only these batches (default: all in the folder).
    progress
        Show a progress bar over the files (``None``: when on a terminal).

    Raises
    ------
    BatchpyPickleRefusedError
        Without ``allow_pickle``.
    BatchpyImportError
        If ``folder`` is not a folder, holds no batchpy results, or holds none
        of the ``batches`` named.
    """
    where = Path(folder)
    if not where.is_dir():
        raise BatchpyImportError(str(where), f"{where} is not a folder; give batchpy's _res/ "
                                 "folder (where its <batch>_<id>.npy files are)")
    found, id_lists, report = _scan(where)
    found = _selected(where, found, batches)
    count = sum(len(files) for files in found.values())
    if not allow_pickle:
        raise BatchpyPickleRefusedError(str(where), count)
    report.id_lists = [str(path) for path in id_lists.values()]
    target = store if isinstance(store, Store) else Store(store)
    try:
        if target.readonly:
            raise ReadOnlyStoreError(target.path, "import batchpy results")
        modules = tuple(allow_modules)
        with progress_bar(total=count, disable=None if progress is None else not progress,
                          unit="files", desc="importing") as bar:
            for name, files in found.items():
                ordered = _ordered(files, id_lists.get(name))
                _import_batch(target, name, ordered, modules, report, bar)
    finally:
        if target is not store:
            target.close()
    return report


def batchpy_result_files(folder: Path, batch: str) -> list[Path]:
    """batchpy's result files of one batch in a folder (``<batch>_<id>.npy``)."""
    return [path for path in sorted(folder.glob("*.npy"))
            if (match := _RESULT_FILE.match(path.name)) and match["batch"] == batch]


def _scan(folder: Path) -> tuple[dict[str, list[tuple[Path, str]]], dict[str, Path],
                                  BatchpyReport]:
    """The result files by batch, the id lists by batch, and a report of foreign files."""
    found: dict[str, list[tuple[Path, str]]] = {}
    id_lists: dict[str, Path] = {}
    report = BatchpyReport()
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if not entry.name.endswith(".npy"):
            continue  # batchpy's __init__.py, ids saved as .py, the user's own files
        path = Path(entry.path)
        result, ids = _RESULT_FILE.match(entry.name), _ID_LIST.match(entry.name)
        if not entry.is_file():  # a FIFO would block whoever reads it
            report.failed.append((str(path), "not a regular file"))
        elif result:
            found.setdefault(result["batch"], []).append((path, result["id"]))
        elif ids:
            id_lists[ids["batch"]] = path
        else:
            report.failed.append((str(path), (
                "its name is not <batch>_<id>.npy with a 40-hex-digit id, as batchpy names "
                "results; runstore ids are 40 hex digits, so a run whose id came from a "
                "custom generate_id cannot keep it (load it with numpy and add it with your "
                "own run class if you need it)")))
    return found, id_lists, report


def _selected(folder: Path, found: dict[str, list[tuple[Path, str]]],
              batches: Iterable[str] | None) -> dict[str, list[tuple[Path, str]]]:
    """The batches asked for; an error if the folder holds none of them."""
    if not found:
        below = folder / "_res"
        hint = (f"; batchpy's results are in {below}" if below.is_dir()
                else "; give batchpy's _res/ folder")
        raise BatchpyImportError(str(folder), f"{folder} holds no batchpy result files "
                                 f"(<batch>_<40-hex-digit id>.npy){hint}")
    if batches is None:
        return found
    wanted = list(dict.fromkeys(batches))
    missing = [name for name in wanted if name not in found]
    if missing:
        raise BatchpyImportError(str(folder), f"{folder} holds no results of the batches "
                                 f"{missing}; it holds {sorted(found)}")
    return {name: found[name] for name in wanted}


def _ordered(files: list[tuple[Path, str]], id_list: Path | None) -> list[tuple[Path, str]]:
    """A batch's files in the order of its saved id list (if readable), then by name."""
    if id_list is None:
        return files
    try:
        # No pickles: allow_pickle=False reads plain arrays only.
        saved = [str(rid) for rid in np.load(id_list, allow_pickle=False).ravel()]
    except (ValueError, OSError, EOFError):
        return files  # only the order is lost
    rank = {rid: i for i, rid in reversed(list(enumerate(saved)))}
    return sorted(files, key=lambda item: rank.get(item[1], len(rank)))


class _Unreadable(Exception):
    """A file that cannot be imported, and why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Prepared:
    """One file, read and encoded, ready for the store."""

    path: Path
    run: Adopted
    arrays: dict[str, np.ndarray]
    info: RunInfo
    #: Whether the file had parameters (old-style files do not).
    with_parameters: bool


def _import_batch(store: Store, name: str, files: list[tuple[Path, str]],
                  modules: tuple[str, ...], report: BatchpyReport, bar: Any) -> None:
    """Import one batch's files, chunk by chunk."""
    counts = report.batches.setdefault(name, BatchCounts())
    for start in range(0, len(files), _CHUNK):
        prepared: list[_Prepared] = []
        for path, rid in files[start:start + _CHUNK]:
            try:
                data, finished = _read(path, modules)
                prepared.append(_prepare(path, rid, data, finished, store.allow_pickle))
            except _Unreadable as exc:
                report.failed.append((str(path), exc.reason))
            bar.update(1)
        if prepared:
            _commit(store, name, prepared, counts, report)


def _commit(store: Store, name: str, prepared: list[_Prepared], counts: BatchCounts,
            report: BatchpyReport) -> None:
    """Write the arrays of the runs the store takes, then their rows, in one transaction."""
    try:
        batch = store.batch_id(name)  # created only when it gets runs
    except BatchNameError as exc:
        report.failed += [(str(p.path), f"its batch name cannot be used: {exc}")
                          for p in prepared]
        return
    if batch is None:  # pragma: no cover - the store was checked to be writable
        raise ReadOnlyStoreError(store.path, "import batchpy results")
    existing = store.records([p.run.record["id"] for p in prepared])
    keep: list[_Prepared] = []
    for item in prepared:
        mine = existing.get(item.run.record["id"])
        if mine is not None and _differs(mine, item):
            report.failed.append((str(item.path), _conflict(mine)))
        else:
            keep.append(item)
    takes = [p for p in keep if p.arrays and (
        p.run.record["id"] not in existing
        or existing[p.run.record["id"]]["state"] in (RunState.PENDING.value,
                                                     RunState.FAILED.value))]
    arrays = {p.run.record["id"]: p.arrays for p in takes}
    filename = store.arrays.write(
        arrays, {p.run.record["id"]: p.info for p in takes}) if arrays else None
    for item in keep:
        if item.arrays:
            # A run whose arrays were not written here is never recorded done
            # with them: adopt_runs takes it without its result, or not at all.
            item.run.record["array_file"] = (filename if item.run.record["id"] in arrays
                                             else "not written")
    added, completed = store.adopt_runs(batch, [p.run for p in keep], filename,
                                        with_arrays=arrays)
    counts.imported += added + completed
    counts.present += len(keep) - added - completed


def _differs(mine: dict[str, Any], theirs: _Prepared) -> bool:
    """Whether the store's run of this id is another run than the file's."""
    record = theirs.run.record
    if mine["run_type"] != record["run_type"]:
        return True
    stored = json.loads(mine["parameters"])["values"]
    # Files of batchpy before 1.0 carry no parameters: any parameters fit them.
    if stored and theirs.with_parameters and (
            canonical_json(stored) != canonical_json(json.loads(record["parameters"])["values"])):
        return True
    if mine["state"] == RunState.DONE.value:
        return bool(canonical_json(json.loads(mine["result"])) != record["result"])
    return False


def _conflict(mine: dict[str, Any]) -> str:
    where = mine["parameters_origin"] or "this store's own runs"
    return (f"the store holds run {mine['id']} (from {where}) with other parameters or "
            "another result: batchpy's ids hash only parameter values, so runs of "
            "different run classes share them. Import this batch into another store "
            "(import_batchpy(..., batches=[NAME]); runstore import-batchpy --batch NAME)")


# -- reading a file -------------------------------------------------------------------


def _read(path: Path, modules: tuple[str, ...]) -> tuple[dict[str, Any], float]:
    """The dict a batchpy result file holds (unpickled with only the names allowed),
    and the file's modification time."""
    try:
        with open(path, "rb") as f:
            modified = os.fstat(f.fileno()).st_mtime
            shape, dtype = _header(f)
            if dtype != np.dtype(object) or shape != ():
                raise _Unreadable(f"an .npy array of {dtype} with shape {shape}, not a "
                                  "batchpy result (batchpy saved a pickled dict)")
            start = f.tell()
            try:
                value = _unpickle(f, "ASCII", modules)
            except UnicodeDecodeError:
                # Python 2 pickles: text and numpy data as Python 2 str, which
                # latin1 maps byte for byte (as np.load(encoding='latin1') does).
                f.seek(start)
                value = _unpickle(f, "latin1", modules)
    except OSError as exc:
        raise _Unreadable(f"cannot be read ({exc.strerror or exc})") from exc
    if isinstance(value, np.ndarray) and value.shape == () and value.dtype == object:
        value = value.item()
    if not isinstance(value, dict) or "res" not in value or "id" not in value:
        raise _Unreadable(f"holds {_kind(value)}, not a batchpy result (a dict with 'res' "
                          "and 'id')")
    return value, modified


def _header(f: IO[bytes]) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """The shape and dtype of an ``.npy`` file, its position left after the header."""
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise _Unreadable(f"an .npy file of format version {version[0]}.{version[1]}, "
                              "which batchpy never wrote")
    except ValueError as exc:
        raise _Unreadable(f"not an .npy file, or its header is damaged ({exc})") from exc
    return shape, dtype


def _unpickle(f: IO[bytes], encoding: str, modules: tuple[str, ...]) -> Any:
    try:
        return _Unpickler(f, encoding, modules).load()
    except (_Unreadable, UnicodeDecodeError):
        raise
    except EOFError as exc:
        raise _Unreadable("truncated: its pickle ends early") from exc
    # A damaged or hostile pickle can make the allowed constructors (numpy's
    # among them) raise anything; each such file is reported, never fatal.
    except Exception as exc:  # noqa: BLE001
        raise _Unreadable(f"its pickle is damaged or truncated ({type(exc).__name__}: "
                         f"{exc})") from exc


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return f"a dict with the keys {sorted(map(str, value))[:6]}"
    return f"a {type(value).__module__}.{type(value).__qualname__}"


def _latin1_bytes(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as Python 3 pickles bytes for protocol 2: latin1 only."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise _Unreadable(f"its pickle encodes bytes with {encoding!r}, which pickle never "
                          "does")
    return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """What a result of plain values needs, by the (module, name) a pickle asks for.

    numpy's array and scalar constructors are taken from numpy's own pickles
    (their module moved from ``numpy.core`` to ``numpy._core`` in numpy 2;
    files name either).
    """
    reconstruct = np.zeros(0).__reduce__()[0]
    scalar = np.float64(0).__reduce__()[0]
    found: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray,
                                         ("numpy", "dtype"): np.dtype}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        found[(module, "_reconstruct")] = reconstruct
        found[(module, "scalar")] = scalar
    for builtin in (set, frozenset, complex, bytearray, slice, range):
        for module in ("builtins", "__builtin__"):  # Python 3, Python 2
            found[(module, builtin.__name__)] = builtin
    found[("collections", "OrderedDict")] = collections.OrderedDict
    for kind in (datetime.date, datetime.time, datetime.datetime, datetime.timedelta,
                 datetime.timezone):
        found[("datetime", kind.__name__)] = kind
    found[("_codecs", "encode")] = _latin1_bytes
    return found


_ALLOWED = _allowed_globals()


class _Unpickler(pickle.Unpickler):
    """An unpickler that imports nothing beyond :func:`_allowed_globals` and ``modules``."""

    def __init__(self, f: IO[bytes], encoding: str, modules: tuple[str, ...]) -> None:
        super().__init__(f, encoding=encoding)
        self.modules = modules

    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED.get((module, name))
        if found is not None:
            return found
        if any(module == m or module.startswith(m + ".") for m in self.modules):
            return super().find_class(module, name)
        top = module.split(".")[0]
        raise _Unreadable(
            f"its pickle names {module}.{name}, which results of plain values and numpy "
            f"arrays never need; building it would import and run code of {top}. If you "
            f"trust the files, allow it: allow_modules=[{top!r}] (--allow-module {top})")

    def persistent_load(self, pid: Any) -> Any:
        raise _Unreadable("its pickle refers to persistent objects, which batchpy never "
                          "wrote")


# -- encoding a run -------------------------------------------------------------------

_COLUMNS = [c.name for c in Base.metadata.tables["runs"].columns if c.name != "key"]


def _prepare(path: Path, rid: str, data: dict[str, Any], finished: float,
             allow_pickle: bool) -> _Prepared:
    """The run of a file: its row, typed parameters and scalars, and arrays."""
    if data["id"] != rid:
        raise _Unreadable(f"its name says run {rid}, but it holds run {data['id']!r} "
                          "(renamed?)")
    given = data.get("parameters")
    if given is not None and not (isinstance(given, dict)
                                  and all(isinstance(k, str) for k in given)):
        raise _Unreadable(f"its parameters are {_kind(given)}, not a dict of names")
    origin = os.path.abspath(path)
    arrays: dict[str, np.ndarray] = {}
    try:
        encoded = encode_parameters(given or {}, arrays)
    except EncodingError as exc:
        raise _Unreadable(str(exc)) from exc
    document: dict[str, Any] = {"values": [[k, encoded[k]] for k in sorted(encoded)],
                                # batchpy's id, not runstore's: check cannot recompute it
                                "custom_id": True, "origin": origin}
    if arrays:
        document["arrays"] = array_documents(arrays)
    text = canonical_json(document)
    try:
        result = encode_result(data["res"], allow_pickle=allow_pickle)
    except EncodingError as exc:
        raise _Unreadable(
            f"{exc} To keep such values as pickles, import into a store opened with "
            "allow_pickle=True (runstore import-batchpy --store-pickles)") from exc
    record: dict[str, Any] = dict.fromkeys(_COLUMNS)
    record.update(id=rid, run_type=RUN_TYPE, state=RunState.DONE.value, parameters=text,
                  result=result.json, attempts=0, runtime=_runtime(data.get("runtime")),
                  finished_at=finished, parameters_origin=origin,
                  result_origin=origin)
    forms = {name: indexed(tree) for name, tree in encoded.items()}
    info = RunInfo(run_type=RUN_TYPE, parameters=text, checksums=result.checksums)
    return _Prepared(path, Adopted(record, forms, result.scalars), result.arrays, info,
                     given is not None)


def _runtime(value: Any) -> float | None:
    """batchpy's runtime in seconds, if it is one."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        seconds = float(value)
        return seconds if math.isfinite(seconds) else None
    return None
