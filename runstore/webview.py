"""A read-only view of a store in a web browser: ``runstore ui``. Internal module.

:func:`create_app` builds a small Starlette application on pages rendered
from Jinja2 templates (``runstore/templates/ui/``) and figures drawn by
matplotlib; :func:`serve` serves it with uvicorn. The pages: the batches with
their runs by state (the page polls ``counts.json`` and updates itself while
runs complete), a batch's table of runs (filtered in the language of
``runstore runs``, sorted by any column), a run (parameters, scalar results,
a figure of each array, error and traceback, provenance), and a plot of a
batch (:meth:`runstore.Batch.plot`: lines by ``hue``, panels by ``col`` and
``row``, the runs ``where`` keeps).

Each request opens the store read-only and closes it: nothing is written,
every read goes through the store's own reading queries (never a file's
views), and values are decoded as data (functions and classes stay names,
nothing is imported or unpickled), so a bundle from anyone is safe to browse.
Only ``GET`` is served, and only to the host names of the address served on
(a web page elsewhere cannot read the store through DNS rebinding).
"""

from __future__ import annotations

import base64
import io
import math
import shlex
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import (BatchNotFound, OptionalDependencyError, QueryError, RunNotFound, RunstoreError,
                     VaryingParametersError)

if TYPE_CHECKING:
    from .batch import Batch
    from .lazy import LazyArray
    from .store import Store

__all__ = ["create_app", "serve", "bind", "require_packages", "MAX_ROWS", "MAX_POINTS"]

#: Rows a batch's table shows unless all are asked for.
MAX_ROWS = 500
#: Points a figure of an array draws along each axis at most (longer arrays are strided).
MAX_POINTS = 2000
#: Columns of a batch's view that are not offered to plot or shown in its table.
_HIDDEN = ("position", "finished_at")
#: The fields of the plot page's form (the arguments of Batch.plot it passes on).
_PLOT_FIELDS = ("x", "y", "hue", "col", "row", "where")
#: States in the order the pages show them.
STATES = ("pending", "running", "done", "failed")

# matplotlib's state (fonts, the text cache) is shared between threads: one figure at a time.
_drawing = threading.Lock()


def require_packages() -> None:
    """Refuse, with what to install, when a package of the ``ui`` extra is missing."""
    import importlib

    for package in ("starlette", "uvicorn", "jinja2", "matplotlib"):
        try:
            importlib.import_module(package)
        except ImportError as exc:
            raise OptionalDependencyError(package, "ui", "runstore ui") from exc


def create_app(open_store: Callable[[], Store], title: str,
               hosts: Sequence[str] = ("127.0.0.1", "localhost")) -> Any:
    """The Starlette application serving a store read-only.

    Parameters
    ----------
    open_store
        Opens the store read-only (each request opens it, and closes it).
    title
        What the pages call the store (its path).
    hosts
        The host names requests may name (``"*"``: any).
    """
    require_packages()
    import jinja2
    import matplotlib
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.routing import Route
    from starlette.templating import Jinja2Templates

    matplotlib.use("Agg")
    folder = Path(__file__).parent / "templates" / "ui"
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(folder), autoescape=True)
    environment.globals.update(title=title, states=STATES)
    pages = _Pages(open_store, Jinja2Templates(env=environment))
    routes = [
        Route("/", pages.batches),
        Route("/counts.json", pages.counts),
        Route("/batches/{name}", pages.batch),
        Route("/batches/{name}/plot", pages.plot),
        Route("/runs/{rid}", pages.run),
        Route("/runs/{rid}/array.png", pages.array),
    ]
    handlers: dict[Any, Any] = {RunstoreError: pages.refused, Exception: pages.internal}
    return Starlette(routes=routes, exception_handlers=handlers,
                     middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=list(hosts))])


class _Pages:
    """The request handlers; each opens the store, reads, and closes it."""

    def __init__(self, open_store: Callable[[], Store], templates: Any) -> None:
        self._open = open_store
        self._templates = templates

    @contextmanager
    def _store(self) -> Iterator[Store]:
        store = self._open()
        try:
            yield store
        finally:
            store.close()

    def _page(self, request: Any, name: str, status: int = 200, **context: Any) -> Any:
        return self._templates.TemplateResponse(request, name, context, status_code=status)

    def refused(self, request: Any, exc: RunstoreError) -> Any:
        """A page saying what was not found or not readable, and what to do."""
        status = 404 if isinstance(exc, (RunNotFound, BatchNotFound)) else 400
        return self._page(request, "error.html", status, message=str(exc))

    def internal(self, request: Any, exc: Exception) -> Any:
        """Any other failure: said on the page, not a bare 500."""
        return self._page(request, "error.html", 500, message=(
            f"internal error: {type(exc).__name__}: {exc}. This is a bug in runstore: please "
            "report it with the page's address"))

    def batches(self, request: Any) -> Any:
        """The batches, with their runs by state; the page updates itself."""
        with self._store() as store:
            counts = store.counts_by_batch()
            running = len(store.in_flight())
        return self._page(request, "batches.html", counts=counts, running=running)

    def counts(self, request: Any) -> Any:
        """The runs of each batch by state, and the runs in flight, as JSON."""
        from starlette.responses import JSONResponse

        with self._store() as store:
            found = {"batches": store.counts_by_batch(), "running": len(store.in_flight())}
        return JSONResponse(found, headers={"Cache-Control": "no-store"})

    def batch(self, request: Any) -> Any:
        """A batch's runs: filtered, sorted, the first :data:`MAX_ROWS` unless all asked."""
        query = request.query_params
        where, sort = query.get("where", ""), query.get("sort", "")
        descending = query.get("order") == "desc"
        every = query.get("all") == "1"
        with self._store() as store:
            batch = _batch(store, request.path_params["name"])
            error = None
            try:
                ids = _matching(store, batch, where)
            except QueryError as exc:
                error, ids = str(exc), []
            columns, rows = store.view_rows(batch._id, ids)
            counts = store.counts_by_batch().get(batch.name, {})
            example = _example_filter(store, batch)
        keep = [i for i, c in enumerate(columns) if c not in _HIDDEN]
        columns, cells = [columns[i] for i in keep], [[r[i] for i in keep] for r in rows]
        if sort in columns:
            at = columns.index(sort)
            cells.sort(key=lambda row: _order(row[at]), reverse=descending)
        shown = cells if every else cells[:MAX_ROWS]
        return self._page(request, "batch.html", 400 if error else 200, batch=batch.name,
                          columns=columns, rows=[_cells(columns, r) for r in shown],
                          total=len(cells), where=where, sort=sort, descending=descending,
                          error=error, counts=counts, every=every, example=example)

    def run(self, request: Any) -> Any:
        """One run: parameters, scalar results, figures of its arrays, error, provenance."""
        with self._store() as store:
            context = _run_context(store, request.path_params["rid"])
        return self._page(request, "run.html", **context)

    def array(self, request: Any) -> Any:
        """A PNG figure of one array of a run's result (a line, or an image)."""
        from starlette.responses import PlainTextResponse, Response

        key = request.query_params.get("key", "")
        try:
            with self._store() as store:
                run = _run(store, request.path_params["rid"])[1]
                arrays = run.arrays
                if key not in arrays:
                    return PlainTextResponse(f"the run has no array {key!r}", 404)
                image = _array_figure(arrays[key], key)
        except RunstoreError as exc:
            return PlainTextResponse(str(exc), 404)
        return Response(image, media_type="image/png")

    def plot(self, request: Any) -> Any:
        """A batch's plot: ``y`` against ``x``, lines by ``hue``, panels by ``col`` and ``row``."""
        query = request.query_params
        chosen = {k: query.get(k, "") for k in _PLOT_FIELDS}
        asked = bool(chosen["x"] and chosen["y"])  # else the form only, with defaults
        image = error = hint = None
        panels: list[str] = []
        with self._store() as store:
            batch = _batch(store, request.path_params["name"])
            columns = [c for c in store.view_rows(batch._id, [])[0]
                       if c not in _HIDDEN + ("id",)]
            _default_axes(store, batch, chosen)
            example = _example_filter(store, batch)
            if asked:
                try:
                    image, panels = _plot(batch, chosen)
                except VaryingParametersError as exc:
                    error, hint = str(exc), _varying_hint(exc)
                except RunstoreError as exc:
                    error = str(exc)
        return self._page(request, "plot.html", 400 if error else 200, batch=batch.name,
                          columns=columns, chosen=chosen, image=image, panels=panels,
                          description=_description(chosen), error=error, hint=hint,
                          example=example)


def _batch(store: Store, name: str) -> Batch:
    """The batch of this name (an unknown name: :class:`BatchNotFound`, told on the page)."""
    from .batch import Batch

    return Batch(name, store=store)


def _default_axes(store: Store, batch: Batch, chosen: dict[str, str]) -> None:
    """Offer the first parameter as x and the first scalar result as y, until chosen."""
    if chosen["x"] or chosen["y"]:
        return
    sources: dict[str, list[str]] = {"parameter": [], "result": []}
    for label, source, _, _ in store.view_columns(batch._id):
        sources.setdefault(source, []).append(label)
    chosen["x"] = next(iter(sources["parameter"]), "")
    chosen["y"] = next(iter(sources["result"]), "")


def _example_filter(store: Store, batch: Batch) -> str:
    """Filters on the batch's first parameters that its first run matches: ``A>=1 B=0.5``."""
    from .views import display

    first = store.rows(batch._id, 0, 1)
    if not first:
        return ""
    columns, rows = store.view_rows(batch._id, [first[0].id])
    names = [label for label, source, _, _ in store.view_columns(batch._id)
             if source == "parameter"][:2]
    filters: list[str] = []
    for name in names:
        if name not in columns or not rows:
            continue
        value = rows[0][columns.index(name)]
        if value is None:
            continue
        op = ">=" if isinstance(value, (int, float)) and not filters else "="
        text = f"{name}{op}{display(value)}"
        filters.append(shlex.quote(text) if any(c.isspace() or c in "'\"\\" for c in text)
                       else text)
    return " ".join(filters)


def _filters(where: str) -> list[str]:
    """The filters in a filter box, split as a shell splits ``runstore runs``' arguments."""
    try:
        return shlex.split(where)
    except ValueError as exc:
        raise QueryError(f"cannot read the filters {where!r}: {exc}; quote a filter that "
                         "holds spaces whole, as in a shell: 'B=[2, 5, 8]'") from None


def _matching(store: Store, batch: Batch, where: str) -> list[str] | None:
    """The ids of the batch's runs matching every filter in ``where`` (None: no filter)."""
    from .cli import conditions

    wanted = conditions(store, tuple(_filters(where)))
    return [row.id for row in store.query(batch._id, wanted)] if wanted else None


def _order(value: Any) -> tuple[int, Any]:
    """A sort key for a table's cells: numbers by value, then text, empty cells last."""
    from .views import display

    if value is None:
        return (2, 0)
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        return (0, value)
    return (1, display(value))


def _cells(columns: list[str], row: list[Any]) -> list[tuple[str, str, str | None]]:
    """A table row's cells: ``(column, text, link)``; a run's id links to its page."""
    from .views import display

    cells: list[tuple[str, str, str | None]] = []
    for column, value in zip(columns, row):
        if column == "id":
            cells.append((column, str(value)[:12], f"/runs/{value}"))
        elif column == "runtime" and value is not None:
            cells.append((column, f"{value:.3g} s", None))
        else:
            cells.append((column, display(value), None))
    return cells


def _run(store: Store, prefix: str) -> tuple[list[tuple[str, int]], Any]:
    """The batches holding the run an id (or a prefix of it) names, and the run."""
    from .batch import Batch

    rid = store.find_run(prefix)
    held = store.batches_of(rid)
    if not held:
        raise RunNotFound(rid, f"{store.path} (the run is in no batch)")
    name, position = held[0]
    return held, Batch(name, store=store).run[position]


def _run_context(store: Store, prefix: str) -> dict[str, Any]:
    """What a run's page shows."""
    import datetime as dt

    held, run = _run(store, prefix)
    record = store.run_record(run.id)
    provenance = {k: v for k, v in run.provenance.items() if v is not None}
    for key in ("started_at", "finished_at"):
        if key in provenance:
            provenance[key] = dt.datetime.fromtimestamp(provenance[key]).isoformat(
                sep=" ", timespec="seconds")
    if "runtime" in provenance:
        provenance["runtime"] = f"{provenance['runtime']:.3g} s"
    arrays = [(key, f"{a.dtype} {a.shape}", _drawable(a)) for key, a in run.arrays.items()]
    results = _scalar_results(store, held[0][0], run.id)
    return {"run": run.id, "run_type": record["run_type"], "state": record["state"],
            "held": held, "parameters": [(k, _shown(v)) for k, v in run.parameters.items()],
            "results": results + _other_results(record["result"], {k for k, _ in results}),
            "arrays": arrays,
            "error": (record["error_type"], record["error_message"], record["traceback"])
            if record["error_type"] else None, "provenance": provenance}


def _scalar_results(store: Store, name: str, rid: str) -> list[tuple[str, str]]:
    """A run's scalar results, as its batch's view holds them (decoded, never imported)."""
    from .table import batch_table

    batch = _batch(store, name)
    results = {label: key for label, source, key, _ in store.view_columns(batch._id)
               if source == "result"}
    table = batch_table(store, batch._id, [rid])
    if not table.rows:
        return []
    row = table.rows[0]
    return [(results[c], _shown(v)) for c, v in zip(table.columns, row)
            if c in results and v is not None]


def _other_results(document: str | None, shown: set[str]) -> list[tuple[str, str]]:
    """The result keys that are neither scalars nor arrays (a pickle, an object ...), by kind.

    Read from the stored result tree, never decoded: a pickle stays unread.
    """
    import json

    from .overview import result_leaves

    if document is None:
        return []
    return [(key, "None" if kind == "None" else f"({kind}: not shown)")
            for key, kind, _ in result_leaves(json.loads(document), "")
            if key not in shown and not kind.startswith("array ")]


def _shown(value: Any) -> str:
    """A parameter's or result's value for people: arrays by dtype and shape."""
    import numpy as np

    from .encoding import FunctionRef
    from .views import float_text

    if isinstance(value, np.ndarray) and value.ndim > 0:
        return f"array {value.dtype} {value.shape}"
    if isinstance(value, FunctionRef):
        return value.name.removeprefix("builtins.")
    if isinstance(value, float):
        return float_text(value)
    return repr(value)


def _drawable(array: LazyArray) -> bool:
    """Whether the page draws an array: 1-D or 2-D numbers (or booleans)."""
    return array.ndim in (1, 2) and array.dtype.kind in "biufc" and array.size > 0


def _array_figure(array: LazyArray, key: str) -> bytes:
    """A PNG of an array: a line for 1-D, an image for 2-D (strided when large)."""
    import numpy as np
    from matplotlib.figure import Figure

    if not _drawable(array):
        raise QueryError(f"the array {key!r} ({array.dtype} {array.shape}) is not drawn: "
                         "only 1-D and 2-D arrays of numbers are")
    steps = tuple(max(1, math.ceil(n / MAX_POINTS)) for n in array.shape)
    data = np.asarray(array[tuple(slice(None, None, s) for s in steps)])
    if data.dtype.kind == "b":
        data = data.astype(np.int8)
    with _drawing:
        figure = Figure(figsize=(6.4, 3.4), dpi=100)
        ax = figure.subplots()
        if data.ndim == 1:
            x = np.arange(0, array.shape[0], steps[0])
            if data.dtype.kind == "c":
                ax.plot(x, data.real, label="real")
                ax.plot(x, data.imag, label="imag")
                ax.legend()
            else:
                ax.plot(x, data)
            ax.set_xlabel("index")
        else:
            shown = np.abs(data) if data.dtype.kind == "c" else data
            image = ax.imshow(shown, aspect="auto", interpolation="nearest",
                              extent=(-0.5, array.shape[1] - 0.5, array.shape[0] - 0.5, -0.5))
            figure.colorbar(image, ax=ax, label="|value|" if data.dtype.kind == "c" else None)
        strided = " (every " + " x ".join(map(str, steps)) + ")" if max(steps) > 1 else ""
        ax.set_title(f"{key}: {array.dtype} {array.shape}{strided}", fontsize=10)
        return _png(figure)


def _plot(batch: Batch, chosen: dict[str, str]) -> tuple[str, list[str]]:
    """The batch's plot the form asks for, as a data URL of a PNG, and its panels' titles.

    Without facets it is drawn on a figure of its own; a grid of facets is
    drawn by :meth:`~runstore.Batch.plot` on a pyplot figure, closed once saved
    (or once it failed).
    """
    from matplotlib.figure import Figure

    from .cli import conditions

    wanted = conditions(batch.store, tuple(_filters(chosen["where"])))
    col, row = chosen["col"] or None, chosen["row"] or None
    with _drawing:
        if col or row:
            import matplotlib.pyplot as plt

            try:
                axes = batch.plot(chosen["x"], chosen["y"], hue=chosen["hue"] or None,
                                  col=col, row=row, where=wanted or None)
                image = _png(axes[0][0].figure)
            finally:
                plt.close("all")  # (pyplot is used here only, under the lock)
            panels = [ax.get_title() for ax in axes.flat]
        else:
            figure = Figure(figsize=(7.5, 4.6), dpi=100)
            batch.plot(chosen["x"], chosen["y"], hue=chosen["hue"] or None,
                       ax=figure.subplots(), where=wanted or None)
            image, panels = _png(figure), []
    return "data:image/png;base64," + base64.b64encode(image).decode(), panels


def _description(chosen: dict[str, str]) -> str:
    """What the plot shows, in words (the figure's alternative text)."""
    parts = [f"{chosen['y']} against {chosen['x']}"]
    if chosen["hue"]:
        parts.append(f"a line per {chosen['hue']}")
    facets = [f"{chosen[k]} ({name})" for k, name in (("col", "columns"), ("row", "rows"))
              if chosen[k]]
    if facets:
        parts.append("panels by " + " and ".join(facets))
    if chosen["where"]:
        parts.append(f"where {chosen['where']}")
    return ", ".join(parts)


def _varying_hint(exc: VaryingParametersError) -> str:
    """What to choose on the plot page when other parameters vary."""
    names = " or ".join(exc.varying)
    name, values = next(iter(exc.varying.items()))
    return (f"On this page: choose {names} as hue, col or row, or keep one value with "
            f"where (for example {name}={values[0]}).")


def _png(figure: Any) -> bytes:
    out = io.BytesIO()
    figure.savefig(out, format="png", bbox_inches="tight")
    return out.getvalue()


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one); an OSError if taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(64)
    except OSError:
        sock.close()
        raise
    return sock


def serve(open_store: Callable[[], Store], title: str, sock: socket.socket,
          host: str, started: Callable[[str], None], start_at: str = "/") -> None:
    """Serve the store's pages on the listening ``sock`` until interrupted.

    ``started`` is called with the address of ``start_at`` once the socket
    listens (to print it, and open a browser).
    """
    import uvicorn

    hosts = ["*"] if host in ("0.0.0.0", "::") else [host, "localhost", "127.0.0.1", "::1"]
    app = create_app(open_store, title, hosts)
    name = f"[{host}]" if ":" in host else host
    started(f"http://{name}:{sock.getsockname()[1]}{start_at}")
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])
