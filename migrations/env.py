"""Alembic environment: runs migrations on the connection runstore passes in."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from runstore.schema import Base


def run_migrations(connection: sa.Connection) -> None:
    # render_as_batch: SQLite alters tables by copying them; Alembic's batch
    # mode does that for us.
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:  # the alembic command line, with sqlalchemy.url set in its config
    engine = sa.create_engine(context.config.get_main_option("sqlalchemy.url"))
    with engine.begin() as conn:
        run_migrations(conn)
