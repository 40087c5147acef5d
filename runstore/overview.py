"""What a batch holds, in brief: the ``runstore schema`` command's content. Internal module.

:func:`batch_overview` gives a batch's parameters with their types and
levels (the distinct values, each with the number of runs that has it), and
its result keys with their types, array shapes and the number of runs that
has each. Everything comes from the store's tables through the store's
reading queries (the batch's view table and the runs' stored result trees);
nothing is decoded that could import code, and no array is read.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .store import Store

__all__ = ["Key", "Overview", "batch_overview", "overview_lines", "levels_text", "result_leaves"]

#: Levels shown in full up to this many; beyond, the first and last few.
SHOWN_LEVELS = 6


@dataclass
class Key:
    """A parameter or result key: the types of its values, their levels or shapes, and counts."""

    name: str
    types: Counter[str] = field(default_factory=Counter)
    levels: Counter[str] = field(default_factory=Counter)
    shapes: Counter[str] = field(default_factory=Counter)
    order: dict[str, Any] = field(default_factory=dict)  # level -> sort key

    @property
    def runs(self) -> int:
        """How many runs have a value for this key."""
        return sum(self.types.values())


@dataclass
class Overview:
    """A batch's runs by state, its parameters and its result keys."""

    batch: str
    states: dict[str, int]
    parameters: list[Key]
    results: list[Key]


def _type_name(value: Any) -> str:
    name = type(value).__name__
    return {"NoneType": "None", "FunctionRef": "function", "ClassRef": "class"}.get(name, name)


def _canonical_type(canonical: str) -> str:
    """The type of a value from its canonical JSON: a tag (``list``, ``callable`` ...) or
    the JSON value's Python type."""
    import json

    try:
        tree = json.loads(canonical)
    except ValueError:
        return "?"
    if isinstance(tree, list) and tree and isinstance(tree[0], str):
        return tree[0]
    return _type_name(tree)


def _sort_key(value: Any, text: str) -> tuple[int, Any, str]:
    if isinstance(value, bool) or value is None:
        return (0, int(bool(value)), text)
    if isinstance(value, (int, float)):
        return (1, value, text)
    return (2, 0, text)


def batch_overview(store: Store, batch_id: int, name: str) -> Overview:
    """The overview of the batch ``batch_id`` (called ``name``) of ``store``."""
    from .table import batch_table
    from .views import display

    table = batch_table(store, batch_id)
    names = {label: name for label, source, name, _ in store.view_columns(batch_id)
             if source == "parameter"}
    at_state = table.columns.index("state")
    at_position = table.columns.index("position")
    parameters: list[Key] = []
    for i, column in enumerate(table.columns):
        if column not in names:
            continue
        key = Key(column)
        # The type from the stored canonical form (a function is stored as one,
        # and shown by its name); runs without the parameter are left out.
        cells = store.canonical_cells(batch_id, "parameter", names[column])
        for row in table.rows:
            if row[at_position] not in cells:
                continue
            value = row[i]
            text = "None" if value is None else display(value)
            key.types[_canonical_type(cells[row[at_position]])] += 1
            key.levels[text] += 1
            key.order.setdefault(text, _sort_key(value, text))
        parameters.append(key)
    states = Counter(str(row[at_state]) for row in table.rows)
    return Overview(name, dict(states), parameters, _result_keys(store, batch_id))


def _result_keys(store: Store, batch_id: int) -> list[Key]:
    """The keys of the batch's done runs' results (nested dict keys joined by dots)."""
    import json

    ids = [row.id for row in store.rows(batch_id) if row.state == "done"]
    keys: dict[str, Key] = {}
    for record in store.records(ids).values():
        try:
            tree = json.loads(record["result"]) if record["result"] else None
        except (TypeError, ValueError):
            continue
        for name, kind, shape in result_leaves(tree, ""):
            key = keys.setdefault(name, Key(name))
            key.types[kind] += 1
            if shape is not None:
                key.shapes[shape] += 1
    return list(keys.values())


def result_leaves(tree: Any, prefix: str) -> list[tuple[str, str, str | None]]:
    """The ``(key, type, shape)`` of each leaf of a stored result tree (never decoded)."""
    name = prefix or "value"
    if isinstance(tree, list) and len(tree) == 2 and isinstance(tree[0], str):
        tag, body = tree
        if tag == "dict" and isinstance(body, list) and body:
            found = []
            for item in body:
                if isinstance(item, list) and len(item) == 2:
                    key = str(item[0])
                    found += result_leaves(item[1], f"{prefix}.{key}" if prefix else key)
            return found
        if tag == "ndarray" and isinstance(body, dict):
            return [(name, f"array {_dtype(body.get('dtype'))}", _shape(body.get("shape")))]
        return [(name, tag, None)]
    return [(name, _type_name(tree), None)]


def _dtype(text: Any) -> str:
    import numpy as np

    try:
        return np.dtype(str(text)).name
    except TypeError:
        return str(text)


def _shape(shape: Any) -> str:
    if isinstance(shape, list):
        return "(" + ", ".join(str(n) for n in shape) + ("," if len(shape) == 1 else "") + ")"
    return str(shape)


def levels_text(counts: Counter[str], order: dict[str, Any] | None = None) -> str:
    """Values with their counts, sorted; the middle left out when there are many.

    ``1, 2, 3 (2 runs each)``; ``1 (3), 2 (1)``;
    ``0.1, 0.2, 0.3, ..., 9.9, 10 (100 levels, 1 run each)``.
    """
    values = sorted(counts, key=lambda v: order.get(v, (3, 0, v)) if order else v)
    each = len(set(counts.values())) == 1
    shown = [v if each else f"{v} ({counts[v]})" for v in values]
    if len(shown) > SHOWN_LEVELS:
        shown = shown[:3] + ["..."] + shown[-2:]
    text = ", ".join(shown)
    if not each:
        return text if len(values) <= SHOWN_LEVELS else f"{text} ({len(values)} levels)"
    runs = next(iter(counts.values()))
    what = f"{runs} run" + ("s" if runs != 1 else "") + (" each" if len(values) > 1 else "")
    many = f"{len(values)} levels, " if len(values) > SHOWN_LEVELS else ""
    return f"{text} ({many}{what})"


def _runs(n: int) -> str:
    return f"{n} run" + ("" if n == 1 else "s")


def _shapes_text(shapes: Counter[str]) -> str:
    """``shape (5000,), `` when every run's array has it, else each shape with its count."""
    if not shapes:
        return ""
    if len(shapes) == 1:
        return f"shape {next(iter(shapes))}, "
    return f"shape {levels_text(shapes)}, "


def overview_lines(view: Overview) -> list[str]:
    """The lines ``runstore schema`` prints for a batch."""
    total = sum(view.states.values())
    states = ", ".join(f"{n} {state}" for state, n in sorted(view.states.items()))
    lines = [f"batch {view.batch}: {_runs(total)}" + (f" ({states})" if states else "")]
    rows = [("parameter " + k.name, "/".join(sorted(k.types)),
             levels_text(k.levels, k.order)
             + (f", in {k.runs} of {total} runs" if k.runs < total else ""))
            for k in view.parameters]
    rows += [("result " + k.name, "/".join(sorted(k.types)),
              _shapes_text(k.shapes) + _runs(k.runs))
             for k in view.results]
    if not rows:
        return lines + ["  (no parameters and no results)"]
    width = [max(len(row[j]) for row in rows) for j in range(2)]
    return lines + [f"  {key:<{width[0]}}  {kind:<{width[1]}}  {rest}".rstrip()
                    for key, kind, rest in rows]
