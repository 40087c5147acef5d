"""Which store a command line means: store discovery. Internal module.

A command's ``STORE`` argument may be left out, or be a folder or a batch's
name; :func:`resolve` turns it into one store file, the way git finds its
repository from the current folder:

- a path to a file is taken as it is (and checked when the command opens it);
- a folder means the store in it or in its ``_res/`` subfolder, if there is
  exactly one;
- nothing means the current folder, else the nearest ``_res/`` of a folder
  above it (said on standard error);
- a name that is no file or folder (or a folder without stores) is a
  batch's name, and means the one store, among those found as for nothing,
  that holds a batch of that name.

What counts as a store is decided by the file's content, never by its name
(:func:`is_store_file`): a regular file that starts with SQLite's header and
carries runstore's mark (``application_id``), or, for stores written before
the mark existed, has runstore's tables and a schema revision runstore
wrote. Only the first 100 bytes of each file are read, with plain reads
(no SQLite connection is open yet in the command's process, so no lock can be
lost); only a SQLite file without the mark is opened by SQLite, read-only
and ``immutable`` (no lock taken, no file made beside it). Nothing is ever
opened for writing here.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from .errors import RunstoreError, StoreNotFoundError
from .schema import APPLICATION_ID

__all__ = ["Target", "StoreNotFoundError", "is_store_file", "stores_in", "resolve"]

#: The first 16 bytes of every SQLite database file.
SQLITE_HEADER = b"SQLite format 3\x00"
#: The folder, under a project's folder, where batches keep their stores.
RESULTS_FOLDER = "_res"


@dataclass(frozen=True)
class Target:
    """The store a ``STORE`` argument means, and the batch it named, if it named one."""

    path: str
    batch: str | None = None


def _header(path: Path) -> bytes | None:
    """The first 100 bytes of a regular file (``None`` for anything else); never blocks."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None  # a FIFO, device or folder: opened without blocking, never read
        return os.read(fd, 100)
    except OSError:
        return None
    finally:
        os.close(fd)


def is_store_file(path: Path) -> bool:
    """Whether ``path`` is a runstore store (or bundle) file, judged by its content."""
    head = _header(path)
    if head is None or len(head) < 100 or not head.startswith(SQLITE_HEADER):
        return False
    marker = int.from_bytes(head[68:72], "big")
    if marker == APPLICATION_ID:
        return True
    if marker != 0:
        return False  # another application's SQLite file
    return _has_runstore_schema(path)


def _has_runstore_schema(path: Path) -> bool:
    """Whether an unmarked SQLite file has runstore's tables and a revision it wrote."""
    from .storefile import survey

    uri = f"file:{quote(os.fsencode(path.resolve()))}?mode=ro&immutable=1"
    try:
        conn = sqlite3.connect(uri, uri=True)
    except sqlite3.Error:
        return False
    try:
        conn.execute("PRAGMA trusted_schema = OFF")
        found = survey(lambda sql: conn.execute(sql).fetchall(), str(path))
    except (sqlite3.Error, RunstoreError):
        return False
    finally:
        conn.close()
    return not found.empty


def stores_in(folder: Path) -> list[Path]:
    """The store files directly in ``folder`` and in its ``_res/``, sorted by path."""
    return stores_in_folder(folder) + stores_in_folder(folder / RESULTS_FOLDER)


def stores_in_folder(where: Path) -> list[Path]:
    """The store files directly in one folder, sorted by path."""
    try:
        entries = sorted(where.iterdir())
    except OSError:
        return []
    return [p for p in entries if not p.name.startswith(".")
            and not p.name.endswith(("-wal", "-shm", "-journal")) and is_store_file(p)]


def _nearest(here: Path) -> tuple[Path, list[Path]]:
    """The stores of ``here`` (and its ``_res/``), else of the nearest ``_res/`` above it.

    As git finds its repository: from a subfolder of a project, the store in
    the project's ``_res/``. Above ``here`` only ``_res/`` folders are looked
    in (not every file of every folder), on ``here``'s filesystem; where the
    stores were found is said on standard error.
    """
    found = stores_in(here)
    if found:
        return here, found
    try:
        device = os.stat(here).st_dev
        above = here.resolve().parents
    except OSError:
        return here, found
    relative = here
    for parent in above:
        relative = relative / ".."
        try:
            if os.stat(parent).st_dev != device:
                break
        except OSError:
            break
        results = relative / RESULTS_FOLDER
        if not os.path.isdir(results):
            continue
        stores = stores_in_folder(results)
        if stores:
            print(f"runstore: using the stores of {os.path.normpath(results)}",
                  file=sys.stderr, flush=True)
            return relative, stores
    return here, found


def _shown(paths: list[Path]) -> list[str]:
    return [str(p) for p in paths]


def _the_one(stores: list[Path], where: str, argument: str) -> Path:
    """The only store of ``stores``, or an error that lists them."""
    if len(stores) == 1:
        return stores[0]
    if not stores:
        raise StoreNotFoundError(
            argument, f"no runstore store in {where} or its {RESULTS_FOLDER}/ folder; give "
            "the path of a store's .db file (runstore STORE ...), or run the command in the "
            "folder that holds the store or its _res/ folder")
    names = _shown(stores)
    raise StoreNotFoundError(
        argument, f"{len(stores)} stores in {where} and its {RESULTS_FOLDER}/ folder: "
        f"{', '.join(names)}; name one (its path, or a batch it holds)", names)


def _holding(stores: list[Path], name: str
             ) -> tuple[list[Path], dict[Path, RunstoreError]]:
    """The stores that hold a batch called ``name``, and those that cannot be read (why)."""
    from .store import Store

    holding = []
    unreadable: dict[Path, RunstoreError] = {}
    for path in stores:
        try:
            opened = Store(path, readonly=True)
        except RunstoreError as exc:
            unreadable[path] = exc
            continue
        try:
            if name in opened.batch_names():
                holding.append(path)
        finally:
            opened.close()
    return holding, unreadable


def resolve(argument: str | None, folder: Path | None = None, must_exist: bool = True
            ) -> Target:
    """The store that a command line's ``STORE`` argument (or its absence) means.

    ``must_exist=False`` takes a path where nothing is yet as it is (a store
    to be created); otherwise naming nothing that exists is an error.

    Raises
    ------
    StoreNotFoundError
        When no store, or more than one, answers to ``argument``.
    """
    here = folder or Path(".")
    if argument is None:
        near, stores = _nearest(here)
        if not stores:
            raise StoreNotFoundError(
                ".", f"no runstore store in the current folder, its {RESULTS_FOLDER}/ folder "
                "or the folders above them; give the path of a store's .db file (runstore "
                "STORE ...), or run the command in the folder that holds the store or its "
                f"{RESULTS_FOLDER}/ folder (or in a folder below it)")
        return Target(str(_the_one(stores, "the current folder" if near == here else
                                   f"{near} (the nearest folder above with a store)", ".")))
    path = here / argument
    if os.path.isdir(path):
        inside = stores_in(path)
        if inside or os.sep in argument or "/" in argument:
            return Target(str(_the_one(inside, argument, argument)))
        # A folder without stores that is named like a batch: the batch, if one is here.
        holding, _ = _holding(_nearest(here)[1], argument)
        if len(holding) == 1:
            return Target(str(holding[0]), argument)
        return Target(str(_the_one(inside, argument, argument)))
    if os.path.lexists(path) or not must_exist:
        return Target(str(path) if folder else argument)  # a path: taken as it is
    if os.sep in argument or "/" in argument:
        raise StoreNotFoundError(argument, f"{argument} does not exist; check the path")
    _, stores = _nearest(here)
    holding, unreadable = _holding(stores, argument)
    for path, exc in unreadable.items():
        if path.stem == argument:  # the batch's own store (Batch(name) makes _res/<name>.db)
            raise exc
    if len(holding) == 1:
        return Target(str(holding[0]), argument)
    if holding:
        names = _shown(holding)
        raise StoreNotFoundError(
            argument, f"{len(holding)} stores hold a batch {argument!r}: {', '.join(names)}; "
            "give the path of the one you mean", names)
    known = ", ".join(_shown(stores)) or f"none in this folder or its {RESULTS_FOLDER}/"
    unread = "".join(f"; {path} cannot be read, so its batches are unknown ({exc})"
                     for path, exc in unreadable.items())
    raise StoreNotFoundError(
        argument, f"{argument!r} is no file, folder or batch of a store found here "
        f"(stores found: {known}){unread}; check the name, or give the path of a store's "
        ".db file", _shown(stores))
