"""What lies at a store's path, found before runstore opens it for real. Internal module.

:func:`survey_path` says whether a path holds a runstore file (and at which
schema revision), nothing yet (a new store), or something runstore must
refuse, and it does so without changing anything:

- the kind of file is found with ``os.stat``, which opens nothing: a FIFO,
  socket, device or directory is refused before SQLite could block on it;
- the marker (``PRAGMA application_id``), the tables and the schema revision
  are read by a SQLite connection of its own, before any ``journal_mode``
  change or migration. The ``.db`` file is never opened outside SQLite:
  closing any descriptor of it drops every POSIX lock this process holds on
  it, and another process could then delete the write-ahead log still in use
  here. SQLite's unix VFS shares locks and descriptors between the
  connections of one process, so its connections are safe.

:func:`survey` is the same reading on a connection runstore already holds;
the store repeats it inside the write transaction that creates or upgrades
the schema, so that processes starting together decide once.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .errors import NotAStoreError, StoreLogUnreadableError
from .schema import APPLICATION_ID, RUNSTORE_TABLES, SCHEMA_REVISION, Base
from .writerhost import pending_log, read_only_filesystem, reading_query

__all__ = ["Survey", "survey", "survey_path", "require_regular_files", "reading_mode",
           "reading_uri", "SIDE_SUFFIXES"]

#: The files SQLite keeps beside a database file.
SIDE_SUFFIXES = ("-wal", "-shm", "-journal")

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"))

#: Runs one SQL statement and returns its rows.
Query = Callable[[str], Sequence[Sequence[Any]]]


@dataclass(frozen=True)
class Survey:
    """What a SQLite file holds, as far as runstore is concerned.

    ``revision`` is ``None`` for an empty file (a new store); ``marked`` says
    whether the file carries runstore's ``application_id`` (stores written
    before the marker existed do not).
    """

    revision: str | None
    marked: bool

    @property
    def empty(self) -> bool:
        """Whether the file holds nothing yet: the schema is to be created."""
        return self.revision is None


def _kind_of(mode: int) -> str | None:
    """What a file is, if it is not a regular file."""
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return None if stat.S_ISREG(mode) else "not a regular file"


def require_regular_files(db: Path) -> int | None:
    """Refuse a store path, or a SQLite side file of it, that is not a regular file.

    Returns the size of the ``.db`` file, or ``None`` if there is none.
    Nothing is opened (``os.stat`` only), so a FIFO cannot block.
    """
    size: int | None = None
    real = Path(os.path.realpath(db))  # SQLite keeps its side files beside the target
    for path in (db, *(real.with_name(real.name + suffix) for suffix in SIDE_SUFFIXES)):
        try:
            info = os.stat(path)
        except FileNotFoundError:
            if os.path.islink(path) and not os.path.exists(path):
                raise NotAStoreError(str(db), f"{path} is a symbolic link to nothing") from None
            try:  # another process may have just made it (SQLite's -wal and -shm)
                info = os.stat(path)
            except FileNotFoundError:
                continue
        except NotADirectoryError:
            raise NotAStoreError(str(db), "a part of its folder path is not a folder") from None
        kind = _kind_of(info.st_mode)
        if kind is not None:
            where = "it" if path == db else f"{path.name} beside it"
            raise NotAStoreError(str(db), f"{where} is {kind}, not a regular file")
        if path == db:
            size = info.st_size
    return size


def survey(query: Query, path: str) -> Survey:
    """Read the marker, tables and revision of an open SQLite file; refuse a foreign one.

    Only ``sqlite_master`` and (in a runstore file) the ``alembic_version``
    table are read: never views or other SQL objects of the file.
    """
    marker = int(query("PRAGMA application_id")[0][0])
    if marker not in (0, APPLICATION_ID):
        raise NotAStoreError(path, f"it is a SQLite database of another application "
                             f"(application_id {marker:#010x}; runstore's is "
                             f"{APPLICATION_ID:#010x}). It was left unchanged")
    objects = {(str(kind), str(name)) for kind, name in
               query("SELECT type, name FROM sqlite_master")}
    if not objects and marker == 0:
        return Survey(None, False)  # an empty database: nobody's yet
    tables = {name for kind, name in objects if kind == "table"}
    missing = set(RUNSTORE_TABLES) - tables
    _refuse_shadows(objects, missing, path)
    if missing:
        if marker == 0:
            raise NotAStoreError(path, "it is a SQLite database without runstore's tables "
                                 f"(it has {sorted(tables)}). It was left unchanged")
        raise NotAStoreError(path, f"it is marked as a runstore file but its tables "
                             f"{sorted(missing)} are missing: it is damaged. Restore it "
                             "from a copy")
    revisions = query("SELECT version_num FROM alembic_version")
    revision = str(revisions[0][0]) if len(revisions) == 1 else None
    if marker == 0 and not _known(revision):
        raise NotAStoreError(path, f"it has tables named like runstore's but no runstore "
                             f"marker and no runstore schema revision (alembic_version "
                             f"holds {[r[0] for r in revisions]}). It was left unchanged")
    if revision is None:
        raise NotAStoreError(path, "it is marked as a runstore file but records no schema "
                             "revision: it is damaged. Restore it from a copy")
    absent = sorted(set(Base.metadata.tables) - tables) if revision == SCHEMA_REVISION else []
    _refuse_shadows(objects, absent, path)
    if absent:
        raise NotAStoreError(path, f"it records schema revision {revision} but its tables "
                             f"{absent} are missing: it was changed outside runstore or is "
                             "damaged. Restore it from a copy")
    return Survey(revision, marker == APPLICATION_ID)


def _refuse_shadows(objects: set[tuple[str, str]], absent: Iterable[str], path: str) -> None:
    """Refuse a file where a table runstore reads is missing and another object has its name."""
    names = {t.lower() for t in absent}
    shadows = sorted((name, kind) for kind, name in objects
                     if kind != "table" and name.lower() in names)
    if shadows:
        name, kind = shadows[0]
        raise NotAStoreError(path, f"its {name} is a {kind}, not a table: the file was "
                             "changed outside runstore and may be hostile or damaged. It "
                             "was left unchanged")


def _known(revision: str | None) -> bool:
    """Whether a revision is one runstore ever wrote (Alembic loads only if needed)."""
    if revision is None:
        return False
    if revision == SCHEMA_REVISION:
        return True
    from . import migration

    return migration.is_known(revision)


def survey_path(db: Path, readonly: bool) -> Survey:
    """What the store file at ``db`` holds; nothing at all is a new, empty store.

    Raises :class:`~runstore.errors.NotAStoreError` for anything runstore
    must not open (and, read-only, for a file that does not exist or is
    empty). The file is left byte for byte as it was, and no ``-wal`` or
    ``-shm`` file is left beside it that was not there before.
    """
    size = require_regular_files(db)
    if size is None and readonly:
        raise NotAStoreError(str(db), "the file does not exist")
    if not size:
        if readonly:
            raise NotAStoreError(str(db), "it is an empty file")
        return Survey(None, False)
    conn = sqlite3.connect(reading_uri(db), uri=True, isolation_level=None,
                           check_same_thread=False)
    try:
        conn.execute("PRAGMA busy_timeout = 60000")
        conn.execute("PRAGMA trusted_schema = OFF")
        conn.execute("PRAGMA query_only = ON")
        found = survey(lambda sql: conn.execute(sql).fetchall(), str(db))
    except sqlite3.DatabaseError as exc:
        log = pending_log(db) if read_only_filesystem(db) else None
        if log is not None:
            raise StoreLogUnreadableError(str(db), log) from exc
        raise NotAStoreError(str(db), f"it is not a SQLite database, or a damaged one "
                             f"(SQLite says: {exc}). It was left unchanged") from exc
    finally:
        conn.close()
    if found.empty and readonly:
        raise NotAStoreError(str(db), "it is an empty SQLite database")
    return found


def reading_mode(db: Path) -> str:
    """How a connection that only reads opens the file (``mode=`` of its URI).

    Reading a file in WAL mode makes SQLite create ``-wal`` and ``-shm``
    beside it; a read-write connection (which only reads: ``query_only``)
    removes them again when it is the last to close, a read-only one cannot.
    Where a ``-wal`` exists already, the file is in use or was left by a
    writer that stopped, and a read-write connection closing last would copy
    that log into the file; where a ``-journal`` exists, a read-write
    connection would roll it back into the file: a read-only one is used then.
    """
    left = [db.with_name(db.name + suffix) for suffix in ("-wal", "-journal")]
    if (not any(os.path.lexists(path) for path in left) and os.access(db, os.W_OK)
            and os.access(db.parent, os.W_OK)):
        return "rw"
    return "ro"


def reading_uri(db: Path) -> str:
    """The SQLite URI with which a connection that only reads opens ``db``.

    On a local disk, ``mode=`` is :func:`reading_mode`'s. On a filesystem
    other hosts mount, the file is opened ``immutable`` (no locks, no
    ``-wal``/``-shm`` made) when nobody writes it, and refused otherwise
    (see :func:`runstore.writerhost.reading_query`).
    """
    query = reading_query(db, writable=reading_mode(db) == "rw")
    return f"file:{quote(os.fsencode(db.resolve()))}?{query}"
