"""runstore: run large batches of similar calculations once, and keep their results.

Data flows one way through the package. A user's run class and its parameters
are encoded canonically (:mod:`runstore.encoding`), which gives each run its
40-hex id (:mod:`runstore.identity`); values that define a run or make up a
result are :class:`Object` and container instances (:mod:`runstore.containers`)
or plain Python and numpy values. The parts that keep runs, states and arrays
are specified as zope interfaces (:mod:`runstore.interfaces`), and every error
runstore raises derives from :class:`RunstoreError` (:mod:`runstore.errors`).
"""

__all__ = [
    # running and keeping calculations
    "Batch",
    "Run",
    "ResultRun",
    "Store",
    "RunState",
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
    "RunsFailedError",
    "NotAStoreError",
    "SchemaTooNewError",
    "SchemaOutdatedError",
    "ArrayFileError",
    "CodeChangedWarning",
    "__version__",
]

from importlib.metadata import PackageNotFoundError, version

from .batch import Batch
from .containers import Container, ContainerDict, ContainerList, Object
from .encoding import ArrayRef, FunctionRef, ObjectRef
from .errors import (
    ArrayFileError,
    BatchNameError,
    CodeChangedWarning,
    DecodingError,
    EncodingError,
    NotAStoreError,
    OptionalDependencyError,
    ParameterError,
    QueryError,
    ReservedNameError,
    RunNotFound,
    RunsFailedError,
    RunstoreError,
    SchemaOutdatedError,
    SchemaTooNewError,
    UnresolvedReferenceError,
)
from .identity import SCHEME_VERSION, compute_id, type_name
from .run import ResultRun, Run
from .schema import RunState
from .store import Store

try:
    __version__ = version("runstore")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
