"""runstore: run large batches of similar calculations once, and keep their results.

Data flows one way through the package. A user subclasses :class:`Run`; its
``run`` signature defines the parameters. :class:`Batch` encodes each run's
parameters canonically (:mod:`runstore.encoding`), which gives the run its
40-hex id (:mod:`runstore.identity`), and registers the runs in bulk in a
:class:`Store`: SQLite rows (:mod:`runstore.schema`, versioned by Alembic)
with typed, indexed parameters. Calling the batch claims pending runs,
computes them outside any transaction, encodes each result
(:mod:`runstore.results`), writes its arrays to a new HDF5 side file
(:mod:`runstore.arrays`; chunked and compressed as :class:`ArrayOptions`
say, :mod:`runstore.compression`) and only then commits the rows that point into it.
:meth:`Batch.get_runs_with` is one indexed SQL query (:mod:`runstore.query`);
:meth:`Batch.plot` draws a batch's table, never joining runs that differ in a
parameter it does not show (``runstore.plot``), and runs show in Jupyter with
large arrays summarised (``runstore.summary``).
Values that define a run or make up a result may be :class:`Object` and
container instances (:mod:`runstore.containers`); the parts are specified as
zope interfaces (:mod:`runstore.interfaces`), and every error derives from
:class:`RunstoreError` (:mod:`runstore.errors`). Results that batchpy, runstore's
predecessor, kept in ``_res/`` folders are read into a store by
:func:`import_batchpy` (:mod:`runstore.legacy`).
"""

__all__ = [
    # running and keeping calculations
    "Batch",
    "Run",
    "ResultRun",
    "convert_run_to_newstyle",
    "Store",
    "RunState",
    "Cluster",
    "get_cluster",
    "open_bundle",
    "import_bundle",
    "import_batchpy",
    "ArrayOptions",
    # serialization layer
    "Object",
    "Container",
    "ContainerList",
    "ContainerDict",
    # identity
    "compute_id",
    "type_name",
    "SCHEME_VERSION",
    # references decoded from stores
    "FunctionRef",
    "ObjectRef",
    "ArrayRef",
    # errors
    "RunstoreError",
    "EncodingError",
    "DecodingError",
    "ReservedNameError",
    "UnresolvedReferenceError",
    "OptionalDependencyError",
    "BatchNameError",
    "ParameterError",
    "QueryError",
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
    "NotAStoreError",
    "NetworkFilesystemError",
    "OtherHostWritingError",
    "SchemaTooNewError",
    "SchemaOutdatedError",
    "UpgradeBlockedError",
    "ArrayFileError",
    "MissingFilterError",
    "CodeChangedWarning",
    "UncomputedRunsWarning",
    "__version__",
]

from importlib import import_module
from typing import TYPE_CHECKING, Any

# Names are imported from their modules when first used, so that
# ``import runstore`` (and ``runstore --help``) stays light: SQLAlchemy,
# numpy, h5py and the rest load with the first Batch or Store.
_MODULES = {
    "Batch": "batch",
    "import_bundle": "bundle", "open_bundle": "bundle",
    "Cluster": "cluster", "get_cluster": "cluster",
    "ArrayOptions": "compression",
    "Container": "containers", "ContainerDict": "containers", "ContainerList": "containers",
    "Object": "containers",
    "ArrayRef": "encoding", "FunctionRef": "encoding", "ObjectRef": "encoding",
    "SCHEME_VERSION": "identity", "compute_id": "identity", "type_name": "identity",
    "import_batchpy": "legacy",
    "ResultRun": "run", "Run": "run", "convert_run_to_newstyle": "run",
    "RunState": "schema",
    "Store": "store",
}
_MODULES.update((name, "errors") for name in __all__ if name not in _MODULES
                and (name.endswith(("Error", "Warning", "NotFound"))))


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("runstore")
        except PackageNotFoundError:  # running from a source tree that is not installed
            found = "0+unknown"
        globals()["__version__"] = found
        return found
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'runstore' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from .batch import Batch
    from .bundle import import_bundle, open_bundle
    from .cluster import Cluster, get_cluster
    from .compression import ArrayOptions
    from .containers import Container, ContainerDict, ContainerList, Object
    from .encoding import ArrayRef, FunctionRef, ObjectRef
    from .errors import (
        ArrayFileError,
        BatchNameError,
        BatchNotFound,
        BatchpyImportError,
        BatchpyPickleRefusedError,
        BundleError,
        ClusterError,
        ClusterTimeoutError,
        CodeChangedWarning,
        DecodingError,
        EncodingError,
        MissingFilterError,
        NetworkFilesystemError,
        NotAStoreError,
        OptionalDependencyError,
        OtherHostWritingError,
        ParameterError,
        PoolError,
        QueryError,
        ReservedNameError,
        RunError,
        RunNotFound,
        RunsFailedError,
        RunstoreError,
        SchemaOutdatedError,
        SchemaTooNewError,
        UncomputedRunsWarning,
        UnresolvedReferenceError,
        UpgradeBlockedError,
        WorkerError,
    )
    from .identity import SCHEME_VERSION, compute_id, type_name
    from .legacy import import_batchpy
    from .run import ResultRun, Run, convert_run_to_newstyle
    from .schema import RunState
    from .store import Store

    __version__: str
