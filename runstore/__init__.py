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
    "__version__",
]

from importlib.metadata import PackageNotFoundError, version

from .containers import Container, ContainerDict, ContainerList, Object
from .encoding import ArrayRef, FunctionRef, ObjectRef
from .errors import (
    DecodingError,
    EncodingError,
    OptionalDependencyError,
    ReservedNameError,
    RunstoreError,
    UnresolvedReferenceError,
)
from .identity import SCHEME_VERSION, compute_id, type_name

try:
    __version__ = version("runstore")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
