"""Labelled arrays: a batch's runs as an xarray Dataset on its parameters' grid. Internal module.

:func:`to_dataset` (behind :meth:`runstore.Batch.to_xarray`) lays runs on a
grid whose dimensions are the parameters that vary between them, each with the
sorted distinct values as its coordinate; parameters that do not vary become
scalar coordinates. Scalar results become data variables on the grid; array
results become variables with dimensions of their own. Cells without a result
(runs pending or failed, combinations not in the batch) are missing values.

Everything is read as data: parameters and results are decoded from what the
store holds without importing any code they name, so a bundle gives the same
Dataset as the batch it came from (a function parameter becomes its label,
``"max"``, as :func:`runstore.views.display` shows it). The encoded results
of all runs are read in one query; arrays are then loaded run by run
(:attr:`Run.result <runstore.Run.result>`), and only when an array is wanted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from . import containers
from .encoding import ArrayRef, canonical_json, decode, encode
from .errors import ArrayShapeError, DatasetError, OptionalDependencyError, RunNotFound
from .run import Run, unpack
from .schema import RunState
from .views import display

if TYPE_CHECKING:
    from .batch import Batch

__all__ = ["to_dataset", "RUN_TYPE"]

#: The dimension that separates runs of different run types, when there are several.
RUN_TYPE = "run_type"

_SCALARS = (bool, int, float, complex, str)


@dataclass
class _Entry:
    """One run: its parameters and its flattened result (arrays as ArrayRefs)."""

    run: Run
    run_type: str
    parameters: dict[str, Any]
    values: dict[str, Any]
    cell: tuple[int, ...] = ()


@dataclass
class _Axis:
    """A dimension of the grid: a parameter (or the run type) that varies."""

    name: str
    keys: list[str]  # the canonical JSON of each coordinate value, in order
    values: np.ndarray
    changes: int = 0  # how often it changes in batch order: the slowest comes first


@dataclass
class _Variable:
    """A result key that becomes a data variable."""

    key: str
    array: bool
    shape: tuple[int, ...] = ()
    dims: tuple[str, ...] = ()
    dtype: np.dtype[Any] = field(default_factory=lambda: np.dtype(float))


def to_dataset(batch: Batch, variables: Iterable[str] | None = None,
               exclude: Iterable[str] = (), dims: Mapping[str, Sequence[str]] | None = None,
               coords: Mapping[str, Any] | None = None,
               runs: Iterable[Run] | None = None) -> Any:
    """The runs of ``batch`` (or ``runs``) as an ``xarray.Dataset``; see :meth:`Batch.to_xarray`."""
    try:
        import xarray
    except ImportError as exc:
        raise OptionalDependencyError("xarray", "xarray", "Batch.to_xarray()") from exc
    entries = _entries(batch, runs)
    axes, constants = _grid(batch.name, entries)
    grid = tuple(len(axis.keys) for axis in axes)
    taken = {axis.name for axis in axes} | set(constants)
    chosen = _choose(batch.name, entries, variables, exclude)
    dims = dict(dims or {})
    coords = dict(coords or {})
    _name_dims(batch.name, chosen, dims, taken)
    wanted = {value for value in coords.values() if isinstance(value, str)}
    data, found = _fill(batch.name, entries, chosen, grid, wanted)
    extra, used = _array_coords(batch.name, chosen, coords, found)
    kept = [v for v in chosen if v.key not in used]
    names = _variable_names(batch.name, kept, taken)
    data_vars = {names[v.key]: ([a.name for a in axes] + list(v.dims), data[v.key])
                 for v in kept}
    coordinates: dict[str, Any] = {axis.name: axis.values for axis in axes}
    coordinates.update(constants)
    coordinates.update(extra)
    return xarray.Dataset(data_vars, coords=coordinates, attrs={"batch": batch.name})


def _variable_names(batch: str, kept: list[_Variable], taken: set[str]) -> dict[str, str]:
    """Variable names by result key: the key, or ``result.<key>`` if a parameter has it."""
    names = {v.key: (f"result.{v.key}" if v.key in taken else v.key) for v in kept}
    dims = {name: v.key for v in kept for name in v.dims}
    for key, name in names.items():
        if name in dims:  # xarray would silently make it a coordinate
            raise DatasetError(batch, f"the result {key!r} has the name of the dimension "
                               f"{name!r} of {dims[name]!r}",
                               f"Make it that dimension's coordinate with coords="
                               f"{{{name!r}: {key!r}}}, or name the dimension otherwise "
                               "in dims=")
    return names


# -- reading the runs ----------------------------------------------------------------


def _entries(batch: Batch, runs: Iterable[Run] | None) -> list[_Entry]:
    """The runs (each once), with parameters and results decoded without importing code."""
    selected = list(batch.run) if runs is None else list(runs)
    selected = list({run.id: run for run in selected}.values())
    records = batch.store.records([run.id for run in selected])
    entries = []
    for run in selected:
        record = records.get(run.id)
        if record is None:
            raise RunNotFound(run.id, batch.store.path)
        parameters = unpack(record["parameters"], import_code=False)[0]
        values: dict[str, Any] = {}
        if record["state"] == RunState.DONE.value and record["result"] is not None:
            # Arrays come back as ArrayRefs (dtype and shape), nothing is loaded.
            trusted = record.get("result_origin") is None
            result = decode(json.loads(record["result"]), None, False, "result",
                            allow_pickle=batch.store.allow_pickle and trusted)
            values = _flatten(result)
        entries.append(_Entry(run, str(record["run_type"]), parameters, values))
    return entries


def _flatten(result: Any) -> dict[str, Any]:
    """A result's values by key, nested dict keys joined with ``.`` (as in the views)."""
    if isinstance(result, dict):
        items = list(result.items())
    elif isinstance(result, containers.Container):
        items = list(result.__getstate__().items())
    else:
        items = [("value", result)]
    out: dict[str, Any] = {}
    for key, value in items:
        _flatten_into(str(key), value, out)
    return out


def _flatten_into(key: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for inner, item in value.items():
            if isinstance(inner, str):
                _flatten_into(f"{key}.{inner}", item, out)
        return
    out[key] = value


# -- the grid of parameters ---------------------------------------------------------------


def _grid(batch: str, entries: list[_Entry]) -> tuple[list[_Axis], dict[str, Any]]:
    """The varying parameters as axes (slowest first), the others as constants.

    Sets each entry's cell; two runs in one cell are an error.
    """
    columns = _columns(batch, entries)
    axes: list[_Axis] = []
    constants: dict[str, Any] = {}
    for name, column in columns.items():
        keys = [canonical_json(encode(value, f"parameter {name!r}")) for value in column]
        distinct, values = _coordinate(batch, name, dict(zip(keys, column)))
        if len(distinct) == 1:
            constants[name] = values[0]
            continue
        changes = sum(1 for a, b in zip(keys, keys[1:]) if a != b)
        axes.append(_Axis(name, distinct, values, changes))
        position = {key: i for i, key in enumerate(distinct)}
        for entry, key in zip(entries, keys):
            entry.cell += (position[key],)
    # Stable: a factorial design's parameters keep their order.
    order = sorted(range(len(axes)), key=lambda i: axes[i].changes)
    for entry in entries:
        entry.cell = tuple(entry.cell[i] for i in order)
    axes = [axes[i] for i in order]
    occupied: dict[tuple[int, ...], str] = {}
    for entry in entries:
        other = occupied.setdefault(entry.cell, entry.run.id)
        if other != entry.run.id:
            raise DatasetError(batch, f"runs {other} and {entry.run.id} have the same "
                               "parameters and run type (a custom generate_id?)",
                               "Select one of them with runs=")
    return axes, constants


def _columns(batch: str, entries: list[_Entry]) -> dict[str, list[Any]]:
    """Each parameter's value in every run; the run type too if there are several."""
    names = sorted({name for entry in entries for name in entry.parameters})
    for entry in entries:
        if len(entry.parameters) != len(names):
            lacking = sorted(set(names) - set(entry.parameters))
            raise DatasetError(
                batch, f"run {entry.run.id} ({entry.run_type}) has no parameter "
                f"{', '.join(map(repr, lacking))}, which other runs have",
                "Select runs with the same parameters with runs= (e.g. "
                "batch.get_runs_with(...)), one run type at a time")
    columns = {name: [entry.parameters[name] for entry in entries] for name in names}
    if len({entry.run_type for entry in entries}) > 1:
        if RUN_TYPE in columns:
            raise DatasetError(batch, f"its runs have several run types and a parameter "
                               f"named {RUN_TYPE!r}, the name of the run type dimension",
                               "Select runs of one run type with runs=")
        columns[RUN_TYPE] = [entry.run_type for entry in entries]
    return columns


def _coordinate(batch: str, name: str, distinct: dict[str, Any]) -> tuple[list[str], np.ndarray]:
    """The sorted distinct values of a parameter: keys (canonical JSON) and coordinate values.

    Numbers, strings and booleans stay themselves; any other value (lists,
    functions, objects, or a mix of types) becomes its label, as views show it.
    """
    kinds = {type(value) for value in distinct.values()}
    plain = kinds in ({bool}, {str}) or (kinds and kinds <= {int, float})
    labels = {key: (value if plain else _label(key, value)) for key, value in distinct.items()}
    try:
        order = sorted(distinct, key=lambda key: distinct[key])
    except (TypeError, ValueError):  # functions, objects, mixed types: by label
        order = sorted(distinct, key=lambda key: str(labels[key]))
    values = np.array([labels[key] for key in order])
    if len(set(values.tolist())) != len(order):
        clash = [key for key in order if list(values).count(labels[key]) > 1]
        raise DatasetError(batch, f"the values {', '.join(clash[:2])} of parameter {name!r} "
                           f"give the same coordinate {labels[clash[0]]!r}",
                           "Select the runs of one of them with runs=")
    return order, values


def _label(key: str, value: Any) -> str:
    """A parameter value that is not a plain number or string, for people."""
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    if isinstance(value, np.ndarray):
        return repr(value)
    return display(key)


# -- choosing and filling the variables ----------------------------------------------


def _choose(batch: str, entries: list[_Entry], variables: Iterable[str] | None,
            exclude: Iterable[str]) -> list[_Variable]:
    """The result keys that become variables, with their shapes and dtypes."""
    found: dict[str, dict[str, list[Any]]] = {}  # key -> kind -> values
    for entry in entries:
        for key, value in entry.values.items():
            kind = ("none" if value is None else "array" if isinstance(value, ArrayRef)
                    else "scalar" if isinstance(value, _SCALARS) else "other")
            found.setdefault(key, {}).setdefault(kind, []).append((entry.run.id, value))
    usable = sorted(key for key, kinds in found.items()
                    if "other" not in kinds and not {"array", "scalar"} <= set(kinds))
    excluded = list(exclude)
    keys = usable if variables is None else list(dict.fromkeys(variables))
    for key in [*keys, *excluded]:
        if key not in found:
            done = sum(1 for entry in entries if entry.values)
            raise DatasetError(batch, f"no result has the key {key!r} ({done} of "
                               f"{len(entries)} runs done; their keys: {', '.join(sorted(found))})",
                               "Name result keys in variables= and exclude= (nested keys "
                               "joined with '.')")
        if key not in usable:
            raise DatasetError(batch, f"the result {key!r} is {_kinds(found[key])}",
                               "Only scalars (numbers, strings, booleans) and numpy "
                               "arrays become variables: leave it out with exclude=, or "
                               "return it as an array")
    return [_variable(batch, key, found[key]) for key in keys if key not in excluded]


def _kinds(kinds: dict[str, list[Any]]) -> str:
    """Describe what a result key holds, naming a run for each kind."""
    parts = []
    for kind, values in kinds.items():
        rid, value = values[0]
        what = (f"a {type(value).__name__}" if kind in ("other", "scalar")
                else "an array" if kind == "array" else "None")
        parts.append(f"{what} in run {rid}")
    return ", ".join(parts)


def _variable(batch: str, key: str, kinds: dict[str, list[Any]]) -> _Variable:
    if "array" not in kinds:
        values = [value for _, value in kinds.get("scalar", [])]
        return _Variable(key, False, dtype=_scalar_dtype(values))
    shapes: dict[tuple[int, ...], list[str]] = {}
    for rid, ref in kinds["array"]:
        shapes.setdefault(tuple(ref.shape), []).append(rid)
    if len(shapes) > 1:
        raise ArrayShapeError(batch, key, shapes)
    dtypes = {np.dtype(ref.dtype) for _, ref in kinds["array"]}
    try:
        dtype = np.result_type(*dtypes)
    except TypeError:  # e.g. strings in some runs, numbers in others
        dtype = np.dtype(object)
    return _Variable(key, True, shape=next(iter(shapes)), dtype=dtype)


def _scalar_dtype(values: list[Any]) -> np.dtype[Any]:
    """The dtype of a scalar variable, were all its cells present."""
    types = {type(value) for value in values}
    if types == {int} and all(-2**63 <= value < 2**63 for value in values):
        return np.dtype(np.int64)
    if types <= {int, float}:  # no values at all: all missing, float NaN
        return np.dtype(np.float64)
    if types <= {int, float, complex}:
        return np.dtype(np.complex128)
    if types == {bool}:
        return np.dtype(bool)
    if types == {str}:
        return np.array(values).dtype
    return np.dtype(object)  # mixed kinds, or ints beyond 64 bits


def _name_dims(batch: str, chosen: list[_Variable], dims: dict[str, Sequence[str]],
               taken: set[str]) -> None:
    """Name each array variable's own dimensions: from ``dims=``, else ``<key>_dim_<i>``."""
    arrays = {v.key: v for v in chosen if v.array}
    for key, names in dims.items():
        if key not in arrays:
            raise DatasetError(batch, f"dims= names dimensions of {key!r}, which is not "
                               f"an array variable (the array variables are "
                               f"{', '.join(sorted(arrays)) or 'none'})",
                               "Give dims= only for array results")
        if isinstance(names, str) or len(names) != len(arrays[key].shape):
            raise DatasetError(batch, f"dims= gives {key!r} the dimensions {names!r}, but "
                               f"its arrays have shape {arrays[key].shape}",
                               "Give a list with one name per axis of the array")
    sizes: dict[str, tuple[int, str]] = {}
    for variable in arrays.values():
        own = dims.get(variable.key) or [f"{variable.key}_dim_{i}"
                                         for i in range(len(variable.shape))]
        variable.dims = tuple(own)
        for name, size in zip(variable.dims, variable.shape):
            if name in taken:
                raise DatasetError(batch, f"the dimension {name!r} of {variable.key!r} is "
                                   "also a parameter of the runs", "Choose another name in dims=")
            size_before, other = sizes.setdefault(name, (size, variable.key))
            if size_before != size:
                raise DatasetError(batch, f"the dimension {name!r} has length {size_before} "
                                   f"in {other!r} and {size} in {variable.key!r}",
                                   "Give them different dimension names in dims=")


def _fill(batch: str, entries: list[_Entry], chosen: list[_Variable], grid: tuple[int, ...],
          wanted: set[str]) -> tuple[dict[str, np.ndarray], dict[str, list[np.ndarray]]]:
    """The variables' data on the grid, missing cells NaN; and the ``wanted`` arrays per run."""
    data = {v.key: np.zeros(grid + v.shape, dtype=v.dtype) for v in chosen}
    missing = {v.key: np.ones(grid, dtype=bool) for v in chosen}
    arrays = [v.key for v in chosen if v.array]
    found: dict[str, list[np.ndarray]] = {key: [] for key in wanted}
    for entry in entries:
        for variable in chosen:
            value = entry.values.get(variable.key)
            if value is not None and not variable.array:
                data[variable.key][entry.cell] = value
                missing[variable.key][entry.cell] = False
        if not any(entry.values.get(key) is not None for key in [*arrays, *wanted]):
            continue
        loaded = _flatten(entry.run.result)  # loads the run's arrays
        for variable in chosen:
            value = loaded.get(variable.key)
            if not (variable.array and isinstance(value, np.ndarray)):
                continue
            if value.shape != variable.shape:  # recomputed since its result was read
                raise DatasetError(batch, f"run {entry.run.id} changed while it was read "
                                   f"(its {variable.key!r} has shape {value.shape} now)",
                                   "Try again")
            data[variable.key][entry.cell] = value
            missing[variable.key][entry.cell] = False
        for key in wanted:
            if isinstance(loaded.get(key), np.ndarray):
                found[key].append(loaded[key])
    for key, mask in missing.items():
        if mask.any():
            data[key] = _with_missing(data[key], mask)
    return data, found


def _with_missing(data: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The data with masked cells missing, promoted as xarray promotes (ints to floats)."""
    kind = data.dtype.kind
    fill: Any
    if kind in "fc":
        out, fill = data, np.nan
    elif kind in "mM":
        out, fill = data, np.datetime64("NaT")
    elif kind in "iu":
        out, fill = data.astype(np.float64), np.nan
    else:  # booleans, strings, objects
        out, fill = data.astype(object), np.nan
    out[mask] = fill
    return out


def _array_coords(batch: str, chosen: list[_Variable], coords: Mapping[str, Any],
                  found: dict[str, list[np.ndarray]]) -> tuple[dict[str, Any], set[str]]:
    """Coordinates of array dimensions from ``coords=``; and the result keys they take."""
    sizes = {name: size for v in chosen for name, size in zip(v.dims, v.shape)}
    out: dict[str, Any] = {}
    used: set[str] = set()
    for dim, given in coords.items():
        if dim not in sizes:
            raise DatasetError(batch, f"coords= gives values for {dim!r}, which is not a "
                               f"dimension of an array variable (those are "
                               f"{', '.join(sorted(sizes)) or 'none'})",
                               "Name array dimensions with dims= first")
        if isinstance(given, str):
            values = _same_in_all_runs(batch, dim, given, found[given])
            used.add(given)
        else:
            values = np.asarray(given)
        if values.ndim != 1 or len(values) != sizes[dim]:
            raise DatasetError(batch, f"coords= gives {dim!r} values of shape "
                               f"{values.shape}, but the dimension has length {sizes[dim]}",
                               "Give one value per index of the dimension")
        out[dim] = values
    return out, used


def _same_in_all_runs(batch: str, dim: str, key: str, arrays: list[np.ndarray]) -> np.ndarray:
    if not arrays:
        raise DatasetError(batch, f"coords= takes {dim!r} from the result {key!r}, which no "
                           "run done has as an array", "Give the values themselves in coords=")
    first = arrays[0]
    for other in arrays[1:]:
        if other.shape != first.shape or not np.array_equal(
                other, first, equal_nan=first.dtype.kind in "fc"):
            raise DatasetError(batch, f"coords= takes {dim!r} from the result {key!r}, "
                               "which differs between runs",
                               f"Leave {dim!r} out of coords= to keep {key!r} as a variable")
    return first
