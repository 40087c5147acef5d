"""Batches: add runs, run the pending ones, query and load results.

A :class:`Batch` is a named, ordered set of runs in a store. Adding runs
computes their ids and registers them in bulk; calling the batch computes the
pending ones in this process and commits their results in batches of rows;
:meth:`Batch.get_runs_with` is one indexed SQL query.
"""

from __future__ import annotations

import gc
import html
import itertools
import json
import os
import re
import sys
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from concurrent.futures import Executor
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import numpy as np

if TYPE_CHECKING:
    from .bundle import ImportReport
    from .cluster import Cluster
    from .plot import Where
from .compression import ArrayOptions
from .errors import (
    ArrayFileError,
    BatchpyImportError,
    BatchpyPickleRefusedError,
    BatchNameError,
    OptionalDependencyError,
    ReadOnlyStoreError,
    BatchNotFound,
    CodeChangedWarning,
    RunNotFound,
    RunsFailedError,
    StoreOptionError,
    RunsUnfinishedError,
    UncomputedRunsWarning,
)
from .identity import type_name
from .interfaces import IRun, verifyClass
from .labelled import to_dataset
from .lazy import LazyArray, ResultArrays
from .results import array_name, array_paths, array_payloads, decode_result
from .pool import drain, new_wisdom, take_wisdom
from .progress import progress_bar, summary
from .run import Packer, ResultRun, Run, code_fingerprint, compute, plain_parameters, unpack
from .schema import RunState
from .encoding import Indexed
from .store import Appended, Completion, Removal, RunRow, Store
from .views import check_view_name, display

__all__ = ["Batch", "RunList"]

_FAILED = RunState.FAILED
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}")
#: Commit finished runs at least this often (seconds), and at most this many at once.
_FLUSH_SECONDS, _FLUSH_RUNS, _FLUSH_BYTES = 1.0, 5000, 256 * 2**20
#: Claim at most this many runs at once (as many as are committed at once).
_CLAIM_RUNS = _FLUSH_RUNS


def check_batch_name(name: object) -> str:
    """Return ``name`` if it is a valid batch name, else raise BatchNameError."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise BatchNameError(name)
    return name


def _storage(storage: object) -> ArrayOptions | None:
    """Check a ``storage`` argument: ArrayOptions or None."""
    if storage is None or isinstance(storage, ArrayOptions):
        return storage
    raise TypeError(f"storage must be a runstore.ArrayOptions or None, not "
                    f"{type(storage).__name__} (e.g. ArrayOptions(compression='gzip'))")


class RunList(Sequence[Run]):
    """The runs of a batch in insertion order, read from the store on demand."""

    _PAGE = 2000

    def __init__(self, batch: Batch) -> None:
        self._batch = batch

    def __len__(self) -> int:
        return self._batch.store.count(self._batch._id)

    @overload
    def __getitem__(self, index: int) -> Run: ...

    @overload
    def __getitem__(self, index: slice) -> list[Run]: ...

    def __getitem__(self, index: int | slice) -> Run | list[Run]:
        n = len(self)
        if isinstance(index, slice):
            positions = range(*index.indices(n))
            if not positions:
                return []
            low, high = min(positions), max(positions)
            rows = {row.position: row
                    for row in self._batch.store.rows(self._batch._id, low, high + 1)}
            return [self._batch._run(rows[p]) for p in positions]
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"run index {index} out of range: the batch has {n} runs")
        (row,) = self._batch.store.rows(self._batch._id, index, index + 1)
        return self._batch._run(row)

    def __iter__(self) -> Iterator[Run]:
        start = 0
        while True:
            rows = self._batch.store.rows(self._batch._id, start, start + self._PAGE)
            for row in rows:
                yield self._batch._run(row)
            if len(rows) < self._PAGE:
                return
            start += self._PAGE

    def __eq__(self, other: object) -> bool:
        """Equal to another sequence of the same runs in the same order (``batch.run == []``)."""
        if isinstance(other, RunList):
            return self._batch._identity() == other._batch._identity()
        if isinstance(other, (list, tuple)):
            return len(other) == len(self) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable: it follows the store

    def index(self, value: Any, start: int = 0, stop: int | None = None) -> int:
        """The position of a run of this batch, found by id (no run object built)."""
        if isinstance(value, Run) and value._key()[0] == self._batch._identity():
            stop = sys.maxsize if stop is None else stop
            for i, rid in enumerate(self.ids()):
                if rid == value.id and start <= i < stop:
                    return i
        raise ValueError(f"{value!r} is not in batch {self._batch.name!r}")

    def __contains__(self, value: object) -> bool:
        try:
            self.index(value)
        except ValueError:
            return False
        return True

    def ids(self) -> Iterator[str]:
        """The run ids in order, without building run objects."""
        start = 0
        while True:
            rows = self._batch.store.rows(self._batch._id, start, start + self._PAGE)
            yield from (row.id for row in rows)
            if len(rows) < self._PAGE:
                return
            start += self._PAGE


class Batch:
    """A named, ordered set of runs kept in a store.

    Parameters
    ----------
    name
        The batch name: letters, digits, ``_``, ``-`` and ``.``.
    path
        The folder of the default store, ``<path>/_res/<name>.db``.
    saveresult
        If false, results are kept in memory only (an in-memory store).
    store
        A :class:`~runstore.store.Store`, or the path of a store file, to share
        one store between batches.
    allow_pickle
        Store results with no canonical encoding as pickles (and load them).
    synchronous
        The store's durability level (``"normal"``, ``"full"`` or ``"extra"``;
        see :class:`~runstore.store.Store`); ``None`` is the default,
        ``"normal"``. Give it to the store instead when passing a ``Store``.
    storage
        How the arrays this batch's drains store are laid out in HDF5: chunks
        and compression (:class:`~runstore.ArrayOptions`); ``None`` keeps them
        contiguous and uncompressed. Calls of the batch may override it. It
        belongs to this object, not to the store: standalone workers
        (``runstore worker``) store arrays uncompressed.
    """

    #: Whether a call (with ``verbose``) ends with its one-line summary; a
    #: standalone worker, which calls its batches many times, says its own.
    _summarize = True
    #: Runs recorded (done or failed) by this object's calls: what a worker counts.
    _recorded = 0

    def __init__(self, name: str, path: str | os.PathLike[str] = "", saveresult: bool = True,
                 store: Store | str | os.PathLike[str] | None = None,
                 allow_pickle: bool = False, synchronous: str | None = None,
                 storage: ArrayOptions | None = None) -> None:
        self.name = check_batch_name(name)
        self.saveresult = saveresult
        self.storage = _storage(storage)
        #: The storage options of the call under way (or of the batch).
        self._storage_now = self.storage
        #: The positions the call under way computes (None: every run).
        self._only: list[int] | None = None
        self._folder = Path(path) / "_res"
        options: dict[str, Any] = {"allow_pickle": allow_pickle}
        if synchronous is not None:
            options["synchronous"] = synchronous
        if isinstance(store, Store):
            if synchronous is not None and store.synchronous != str(synchronous).lower():
                raise StoreOptionError(
                    "synchronous", synchronous, (None, store.synchronous),
                    f"the store given was opened with synchronous={store.synchronous!r}; "
                    "pass the level to Store(...) instead")
            self.store = store
        elif store is not None:
            self.store = Store(store, **options)
        elif saveresult:
            check_view_name(None, name)  # before the store file is made for it
            self.store = Store(self._folder / f"{name}.db", **options)
        else:
            self.store = Store(None, **options)
        batch_id = self.store.batch_id(name, create=not self.store.readonly)
        if batch_id is None:
            raise BatchNotFound(name, self.store.path, self.store.batch_names())
        self._id = batch_id
        self._classes: dict[str, type[Run]] = {}
        self._fresh = _Fresh()

    # -- adding runs -----------------------------------------------------------------

    @property
    def run(self) -> RunList:
        """The runs of the batch, in the order they were added."""
        return RunList(self)

    def _register_class(self, runclass: type[Run]) -> str:
        if not (isinstance(runclass, type) and issubclass(runclass, Run)):
            raise TypeError(f"expected a subclass of runstore.Run, got {runclass!r}")
        name = type_name(runclass)
        if name not in self._classes:
            verifyClass(IRun, runclass)
            self._classes[name] = runclass
        return name

    def add_run(self, runclass: type[Run], parameters: Mapping[str, Any] | None = None) -> Run:
        """Add one run; return it. A run already in the batch is not added twice."""
        (rid,) = self._add(runclass, [dict(parameters or {})])
        (row,) = self.store.rows_of(self._id, [rid])
        return self._run(row)

    def add_factorial_runs(self, runclass: type[Run],
                           parameters: Mapping[str, Any]) -> None:
        """Add a full factorial design: every combination of the given levels.

        Each value is a list of levels (a list-valued parameter is given as a
        list of lists); any other value is one level. The last parameter
        varies fastest.
        """
        names = list(parameters)
        levels = [v if isinstance(v, (list, range)) else [v] for v in parameters.values()]
        self._add(runclass, (dict(zip(names, combo)) for combo in itertools.product(*levels)),
                  dict(zip(names, levels)))

    def _add(self, runclass: type[Run], combos: Iterable[dict[str, Any]],
             levels: dict[str, Sequence[Any]] | None = None) -> list[str]:
        """Register runs (each id once); return their distinct ids in order.

        ``levels``, when the runs are the combinations of these levels, lets
        the packer encode each level once and make no dict per run.
        """
        rtype = self._register_class(runclass)
        packed: dict[str, tuple[str, str, str, dict[str, Indexed]]] = {}
        pack = Packer(runclass, {})
        with _collector_paused():
            runs = None if levels is None else pack.factorial(levels)
            if runs is None:
                runs = (pack(params) for params in combos)
            for rid, document, forms in runs:
                packed.setdefault(rid, (rid, rtype, document, forms))
            self.store.vouch_parameters([(rid, run[2]) for rid, run in packed.items()])
            # The store leaves out, inside its write transaction, the runs the
            # batch holds already (another process may be adding them too).
            self._fresh.note(self.store.add_runs(self._id, list(packed.values())), packed)
        return list(packed)

    def add_resultrun(self, ids: str | Iterable[str],
                      source: Batch | str | os.PathLike[str] | None = None,
                      trust: bool = False) -> None:
        """Add stored runs by id (one id or many); their classes are not needed.

        The runs are looked up in this batch's store, or, with ``source`` (a
        bundle's path or another store's batch), taken from there into this
        store first (see :func:`runstore.import_bundle`): what they bring
        stays data, never importing the code it names, unless ``trust``.
        """
        wanted = [str(ids)] if isinstance(ids, str) else [str(i) for i in ids]
        if source is not None:
            from .bundle import import_runs, open_bundle

            opened = source if isinstance(source, Batch) else open_bundle(source)
            try:
                import_runs(opened, self.store, self.name, wanted, trust=trust)
            finally:
                if opened is not source:
                    opened.store.close()
            return
        missing = self.store.add_existing(self._id, wanted)
        if missing:
            raise RunNotFound(missing[0], f"{self.store.path} ({len(missing)} of "
                              f"{len(wanted)} ids missing; none was added)")

    # -- reading -----------------------------------------------------------------------

    def _identity(self) -> tuple[Any, str]:
        """The store (its file, or this object for a store in memory) and the batch name.

        Resolved once per batch object: runs compare by it, often many times
        (``run in runs``, ``batch.run.index(run)``).
        """
        found: tuple[Any, str] | None = self.__dict__.get("_identity_key")
        if found is None:
            store = self.store
            where: Any = (os.path.realpath(store.path) if store.path != ":memory:"
                          else id(store))
            found = self._identity_key = (where, self.name)
        return found

    def _run(self, row: RunRow) -> Run:
        cls = self._classes.get(row.run_type, ResultRun)
        return cls._from_row(self, row.position, row.id, row.parameters, row.state)

    def get_runs_with(self, **conditions: Any) -> list[Run]:
        """Return the runs whose parameters (and results) match all conditions, in batch order.

        ``name=value`` tests equality; ``name__ne``, ``__lt``, ``__le``,
        ``__gt``, ``__ge`` and ``__in`` (a list of values) the other
        comparisons. Floats are equal within numpy's ``isclose`` tolerances;
        lists, arrays and functions compare exactly. A condition on a scalar
        result is written ``result__<name>`` (``result__val__ge=3``; nested
        keys ``result__stats__mean`` or ``**{"result__stats.mean": ...}``);
        runs without a result never match it. Every condition is answered
        from an index, the most selective first. An unknown name or operator
        raises :class:`~runstore.errors.QueryError`.
        """
        return [self._run(row) for row in self.store.query(self._id, conditions)]

    def _load_result(self, run: Run) -> Any:
        record = self.store.run_record(run.id)
        tree = json.loads(record["result"]) if record["result"] is not None else None
        payloads = {array_name(p): p for p in array_payloads(tree)}
        try:
            arrays = self.store.load_arrays(run.id, record["array_file"], list(payloads),
                                            payloads)
        except ArrayFileError:
            # `runstore gc` may have moved the arrays to a new file meanwhile.
            if self.store.run_record(run.id)["array_file"] == record["array_file"]:
                raise
            return self._load_result(run)
        # A result imported from another file stays data unless it was trusted,
        # even when the run's class is here (its code vouches for parameters only).
        # (and pickles in it are never loaded: allow_pickle is for the store's own).
        trusted = record.get("result_origin") is None
        return decode_result(tree, arrays, import_code=run._import_code and trusted,
                             allow_pickle=self.store.allow_pickle and trusted)

    def _result_arrays(self, run: Run) -> ResultArrays:
        """The arrays of a run's result by key path, read lazily (see runstore.lazy)."""
        record = self.store.run_record(run.id)
        tree = json.loads(record["result"]) if record["result"] is not None else None

        def locate() -> str | None:
            return self.store.run_record(run.id)["array_file"]  # type: ignore[no-any-return]

        return ResultArrays({
            path: LazyArray(self.store.arrays, record["array_file"], locate, run.id,
                            array_name(payload), payload)
            for path, payload in array_paths(tree)})

    def to_dataframe(self) -> Any:
        """The batch's SQL view as a pandas DataFrame, indexed by run position.

        Columns: ``id``, ``state``, ``runtime``, ``finished_at``, then one per
        parameter and per scalar result (see the SQL how-to), with the types
        that went in: floats float64, ints int64 (``Int64`` where some runs
        have no value), booleans bool, strings str, ``finished_at`` a UTC
        datetime; lists, tuples and dicts as themselves, functions by name
        (``max``), never imported. Needs pandas (``pip install
        'runstore[dataframe]'``).
        """
        try:
            import pandas  # noqa: F401 (only checked here: table.py imports it)
        except ImportError as exc:
            raise OptionalDependencyError("pandas", "dataframe", "Batch.to_dataframe()") from exc
        from .table import batch_table, to_dataframe

        return to_dataframe(batch_table(self.store, self._id))

    def to_xarray(self, variables: Iterable[str] | None = None, *,
                  exclude: Iterable[str] = (), dims: Mapping[str, Sequence[str]] | None = None,
                  coords: Mapping[str, Any] | None = None,
                  runs: Iterable[Run] | None = None) -> Any:
        """The batch as an ``xarray.Dataset`` on the grid of its swept parameters.

        The dimensions are the parameters that vary between the runs, in the
        order they vary in the batch (the one changing least often first, so
        a factorial design keeps the order of its parameters), each with its
        sorted distinct values as coordinate. Parameters that do not vary are
        scalar coordinates. Numbers, strings and booleans stay themselves;
        other values (lists, functions, objects) become their labels as the
        views show them (``max``, ``[2, 5, 8]``). Runs of several run types
        get a ``run_type`` dimension; runs with different parameter names
        are an error (select some with ``runs=``).

        Each scalar result is a variable on that grid, each array result a
        variable with further dimensions: ``<key>_dim_0``, ``<key>_dim_1`` ...
        unless named by ``dims``. Nested keys are joined with ``.``; a key
        that is also a parameter's name becomes ``result.<key>``. Cells
        without a result (pending or failed runs, combinations the batch
        lacks, a ``None`` result) are missing: NaN, so integers become
        floats and booleans and strings objects, as in xarray. Results that
        are neither scalars nor arrays (lists, objects) are left out.

        Nothing named in the store is imported: this works on bundles
        (:func:`runstore.open_bundle`) as well. Needs xarray (``pip install
        'runstore[xarray]'``).

        Parameters
        ----------
        variables
            The result keys to include (default: every scalar and array).
        exclude
            Result keys to leave out.
        dims
            Dimension names of array results by key, e.g.
            ``{"field": ["x", "y"]}``.
        coords
            Coordinate values of array dimensions by dimension name: the
            values, or the key of an array result that is the same in every
            run (``{"t": "t"}``), which then is a coordinate, not a variable.
        runs
            The runs to include, e.g. from :meth:`get_runs_with` (default: all).

        Raises
        ------
        ArrayShapeError
            If an array result's shape differs between runs.
        DatasetError
            If the runs cannot be laid out as asked (an unknown key ...).
        """
        return to_dataset(self, variables, exclude, dims, coords, runs)

    def plot(self, x: str, y: str, hue: str | None = None, ax: Any = None, *,
             col: str | None = None, row: str | None = None, where: Where = None,
             **kwargs: Any) -> Any:
        """Plot a column against another: a line per ``hue``, a panel per ``col`` and ``row``.

        ``x``, ``y``, ``hue``, ``col`` and ``row`` are columns of the batch's
        view (parameters and scalar results). Runs without a value for ``x``
        or ``y`` (not done yet, failed) are left out. A line only joins
        points of runs whose parameters agree in everything but ``x``: if
        another parameter takes several values among the plotted runs, the
        plot is refused (:class:`~runstore.errors.VaryingParametersError`
        names them); show it with ``hue``, ``col`` or ``row``, or keep one of
        its values with ``where``. Legends and facets are in numeric order
        (2 before 10), ``None`` last; each value of ``hue`` has one color in
        every facet.

        Parameters
        ----------
        x, y
            The columns along the axes.
        hue
            One line per value of this column, with a legend.
        ax
            The matplotlib ``Axes`` to draw into (without ``col`` and ``row``).
        col, row
            One panel per value of these columns, in a grid of shared axes,
            each panel titled with its values (like seaborn's ``relplot``).
        where
            Only the runs matching these conditions: a mapping of
            :meth:`get_runs_with` conditions (``{"drive": 1.0, "A__ge": 3}``),
            or a filter as ``runstore runs`` reads it (``"drive=1.0"``), or a
            list of such filters (all must match).
        **kwargs
            Passed on to ``Axes.plot`` (``marker="o"`` unless given).

        Returns
        -------
        The matplotlib ``Axes`` without ``col`` and ``row``; with either, a
        2-D numpy array of ``Axes``, rows by columns (as
        ``plt.subplots(squeeze=False)`` gives), in one figure with the
        batch's name as title and one legend.

        Needs matplotlib (``pip install 'runstore[plot]'``).
        """
        from .plot import plot_batch

        return plot_batch(self, x, y, hue, ax, col=col, row=row, where=where, **kwargs)

    def export(self, path: str | os.PathLike[str], runs: Iterable[Run] | None = None
               ) -> tuple[Path, Path]:
        """Write a bundle (``path.db`` + ``path.h5``) of this batch's runs, to share them.

        See :func:`runstore.open_bundle`; ``runs`` selects some runs (e.g. from
        :meth:`get_runs_with`).
        """
        from .bundle import export

        return export(self, path, runs)

    def save_ids(self, filename: str | os.PathLike[str] | None = None, format: str = "npy"
                 ) -> Path:
        """Write the run ids, in order, to a file; return its path.

        As in batchpy: without ``filename`` the file is ``_res/<name>_ids.npy``
        or ``_res/<name>_ids.py`` by ``format`` (``"npy"`` or ``"py"``); with
        one, its extension decides the format and ``format`` is ignored. Read
        the ids back with ``np.load(path)``, or from the ``.py`` file's ``ids``
        list (``from _res.<name>_ids import ids``: the folder gets an
        ``__init__.py`` for that, as batchpy gave it).
        """
        if filename is None:
            target = self._folder / f"{self.name}_ids.{format}"
        else:
            target = Path(filename)
            format = target.suffix[1:]
        if format not in ("npy", "py"):
            raise ValueError(
                f"cannot save ids as {format!r}" + (f" (from the extension of {str(filename)!r})"
                                                    if filename is not None else "")
                + ": use format='npy' or format='py', or a file name ending in .npy or .py")
        target.parent.mkdir(parents=True, exist_ok=True)
        ids = list(self.run.ids())
        if format == "npy":
            np.save(target, np.array(ids, dtype=str))
        else:
            if filename is None and not (self._folder / "__init__.py").exists():
                (self._folder / "__init__.py").touch()
            lines = "".join(f"    {rid!r},\n" for rid in ids)
            target.write_text(f'"""Run ids of batch {self.name!r}, in order."""\n\n'
                              f"ids = [\n{lines}]\n")
        return target

    def remove(self, runs: Run | str | int | Iterable[Run | str | int],
               delete_unheld: bool = False) -> Removal:
        """Take runs out of this batch, keeping the results other batches share.

        ``runs`` is a run, a run id or a position in the batch, or many of
        them (``batch.get_runs_with(...)``, ``batch.run[2:5]``). The runs after
        them move up. A removed run stays in the store with its result: other
        batches holding it keep it, and adding it again (here or in another
        batch) finds the result without computing it. With
        ``delete_unheld=True`` the runs that no batch holds afterwards are
        deleted (except runs being computed), and ``runstore gc`` then frees
        their arrays. Returns what was done (:class:`~runstore.store.Removal`).
        Runs the batch does not hold are an error, and then nothing is removed.
        """
        items = [runs] if isinstance(runs, (Run, str, int)) else list(runs)
        ids: list[str] = []
        positions = [item for item in items if isinstance(item, int) and not isinstance(item, bool)]
        by_position = dict(zip(positions, self._ids_at(positions)))
        for item in items:
            if isinstance(item, Run):
                if item._key()[0] != self._identity():
                    raise RunNotFound(item.id, f"batch {self.name!r} of {self.store.path} "
                                      "(the run given belongs to another batch; remove it "
                                      "from that one)")
                ids.append(item.id)
            elif isinstance(item, str):
                ids.append(item)
            elif item in by_position:
                ids.append(by_position[item])
            else:
                raise TypeError(f"cannot remove {item!r}: give runs, run ids or positions")
        if self.store.readonly:
            raise ReadOnlyStoreError(self.store.path, "remove runs")
        self._fresh.clear()  # the runs after those removed move up
        unknown = [rid for rid in ids if not self.store.rows_of(self._id, [rid])]
        if unknown:
            raise RunNotFound(unknown[0], f"batch {self.name!r} of {self.store.path} "
                              f"({len(unknown)} of {len(ids)} runs are not in the batch; "
                              "none was removed)")
        return self.store.remove_runs(self._id, ids, delete_unheld)

    def _ids_at(self, positions: Sequence[int]) -> list[str]:
        """The ids of the runs at some positions (negative ones count from the end)."""
        if not positions:
            return []
        n = len(self.run)
        ids: list[str] = []
        for p in positions:
            if not -n <= p < n:
                raise IndexError(f"run index {p} out of range: the batch has {n} runs")
            (row,) = self.store.rows(self._id, p % n, p % n + 1)
            ids.append(row.id)
        return ids

    def add_resultrun_folder(self, folder: str | os.PathLike[str] | None = None,
                             trust: bool = False, allow_pickle: bool = False) -> ImportReport:
        """Add the runs of this batch's name from every store, bundle and batchpy file in a folder.

        batchpy's ``add_resultrun_folder``: ``folder`` defaults to this
        batch's ``_res`` folder. Every ``.db`` file there that is a runstore
        store or bundle holding a batch named like this one gives its runs
        (see :meth:`add_resultrun`; nothing they name is imported unless
        ``trust``). batchpy's result files of this batch
        (``<name>_<id>.npy``) are imported too (see
        :func:`runstore.import_batchpy`), only with ``allow_pickle=True``:
        they are pickles. Returns the counts summed over the files; files
        that could not be imported raise
        :class:`~runstore.errors.BatchpyImportError` after the others were.
        """
        from .bundle import ImportReport, import_runs
        from .check import bundle_evidence
        from .legacy import batchpy_result_files, import_batchpy

        where = self._folder if folder is None else Path(folder)
        if not where.is_dir():
            raise FileNotFoundError(
                f"no folder {str(where)!r} to add result runs from; give the folder that "
                "holds the .db stores or bundles (or batchpy's <name>_<id>.npy results)")
        total = ImportReport()
        mine = None if self.store.path == ":memory:" else Path(self.store.path).resolve()
        for db in sorted(where.glob("*.db")):
            if not db.is_file() or db.resolve() == mine:
                continue
            bundle = bundle_evidence(str(db)) is not None
            store = Store(db, readonly=True, allow_pickle=self.store.allow_pickle,
                          arrays=db.parent if bundle else None)
            try:
                if self.name not in store.batch_names():
                    continue
                report = import_runs(Batch(self.name, store=store), self.store, self.name,
                                     trust=trust)
            finally:
                store.close()
            total.added += report.added
            total.completed += report.completed
            total.present += report.present
        pickles = batchpy_result_files(where, self.name)
        if pickles:
            if not allow_pickle:
                raise BatchpyPickleRefusedError(str(where), len(pickles))
            imported = import_batchpy(where, self.store, allow_pickle=True,
                                      batches=[self.name])
            counts = imported.batches.get(self.name)
            if counts is not None:
                total.added += counts.imported
                total.present += counts.present
            if imported.failed:
                raise BatchpyImportError(str(where), str(imported))
        return total

    # -- running ---------------------------------------------------------------------------

    def __call__(self, runs: int | Iterable[int] = -1, verbose: int = 1,
                 processes: int | None = None, retry_failed: bool = False,
                 recompute_changed: bool = False, executor: Executor | None = None,
                 cluster: Cluster | None = None, storage: ArrayOptions | None = None
                 ) -> None:
        """Compute the pending runs (all, or some), with a progress bar.

        The first three parameters are batchpy's, in its order: ``batch(0)``
        computes run 0 (if pending), ``batch([0, 3])`` runs 0 and 3,
        ``batch()`` (or any negative ``runs``) every pending run.

        By default runs are computed one after the other in this process.
        ``processes=N`` computes them on N local worker processes (each limited
        to its share of BLAS/OpenMP threads); ``executor=`` on any
        ``concurrent.futures.Executor`` (a ``ProcessPoolExecutor``, an
        ipyparallel ``Client().executor()`` ...); ``cluster=`` on the engines
        of a started :class:`~runstore.Cluster` (an engine that dies only
        requeues its runs). Either way this process
        claims the runs and commits the results; workers get only the
        parameters of the runs they compute, so run classes must be
        importable by them (or, with local processes on Linux, defined before
        the batch is called).

        Parameters
        ----------
        runs
            The index of one run, or indices of runs (positions in
            :attr:`run`); a negative int (the default) means every run.
        verbose
            0 shows nothing; 1 (or more) shows a progress bar while runs are
            computed, and ends the call with one line on standard error that
            says how many runs came from the store and how many were
            computed (``36 of 36 runs from the store, 0 computed``).
        processes
            Compute on this many local worker processes.
        retry_failed
            Run the runs that failed before again (of those selected).
        recompute_changed
            Recompute the results of runs whose class's code changed since they
            were computed (otherwise a :class:`CodeChangedWarning` is issued).
        storage
            How the arrays of this call's results are stored (chunks,
            compression: :class:`~runstore.ArrayOptions`), instead of the
            batch's ``storage``.

        Raises
        ------
        RunsFailedError
            After all runs were tried, if some raised; the others' results are
            stored.
        KeyboardInterrupt
            On Ctrl-C, with one line saying how many results are kept (those
            finished before it); the runs that were being computed are pending
            again, and calling the batch again resumes.
        IndexError
            If ``runs`` names a position the batch does not have.
        """
        self._only = self._selected(runs)
        self._storage_now = self.storage if storage is None else _storage(storage)
        try:
            self._call(verbose, retry_failed, recompute_changed, processes, executor, cluster)
        except KeyboardInterrupt:
            # One line, not the traceback of whatever the run was doing.
            raise self._interrupted() from None
        finally:
            self._storage_now = self.storage
            self._only = None
            self._fresh.clear()  # claimed or not, the store tells from now on

    def _selected(self, runs: int | Iterable[int]) -> list[int] | None:
        """The positions ``runs`` selects (None: every run), each checked."""
        if isinstance(runs, bool) or not isinstance(runs, (int, np.integer, Iterable)):
            raise TypeError(f"runs must be a run index, a list of them or -1 (every run), "
                            f"not {type(runs).__name__}")
        if isinstance(runs, (int, np.integer)):
            if runs < 0:
                return None
            runs = [int(runs)]
        chosen = sorted({int(i) for i in runs})
        count = len(self.run)
        outside = [i for i in chosen if not 0 <= i < count]
        if outside:
            raise IndexError(f"batch {self.name!r} has runs 0 to {count - 1}, not "
                             f"{', '.join(map(str, outside[:5]))}: give positions in batch.run")
        return chosen

    def _call(self, verbose: int, retry_failed: bool, recompute_changed: bool,
              processes: int | None, executor: Executor | None, cluster: Cluster | None
              ) -> None:
        if not self.store.readonly:
            self.store.recover()  # this process's stranded runs, dead owners' runs
        self._prepare(retry_failed, recompute_changed)
        before = self.store.state_counts(self._id, self._only)
        pending = before.get(RunState.PENDING.value, 0)
        if cluster is None and processes is not None and processes < 1:
            raise ValueError(f"processes must be at least 1, got {processes}")
        if pending == 0:  # a fully cached batch: no drain, no heartbeat, no pool
            self._nothing_pending(serial=cluster is None and processes is None
                                  and executor is None)
            self._report(verbose, before, 0)
            return
        types = list(self._classes)
        with progress_bar(total=pending, disable=verbose == 0, desc=self.name,
                          unit="run") as bar:
            if cluster is not None:
                failed = drain(self, cluster.executor(), None, bar, restartable=False,
                               workers=max(1, len(cluster)), lost=cluster.is_lost,
                               pending=pending, stalled=cluster.stalled)
            elif processes is not None or executor is not None:
                failed = drain(self, executor, processes, bar, restartable=True,
                               pending=pending)
            else:
                take_wisdom(self.store.fftw_wisdom() if pending else ())
                failed = self._drain(self._serial_claim(types, pending), bar)
                gained = new_wisdom()
                if gained:
                    self.store.save_fftw_wisdom(gained)
        self._warn_unknown_types()
        self._report(verbose, before, bar.n, len(failed))
        self._raise_failures(failed)

    def _serial_claim(self, types: list[str], pending: int) -> Any:
        """The claim of a serial call: ``claim(after, n)`` gives up to ``n`` runs.

        When the runs this object added new to the store are all the
        batch's pending runs (the usual first call after adding a sweep),
        they are claimed as this object holds them, without being read back;
        then, as always, what else is pending in batch order.
        """
        fresh = self._fresh.take()
        if self._only is not None or len(fresh) != pending:
            return lambda after, n: self.store.claim(self._id, types, n, after,
                                                     positions=self._only)
        taken = claimed = 0
        swept = False

        def claim(after: int, n: int) -> list[RunRow]:
            nonlocal taken, claimed, swept
            while taken < len(fresh):
                rows = self.store.claim_rows(fresh[taken:taken + n])
                taken += n
                claimed += len(rows)
                if rows:
                    return rows
            if not swept and claimed < pending:  # some were claimed elsewhere: look again
                swept, after = True, -1
            return self.store.claim(self._id, types, n, after)
        return claim

    def _nothing_pending(self, serial: bool) -> None:
        """What a call does when none of its runs is pending, without draining."""
        if serial:  # FFTW wisdom planned in this process since it last shared some
            gained = new_wisdom()
            if gained:
                self.store.save_fftw_wisdom(gained)
        if self._only is not None:  # runs outside the selection may be pending
            self._warn_unknown_types()

    def _report(self, verbose: int, before: Mapping[str, int], computed: int,
                failed: int = 0) -> None:
        """End a call with one line on stderr (unless ``verbose`` is 0): what came from where."""
        if not (verbose and self._summarize):
            return
        left = 0
        if before.get(RunState.PENDING.value, 0) > computed:  # some were not computed
            left = self.store.state_counts(self._id, self._only).get(RunState.PENDING.value, 0)
        print(summary(before, computed, failed, left), file=sys.stderr, flush=True)

    def _interrupted(self) -> KeyboardInterrupt:
        """What Ctrl-C during a call raises: one line, how many of its results are kept.

        A plain KeyboardInterrupt, so that an uncaught one still ends Python
        as Ctrl-C does (by SIGINT, which shells look for).
        """
        try:
            counts = self.store.state_counts(self._id, self._only)
        except Exception:  # noqa: BLE001 (the store cannot tell now; say what holds)
            return KeyboardInterrupt("interrupted: the results finished before were kept; "
                                     "call batch() again to resume")
        return KeyboardInterrupt(
            f"interrupted: {counts.get(RunState.DONE.value, 0)} of {sum(counts.values())} "
            "results kept; call batch() again to resume")

    def _warn_unknown_types(self) -> None:
        unknown = [t for t in self.store.pending_run_types(self._id) if t not in self._classes]
        if unknown:
            warnings.warn(UncomputedRunsWarning(
                f"batch {self.name!r} has pending runs of {', '.join(unknown)}, whose class "
                "it does not know in this process, so they were not computed. Add a run "
                "of each class (batch.add_run(TheClass, ...)) before calling the batch, "
                f"or run `runstore worker {self.store.path}`, which imports run classes "
                "by name."), stacklevel=3)

    def _execute(self, runs: Sequence[Run]) -> None:
        """Compute the given runs now (used when a single run is called).

        Raises :class:`~runstore.errors.RunsUnfinishedError` if one of them is
        still not done or failed afterwards (another live process computes it).
        """
        for run in runs:
            self._register_class(type(run))
        ids = [run.id for run in runs]
        if not self.store.readonly:
            self.store.recover()  # this process's stranded runs, dead owners' runs
        failed = self._drain(lambda after, n: self.store.claim_ids(ids) if after < 0 else [],
                             None)
        self._raise_failures(failed)
        states = self.store.states(ids)
        open_ = [rid for rid in ids if states.get(rid) not in (RunState.DONE.value, _FAILED.value)]
        if open_:
            owners = {row["id"]: row for row in self.store.in_flight() if row["id"] in open_}
            raise RunsUnfinishedError(f"batch {self.name!r}", {
                rid: (f"running under {owners[rid]['owner']} (pid {owners[rid]['pid']}), "
                      "which is computing it now" if rid in owners
                      else f"{states.get(rid, 'missing')}: it could not be claimed")
                for rid in open_})

    def _prepare(self, retry_failed: bool, recompute_changed: bool) -> None:
        chosen = None
        if self._only:
            wanted = set(self._only)
            chosen = {row.id for row in self.store.rows(self._id, self._only[0],
                                                        self._only[-1] + 1)
                      if row.position in wanted}
        if retry_failed:
            failed = [r[0] for r in self.store.failed_runs(self._id)
                      if chosen is None or r[0] in chosen]
            self.store.reset(failed, [RunState.FAILED])
        for rtype, cls in self._classes.items():
            changed = [rid for rid in self.store.changed_code(
                self._id, rtype, code_fingerprint(cls)) if chosen is None or rid in chosen]
            if changed and recompute_changed:
                self.store.reset(changed, [RunState.DONE])
            elif changed:
                warnings.warn(CodeChangedWarning(
                    f"{len(changed)} stored results of {rtype} were computed by a "
                    f"different version of its code; they are served as they are. "
                    f"Call the batch with recompute_changed=True to recompute them."),
                    stacklevel=3)

    def _drain(self, claim: Any, bar: Any) -> list[str]:
        """Claim, compute and commit until nothing is left; return the failed ids.

        Leases are kept alive while runs compute. Whatever happens, every run
        claimed here ends recorded or released; if even the release fails (a
        full disk), the next call in this process takes the runs back.
        """
        failed: list[str] = []
        claimed: dict[int, str] = {}  # claimed here and not yet recorded
        computed: list[Completion] = []  # computed and not yet recorded
        with self.store.draining() as reserve:
            try:
                self._compute_all(claim, bar, computed, claimed, failed)
                self._commit(computed, claimed, failed)
            except BaseException as exc:
                instead = self.store.give_back(computed, claimed, self._id, exc, reserve,
                                               self._storage_now)
                if instead is not None:
                    raise instead from exc
                raise
        if claimed:  # never happens unless something above is wrong: say so
            self.store.release_runs(list(claimed))
            raise RunsUnfinishedError(f"batch {self.name!r}", {
                rid: "claimed by this call but neither recorded nor released; it is "
                     "pending again" for rid in claimed.values()})
        return failed

    def _compute_all(self, claim: Any, bar: Any, computed: list[Completion],
                     claimed: dict[int, str], failed: list[str]) -> None:
        size, last_flush, after, chunk = 0, time.monotonic(), -1, 1
        while rows := claim(after, chunk):
            claimed.update((row.key, row.id) for row in rows)
            started = time.monotonic()
            for row in rows:
                completion = self._compute(row)
                computed.append(completion)
                if completion.arrays:
                    size += sum(a.nbytes for a in completion.arrays.values())
                if completion.state is _FAILED:
                    failed.append(row.id)
                if bar is not None:
                    bar.update(1)
                    if failed:
                        bar.set_postfix(failed=len(failed), refresh=False)
                if (len(computed) >= _FLUSH_RUNS or size >= _FLUSH_BYTES
                        or time.monotonic() - last_flush >= _FLUSH_SECONDS):
                    self._commit(computed, claimed, failed)
                    size, last_flush = 0, time.monotonic()
            after = max(row.position for row in rows)
            # Claim about half a second of work at a time.
            elapsed = time.monotonic() - started
            most = _CLAIM_RUNS
            chunk = max(1, min(most, int(chunk * 0.5 / elapsed) if elapsed else most))

    def _commit(self, computed: list[Completion], claimed: dict[int, str],
                failed: list[str] | None = None) -> None:
        """Record computed runs; they are no longer this call's to give back."""
        done = [c for c in computed if c.state is not _FAILED]
        self.store.complete(computed, self._id, self._storage_now)
        self._recorded += len(computed)
        if failed is not None:  # runs whose results could not be stored failed
            failed += [c.run_id for c in done if c.state is _FAILED]
        for completion in computed:
            claimed.pop(completion.run_key, None)
        computed.clear()

    def _compute(self, row: RunRow) -> Completion:
        cls = self._classes[row.run_type]
        packed = self._fresh.packed.get(row.id)
        public = None if packed is None else plain_parameters(cls, row.parameters, packed[3])
        return compute(cls, row, self.store.allow_pickle, self, public)

    def _raise_failures(self, failed: list[str]) -> None:
        if not failed:
            return
        wanted = set(failed)
        details = [
            (rid, unpack(params, import_code=False)[0],
             f"{etype}: {(message or '').splitlines()[0] if message else ''}")
            for rid, params, etype, message in self.store.failed_runs(self._id)
            if rid in wanted]
        raise RunsFailedError(self.name, details, len(self.run))

    def _repr_html_(self, rows: int = 20) -> str:
        """In Jupyter: the state counts and the first runs of the batch's table.

        Failed runs show their error (type and first line) in an ``error``
        column; ``run.error`` has the traceback.
        """
        counts = self.store.state_counts(self._id)
        columns, table = self.store.view_rows(self._id)
        summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "empty"
        shown = [c for c in columns if c not in ("id", "runtime")]
        errors = self._errors() if counts.get(_FAILED.value) else {}
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown)
        head += "<th>error</th>" if errors else ""
        at_id = columns.index("id")
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(display(row[columns.index(c)]))}</td>"
                             for c in shown)
            + (f"<td>{html.escape(errors.get(row[at_id], ''))}</td>" if errors else "")
            + "</tr>"
            for row in table[:rows])
        more = (f"<p>... and {len(table) - rows} more runs</p>" if len(table) > rows else "")
        return (f"<p><b>Batch {html.escape(self.name)}</b> in "
                f"<code>{html.escape(self.store.path)}</code>: {html.escape(summary)}</p>"
                f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}")

    def _errors(self) -> dict[str, str]:
        """``type: first line of the message`` of the failed runs, by id."""
        return {rid: f"{etype or 'error'}: {_first_line(message)}"
                for rid, _, etype, message in self.store.failed_runs(self._id)}

    def __repr__(self) -> str:
        counts = self.store.state_counts(self._id)
        summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        return f"<Batch {self.name!r} in {self.store.path}: {summary or 'empty'}>"


class _Fresh:
    """The runs a batch object added new to its store (PENDING), as it made them.

    Kept until the batch is next called, so that a serial call claims them
    without reading them back (``rows``, made as RUNNING rows), and computes
    them from their parameters' indexed forms without decoding their
    documents (``packed``: each run added, as packed, by id; an id stands for
    its parameters).
    """

    def __init__(self) -> None:
        self.rows: list[RunRow] = []
        self.packed: dict[str, tuple[str, str, str, dict[str, Indexed]]] = {}

    def note(self, appended: Appended,
             packed: dict[str, tuple[str, str, str, dict[str, Indexed]]]) -> None:
        """Keep the runs the store has just inserted, new, into the batch."""
        running, make, first = RunState.RUNNING.value, RunRow._make, appended.first_new
        if max(appended.keys, default=0) < first:
            return  # none new: nothing to keep
        self.rows += [make((position, rid, run[1], run[2], running, key))
                      for position, rid, key, run in zip(
                          itertools.count(appended.start), appended.ids, appended.keys,
                          map(packed.__getitem__, appended.ids)) if key >= first]
        if self.packed:
            self.packed.update(packed)
        else:
            self.packed = packed

    def take(self) -> list[RunRow]:
        """The rows kept (the runs as packed stay until cleared); none are kept after."""
        rows, self.rows = self.rows, []
        return rows

    def clear(self) -> None:
        self.rows, self.packed = [], {}


def _first_line(text: str | None) -> str:
    """The first line of a message that has text ('' for none)."""
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector (if it runs) while runs are added.

    Adding runs makes several objects per run and frees few of them, so the
    collections their allocations set off find nothing to collect, and each
    walks all the objects made so far: re-adding 100,000 stored runs took
    about a sixth longer with them. Nothing made here refers to itself; what
    is left is freed when its last reference goes, as always.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
