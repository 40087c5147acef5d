"""The errors runstore raises: one hierarchy under :class:`RunstoreError`.

Each error also inherits the built-in exception a caller would naturally catch
(an encoding problem is a ``TypeError``, a bad key a ``ValueError`` ...), keeps
the offending data as attributes, and says in its message what was found, what
was expected, and what to do next.
"""

from __future__ import annotations

__all__ = [
    "RunstoreError",
    "EncodingError",
    "DecodingError",
    "PickleRefusedError",
    "ReservedNameError",
    "StrictAttributeError",
    "UnpicklableAttributeError",
    "UnresolvedReferenceError",
    "OptionalDependencyError",
    "MissingFilterError",
    "ArrayFileError",
    "StoreError",
    "NotAStoreError",
    "StoreNotFoundError",
    "SchemaTooNewError",
    "SchemaOutdatedError",
    "UpgradeBlockedError",
    "ReadOnlyStoreError",
    "StoreLogUnreadableError",
    "NetworkFilesystemError",
    "OtherHostWritingError",
    "BatchNameError",
    "ParameterError",
    "QueryError",
    "VaryingParametersError",
    "RunNotFound",
    "BatchNotFound",
    "RunsFailedError",
    "RunError",
    "PoolError",
    "WorkerError",
    "ClusterError",
    "ClusterTimeoutError",
    "BundleError",
    "BatchpyImportError",
    "BatchpyPickleRefusedError",
    "CodeChangedWarning",
    "UncomputedRunsWarning",
    "StoreOptionError",
    "BundleRepairError",
    "StoreUnreadableError",
    "UnstorableValueError",
    "StorageFullError",
    "DatasetError",
    "ArrayShapeError",
    # claims and leases
    "RunstoreWarning",
    "DuplicateResultWarning",
    "LeaseError",
    "RunsUnfinishedError",
    "ResultsNotRecordedError",
]


class RunstoreError(Exception):
    """Base class of every error raised by runstore."""


class _OwnMessage:
    """Prints the message as given: KeyError would print its repr, and OSError
    its errno and filename."""

    def __str__(self) -> str:
        return str(self.args[0])  # type: ignore[attr-defined]


class EncodingError(RunstoreError, TypeError):
    """A value cannot be encoded canonically, so it cannot define a run id.

    Attributes
    ----------
    path : str
        Where the value sits, e.g. ``"parameter 'B'[2]"`` or ``"result 'x'"``.
    value_type : str
        The qualified name of the value's type.
    reason : str
        Why the value cannot be encoded.
    hint : str
        What to do instead.
    """

    def __init__(self, path: str, value_type: str, reason: str, hint: str) -> None:
        self.path = path
        self.value_type = value_type
        self.reason = reason
        self.hint = hint
        super().__init__(
            f"cannot encode {path} of type {value_type}: {reason}. {hint}"
        )


class DecodingError(RunstoreError, ValueError):
    """Stored encoded data is not a valid canonical encoding.

    Attributes
    ----------
    path : str
        Where in the encoded tree the problem is.
    found : str
        A short description of what was found there.
    """

    def __init__(self, path: str, found: str) -> None:
        self.path = path
        self.found = found
        super().__init__(
            f"invalid encoded value at {path}: found {found}. The stored data was "
            "not written by runstore or is damaged; run `runstore check` on the "
            "store to find the affected runs."
        )


class PickleRefusedError(DecodingError):
    """A stored value is a pickle, and the store was not opened with ``allow_pickle=True``.

    Unpickling can run any code, so runstore never does it unasked.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.found = "a pickled value"
        ValueError.__init__(
            self,
            f"{path} is a pickled value. Unpickling can run any code, so runstore loads "
            "pickles only from a store or bundle opened with allow_pickle=True "
            "(e.g. open_bundle(path, allow_pickle=True)); do that only if you trust "
            "where the file came from.")


class ReservedNameError(RunstoreError, ValueError):
    """A container key would shadow a method or attribute of its class.

    Attributes
    ----------
    name : str
        The rejected key.
    owner : str
        The name of the container class.
    """

    def __init__(self, name: str, owner: str) -> None:
        self.name = name
        self.owner = owner
        super().__init__(
            f"{name!r} cannot be a key of a {owner}: it is the name of one of its "
            f"methods or attributes. Choose another name, or use a plain dict."
        )


class StrictAttributeError(RunstoreError, AttributeError):
    """An attribute was set on a strict Object that does not declare it.

    A class with ``_strict = True`` (or an object built with ``_strict=True``)
    accepts, after construction and outside ``init()``, only its defining
    attributes and the names it lists in ``_independent_attributes`` or
    ``_dependent_attributes``.

    Attributes
    ----------
    name : str
        The attribute that was refused.
    owner : str
        The name of the object's class.
    defining : tuple of str
        The object's defining attributes.
    """

    def __init__(self, name: str, owner: str, defining: tuple[str, ...]) -> None:
        self.name = name
        self.owner = owner
        self.defining = defining
        listed = ", ".join(defining) if defining else "none"
        super().__init__(
            f"cannot set {name!r} on this {owner}: it is strict (_strict = True) and "
            f"{name!r} is not one of its defining attributes ({listed}). Set it "
            f"before Object.__init__ runs to make it defining, set it in init() if "
            f"it is derived state, or list it in {owner}._independent_attributes to "
            f"allow it as a temporary attribute.",
            name=name,
        )


class UnpicklableAttributeError(RunstoreError, ValueError):
    """A defining attribute of an Object holds a value that cannot be pickled.

    Defining attributes are what is pickled and stored, so such a value would
    only fail later, far from where it was set; it is refused when it is set.

    Attributes
    ----------
    name : str
        The attribute.
    owner : str
        The name of the object's class.
    value_type : str
        The type of the refused value.
    reason : str
        Why pickling failed.
    """

    def __init__(self, name: str, owner: str, value_type: str, reason: str) -> None:
        self.name = name
        self.owner = owner
        self.value_type = value_type
        self.reason = reason
        super().__init__(
            f"the defining attribute {name!r} of {owner} holds a {value_type} that "
            f"cannot be pickled ({reason}), so the object could never be pickled or "
            f"stored. Use a function defined with def at module level instead of a "
            f"lambda or a local function, or build the value in init() (it is then "
            f"temporary and rebuilt after loading), or set _check = False on "
            f"{owner} if its objects are never pickled or stored."
        )


class UnresolvedReferenceError(RunstoreError, TypeError):
    """A reference decoded from a store was used as if it were the real thing.

    Loading from a store never imports code, so a callable or an object of a
    user-defined class comes back as a reference that only names it.

    Attributes
    ----------
    name : str
        The qualified name the reference points to.
    """

    def __init__(self, name: str, action: str) -> None:
        self.name = name
        super().__init__(
            f"cannot {action} {name!r}: it was loaded as a reference, and runstore "
            f"never imports code named in a store by itself. Call .resolve() on it "
            f"to import {name!r} explicitly, or decode with import_code=True if you "
            f"trust the store."
        )


class OptionalDependencyError(RunstoreError, ImportError):
    """A feature needs a package that is not installed.

    Attributes
    ----------
    package : str
        The missing package.
    extra : str
        The runstore extra that installs it.
    """

    def __init__(self, package: str, extra: str, feature: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"{feature} needs the package {package!r}, which is not installed. "
            f"Install it with: pip install {package}  (or: pip install "
            f"'runstore[{extra}]')",
            name=package,
        )


class MissingFilterError(RunstoreError, ImportError):
    """Arrays are (or are to be) compressed with a filter this HDF5 does not have.

    Attributes
    ----------
    filter : str
        The filter's name (``"blosc"`` ...).
    extra : str or None
        The runstore extra that installs it, if one does.
    filename : str or None
        The side file that needs it (None when writing).
    where : str or None
        The array in it.
    """

    def __init__(self, filter: str, place: tuple[str, str] | None) -> None:
        self.filter = filter
        self.extra = "blosc" if filter in _HDF5PLUGIN_FILTERS else None
        self.filename: str | None = place[0] if place is not None else None
        self.where: str | None = place[1] if place is not None else None
        needs = (f"the array {self.where} of the side file {self.filename!r} is compressed"
                 if place is not None else "compressing arrays")
        how = (f"Install it with: pip install hdf5plugin  (or: pip install "
               f"'runstore[{self.extra}]')" if self.extra else
               "Install an HDF5 plugin that provides it (HDF5_PLUGIN_PATH)")
        super().__init__(f"{needs} with the {filter!r} filter, which this HDF5 does not "
                         f"have. {how}", name="hdf5plugin" if self.extra else None)


#: Filters the hdf5plugin package provides.
_HDF5PLUGIN_FILTERS = {"blosc", "blosc2", "lz4", "zstd", "bzip2", "bitshuffle"}


class ArrayFileError(_OwnMessage, RunstoreError, OSError):
    """An HDF5 side file is missing, truncated or unreadable.

    Attributes
    ----------
    filename : str
        The side file's name.
    """

    def __init__(self, filename: str, problem: str) -> None:
        super().__init__(
            f"the array file {filename!r} {problem}. The arrays of the runs stored "
            f"in it cannot be loaded; other runs are not affected. Run "
            f"`runstore check STORE` to list the affected runs, and clear them "
            f"(run.clear()) to compute them again."
        )
        self.filename = filename


class StoreError(RunstoreError):
    """Base class of problems with a store file.

    Attributes
    ----------
    path : str
        The store's SQLite file.
    """

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(message)


class NotAStoreError(StoreError, ValueError):
    """The file is not a SQLite database, or not one runstore made."""

    def __init__(self, path: str, found: str) -> None:
        super().__init__(
            path, f"{path} is not a runstore store: {found}. Pass the path of a "
            f"store's .db file, or a path where no file exists yet to create one."
        )


class StoreNotFoundError(StoreError, FileNotFoundError):
    """No store, or several, answer to what a command line named.

    Attributes
    ----------
    path : str
        What was named (a path, a folder or a batch's name; ``.`` for nothing).
    found : list of str
        The stores that were found (none, or the several to choose from).
    """

    def __init__(self, path: str, message: str, found: list[str] | None = None) -> None:
        self.found = found or []
        super().__init__(path, message)

    def __str__(self) -> str:
        return str(self.args[0])


class SchemaTooNewError(StoreError):
    """The store was written by a newer runstore with a newer schema.

    Attributes
    ----------
    revision : str
        The store's schema revision.
    """

    def __init__(self, path: str, revision: str, supported: str) -> None:
        self.revision = revision
        super().__init__(
            path, f"{path} has schema revision {revision!r}, newer than this "
            f"runstore knows (up to {supported!r}); it was written by a newer "
            f"runstore. Upgrade runstore (pip install -U runstore) to open it."
        )


class SchemaOutdatedError(StoreError):
    """A store opened read-only has an older schema that needs an upgrade.

    Attributes
    ----------
    revision : str
        The store's schema revision.
    """

    def __init__(self, path: str, revision: str, head: str) -> None:
        self.revision = revision
        super().__init__(
            path, f"{path} has the older schema revision {revision!r} (this "
            f"runstore uses {head!r}) and was opened read-only, so it was not "
            f"upgraded. Upgrade it with: runstore upgrade {path}"
        )


class UpgradeBlockedError(SchemaOutdatedError):
    """A store was not upgraded: a process of an earlier runstore has it open for writing.

    That process would go on writing rows in the old way (an entry without
    its copies of the parameters, for one), which the upgraded store's
    queries would read wrong. Close it, then open the store again.

    Attributes
    ----------
    revision : str
        The store's schema revision.
    pid, host : int, str
        The process that holds the store.
    """

    def __init__(self, path: str, revision: str, head: str, pid: int, host: str,
                 record: str) -> None:
        self.pid, self.host = pid, host
        StoreError.__init__(
            self, path, f"{path} was not upgraded from schema revision {revision!r} to "
            f"{head!r}: process {pid} on {host}, of an earlier runstore, has it open for "
            f"writing, and would go on writing it the old way. Stop that process (or "
            f"close the store in it), then open the store again (its writer record is "
            f"{record})."
        )
        self.revision = revision


class ReadOnlyStoreError(StoreError, PermissionError):
    """A write was attempted on a store opened read-only."""

    def __init__(self, path: str, action: str) -> None:
        super().__init__(
            path, f"cannot {action}: {path} is open read-only (a shared bundle, "
            f"or opened with readonly=True). Import its runs into a store of "
            f"your own to add to them."
        )


class StoreLogUnreadableError(StoreError, OSError):
    """A store's log holds changes that SQLite cannot read where the store is.

    A store on a read-only filesystem is read as it is; a write-ahead log
    (or rollback journal) left beside it with changes needs files SQLite
    cannot make there.

    Attributes
    ----------
    log : str
        The log's file name.
    """

    def __init__(self, path: str, log: str) -> None:
        self.log = log
        super().__init__(
            path, f"cannot read {path}: its log {log} holds changes that are not in the "
            f"file yet, and SQLite cannot read them on a read-only filesystem. Copy the "
            f"store's files (with {log}) to a writable disk and open the copy")


# What to do instead of writing a store from several hosts (for messages).
_ONE_WRITER_HOST_ADVICE = (
    "Only processes on the host whose disk holds a store may write it. Run the batch "
    "(the coordinator) on that host, and compute on other hosts through ipyparallel "
    "engines (batch(cluster=runstore.Cluster(...))) or Dask workers "
    "(batch(executor=dask_client.get_executor())), whose results travel back to it; "
    "see 'How to run a batch on several processes' (docs/howto/parallel.rst)")


class NetworkFilesystemError(StoreError, PermissionError):
    """A store on a filesystem that other hosts mount was opened for writing, or
    cannot be read safely there now.

    SQLite's write-ahead log works only between processes of one host
    (https://sqlite.org/wal.html): written over NFS, Lustre, SMB, sshfs ...
    a store can be corrupted or lose results.

    Attributes
    ----------
    fstype : str
        The filesystem type, as ``/proc/self/mountinfo`` names it.
    mount_point : str
        Where that filesystem is mounted.
    """

    def __init__(self, path: str, fstype: str, mount_point: str, source: str,
                 reason: str | None = None) -> None:
        self.fstype, self.mount_point = fstype, mount_point
        where = f"a {fstype} network filesystem ({source}, mounted at {mount_point})"
        if reason is None:
            message = (
                f"cannot open {path} for writing from this host: it is on {where}. "
                f"SQLite's write-ahead log needs every process that writes the store on "
                f"one host, on its local disk (https://sqlite.org/wal.html); written over "
                f"a network filesystem the store can be corrupted or lose results. "
                f"{_ONE_WRITER_HOST_ADVICE}. Reading it from here stays possible "
                f"(readonly=True, runstore runs/status/show/sql/export). If no other "
                f"host ever writes stores on this filesystem (say, a home folder that "
                f"only this workstation mounts), set RUNSTORE_ALLOW_NETWORK_FS=1.")
        else:
            message = f"cannot read {path} safely from here: it is on {where}, and {reason}"
        super().__init__(path, message)


class OtherHostWritingError(StoreError, PermissionError):
    """Another host is writing the store (or was, and its record has not expired).

    Attributes
    ----------
    host : str
        The host that writes the store.
    expires : float
        When its record expires unless renewed (seconds since the epoch).
    record : str
        The file that records it.
    """

    def __init__(self, path: str, host: str, pid: int, expires: float, record: str,
                 now: float, action: str = "write") -> None:
        import time

        self.host, self.expires, self.record = host, expires, record
        left = max(0.0, expires - now)
        at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(expires))
        super().__init__(
            path, f"cannot {action} {path} from this host: host {host!r} (pid {pid}) "
            f"is writing it; its record {record} holds until {at} ({left:.0f} s from "
            f"now) unless {host} renews it. {_ONE_WRITER_HOST_ADVICE}. If {host} is no "
            f"longer writing (its processes ended or the host is down), wait until then, "
            f"or, once you are sure, delete {record}.")


class BatchNameError(RunstoreError, ValueError):
    """A batch name that cannot be used as a file and SQL name.

    Attributes
    ----------
    name : str
        The rejected name.
    """

    def __init__(self, name: object, reason: str | None = None) -> None:
        self.name = name
        if reason is not None:
            message = f"invalid batch name {name!r}: {reason}. Choose another name."
        else:
            message = (
                f"invalid batch name {name!r}: use letters, digits, '_', '-' and '.', "
                f"starting with a letter or digit (no '/', no '..', at most 100 "
                f"characters), e.g. 'example' or 'sweep-2026.1'")
        super().__init__(message)


class ParameterError(RunstoreError, TypeError):
    """Parameters that the run class's ``run`` method does not accept.

    Attributes
    ----------
    run_type : str
        The run class.
    unknown : list of str
        The names that ``run`` does not accept.
    accepted : list of str
        The names it accepts.
    """

    def __init__(self, run_type: str, unknown: list[str], accepted: list[str]) -> None:
        self.run_type = run_type
        self.unknown = unknown
        self.accepted = accepted
        super().__init__(
            f"{run_type}.run() does not accept the parameter(s) "
            f"{', '.join(map(repr, unknown))}; it accepts "
            f"{', '.join(map(repr, accepted)) or 'none'}. Fix the name, or add it "
            f"to the signature of run()."
        )


class QueryError(RunstoreError, ValueError):
    """A query names an unknown parameter or operator, or compares badly."""


class VaryingParametersError(QueryError):
    """A plot would join points of runs that differ in parameters it does not show.

    ``Batch.plot`` (and ``runstore plot``) draws one line per value of
    ``hue`` in each facet (``col``, ``row``); a parameter that still takes
    several values among the plotted runs would make a line zigzag between
    different calculations.

    Attributes
    ----------
    batch : str
        The batch's name.
    varying : dict
        The distinct values (as shown in the batch's table) of each such
        parameter, by name.
    """

    def __init__(self, batch: str, varying: dict[str, list[str]]) -> None:
        self.batch = batch
        self.varying = varying
        found = "; ".join(f"{name} ({len(values)} values: {_some(values)})"
                          for name, values in varying.items())
        name, values = next(iter(varying.items()), ("NAME", ["VALUE"]))
        one = f"{name}={values[0]}"
        super().__init__(
            f"cannot plot batch {batch!r}: its runs also differ in {found}, so a line "
            "would join points of different calculations. Show each such parameter in "
            f"panels (col={name!r} or row={name!r}; --col {name}, --row {name}) or as "
            f"lines (hue={name!r}; --hue {name}), or keep one of its values "
            f"(where={one!r}; --where '{one}')")


def _some(values: list[str], most: int = 6) -> str:
    """Values joined with commas, the middle ones left out when there are many."""
    if len(values) <= most:
        return ", ".join(values)
    return ", ".join(values[:3]) + ", ..., " + ", ".join(values[-2:])


class RunNotFound(_OwnMessage, RunstoreError, KeyError):
    """No run with this id is in the store.

    Attributes
    ----------
    run_id : str
        The id looked for.
    """

    def __init__(self, run_id: str, where: str) -> None:
        self.run_id = run_id
        super().__init__(
            f"no run with id {run_id!r} in {where}. Check the id (save_ids() "
            f"writes the ids of a batch), or open the store or bundle that holds it."
        )


class BatchNotFound(_OwnMessage, RunstoreError, KeyError):
    """A store opened read-only has no batch of this name.

    Attributes
    ----------
    name : str
        The batch asked for.
    known : list of str
        The batches the store has.
    """

    def __init__(self, name: str, path: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        super().__init__(
            f"{path} has no batch {name!r}; it has {', '.join(map(repr, known)) or 'none'}. "
            f"Open one of those, or open the store writable to create the batch."
        )


class RunsFailedError(RunstoreError, RuntimeError):
    """Some runs of a batch raised; their errors are stored, the others' results too.

    Attributes
    ----------
    failures : list of tuple
        ``(run_id, parameters, error line)`` for each failed run.
    """

    def __init__(self, batch: str, failures: list[tuple[str, dict[str, object], str]],
                 total: int) -> None:
        self.failures = failures
        lines = [
            f"  {run_id[:12]} {parameters!r}: {error}"
            for run_id, parameters, error in failures[:20]
        ]
        if len(failures) > 20:
            lines.append(f"  ... and {len(failures) - 20} more")
        super().__init__(
            f"{len(failures)} of {total} runs of batch {batch!r} failed; the other "
            f"results are stored.\n" + "\n".join(lines) + "\nSee run.error for a "
            f"traceback; fix the cause, then batch(retry_failed=True) runs the "
            f"failed ones again."
        )


class RunError(RunstoreError, RuntimeError):
    """A run cannot do what was asked: compute without its class, a bad custom id."""


class PoolError(RunstoreError, RuntimeError):
    """Running a batch on an executor failed in a way that is not one run's fault."""


class WorkerError(RunstoreError, RuntimeError):
    """A standalone worker cannot compute some runs (their class cannot be imported ...)."""


class ClusterError(RunstoreError, RuntimeError):
    """An ipyparallel cluster is not running, or its engines did not come up."""


class ClusterTimeoutError(ClusterError, TimeoutError):
    """Fewer engines than asked for registered within the time allowed."""


class BundleError(RunstoreError, ValueError):
    """A bundle cannot be written or opened as asked."""


class BatchpyImportError(RunstoreError, ValueError):
    """A batchpy ``_res/`` folder cannot be imported as asked (see :func:`runstore.import_batchpy`).

    Attributes
    ----------
    folder : str
        The folder.
    """

    def __init__(self, folder: str, message: str) -> None:
        super().__init__(message)
        self.folder = folder


class BatchpyPickleRefusedError(BatchpyImportError, PermissionError):
    """batchpy results are pickles, and reading them was not allowed.

    A batchpy result file is a pickle inside an ``.npy`` file, and reading a
    pickle can run code; runstore reads them only when asked to
    (``allow_pickle=True``, ``--allow-pickle``).

    Attributes
    ----------
    folder : str
        The folder.
    count : int
        How many result files it holds.
    """

    def __init__(self, folder: str, count: int, option: str = "allow_pickle=True") -> None:
        BatchpyImportError.__init__(
            self, folder,
            f"{folder} holds {count} batchpy result files; each is a pickle inside an .npy "
            "file, and reading a pickle can run code from the file. Nothing was read. If "
            f"the files are yours (or you trust who wrote them), pass {option}: runstore "
            "then reads them with an unpickler that builds only plain values and numpy "
            "arrays, and never imports other code unless you name its modules")
        self.count = count


class CodeChangedWarning(UserWarning):
    """A stored result was computed by a different version of the run class's code."""


class UncomputedRunsWarning(UserWarning):
    """Calling a batch left pending runs whose run class it does not know.

    A batch computes the runs of the classes given to its ``add_run`` /
    ``add_factorial_runs`` in this process; runs of other classes (added by
    another script, or taken from a bundle) stay pending.
    """


# -- checks, repairs and garbage collection (runstore.check) -------------------------


class BundleRepairError(StoreError, ValueError):
    """``gc`` or ``check --fix`` was asked to change a bundle as if it were a store, or back.

    Attributes
    ----------
    action : str
        What was asked (``"repair"``, ``"collect garbage"``, ...).
    evidence : str or None
        Why the file is a bundle; ``None`` when ``bundle=True`` was given for a store.
    """

    def __init__(self, path: str, action: str, evidence: str | None) -> None:
        self.action = action
        self.evidence = evidence
        if evidence is None:
            message = (f"{path} is a store, not a bundle, but --bundle (bundle=True) was "
                       f"given; run the command without it")
        else:
            message = (
                f"refusing to {action} {path}: it is a bundle ({evidence}), whose folder "
                f"may hold files that are not runstore's. To change this bundle anyway, "
                f"touching only its own {_bundle_h5(path)}, add --bundle "
                f"(Python: bundle=True); --dry-run first says what would change. To add "
                f"runs to it, import it into a store (runstore import)")
        super().__init__(path, message)


class StoreUnreadableError(StoreError, OSError):
    """SQLite cannot read a store reliably, so no side file can be proven unused.

    Attributes
    ----------
    problem : str
        What SQLite said.
    """

    def __init__(self, path: str, problem: str) -> None:
        self.problem = problem
        super().__init__(
            path, f"SQLite cannot read {path} reliably ({problem}), so no side file is "
            f"proven unused: gc stopped and deletes nothing more. Run `runstore check "
            f"{path}` to see the damage, and restore the store from a copy")


def _bundle_h5(path: str) -> str:
    """The name of a bundle's ``.h5`` (``shared.db`` -> ``shared.h5``)."""
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    return name.removesuffix(".db") + ".h5"


# -- opening stores: options (area: open) ------------------------------------------


class StoreOptionError(RunstoreError, ValueError):
    """A :class:`~runstore.Store` (or :class:`~runstore.Batch`) option with an invalid value.

    Attributes
    ----------
    option : str
        The option's name, e.g. ``"synchronous"``.
    value : object
        The value given.
    allowed : tuple
        The values it can take.
    """

    def __init__(self, option: str, value: object, allowed: tuple[object, ...],
                 reason: str | None = None) -> None:
        self.option = option
        self.value = value
        self.allowed = allowed
        super().__init__(
            f"{option}={value!r} cannot be used: "
            f"{reason or 'it is not one of the values it can take'}. Use one of "
            f"{', '.join(repr(a) for a in allowed)} (see the Store documentation)")


# -- values: what can be stored, and full disks (the values area) -------------------


class UnstorableValueError(EncodingError, ValueError):
    """A value of a supported type whose content cannot be stored exactly.

    For example a string that is not valid Unicode (a lone surrogate, as
    ``os.listdir`` gives for file names that are not UTF-8), a list that
    contains itself, containers nested deeper than
    :data:`runstore.encoding.MAX_DEPTH`, an int of more than
    :data:`runstore.encoding.MAX_INT_BITS` bits, or a parameter name or
    result key with a NUL character. It is an :class:`EncodingError` (so a
    ``TypeError``) and a ``ValueError``; the attributes are those of
    :class:`EncodingError`.
    """


class StorageFullError(_OwnMessage, RunstoreError, OSError):
    """The filesystem holding a store (its side files or its SQLite file) is full.

    Nothing half-written is kept: a side file being written is removed, and a
    SQLite transaction is rolled back, so the runs being recorded stay
    claimed until the batch releases them; calling the batch again after
    making room computes them again.

    Attributes
    ----------
    path : str
        The file or folder that could not be written.
    mount : str
        The mount point of the filesystem holding it.
    free : int or None
        The free bytes left on that filesystem, if they could be read.
    """

    def __init__(self, path: str, mount: str, free: int | None, what: str) -> None:
        self.path = path
        self.mount = mount
        self.free = free
        left = "unknown" if free is None else f"{free:,} bytes"
        super().__init__(
            f"cannot {what}: the filesystem of {path} (mounted at {mount}, {left} free) "
            f"is full. Make room on it (delete files, or run `runstore gc STORE` to "
            f"drop arrays no run needs), then call the batch again: the runs that "
            f"were being recorded are pending again and are computed anew."
        )
        self.errno = 28  # ENOSPC, as an OSError for a full disk has
        self.filename = path


# -- files runstore did not write: trust, hostile HDF5, hostile SQL ---------------------

__all__ += ["UntrustedCodeError", "CustomIdRefusedError", "UnsafeArrayFileError",
            "QueryTimeoutError"]


class UntrustedCodeError(RunstoreError, PermissionError):
    """Computing a run would import code named in a file runstore did not write.

    The run's parameters were imported (from a bundle or another store) and
    name functions or classes; runstore does not import names that came from
    outside unless the user trusts them.

    Attributes
    ----------
    run_id : str
        The run.
    origin : str
        The file its parameters came from.
    names : list of str
        The functions and classes its parameters name.
    """

    def __init__(self, run_id: str, origin: str, names: list[str]) -> None:
        super().__init__(
            f"run {run_id} cannot be computed: its parameters came from {origin} and name "
            f"code ({', '.join(names[:5])}), which runstore does not import from files it "
            "did not write. To compute it, add the run with your own code "
            "(batch.add_run(TheClass, parameters) vouches for its parameters), or import "
            "the file with trust=True (`runstore import --trust`) if you trust it; then "
            "call the batch with retry_failed=True")
        self.run_id = run_id
        self.origin = origin
        self.names = names


class CustomIdRefusedError(BundleError):
    """An imported run has a custom id, which runstore cannot check.

    Attributes
    ----------
    run_id : str
        The run.
    path : str
        The file it came from.
    """

    def __init__(self, run_id: str, path: str) -> None:
        super().__init__(
            f"run {run_id} of {path} has a custom id (its class overrides generate_id), "
            "which runstore cannot recompute from its parameters: the file could pair "
            "any parameters with any id, and the run would then answer for runs it is "
            "not. Nothing was imported. Import the file with trust=True "
            "(`runstore import --trust`) only if you trust whoever wrote it")
        self.run_id = run_id
        self.path = path


class UnsafeArrayFileError(ArrayFileError):
    """A side file holds something runstore never writes where an array belongs.

    (A link to another object or file, a virtual dataset, a group where a
    dataset belongs, an array of the wrong type or size, or a path that is
    not a regular file.) Nothing of it was read.

    Attributes
    ----------
    filename : str
        The side file's name.
    where : str
        The path inside the file (or the file itself).
    found : str
        What was found there.
    """

    def __init__(self, filename: str, where: str, found: str) -> None:
        super().__init__(filename, f"holds {found} at {where}, which runstore never writes "
                         "(refused without reading it: the file may be hostile or damaged)")
        self.where = where
        self.found = found


class QueryTimeoutError(StoreError, TimeoutError):
    """A query on a file runstore did not write took longer than the time limit.

    Attributes
    ----------
    path : str
        The file.
    seconds : float
        The limit that was exceeded.
    """

    def __init__(self, path: str, seconds: float) -> None:
        super().__init__(
            path, f"a query on {path} took longer than {seconds:g} s and was stopped: the file "
            "may be hostile or damaged (runstore bounds the time of queries on files "
            "opened read-only). If it is a large file you trust, raise the limit: "
            "store.query_time_limit = SECONDS, or the environment variable "
            "RUNSTORE_QUERY_TIME_LIMIT")
        self.path = path
        self.seconds = seconds


# -- claims, leases and commits (runstate) ------------------------------------------


class RunstoreWarning(UserWarning):
    """Base class of the warnings runstore issues about runs and their results."""


class DuplicateResultWarning(RunstoreWarning):
    """A finished run was already recorded by another worker; this result was discarded.

    Attributes
    ----------
    run_ids : list of str
        The runs whose duplicate results were discarded.
    """

    def __init__(self, store: str, run_ids: list[str]) -> None:
        self.run_ids = run_ids
        shown = ", ".join(rid[:12] for rid in run_ids[:5])
        more = f" and {len(run_ids) - 5} more" if len(run_ids) > 5 else ""
        super().__init__(
            f"{len(run_ids)} finished runs ({shown}{more}) were already recorded in "
            f"{store} by another worker (done or failed) while this process computed "
            f"them; the stored outcome is kept and this process's duplicate results "
            f"were discarded. Nothing needs to be done.")


class LeaseError(RunstoreError, ValueError):
    """A lease length is not a positive number of seconds.

    Attributes
    ----------
    source : str
        Where it came from (``lease=`` or ``RUNSTORE_LEASE``).
    value : object
        The value given.
    """

    def __init__(self, source: str, value: object) -> None:
        self.source, self.value = source, value
        super().__init__(
            f"{source} must be a positive, finite number of seconds, got {value!r}; "
            f"give e.g. 600 (ten minutes), or unset it for the default")


class RunsUnfinishedError(RunstoreError, RuntimeError):
    """Runs a call claimed (or asked for) ended neither done nor failed.

    Attributes
    ----------
    reasons : dict of str to str
        For each such run id, its state and why it is not finished.
    """

    def __init__(self, what: str, reasons: dict[str, str]) -> None:
        self.reasons = reasons
        lines = [f"  {rid[:12]}: {why}" for rid, why in list(reasons.items())[:20]]
        if len(reasons) > 20:
            lines.append(f"  ... and {len(reasons) - 20} more")
        super().__init__(
            f"{len(reasons)} runs of {what} are neither done nor failed:\n"
            + "\n".join(lines) + "\nNo result was recorded for them. Call again "
            f"once the process named above is done (or gone); a pending run is "
            f"computed by the next call.")


class ResultsNotRecordedError(_OwnMessage, RunstoreError, OSError):
    """Finished runs could not be recorded in the store (a full disk, an I/O error).

    The runs are released (pending again), or, if even that failed, taken back
    by the next call in this process.

    Attributes
    ----------
    store : str
        The store file.
    count : int
        How many finished runs were not recorded.
    cause : str
        The error the database or file system gave.
    """

    def __init__(self, store: str, count: int, cause: BaseException) -> None:
        import os

        self.store, self.count, self.cause = store, count, f"{type(cause).__name__}: {cause}"
        folder = os.path.dirname(os.path.abspath(store)) if store != ":memory:" else store
        full = " (is the disk full?)" if "full" not in str(cause).lower() else ""
        super().__init__(
            f"{count} finished runs could not be recorded in {store} (folder {folder}): "
            f"{self.cause}{full}. They were not stored and are pending again. Free "
            f"space or fix the cause, then call the batch again to compute them.")


class DatasetError(RunstoreError, ValueError):
    """A batch's runs cannot be laid out as an xarray Dataset as asked (``Batch.to_xarray``).

    Attributes
    ----------
    batch : str
        The batch's name.
    reason : str
        What was found.
    hint : str
        What to do instead.
    """

    def __init__(self, batch: str, reason: str, hint: str) -> None:
        self.batch = batch
        self.reason = reason
        self.hint = hint
        super().__init__(f"batch {batch!r} cannot become a Dataset: {reason}. {hint}.")


class ArrayShapeError(DatasetError):
    """An array result has different shapes in different runs, so it has no one set of dimensions.

    Attributes
    ----------
    key : str
        The result key (nested keys joined with ``.``).
    shapes : dict
        The ids of the runs holding each shape, by shape.
    """

    def __init__(self, batch: str, key: str, shapes: dict[tuple[int, ...], list[str]]) -> None:
        self.key = key
        self.shapes = shapes
        found = "; ".join(f"{shape} in {len(ids)} runs (e.g. {ids[0]})"
                          for shape, ids in shapes.items())
        super().__init__(
            batch, f"the array result {key!r} has different shapes in different runs: {found}",
            f"Leave it out with exclude=[{key!r}] (or choose the keys with variables=), "
            "or select runs whose arrays agree with runs=")
