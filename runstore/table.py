"""A batch's table of runs with the types that went in: DataFrames and CSV. Internal module.

The rows are the batch's SQL view (:meth:`runstore.store.Store.view_rows`).
Each parameter and result column's recorded kinds (``batch_columns.kinds``)
say what its cells are, which SQL alone cannot: booleans are 0/1 there,
structured values (lists, functions ...) their canonical JSON, times ISO-8601
text. Here cells become the values they were: booleans ``True``/``False``,
lists lists, functions their names (never imported), ints beyond 64 bits
exact, ``finished_at`` a UTC datetime. A DataFrame gets the matching dtypes:
float64 for floats, int64 for ints (pandas' nullable ``Int64`` where some
runs have none), bool (``boolean``), datetime64 in UTC.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .views import column_type, decoded

if TYPE_CHECKING:
    from .store import Store

__all__ = ["Table", "batch_table", "to_dataframe", "csv_cell", "for_parquet"]

#: ints a 64-bit SQL integer (and a numpy int64 column) holds.
_INT64 = 2**63


@dataclass
class Table:
    """Columns, the kinds of value each holds (None: a column of the run itself), rows."""

    columns: list[str]
    kinds: list[frozenset[str] | None]
    rows: list[list[Any]]


def batch_table(store: Store, batch: int, run_ids: Sequence[str] | None = None) -> Table:
    """The batch's view (all runs, or some), its cells decoded to the values they were."""
    columns, rows = store.view_rows(batch, run_ids)
    recorded = {label: (source, name, kinds)
                for label, source, name, kinds in store.view_columns(batch)}
    table = Table(columns, [None] * len(columns), [list(row) for row in rows])
    at_position = columns.index("position")
    for i, column in enumerate(columns):
        if column == "finished_at":
            _set(table, i, _utc_time)
        if column not in recorded:
            continue
        source, name, kinds = recorded[column]
        table.kinds[i] = kinds
        sql_type = column_type(kinds)
        if sql_type == "INTEGER":  # booleans alone: 0/1 in SQL
            _set(table, i, bool)
            continue
        # Structured values and mixed kinds come exact from their canonical
        # JSON; in number columns, only NaN (NULL in SQL) and ints beyond 64
        # bits (their nearest float) need it.
        inexact = sql_type in ("REAL", "NUMERIC")
        if inexact and not any(row[i] is None if sql_type == "REAL" else
                               isinstance(row[i], float) for row in table.rows):
            continue
        if sql_type == "TEXT" and "structured" not in kinds:
            continue  # strings are exact in SQL
        cells = store.canonical_cells(batch, source, name, inexact)
        for row in table.rows:
            found = cells.get(row[at_position])
            if found is not None:
                row[i] = decoded(found)
            elif not inexact:
                row[i] = None
    return table


def _set(table: Table, i: int, convert: Any) -> None:
    for row in table.rows:
        if row[i] is not None:
            row[i] = convert(row[i])


def _utc_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def to_dataframe(table: Table) -> Any:
    """The table as a pandas DataFrame indexed by run position, with typed columns."""
    import pandas

    data = {}
    for column, kinds, values in zip(table.columns, table.kinds,
                                     zip(*table.rows) if table.rows else
                                     [()] * len(table.columns)):
        data[column] = pandas.Series(list(values), dtype=_dtype(column, kinds, values),
                                     name=column)
    frame = pandas.DataFrame(data, columns=table.columns)
    return frame.set_index("position")


def _dtype(column: str, kinds: frozenset[str] | None, values: Sequence[Any]) -> Any:
    """The pandas dtype of a column of these kinds holding these values."""
    if kinds is None:
        return {"position": "int64", "runtime": "float64",
                "finished_at": "datetime64[ns, UTC]"}.get(column)
    sql_type = column_type(kinds)
    missing = any(v is None for v in values)
    if sql_type == "REAL":
        return "float64"
    if sql_type == "INTEGER":
        return "boolean" if missing else "bool"
    if sql_type == "NUMERIC" and all(v is None or -_INT64 <= v < _INT64 for v in values):
        return "Int64" if missing else "int64"
    if kinds - {"null"} == {"text"}:
        return None  # as pandas infers it: str
    # Python objects as they are: pandas would turn complex numbers into
    # complex128 (complex(0, inf) into nan+infj) and ints beyond 64 bits into floats.
    return object


def csv_cell(value: Any) -> Any:
    """A decoded cell as CSV writes it: exact numbers, ISO times, values as the CLI shows them."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value  # the csv module writes floats exactly (repr) and None as ""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return repr(value)


def for_parquet(frame: Any) -> Any:
    """The DataFrame with the columns Parquet cannot hold as they are, as text.

    Parquet columns have one type, and Arrow has none for many Python values
    (complex numbers, sets, references, empty dicts): a column of anything
    but real numbers, booleans, strings and times (lists, functions, mixed
    kinds ...) is written as the text the command line shows (``repr``),
    None as null.
    """
    out = frame.copy()
    for column in frame.columns:
        values = frame[column]
        if values.dtype.kind == "c" or values.dtype == object and not all(
                v is None or isinstance(v, str) for v in values):
            out[column] = [None if v is None else repr(v) for v in values]
    return out
