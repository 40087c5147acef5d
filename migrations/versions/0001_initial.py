"""The initial schema: batches, runs, entries, parameters, result values.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from runstore.schema import Number

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STATES = ("pending", "running", "done", "failed")


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "runs",
        sa.Column("key", sa.Integer, primary_key=True),
        sa.Column("id", sa.String(40), nullable=False, unique=True),
        sa.Column("run_type", sa.Text, nullable=False),
        sa.Column("state", sa.Enum(*STATES, name="run_state", native_enum=False,
                                   create_constraint=True, length=8), nullable=False),
        sa.Column("parameters", sa.Text, nullable=False),
        sa.Column("result", sa.Text),
        sa.Column("array_file", sa.Text),
        sa.Column("error_type", sa.Text),
        sa.Column("error_message", sa.Text),
        sa.Column("traceback", sa.Text),
        sa.Column("owner", sa.Text),
        sa.Column("lease_expires", sa.Float),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("started_at", sa.Float),
        sa.Column("finished_at", sa.Float),
        sa.Column("runtime", sa.Float),
        sa.Column("host", sa.Text),
        sa.Column("pid", sa.Integer),
        sa.Column("runstore_version", sa.Text),
        sa.Column("python_version", sa.Text),
        sa.Column("code_fingerprint", sa.Text),
    )
    op.create_index("ix_runs_running", "runs", ["owner"],
                    sqlite_where=sa.text("state = 'running'"))
    op.create_table(
        "entries",
        sa.Column("batch_id", sa.Integer, sa.ForeignKey("batches.id"), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("run_key", sa.Integer, sa.ForeignKey("runs.key"), nullable=False),
        sa.UniqueConstraint("batch_id", "run_key", name="uq_entries_batch_run"),
    )
    for table, key in (("parameters", "name"), ("result_values", "key")):
        op.create_table(
            table,
            sa.Column("run_key", sa.Integer, sa.ForeignKey("runs.key"), primary_key=True),
            sa.Column(key, sa.Text, primary_key=True),
            sa.Column("kind", sa.String(10), nullable=False),
            sa.Column("num", Number()),
            sa.Column("text", sa.Text),
            sa.Column("canonical", sa.Text, nullable=False),
            sqlite_with_rowid=False,
        )
    op.create_index("ix_parameters_num", "parameters", ["name", "num", "run_key"],
                    sqlite_where=sa.text("num IS NOT NULL"))
    op.create_index("ix_parameters_canonical", "parameters", ["name", "canonical", "run_key"],
                    sqlite_where=sa.text("num IS NULL"))
    op.create_index("ix_result_values_num", "result_values", ["key", "num", "run_key"])


def downgrade() -> None:
    for table in ("result_values", "parameters", "entries", "runs", "batches"):
        op.drop_table(table)
