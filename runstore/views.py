"""Each batch's SQL view: one row per run, a column per parameter and result. Internal module.

Names in views come from users (batch names, parameter names, result keys):
they are always quoted, as identifiers or as string literals, never pasted.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from .encoding import FunctionRef, decode
from .errors import BatchNameError, RunstoreError

__all__ = ["VIEW_COLUMNS", "quote", "check_view_name", "batch_select", "create_view", "display"]


#: The columns every batch view starts with.
VIEW_COLUMNS = ("id", "position", "state", "runtime")


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


def batch_select(conn: sa.Connection, batch: int) -> str:
    """The SELECT of a batch's view, built from its recorded columns (no ORDER BY).

    It reads only tables (``entries``, ``runs``, ``parameters``,
    ``result_values``), so runstore runs it instead of reading the view: in a
    file runstore did not write, the view may hold any query. Conditions on
    ``r`` (the ``runs`` row) can be appended with ``AND``.
    """
    columns = conn.exec_driver_sql(
        "SELECT source, name FROM batch_columns WHERE batch_id = ? ORDER BY source, name",
        (batch,)).all()
    taken = {column.lower() for column in VIEW_COLUMNS}
    parts = ["r.id AS id", "e.position AS position", "r.state AS state",
             "r.runtime AS runtime"]
    for source, column in sorted(columns, key=lambda c: (c[0] != "parameter", c[1])):
        if source not in ("parameter", "result") or not isinstance(column, str) or (
                "\x00" in column):
            continue  # not a column runstore records (SQL text cannot hold NUL)
        label = column if column.lower() not in taken else f"{source}.{column}"
        taken.add(label.lower())
        table, key = (("parameters", "name") if source == "parameter"
                      else ("result_values", "key"))
        parts.append(f"(SELECT {_typed('c')} FROM {table} c WHERE c.run_key = r.key "
                     f"AND c.{key} = {_literal(column)}) AS {quote(label)}")
    return (f"SELECT {', '.join(parts)} FROM entries e CROSS JOIN runs r "
            f"WHERE e.batch_id = {int(batch)} AND r.key = e.run_key")


def create_view(conn: sa.Connection, batch: int) -> None:
    """(Re)create the view of a batch: one row per run, a column per parameter and result."""
    name = conn.exec_driver_sql("SELECT name FROM batches WHERE id = ?", (batch,)).scalar_one()
    select = batch_select(conn, batch)
    conn.exec_driver_sql(f"DROP VIEW IF EXISTS {quote(name)}")
    conn.exec_driver_sql(f"CREATE VIEW {quote(name)} AS {select}")


def display(value: Any) -> str:
    """A cell of a view for people: functions by name, structured values decoded.

    Structured values are stored as their canonical encoding; they are shown
    decoded (never importing anything: functions and classes stay names).
    """
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str) and value.startswith("[\""):
        try:
            decoded = decode(json.loads(value), None, False, "value")
        except (ValueError, RunstoreError):
            return value
        if isinstance(decoded, FunctionRef):
            return decoded.name.removeprefix("builtins.")
        return repr(decoded)
    return str(value)
