"""How many runs hold each parameter value: the ``parameter_counts`` table. Internal module.

A query orders its conditions by how many runs each matches (see
``runstore.query.Query.order``); for conditions on parameters it reads
these counts instead of counting runs. They are kept in the transactions
that insert or delete ``parameters`` rows. A wrong count can only make a
query slower, never change what it matches; ``runstore check`` finds wrong
counts and ``--fix`` counts again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import chain
from typing import Any

import sqlalchemy as sa

from .encoding import Indexed

__all__ = ["count_values", "recount", "count_all", "MISCOUNTED"]

_COUNT = ("INSERT INTO parameter_counts (name, canonical, kind, num, text, runs) "
          "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name, canonical) "
          "DO UPDATE SET runs = runs + excluded.runs")


def count_values(conn: sa.Connection, runs: Iterable[Mapping[str, Indexed]]
                 ) -> Iterable[tuple[str, Indexed]]:
    """Add the parameter values of new runs to ``parameter_counts``; return them, each once."""
    # A value counted under two keys (NaN is not equal to itself) is added
    # up by the upsert all the same.
    counts = Counter(chain.from_iterable(forms.items() for forms in runs))
    if counts:
        conn.exec_driver_sql(_COUNT, [(name, form.canonical, form.kind, form.number, form.text,
                                       n) for (name, form), n in counts.items()])
    return counts.keys()


def recount(conn: sa.Connection, run_keys: Sequence[int], sign: int) -> None:
    """Count the parameter values of some runs in (``sign`` 1) or out (-1) of ``parameter_counts``.

    Reads their ``parameters`` rows: call it after they are inserted, or
    before they are deleted. Values no run holds any more lose their row.
    """
    for chunk in _chunks(run_keys):
        rows = conn.exec_driver_sql(
            "SELECT name, canonical, kind, num, text, COUNT(*) FROM parameters WHERE "
            f"run_key IN ({','.join('?' * len(chunk))}) GROUP BY name, canonical",
            tuple(chunk)).fetchall()
        if rows:
            conn.exec_driver_sql(_COUNT, [(*row[:5], sign * row[5]) for row in rows])
        if rows and sign < 0:  # only the values just counted out, through the key
            conn.exec_driver_sql(
                "DELETE FROM parameter_counts WHERE name = ? AND canonical = ? AND runs <= 0",
                [(row[0], row[1]) for row in rows])


def count_all(conn: sa.Connection) -> None:
    """Count every parameter value again, from the ``parameters`` rows."""
    conn.exec_driver_sql("DELETE FROM parameter_counts")
    conn.exec_driver_sql(
        "INSERT INTO parameter_counts (name, canonical, kind, num, text, runs) "
        "SELECT name, canonical, kind, num, text, COUNT(*) FROM parameters "
        "GROUP BY name, canonical")


#: The number of values whose count of runs in ``parameter_counts`` is wrong.
MISCOUNTED = """
    SELECT COUNT(*) FROM (
      SELECT * FROM (SELECT name, canonical, COUNT(*) FROM parameters GROUP BY name, canonical
                     EXCEPT SELECT name, canonical, runs FROM parameter_counts)
      UNION ALL
      SELECT * FROM (SELECT name, canonical, runs FROM parameter_counts
                     EXCEPT SELECT name, canonical, COUNT(*) FROM parameters
                     GROUP BY name, canonical))"""


def _chunks(items: Sequence[int], size: int = 500) -> Iterator[Sequence[int]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
