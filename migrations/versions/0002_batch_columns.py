"""Record each batch's parameter names and scalar result keys (for its SQL view).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batch_columns",
        sa.Column("batch_id", sa.Integer, sa.ForeignKey("batches.id"), primary_key=True),
        sa.Column("source", sa.String(10), primary_key=True),
        sa.Column("name", sa.Text, primary_key=True),
        sqlite_with_rowid=False,
    )
    op.execute(
        "INSERT INTO batch_columns (batch_id, source, name) "
        "SELECT DISTINCT e.batch_id, 'parameter', p.name FROM entries e "
        "JOIN parameters p ON p.run_key = e.run_key")
    op.execute(
        "INSERT INTO batch_columns (batch_id, source, name) "
        "SELECT DISTINCT e.batch_id, 'result', v.key FROM entries e "
        "JOIN result_values v ON v.run_key = e.run_key")


def downgrade() -> None:
    op.drop_table("batch_columns")
