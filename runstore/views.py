"""Each batch's SQL view: one row per run, a column per parameter and result. Internal module.

Names in views come from users (batch names, parameter names, result keys):
they are always quoted, as identifiers or as string literals, never pasted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from .encoding import FunctionRef, decode
from .errors import BatchNameError, RunstoreError

__all__ = ["VIEW_COLUMNS", "quote", "check_view_name", "batch_columns", "batch_select",
           "column_type", "parse_kinds", "create_view", "display"]


#: The columns every batch view starts with.
VIEW_COLUMNS = ("id", "position", "state", "runtime", "finished_at")


def quote(identifier: str) -> str:
    """A SQL identifier, quoted (names come from users: never pasted bare)."""
    return '"' + identifier.replace('"', '""') + '"'


def _literal(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _fold(name: str) -> str:
    """A name as SQLite compares identifiers: ASCII letters without case."""
    return name.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _runstore_names() -> dict[str, str]:
    """The names of runstore's own SQL objects (tables, indexes, constraints), folded."""
    from .schema import Base

    names = {"alembic_version": "table", "alembic_version_pkc": "constraint"}
    for table in Base.metadata.tables.values():
        names[_fold(table.name)] = "table"
        names.update((_fold(str(index.name)), "index") for index in table.indexes)
        names.update((_fold(str(c.name)), "constraint") for c in table.constraints
                     if isinstance(c.name, str))
    return names


def check_view_name(conn: sa.Connection | None, name: str) -> None:
    """Refuse a batch name that its SQL view could not take.

    A batch's view shares one namespace with every table, index, trigger and
    view of the store, and SQL compares those names without case. Refused:
    names starting with ``sqlite_`` (SQLite's own), the names of runstore's
    tables, indexes and constraints, and (with ``conn``) the name of any SQL
    object in the store other than this batch's own view, and names that
    differ only in case from another batch's.
    """
    folded = _fold(name)
    advice = ("each batch is also a SQL view, whose name must differ (ignoring case) "
              "from every table, index, trigger and view in the store")
    if folded.startswith("sqlite_"):
        raise BatchNameError(name, f"names starting with 'sqlite_' are reserved by SQLite, "
                                   f"and {advice}")
    own = _runstore_names().get(folded)
    if own is not None:
        raise BatchNameError(name, f"it is the name of one of runstore's "
                                   f"{'indexes' if own == 'index' else own + 's'} "
                                   f"({folded!r}), and {advice}")
    if conn is None:
        return
    batches = [row[0] for row in conn.exec_driver_sql("SELECT name FROM batches")
               if _fold(row[0]) == folded]
    clash = next((other for other in batches if other != name), None)
    if clash is not None:
        raise BatchNameError(name, f"it differs only in case from the batch {clash!r}, "
                                   "and SQL names ignore case")
    for kind, other in conn.exec_driver_sql("SELECT type, name FROM sqlite_master").all():
        if _fold(other) != folded or (kind == "view" and other == name and batches):
            continue  # another name, or this batch's own view
        raise BatchNameError(name, f"the store already has a SQL {kind} named {other!r}, "
                                   f"and {advice}")


def _typed(alias: str) -> str:
    """A typed parameter or result row as one SQL value: NULL for None, 0/1 for bools."""
    return (f"CASE {alias}.kind WHEN 'null' THEN NULL WHEN 'bool' THEN "
            f"({alias}.canonical = 'true') ELSE COALESCE({alias}.num, {alias}.text, "
            f"{alias}.canonical) END")


def parse_kinds(text: str | None) -> frozenset[str]:
    """The kinds recorded in ``batch_columns.kinds`` ("float,int"), as a set."""
    return frozenset(text.split(",")) if text else frozenset()


def column_type(kinds: Iterable[str]) -> str | None:
    """The SQL type of a view column holding values of these kinds, if it has one.

    ``None`` values do not count. Ints give NUMERIC (ints beyond 64 bits are
    stored as their nearest float, which NUMERIC keeps), floats (with or
    without ints) REAL, booleans alone INTEGER (0/1), strings TEXT, and
    structured values TEXT (their canonical JSON). A column mixing other
    kinds (numbers and strings ...) has no type: each value keeps its own.
    """
    found = set(kinds) - {"null"}
    if not found:
        return None
    if found <= {"int", "bool"}:
        return "INTEGER" if found == {"bool"} else "NUMERIC"
    if found <= {"int", "float"}:
        return "REAL"
    if found in ({"text"}, {"structured"}):
        return "TEXT"
    return None


def _cell(alias: str, sql_type: str | None) -> str:
    """The value of a typed row for a column of this SQL type (see :func:`column_type`).

    Numeric columns read ``num`` (NULL for NaN, which SQL has no value for);
    booleans are 0/1.
    """
    if sql_type == "TEXT":  # strings, or structured values as their canonical JSON
        return (f"CASE {alias}.kind WHEN 'text' THEN {alias}.text WHEN 'null' THEN NULL "
                f"ELSE {alias}.canonical END")
    if sql_type is None:
        return _typed(alias)
    return f"CASE {alias}.kind WHEN 'bool' THEN ({alias}.canonical = 'true') ELSE {alias}.num END"


def batch_columns(conn: sa.Connection, batch: int
                  ) -> list[tuple[str, str, str, frozenset[str]]]:
    """The ``(label, source, name, kinds)`` of a batch's recorded view columns, in view order.

    The label is the column's name in the view: the parameter name or result
    key, or ``source.name`` where that is taken (by a column the view
    starts with, see :data:`VIEW_COLUMNS`, or a parameter of the same name).
    Names runstore never records (not text, or holding a NUL, which SQL text
    cannot) are left out: a file runstore did not write may hold them.
    """
    rows = conn.exec_driver_sql(
        "SELECT source, name, kinds FROM batch_columns WHERE batch_id = ?", (batch,)).all()
    columns = sorted(((source, name, parse_kinds(kinds if isinstance(kinds, str) else None))
                      for source, name, kinds in rows
                      if source in ("parameter", "result") and isinstance(name, str)
                      and "\x00" not in name),
                     key=lambda c: (c[0] != "parameter", c[1]))
    taken = {column.lower() for column in VIEW_COLUMNS}
    labelled = []
    for source, name, kinds in columns:
        label = name if name.lower() not in taken else f"{source}.{name}"
        taken.add(label.lower())
        labelled.append((label, source, name, kinds))
    return labelled


def batch_select(conn: sa.Connection, batch: int) -> str:
    """The SELECT of a batch's view, built from its recorded columns (no ORDER BY).

    It reads only tables (``entries``, ``runs``, ``parameters``,
    ``result_values``), so runstore runs it instead of reading the view: in a
    file runstore did not write, the view may hold any query. Conditions on
    ``r`` (the ``runs`` row) can be appended with ``AND``. Each column is
    CAST to the SQL type of the kinds it holds (:func:`column_type`), which
    gives it that type affinity: ``where gamma = '0.02'`` matches as
    ``where gamma = 0.02`` does.
    """
    parts = ["r.id AS id", "e.position AS position", "r.state AS state",
             "r.runtime AS runtime", f"{_ISO_TIME.format('r.finished_at')} AS finished_at"]
    for label, source, column, kinds in batch_columns(conn, batch):
        table, key = (("parameters", "name") if source == "parameter"
                      else ("result_values", "key"))
        sql_type = column_type(kinds)
        cell = (f"(SELECT {_cell('c', sql_type)} FROM {table} c WHERE c.run_key = r.key "
                f"AND c.{key} = {_literal(column)})")
        if sql_type is not None:
            cell = f"CAST({cell} AS {sql_type})"
        parts.append(f"{cell} AS {quote(label)}")
    return (f"SELECT {', '.join(parts)} FROM entries e CROSS JOIN runs r "
            f"WHERE e.batch_id = {int(batch)} AND r.key = e.run_key")


#: A Unix time as ISO-8601 text in UTC, to the millisecond (NULL stays NULL).
_ISO_TIME = "strftime('%Y-%m-%dT%H:%M:%fZ', {}, 'unixepoch')"


def create_view(conn: sa.Connection, batch: int) -> None:
    """(Re)create the view of a batch: one row per run, a column per parameter and result."""
    name = conn.exec_driver_sql("SELECT name FROM batches WHERE id = ?", (batch,)).scalar_one()
    select = batch_select(conn, batch)
    conn.exec_driver_sql(f"DROP VIEW IF EXISTS {quote(name)}")
    conn.exec_driver_sql(f"CREATE VIEW {quote(name)} AS {select}")


def decoded(canonical: str) -> Any:
    """A stored value from its canonical JSON, as tables show it: never importing code.

    Functions and classes become their names (``max`` for ``builtins.max``),
    objects of user classes stay :class:`~runstore.encoding.ObjectRef`;
    everything else comes back as the value it was (lists as lists ...).
    """
    value = decode(json.loads(canonical), None, False, "value")
    if isinstance(value, FunctionRef):
        return value.name.removeprefix("builtins.")
    return value


def float_text(value: float) -> str:
    """A float as Python writes it when that is short (``1.0``, ``1000002.0``, ``1e-07``),
    else in 6 significant digits that still read as a float (``0.3``, ``1.23457e+07``)."""
    text = repr(float(value))
    if len(text) <= 10:
        return text
    text = f"{value:.6g}"
    return text if any(c in text for c in ".ein") else text + ".0"


#: The most characters of a value a table cell or a plot label shows.
SHOWN_WIDTH = 40


def shortened(text: str, width: int = SHOWN_WIDTH) -> str:
    """``text`` cut to ``width`` characters in its middle, marked with an ellipsis.

    Its start and its end stay: long values (paths, labels) often differ only
    at their end.
    """
    if len(text) <= width:
        return text
    head = width // 2 - 1
    return text[:head] + "\u2026" + text[len(text) - (width - head - 1):]


def display(value: Any) -> str:
    """A cell of a view for people: functions by name, structured values decoded.

    Structured values are stored as their canonical encoding; they are shown
    decoded (never importing anything: functions and classes stay names).
    """
    if value is None:
        return ""
    if isinstance(value, float):
        return float_text(value)
    if isinstance(value, str) and value.startswith("[\""):
        try:
            shown = decoded(value)
        except (ValueError, RunstoreError):
            return value
        return shown if isinstance(shown, str) else repr(shown)
    return str(value)
