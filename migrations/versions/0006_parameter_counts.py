"""Count the runs that hold each parameter value.

``parameter_counts`` has one row per parameter name and canonical value,
with the value's typed columns (as in ``parameters``) and ``runs``, the
number of runs holding it. A query reads it to order its conditions, most
selective first, without counting the runs each condition matches; it is
filled here from the ``parameters`` rows already stored.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


class _Untyped(sa.types.UserDefinedType[Any]):
    """A column declared without a type (no affinity), as ``parameters.num``."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return ""


def upgrade() -> None:
    op.create_table(
        "parameter_counts",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("canonical", sa.Text, primary_key=True),
        sa.Column("runs", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("num", _Untyped(), nullable=True),
        sa.Column("text", sa.Text),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_parameter_counts_num", "parameter_counts", ["name", "num", "runs"],
                    sqlite_where=sa.text("num IS NOT NULL"))
    op.execute("INSERT INTO parameter_counts (name, canonical, kind, num, text, runs) "
               "SELECT name, canonical, kind, num, text, COUNT(*) FROM parameters "
               "GROUP BY name, canonical")


def downgrade() -> None:
    op.drop_index("ix_parameter_counts_num", "parameter_counts")
    op.drop_table("parameter_counts")
