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
:meth:`Batch.get_runs_with` is one indexed SQL query (:mod:`runstore.query`).
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
    "BundleError",
    "BatchpyImportError",
    "BatchpyPickleRefusedError",
    "NotAStoreError",
    "SchemaTooNewError",
    "SchemaOutdatedError",
    "ArrayFileError",
    "MissingFilterError",
    "CodeChangedWarning",
    "UncomputedRunsWarning",
    "__version__",
]

from importlib.metadata import PackageNotFoundError, version

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
    CodeChangedWarning,
    UncomputedRunsWarning,
    DecodingError,
    EncodingError,
    MissingFilterError,
    NotAStoreError,
    OptionalDependencyError,
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
    UnresolvedReferenceError,
    WorkerError,
)
from .identity import SCHEME_VERSION, compute_id, type_name
from .legacy import import_batchpy
from .run import ResultRun, Run, convert_run_to_newstyle
from .schema import RunState
from .store import Store

try:
    __version__ = version("runstore")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
