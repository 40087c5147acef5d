"""Numeric parameters copied into ``entries``, one indexed column each. Internal module.

Each batch gives the first :data:`~runstore.schema.SLOTS` of its parameter
names that hold numbers a slot, ``v0`` to ``v15`` of ``entries``
(``batch_columns.slot``). An entry's slot holds its run's ``parameters.num``
under that name, or NULL. A query on numbers then reads one row per run
(``entries``, by its rowid) instead of one lookup in ``parameters`` per run
and condition, as a table with a column per parameter would; see
``runstore.query.Query.sql``.

Slots are given in the transaction that first stores a number under a name
in the batch, and filled for every entry then. They are never taken back:
a slot holds the same name for the batch's life. ``runstore check`` compares
every slot with ``parameters``, and ``--fix`` fills them again.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from .encoding import Indexed
from .schema import SLOTS

__all__ = ["NUMERIC", "SLOTS_JSON", "slots_of", "parse", "assign", "fill", "settle", "columns",
           "values", "refill_all", "MISFILLED"]

#: The kinds of value that have a number (``parameters.num``).
NUMERIC = frozenset({"int", "float"})


#: The slots of a batch (one argument: its id) as one JSON value, ``[[name, slot], ...]``:
#: a query reads it with its other first statement (see :func:`parse`).
SLOTS_JSON = ("(SELECT json_group_array(json_array(CAST(name AS TEXT), slot)) FROM "
              "batch_columns WHERE batch_id = ? AND source = 'parameter' AND "
              "typeof(slot) = 'integer' AND typeof(name) = 'text')")


def slots_of(conn: Any, batch: int) -> dict[str, int]:
    """The slots of a batch's parameters: name -> slot number (see :func:`parse`)."""
    return parse(_rows(conn, "SELECT " + SLOTS_JSON, (batch,))[0][0])


def parse(text: str | None) -> dict[str, int]:
    """The slots :data:`SLOTS_JSON` gives, name -> slot number.

    Only slots in range, each held by one name, are returned (a file
    written by something else may say anything): a name left out is
    queried through ``parameters``, as if it had no slot.
    """
    return dict(_parse(text or "[]"))


@functools.lru_cache(maxsize=64)  # every query reads them: the same few texts
def _parse(text: str) -> tuple[tuple[str, int], ...]:
    taken: dict[int, list[str]] = {}
    for name, slot in json.loads(text):
        if type(slot) is int and 0 <= slot < SLOTS:
            taken.setdefault(slot, []).append(name)
    return tuple((names[0], slot) for slot, names in taken.items() if len(names) == 1)


def assign(conn: sa.Connection, batch: int) -> dict[str, int]:
    """Give slots to the batch's numeric parameters that have none, while slots are free.

    A name given a slot here has it filled for every entry of the batch
    already stored. Returns every slot of the batch (name -> slot).
    """
    slots = slots_of(conn, batch)
    free = [slot for slot in range(SLOTS) if slot not in slots.values()]
    if not free:
        return slots
    candidates = [name for name, kinds in _rows(
        conn, "SELECT name, kinds FROM batch_columns WHERE batch_id = ? AND source = "
        "'parameter' AND slot IS NULL ORDER BY name", (batch,))
        if NUMERIC & set(kinds.split(","))]
    given = dict(zip(candidates, free))
    if given:
        conn.exec_driver_sql(
            "UPDATE batch_columns SET slot = ? WHERE batch_id = ? AND source = 'parameter' "
            "AND name = ?", [(slot, batch, name) for name, slot in given.items()])
        fill(conn, batch, given, 0)
        slots.update(given)
    return slots


def fill(conn: sa.Connection, batch: int, slots: Mapping[str, int], start: int) -> None:
    """Copy ``parameters.num`` into the given slots of the batch's entries from ``start`` on."""
    for name, slot in slots.items():
        conn.exec_driver_sql(
            f"UPDATE entries SET v{int(slot)} = (SELECT p.num FROM parameters p WHERE "
            "p.run_key = entries.run_key AND p.name = ?) WHERE batch_id = ? AND position >= ?",
            (name, batch, start))


def settle(conn: sa.Connection, batch: int, start: int) -> None:
    """Slots for entries appended from ``start`` on by copying rows (imports, bundles).

    Names that hold numbers now get slots (filled for every entry); the
    slots the batch had are filled for the appended entries.
    """
    before = slots_of(conn, batch)
    assign(conn, batch)
    fill(conn, batch, before, start)


def columns(slots: Mapping[str, int]) -> tuple[list[str], str]:
    """The names with slots, and their columns as an INSERT lists them (``", v0, v2"``)."""
    names = sorted(slots, key=slots.__getitem__)
    return names, "".join(f", v{int(slots[name])}" for name in names)


def values(names: Sequence[str], forms: Mapping[str, Indexed]) -> list[Any]:
    """The slots of an entry whose run has the typed parameters ``forms`` (see :func:`columns`)."""
    get = forms.get
    return [None if (form := get(name)) is None else form.number for name in names]


#: Entries of each batch whose slot differs from ``parameters`` (runstore check).
MISFILLED = """
    SELECT COUNT(*) FROM entries e WHERE e.batch_id = ? AND e.v{slot} IS NOT
    (SELECT p.num FROM parameters p WHERE p.run_key = e.run_key AND p.name = ?)
"""


def refill_all(conn: sa.Connection) -> None:
    """Copy every batch's slots again from ``parameters`` (check --fix).

    A name keeps its slot (a slot never changes hands, so a query planned
    before still reads the right column); slots a file got wrong (out of
    range, held twice, not an integer) are taken back and given again.
    """
    for (batch,) in _rows(conn, "SELECT id FROM batches", ()):
        kept = slots_of(conn, batch)
        conn.exec_driver_sql("UPDATE batch_columns SET slot = NULL WHERE batch_id = ? AND "
                             "slot IS NOT NULL", (batch,))
        if kept:
            conn.exec_driver_sql(
                "UPDATE batch_columns SET slot = ? WHERE batch_id = ? AND source = 'parameter' "
                "AND name = ?", [(slot, batch, name) for name, slot in kept.items()])
        conn.exec_driver_sql("UPDATE entries SET " + ", ".join(
            f"v{i} = NULL" for i in range(SLOTS)) + " WHERE batch_id = ?", (batch,))
        fill(conn, batch, kept, 0)
        assign(conn, batch)


def _rows(conn: Any, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Rows through a SQLAlchemy connection or the sqlite3 connection under one."""
    if isinstance(conn, sa.Connection):
        return [tuple(row) for row in conn.exec_driver_sql(sql, tuple(args))]
    return list(conn.execute(sql, tuple(args)).fetchall())
