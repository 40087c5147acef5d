"""Schema upgrades with Alembic, on the migrations shipped in the package. Internal module.

Imported only when a store's schema revision is not the current one, or by
``runstore upgrade``, so that opening an up-to-date store does not load Alembic.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

__all__ = ["script_location", "alembic_config", "head", "is_known", "upgrade", "revision_of"]


def script_location() -> Path:
    """The folder of the Alembic environment (``runstore.migrations``)."""
    import importlib

    # runstore.migrations is the top-level migrations/ folder, mapped into the
    # package at install time (see pyproject.toml).
    migrations = importlib.import_module("runstore.migrations")
    return Path(migrations.__file__ or "").parent


def alembic_config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision of the shipped migrations."""
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if revision is None:
        raise RuntimeError(f"no Alembic revisions found in {script_location()}")
    return revision


def is_known(revision: str) -> bool:
    """Whether a revision is one of the shipped migrations."""
    script = ScriptDirectory.from_config(alembic_config())
    return any(rev.revision == revision for rev in script.walk_revisions())


def upgrade(bind: sa.Engine | sa.Connection, revision: str = "head") -> None:
    """Upgrade a store's schema in one transaction.

    Given a connection, the upgrade runs in its transaction: the store's own
    opening path passes one inside ``BEGIN IMMEDIATE`` that has read the
    revision again, so that two processes upgrading the same file at once
    upgrade it once (the second finds it done). Open stores with
    :class:`~runstore.Store` rather than calling this on an engine.
    """
    if isinstance(bind, sa.Connection):
        command.upgrade(alembic_config(bind), revision)
        return
    with bind.begin() as conn:
        command.upgrade(alembic_config(conn), revision)


def revision_of(path: str) -> str | None:
    """The schema revision recorded in a store file (read without upgrading).

    Refuses, like :class:`~runstore.Store`, what is not a runstore file
    (:class:`~runstore.errors.NotAStoreError`); ``None`` for an empty or
    missing file. Nothing is written.
    """
    from .storefile import survey_path

    return survey_path(Path(path), readonly=False).revision
