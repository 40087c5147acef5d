"""Plots of a batch's table: lines, facets, and the refusal to draw a lie. Internal module.

:meth:`runstore.Batch.plot` draws a column of a batch's view (a scalar
result, or a parameter) against another, one line per value of ``hue``, in
one panel per value of ``col`` and ``row`` (seaborn's ``relplot`` and
xarray's facet grids are the models). ``where`` narrows the runs first. A
line joins only points whose parameters agree in everything but ``x``: when
another parameter still takes several values among the plotted runs, the
plot is refused with :class:`~runstore.errors.VaryingParametersError`, which
names them. matplotlib is imported only when a plot is drawn.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

from .errors import OptionalDependencyError, QueryError, VaryingParametersError
from .query import filter_conditions
from .views import display, shortened

if TYPE_CHECKING:
    from .batch import Batch

__all__ = ["plot_batch", "legend_order", "Where"]

#: What ``where`` takes: ``get_runs_with`` conditions, or filters as ``runstore runs`` reads them.
Where = Union[Mapping[str, Any], str, Iterable[str], None]


@dataclass
class Table:
    """The plotted runs of a batch: view columns, rows, and which columns are parameters."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    parameters: list[str]
    at: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.at = {name: i for i, name in enumerate(self.columns)}

    def values(self, name: str | None) -> list[Any]:
        """The distinct values of a column among the rows in legend order ([None]: no column)."""
        if name is None:
            return [None]
        found = {_key(row[self.at[name]]): row[self.at[name]] for row in self.rows}
        return sorted(found.values(), key=legend_order)

    def facets(self, row: str | None, col: str | None
               ) -> dict[tuple[Any, Any], list[tuple[Any, ...]]]:
        """The rows by their (``row``, ``col``) values (as :func:`_key` makes them)."""
        found: dict[tuple[Any, Any], list[tuple[Any, ...]]] = {}
        for r in self.rows:
            key = (_key(r[self.at[row]]) if row else None,
                   _key(r[self.at[col]]) if col else None)
            found.setdefault(key, []).append(r)
        return found


def plot_batch(batch: Batch, x: str, y: str, hue: str | None = None, ax: Any = None, *,
               col: str | None = None, row: str | None = None, where: Where = None,
               **kwargs: Any) -> Any:
    """Draw ``batch.plot``: see :meth:`runstore.Batch.plot`."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise OptionalDependencyError("matplotlib", "plot", "Batch.plot()") from exc
    if ax is not None and (col or row):
        raise TypeError("ax= draws into one Axes, but col= and row= make a grid of them: "
                        "leave out ax (the figure is made here), or col and row")
    table = plotted_runs(batch, x, y, (hue, col, row), where)
    refuse_varying(batch.name, table, {x, y, hue, col, row})
    # Without runs to plot, a grid is one empty panel (still an array of Axes).
    rows, cols = (table.values(row), table.values(col)) if table.rows else ([None], [None])
    if col or row:
        axes = _grid(len(rows), len(cols))
    else:
        axes = [[ax if ax is not None else plt.subplots()[1]]]
    colors = _hue_colors(table.values(hue), kwargs)
    kwargs.setdefault("marker", "o")
    facets = table.facets(row, col)
    for i, row_value in enumerate(rows):
        for j, col_value in enumerate(cols):
            panel = axes[i][j]
            facet = {name: value for name, value in ((row, row_value), (col, col_value))
                     if name and table.rows}
            found = facets.get((_key(row_value) if row else None,
                                _key(col_value) if col else None), [])
            _draw(panel, table.at, found, x, y, hue, colors, kwargs)
            panel.set_title(_facet_title(facet) if facet else _title(batch.name, where))
            if i == len(rows) - 1 or not (col or row):
                panel.set_xlabel(x)
            if j == 0:
                panel.set_ylabel(y)
    if not (col or row):
        if hue and table.rows:
            axes[0][0].legend()
        return axes[0][0]
    figure = axes[0][0].figure
    figure.suptitle(_title(batch.name, where))
    if hue and table.rows:
        handles, labels = _legend_entries(axes, [f"{hue}={_label(v)}"
                                                 for v in table.values(hue)])
        figure.legend(handles, labels, loc="outside right upper")
    return axes


def _grid(rows: int, cols: int) -> Any:
    """A figure of rows x cols panels with shared axes, as a 2-D array of Axes."""
    import matplotlib.pyplot as plt

    _, axes = plt.subplots(rows, cols, squeeze=False, sharex=True, sharey=True,
                           layout="constrained",
                           figsize=(min(4.0 * cols, 16.0), min(3.2 * rows, 12.0)))
    return axes


def plotted_runs(batch: Batch, x: str, y: str, others: Iterable[str | None],
                 where: Where) -> Table:
    """The view rows of the runs ``where`` selects that have a value of ``x`` and ``y``."""
    store = batch.store
    ids = None if where is None else [r.id for r in store.query(batch._id, _conditions(
        batch, where))]
    columns, rows = store.view_rows(batch._id, ids)
    for name in (x, y, *others):
        if name is not None and name not in columns:
            raise QueryError(f"batch {batch.name!r} has no column {name!r}; its columns "
                             f"are {', '.join(columns)}")
    parameters = [label for label, source, _, _ in store.view_columns(batch._id)
                  if source == "parameter"]
    at_x, at_y = columns.index(x), columns.index(y)
    kept = [r for r in rows if r[at_x] is not None and r[at_y] is not None]
    return Table(columns, kept, parameters)


def _conditions(batch: Batch, where: Where) -> dict[str, Any]:
    """``get_runs_with`` conditions from ``where``: a mapping of them, or filter strings."""
    if isinstance(where, Mapping):
        return dict(where)
    if isinstance(where, str):
        return filter_conditions(batch.store, [where])
    if isinstance(where, Iterable):
        filters = list(where)
        if all(isinstance(f, str) for f in filters):
            return filter_conditions(batch.store, filters)
    raise TypeError(f"where must be a mapping of get_runs_with conditions "
                    f"({{'drive': 1.0, 'A__ge': 3}}), a filter ('drive=1.0') or a list of "
                    f"filters, not {type(where).__name__}")


def refuse_varying(batch: str, table: Table, shown: set[str | None]) -> None:
    """Raise VaryingParametersError if a parameter not shown takes several values."""
    varying: dict[str, list[str]] = {}
    for name in table.parameters:
        if name in shown:
            continue
        values = table.values(name)
        if len(values) > 1:
            varying[name] = [_shown(v) for v in values]
    if varying:
        raise VaryingParametersError(batch, varying)


def _draw(ax: Any, at: dict[str, int], rows: list[tuple[Any, ...]], x: str, y: str,
          hue: str | None, colors: dict[Any, Any], kwargs: dict[str, Any]) -> None:
    """Draw a facet's rows as lines, one per value of ``hue``, points in order of ``x``."""
    lines: dict[Any, list[tuple[Any, Any]]] = {}
    keys: dict[Any, Any] = {}
    for r in rows:
        value = r[at[hue]] if hue else None
        keys.setdefault(_key(value), value)
        lines.setdefault(_key(value), []).append((r[at[x]], r[at[y]]))
    for key in sorted(lines, key=lambda k: legend_order(keys[k])):
        points = sorted(lines[key], key=lambda p: legend_order(p[0]))
        style = dict(kwargs)
        if hue:
            style.setdefault("color", colors.get(key))
            style.setdefault("label", f"{hue}={_label(keys[key])}")
        ax.plot([p[0] for p in points], [p[1] for p in points], **style)


def _hue_colors(values: list[Any], kwargs: dict[str, Any]) -> dict[Any, Any]:
    """One color per value of ``hue``, the same in every facet (matplotlib's cycle)."""
    if "color" in kwargs or "c" in kwargs:
        return {}
    import matplotlib.pyplot as plt

    cycle = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    return {_key(v): cycle[i % len(cycle)] for i, v in enumerate(values)}


def _legend_entries(axes: Any, order: list[str]) -> tuple[list[Any], list[str]]:
    """Each label of the grid's lines once, in ``order`` (a facet may lack some)."""
    found: dict[str, Any] = {}
    for panel in (p for line in axes for p in line):
        for handle, label in zip(*panel.get_legend_handles_labels()):
            found.setdefault(label, handle)
    rank = {label: i for i, label in enumerate(order)}
    labels = sorted(found, key=lambda label: rank.get(label, len(rank)))
    return [found[label] for label in labels], labels


def _title(name: str, where: Where) -> str:
    """The batch's name, and the runs ``where`` chose."""
    if where is None:
        return name
    if isinstance(where, Mapping):
        chosen = ", ".join(f"{k}={_label(v)}" for k, v in where.items())
    else:
        chosen = where if isinstance(where, str) else ", ".join(map(str, where))
    return f"{name} ({chosen})" if chosen else name


def _facet_title(facet: dict[str, Any]) -> str:
    return " | ".join(f"{name} = {_label(value)}" for name, value in facet.items())


def _label(value: Any) -> str:
    """A value in a title or legend: as shown, long text cut short."""
    return shortened(_shown(value))


def _shown(value: Any) -> str:
    """A value of the view as people read it (``None`` for no value)."""
    return "None" if value is None else display(value)


def _key(value: Any) -> Any:
    """A value as a dict key: NaN (never equal to itself) as one key."""
    if isinstance(value, float) and math.isnan(value):
        return ("nan",)
    return value


def legend_order(value: Any) -> tuple[Any, ...]:
    """Sort key of values in legends and facets: numbers by value, then text, others, None last.

    Ints and floats sort together (``2`` before ``10``, ``2.5`` between),
    NaN after the numbers; booleans as numbers.
    """
    if isinstance(value, (int, float)):
        if isinstance(value, float) and math.isnan(value):
            return (1, 0, "")
        return (0, value, "")
    if isinstance(value, str):
        return (2, 0, value)
    if value is None:
        return (4, 0, "")
    return (3, type(value).__name__, repr(value))
