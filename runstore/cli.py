"""The ``runstore`` command line: one small function per command.

Commands so far: ``status``, ``worker``, ``export``, ``check`` and ``upgrade``.
(Queries and bundles arrive with their issue.)
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
def status(store: str) -> None:
    """Show STORE's runs per batch and state, and the runs in flight."""
    import time

    from .store import Store

    opened = Store(store, readonly=True)
    counts = opened.counts_by_batch()
    states = ("pending", "running", "done", "failed")
    width = max([len("batch")] + [len(name) for name in counts])
    click.echo(f"{'batch':<{width}}  " + "  ".join(f"{s:>8}" for s in states))
    for name, by_state in counts.items():
        click.echo(f"{name:<{width}}  " + "  ".join(f"{by_state.get(s, 0):>8}" for s in states))
    running = opened.in_flight()
    if running:
        click.echo(f"\n{len(running)} runs in flight:")
        now = time.time()
        for run in running[:50]:
            left = (run["lease_expires"] or now) - now
            click.echo(f"  {run['id'][:12]}  {run['run_type']}  on {run['host']} pid "
                       f"{run['pid']}  attempt {run['attempts']}  lease {left:.0f} s")
    opened.close()


@main.command()
@click.argument("store", type=click.Path(exists=True, dir_okay=False))
@click.option("--batch", "batch_name", help="Only this batch (default: every batch).")
@click.option("--processes", default=1, show_default=True, type=click.IntRange(min=1),
              help="Worker processes to run on this host.")
@click.option("--import", "modules", multiple=True, metavar="MODULE",
              help="Import MODULE first (for run classes its name does not locate).")
@click.option("-v", "--verbose", is_flag=True, help="Show progress and skipped runs.")
def worker(store: str, batch_name: str | None, processes: int, modules: tuple[str, ...],
           verbose: bool) -> None:
    """Compute STORE's pending runs until none is left, beside other workers.

    Run classes are imported by the module path the store names (this is the
    step that allows importing code; opening a store never does).
    """
    from .worker import work, work_in_processes

    if processes > 1:
        work_in_processes(store, processes, batch_name, modules)
    else:
        computed = work(store, batch_name, modules, verbose=int(verbose))
        click.echo(f"computed {sum(computed.values())} runs"
                   + "".join(f"\n  {name}: {n}" for name, n in computed.items()))


@main.command()
@click.argument("store", type=click.Path(exists=True, dir_okay=False))
@click.option("--batch", "batch_name", help="The batch (default: the only one).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Write CSV here.")
@click.option("--parquet", "parquet_path", type=click.Path(dir_okay=False),
              help="Write Parquet here (needs pandas and pyarrow).")
def export(store: str, batch_name: str | None, csv_path: str | None,
           parquet_path: str | None) -> None:
    """Export a batch's table (its SQL view) as CSV or Parquet."""
    import csv

    from .batch import Batch
    from .store import Store

    if not (csv_path or parquet_path):
        raise click.UsageError("give --csv FILE and/or --parquet FILE")
    opened = Store(store, readonly=True)
    names = opened.batch_names()
    if batch_name is None:
        if len(names) != 1:
            raise click.UsageError(f"the store has batches {names}; choose one with --batch")
        batch_name = names[0]
    batch = Batch(batch_name, store=opened)
    if csv_path:
        columns, rows = opened.view_rows(batch._id)
        with open(csv_path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            writer.writerows(rows)
        click.echo(f"wrote {len(rows)} runs of batch {batch_name!r} to {csv_path}")
    if parquet_path:
        frame = batch.to_dataframe()
        try:
            frame.to_parquet(parquet_path)
        except ImportError as exc:
            from .errors import OptionalDependencyError

            raise OptionalDependencyError("pyarrow", "dataframe", "--parquet") from exc
        click.echo(f"wrote {len(frame)} runs of batch {batch_name!r} to {parquet_path}")
    opened.close()


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
