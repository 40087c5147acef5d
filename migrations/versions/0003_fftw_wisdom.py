"""Keep FFTW wisdom in the store, per kind of machine, for the workers that use it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fftw_wisdom",
        sa.Column("machine", sa.Text, primary_key=True),
        sa.Column("wisdom", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("fftw_wisdom")
