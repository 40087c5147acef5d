"""The ``runstore`` command line: one small function per command.

Commands so far: ``check`` and ``upgrade``. (Status, queries, bundles and
workers arrive with their issues.)
"""

from __future__ import annotations

import sys

import click

from .errors import RunstoreError

__all__ = ["main"]


@click.group()
@click.version_option(package_name="runstore")
def main() -> None:
    """Run batches of calculations once, and keep their results."""


@main.command()
@click.argument("store", type=click.Path(exists=True, dir_okay=False))
@click.option("--fix", is_flag=True, help="Repair what can be repaired.")
def check(store: str, fix: bool) -> None:
    """Check STORE: SQLite integrity, run ids, arrays, leftover side files.

    Exits with status 1 if problems remain.
    """
    from .store import Store

    opened = Store(store)
    report = opened.check(fix=fix)
    click.echo(str(report))
    if fix and not report.ok:
        report = opened.check()
    opened.close()
    if not report.ok:
        sys.exit(1)


@main.command()
@click.argument("store", type=click.Path(exists=True, dir_okay=False))
def upgrade(store: str) -> None:
    """Upgrade STORE's schema to the one this runstore uses."""
    from . import migration
    from .store import Store

    before = migration.revision_of(store)
    Store(store).close()  # opening writable upgrades
    after = migration.revision_of(store)
    if before == after:
        click.echo(f"{store} is already at schema revision {after}.")
    else:
        click.echo(f"{store} upgraded from schema revision {before} to {after}.")


def run() -> None:
    """Entry point: run ``main``, printing runstore's errors without a traceback."""
    try:
        main(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except RunstoreError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
