"""The interfaces of runstore's parts, with the invariants each must keep.

This module re-exports the zope.interface tools (:class:`Interface`,
:class:`Attribute`, :func:`implementer`, :func:`verifyClass`,
:func:`verifyObject`), declares runstore's own interfaces, and renders any
interface with :func:`describe_interface`: by default as an HTML object a
notebook shows (as mmfutils does), or as reStructuredText or HTML.

The tests check every class that declares one of these interfaces with
``verifyClass`` and one of its instances with ``verifyObject``.
"""

from __future__ import annotations

from typing import Any

import zope.interface.document
from zope.interface import Attribute, Interface, implementer
from zope.interface.verify import verifyClass, verifyObject

from .errors import OptionalDependencyError

__all__ = [
    # zope.interface, re-exported
    "Interface",
    "Attribute",
    "implementer",
    "verifyClass",
    "verifyObject",
    # rendering
    "describe_interface",
    # runstore's interfaces
    "IPersistent",
    "IContainer",
    "IReference",
    "IRun",
    "IRunStore",
    "IArrayStore",
    "IExecutor",
]


#: The formats :func:`describe_interface` renders, with their aliases.
_FORMATS = {"rst": "rst", "html": "html", "ipython": "ipython", "jupyter": "ipython"}


def describe_interface(iface: Any, format: str | None = None) -> Any:
    """Render an interface's documentation, by default for a notebook.

    Parameters
    ----------
    iface
        The interface.
    format
        ``None`` (the default) returns what mmfutils returns: an
        ``IPython.display.HTML`` object, which a notebook shows as formatted
        documentation. Where IPython or docutils is not installed (so no
        notebook can show it) the default returns the reStructuredText
        text instead, which reads well when printed.
        ``"rst"`` returns reStructuredText; ``"html"`` an HTML fragment (the
        body, no ``<html>`` document around it; needs docutils);
        ``"ipython"`` (or ``"jupyter"``) the ``IPython.display.HTML`` object
        (needs docutils and IPython). Case is ignored.

    Raises
    ------
    NotImplementedError
        For any other format (as mmfutils does); the message lists the formats.
    OptionalDependencyError
        If an explicitly requested format needs a package that is missing.

    Examples
    --------
    >>> class IExample(Interface):
    ...     x = Attribute("x", "Floating point number")
    ...     def two():
    ...         "Return two"
    >>> print(describe_interface(IExample, format="rst").strip())
    ``IExample``
    <BLANKLINE>
     Attributes:
    <BLANKLINE>
      ``x`` -- Floating point number
    <BLANKLINE>
     Methods:
    <BLANKLINE>
      ``two()`` -- Return two
    """
    if format is None:
        format = "ipython" if _notebook_display_available() else "rst"
    kind = _FORMATS.get(format.lower()) if isinstance(format, str) else None
    if kind is None:
        raise NotImplementedError(
            f"describe_interface cannot render format {format!r}; use 'rst' "
            f"(reStructuredText text), 'html' (an HTML fragment) or 'ipython' (alias "
            f"'jupyter': an IPython.display.HTML object for notebooks)"
        )
    rst = zope.interface.document.asReStructuredText(iface)
    if kind == "rst":
        return rst
    html = _rst_to_html(rst, format)
    if kind == "html":
        return html
    try:
        from IPython.display import HTML
    except ImportError as exc:
        raise OptionalDependencyError("ipython", "test", f"format={format!r}") from exc
    return HTML(html)


def _notebook_display_available() -> bool:
    """Whether IPython and docutils, which the notebook display needs, import."""
    try:
        import docutils.core  # noqa: F401  (imported only to see that it is there)
        import IPython.display  # noqa: F401
    except ImportError:
        return False
    return True


def _rst_to_html(rst: str, format: str) -> str:
    """Render reStructuredText as an HTML fragment (the document's body)."""
    try:
        from docutils.core import publish_parts
        from docutils.writers import get_writer_class
    except ImportError as exc:
        raise OptionalDependencyError("docutils", "html", f"format={format!r}") from exc
    html: str = publish_parts(
        rst, writer=get_writer_class("html")(),
        settings_overrides={"report_level": 5, "halt_level": 5},
    )["body"]
    return html


class IPersistent(Interface):
    """An object defined by a few attributes, persisted by those alone.

    Invariants:

    - the defining attributes are those set before the base ``__init__`` ran
      (or added as keys of a mapping container), or exactly those named by
      ``picklable_attributes`` when it was given; ``picklable_attributes``
      lists them in lexicographic order unless an order was given;
    - pickles, stored results and run ids hold the defining attributes (as
      ``_getstate()`` returns them) and nothing else; everything else is
      temporary and rebuilt by ``init()``; run ids do not depend on the order;
    - every defining attribute pickles: a value that cannot is refused when it
      is set, unless the class sets ``_check = False``;
    - ``init()`` runs at the end of construction, after unpickling, after
      ``copy.copy`` and after loading from a store;
    - ``initialized`` is false from the moment a defining attribute changes
      until ``init()`` completes;
    - two objects are equal when they have the same type and equal defining
      attributes; ``repr`` shows ``Class(name=value, ...)`` over them.
    """

    picklable_attributes = Attribute(
        "picklable_attributes",
        "Names of the defining attributes, sorted unless an order was given.",
    )
    initialized = Attribute(
        "initialized", "Whether init() has run since a defining attribute changed."
    )

    def init() -> None:
        """Build the temporary state from the defining attributes."""

    def __getstate__() -> Any:
        """Return a dict of the defining attributes."""

    def __setstate__(state: Any) -> None:
        """Set the defining attributes from ``state``, then call init()."""


class IContainer(IPersistent):
    """A bag of named values: an IPersistent whose attributes are its content.

    Invariants: ``len`` counts the defining attributes; iteration and ``in``
    follow the container's kind (names for a mapping, values for a sequence);
    a key that would shadow a method is refused.
    """

    def __len__() -> int:
        """Return the number of defining attributes."""

    def __iter__() -> Any:
        """Iterate over the values (or the names, for a mapping)."""

    def __contains__(item: Any) -> bool:
        """Test membership."""


class IReference(Interface):
    """Something named in a store that loading did not import.

    Invariant: creating, comparing and encoding a reference never imports or
    runs code; only an explicit ``resolve()`` does. A reference encodes to
    exactly the tree of the thing it names, so ids recomputed from loaded
    values match the stored ones.
    """

    def resolve() -> Any:
        """Import what the reference names and return it."""


class IRun(Interface):
    """One calculation, defined by a run type and its parameters.

    The user writes ``run(self, A=0, B=...)``: its signature, which is the
    user's own and so not declared here, defines the parameters and defaults.

    Invariants:

    - ``id`` is ``generate_id(parameters)``; by default the run identity of
      :mod:`runstore.identity`, so any change of a parameter name, value or
      type, or of the run type, changes it;
    - parameters whose names start with ``_`` are passed to ``run`` but are
      neither in ``parameters`` nor in the id;
    - a run with the same id as a run already done is never computed again;
    - ``result`` is loaded lazily and then cached; ``runtime`` is measured
      with a monotonic clock.
    """

    parameters = Attribute("parameters", "The parameters that define the run.")
    id = Attribute("id", "The 40-hex run id.")
    index = Attribute("index", "The position of the run in its batch.")
    done = Attribute("done", "Whether a result is stored.")
    result = Attribute("result", "The result, loaded on first access.")
    runtime = Attribute("runtime", "Seconds the computation took, or None.")
    filename = Attribute("filename", "The HDF5 side file holding its arrays, or None.")

    def generate_id(parameters: Any) -> str:
        """Return the id of a run with these parameters."""

    def __call__() -> Any:
        """Compute the result, or load it if already done, and return it."""

    def clear() -> bool:
        """Forget the stored result; the run becomes pending again. Return whether there was one."""


class IRunStore(Interface):
    """Where runs, their states and their results are kept.

    Invariants:

    - a run id appears once per batch; registering runs is one bulk write and
      one set query for the ids already done;
    - a run's state changes only PENDING -> RUNNING -> DONE | FAILED,
      FAILED -> PENDING on retry, expired RUNNING -> PENDING, each by one
      atomic compare-and-set statement;
    - a result's rows are committed only after its arrays are closed on disk;
      committed rows are never changed by a crash;
    - opening, querying and loading never unpickle and never import code,
      unless the store was opened with ``allow_pickle=True``.
    """

    path = Attribute("path", "The SQLite file of the store.")
    readonly = Attribute("readonly", "Whether the store refuses writes.")
    arrays = Attribute("arrays", "The IArrayStore holding the side files.")

    def add_runs(batch: int, runs: Any) -> Any:
        """Append runs ``(id, run_type, parameters, indexed)`` to a batch in bulk;
        return what was appended (ids, row keys, positions, which are new)."""

    def claim(batch: int, run_types: Any, limit: int, after: int = -1,
              lease: float = 600.0) -> Any:
        """Atomically move up to ``limit`` pending runs to RUNNING for this owner."""

    def complete(completions: Any) -> int:
        """Write the arrays to a new side file, then record the outcomes in one
        transaction; return how many runs were recorded."""

    def release() -> int:
        """Return this owner's RUNNING runs to PENDING."""

    def reset(run_ids: Any, from_states: Any) -> int:
        """Return runs in the given states to PENDING, forgetting their results."""

    def query(batch: int, conditions: Any) -> Any:
        """Return the runs of a batch whose parameters match, in batch order."""

    def rows(batch: int, start: int = 0, stop: Any = None) -> Any:
        """Return the runs of a batch between two positions."""

    def run_record(run_id: str) -> Any:
        """Return everything stored about a run except its arrays."""

    def load_arrays(run_id: str, filename: Any, digests: Any) -> Any:
        """Read a run's arrays by digest from its side file."""


class IArrayStore(Interface):
    """HDF5 side files holding the arrays of results.

    Invariants:

    - arrays are written into a new side file that is closed before any row
      pointing into it is committed;
    - a side file that committed rows point into is never opened for writing
      again;
    - handles are short-lived: each call opens and closes its file;
    - a run's arrays sit at ``/<run id>/<key path>``, and attributes say what
      the file, each run and each array are, so h5py alone explains a file;
    - the array store knows nothing of SQL.
    """

    directory = Attribute("directory", "The folder holding the side files.")

    def write(arrays: Any, runs: Any = None, options: Any = None) -> str:
        """Write ``{run id: {key path: array}}`` into a new side file, close it,
        return its name. ``runs`` gives what the file records about each run
        as attributes (its type and parameters, the arrays' CRC-32s);
        ``options`` how arrays are chunked and compressed."""

    def read(filename: str, key: str) -> Any:
        """Read one array back."""

    def files() -> Any:
        """List the side files present."""

    def remove(filename: str) -> None:
        """Delete a side file that no committed row points into."""


class IExecutor(Interface):
    """What draining a batch needs of an executor: a concurrent.futures.Executor.

    Invariant: tasks are functions of one run's (or one chunk's) parameters
    and never carry the whole batch; results come back as futures. Any
    ``concurrent.futures.Executor`` provides this interface (check one with
    ``verifyObject(IExecutor, executor, tentative=True)``).
    """

    def submit(fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Schedule ``fn(*args, **kwargs)`` and return a Future."""

    def shutdown(wait: bool = True) -> None:
        """Release the executor's resources."""

