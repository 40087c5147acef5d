"""Numeric parameters copied into ``entries``, one indexed column per parameter.

``entries`` gains the slots ``v0`` to ``v15``, each indexed with the batch
over the entries that hold a number; ``batch_columns.slot`` says which
parameter of the batch a slot holds. Each batch's first 16 parameter names
(in name order) that hold numbers are given slots here, filled from
``parameters``. A query on numbers reads one row per run of ``entries``
instead of one lookup in ``parameters`` per run and condition (see
``runstore.slots``).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

#: As runstore.schema.SLOTS at this revision.
_SLOTS = 16


class _Untyped(sa.types.UserDefinedType[Any]):
    """A column declared without a type (no affinity), as ``parameters.num``."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return ""


def upgrade() -> None:
    for i in range(_SLOTS):
        op.add_column("entries", sa.Column(f"v{i}", _Untyped(), nullable=True))
    op.add_column("batch_columns", sa.Column("slot", sa.Integer, nullable=True))
    conn = op.get_bind()
    batches = [row[0] for row in conn.exec_driver_sql("SELECT id FROM batches ORDER BY id")]
    for batch in batches:
        names = [name for name, kinds in conn.exec_driver_sql(
            "SELECT name, kinds FROM batch_columns WHERE batch_id = ? AND source = 'parameter' "
            "ORDER BY name", (batch,)) if {"int", "float"} & set(kinds.split(","))][:_SLOTS]
        for slot, name in enumerate(names):
            conn.exec_driver_sql(
                "UPDATE batch_columns SET slot = ? WHERE batch_id = ? AND source = 'parameter' "
                "AND name = ?", (slot, batch, name))
            conn.exec_driver_sql(
                f"UPDATE entries SET v{slot} = (SELECT p.num FROM parameters p WHERE "
                "p.run_key = entries.run_key AND p.name = ?) WHERE batch_id = ?", (name, batch))
    for i in range(_SLOTS):
        op.create_index(f"ix_entries_v{i}", "entries", ["batch_id", f"v{i}"],
                        sqlite_where=sa.text(f"v{i} IS NOT NULL"))


def downgrade() -> None:
    for i in range(_SLOTS):
        op.drop_index(f"ix_entries_v{i}", "entries")
    with op.batch_alter_table("batch_columns") as batch:
        batch.drop_column("slot")
    with op.batch_alter_table("entries") as batch:
        for i in range(_SLOTS):
            batch.drop_column(f"v{i}")
