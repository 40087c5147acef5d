"""Numbers keep their type in SQL; each view column records the kinds it holds.

``parameters.num`` and ``result_values.num`` were NUMERIC, an affinity with
which SQLite stores an integral float as an integer: ``0.0`` came back as
``0`` in every view, DataFrame and export. They are now declared without a
type (no affinity: every value keeps its storage class), and the floats
stored before are REAL again (their ``kind`` says which they are).

``batch_columns.kinds`` records the kinds of value each column of a batch's
view holds ("float,int" ...), from which the view gives the column its SQL
type (see ``runstore.views.column_type``).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


class _Untyped(sa.types.UserDefinedType[Any]):
    """A column declared without a type (no affinity)."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return ""


class _Numeric(_Untyped):
    def get_col_spec(self, **kw: Any) -> str:
        return "NUMERIC"


#: Each table, the name of its second key column, and its indexes.
_TABLES = {
    "parameters": ("name", {
        "ix_parameters_num": (("name", "num", "run_key"), "num IS NOT NULL"),
        "ix_parameters_canonical": (("name", "canonical", "run_key"), "num IS NULL"),
    }),
    "result_values": ("key", {
        "ix_result_values_num": (("key", "num", "run_key"), None),
    }),
}


def _rebuild(table: str, number: sa.types.TypeEngine[Any], float_cast: bool) -> None:
    """Copy a typed-value table into one whose ``num`` column has the type ``number``."""
    key, indexes = _TABLES[table]
    for index in indexes:
        op.drop_index(index, table)
    op.create_table(
        f"{table}_new",
        sa.Column("run_key", sa.Integer, sa.ForeignKey("runs.key"), primary_key=True),
        sa.Column(key, sa.Text, primary_key=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("num", number, nullable=True),
        sa.Column("text", sa.Text),
        sa.Column("canonical", sa.Text, nullable=False),
        sqlite_with_rowid=False,
    )
    num = "CASE WHEN kind = 'float' THEN CAST(num AS REAL) ELSE num END" if float_cast else "num"
    op.execute(f'INSERT INTO {table}_new (run_key, "{key}", kind, num, text, canonical) '
               f'SELECT run_key, "{key}", kind, {num}, text, canonical FROM {table}')
    op.drop_table(table)
    # Legacy renaming leaves views alone: the batch views (and any view of
    # the user's) name the table, which exists again under its name.
    op.execute("PRAGMA legacy_alter_table = ON")
    op.rename_table(f"{table}_new", table)
    op.execute("PRAGMA legacy_alter_table = OFF")
    for index, (columns, where) in indexes.items():
        op.create_index(index, table, list(columns),
                        sqlite_where=sa.text(where) if where else None)


def _record_kinds() -> None:
    """Fill ``batch_columns.kinds`` from the typed rows of each batch's runs."""
    conn = op.get_bind()
    for source, table, key in (("parameter", "parameters", "name"),
                               ("result", "result_values", "key")):
        found: dict[tuple[int, str], set[str]] = {}
        for batch, name, kind in conn.exec_driver_sql(
                f'SELECT DISTINCT e.batch_id, c."{key}", c.kind FROM entries e '
                f"JOIN {table} c ON c.run_key = e.run_key"):
            found.setdefault((batch, name), set()).add(kind)
        if found:
            conn.exec_driver_sql(
                "UPDATE batch_columns SET kinds = ? WHERE batch_id = ? AND source = ? "
                "AND name = ?", [(",".join(sorted(kinds)), batch, source, name)
                                 for (batch, name), kinds in found.items()])


def upgrade() -> None:
    _rebuild("parameters", _Untyped(), float_cast=True)
    _rebuild("result_values", _Untyped(), float_cast=True)
    # Plain ADD COLUMN: SQLite adds a column with a default without copying.
    op.add_column("batch_columns",
                  sa.Column("kinds", sa.Text, nullable=False, server_default=""))
    _record_kinds()


def downgrade() -> None:
    with op.batch_alter_table("batch_columns") as batch:
        batch.drop_column("kinds")
    _rebuild("result_values", _Numeric(), float_cast=False)
    _rebuild("parameters", _Numeric(), float_cast=False)
