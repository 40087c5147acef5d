"""Record where a run's parameters and result came from while they are not trusted.

``runs.parameters_origin`` and ``runs.result_origin`` hold the file a run's
parameters (result) were imported from, as long as the user has not trusted
them; NULL for values this store's own code produced. Runs stored before this
revision recorded no origin and count as the store's own.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN: SQLite adds nullable columns without copying the table.
    op.add_column("runs", sa.Column("parameters_origin", sa.Text, nullable=True))
    op.add_column("runs", sa.Column("result_origin", sa.Text, nullable=True))
    op.create_index("ix_runs_foreign_parameters", "runs", ["key"],
                    sqlite_where=sa.text("parameters_origin IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_runs_foreign_parameters", "runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("result_origin")
        batch.drop_column("parameters_origin")
