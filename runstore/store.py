"""The store: runs, their states and results in SQLite, arrays in HDF5 side files.

A :class:`Store` is one SQLite file (WAL mode, busy timeout) plus a folder of
HDF5 side files beside it (``<name>.arrays/``). With its two helpers,
:mod:`runstore.views` (each batch's SQL view) and :mod:`runstore.check`
(consistency checks), it is the only code that speaks SQL to the run tables.
Its invariants:

- registering runs is a few bulk statements per call, whatever the count;
- a run's state changes only by compare-and-set statements (a claim is one
  ``UPDATE ... RETURNING``), and no computation runs inside a transaction;
- a result's rows are committed only after its side file is closed, and a
  side file that rows point into is never opened for writing again;
- opening, querying and loading never unpickle and never import code, unless
  asked to (``allow_pickle=True``, or the run class being present).
"""

from __future__ import annotations

import errno
import os
import random
import re
import socket
import sqlite3
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
import json
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any, NamedTuple, TypeVar
from urllib.parse import quote

import numpy as np
import psutil
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.pool import StaticPool

from .arrays import ArrayStore, MemoryArrayStore, RunInfo, expected_array, full_disk_error
from .compression import ArrayOptions
from .encoding import Indexed
from .errors import (
    ArrayFileError,
    DuplicateResultWarning,
    ResultsNotRecordedError,
    RunstoreError,
    ReadOnlyStoreError,
    RunNotFound,
    SchemaOutdatedError,
    SchemaTooNewError,
    StoreOptionError,
    UpgradeBlockedError,
)
from .interfaces import IRunStore, implementer
from .leases import HELD, Heartbeat, clock, lease_seconds, owner_is_dead
from .query import Known, Query
from .counts import count_values, recount
from . import slots
from .check import BUNDLE_MARK, ORPHAN_AGE, CheckReport, GcReport, check_store, collect_garbage
from .schema import APPLICATION_ID, SCHEMA_REVISION, SYNCHRONOUS, Base, RunState
from .storefile import Survey, reading_mode, require_regular_files, survey, survey_path
from .writerhost import (WriterClaim, claim, older_writer, reading_query,
                         refuse_network_write, unclaim)
from .guard import bound_queries, query_time_limit, raise_if_timed_out, refuse_shadowed_tables
from .views import (
    batch_columns,
    batch_select,
    check_view_name,
    column_type,
    create_view,
    parse_kinds,
)

__all__ = ["Store", "RunRow", "Appended", "Removal", "Completion", "Adopted", "Reserve",
           "owner_token", "sqlite_url"]

_STATE_VALUES = {state: state.value for state in RunState}
_DONE = RunState.DONE
#: Pages of write-ahead log after which a commit copies the log into the database.
_CHECKPOINT_PAGES = 10_000
#: States in which a finished result is recorded, and in which it is a duplicate.
_OPEN, _CLOSED = ("running", "pending"), ("done", "failed")


#: The columns of ``runs`` that hold a run's outcome (taken over on import).
_RESULT_COLUMNS = ("state", "result", "array_file", "error_type", "error_message", "traceback",
                   "attempts", "started_at", "finished_at", "runtime", "host", "pid",
                   "runstore_version", "python_version", "code_fingerprint", "result_origin")


@dataclass
class Adopted:
    """A run taken from another store: its ``runs`` row and its typed rows.

    ``scalars`` is empty unless the run is done. The row's
    ``parameters_origin`` and ``result_origin`` say where its parameters and
    result came from, unless trusted (NULL).
    """

    record: dict[str, Any]
    parameters: dict[str, Indexed]
    scalars: dict[str, Indexed]
    #: Set when the run turned out to be new to the store it was adopted by.
    new: bool = False

    def without_result(self) -> Adopted:
        """The same run, pending: its result's arrays did not come with it."""
        record = dict(self.record)
        record.update({column: None for column in _RESULT_COLUMNS})
        record.update(state=RunState.PENDING.value, attempts=0)
        return Adopted(record, self.parameters, {})

    def row(self, array_file: str | None) -> dict[str, Any]:
        """The row to insert here: claims dropped, arrays in ``array_file``."""
        row = dict(self.record)
        running = row["state"] == RunState.RUNNING.value
        row.update(owner=None, lease_expires=None,
                   state=RunState.PENDING.value if running else row["state"],
                   array_file=array_file if row["array_file"] and not running else None)
        return row


def owner_token() -> str:
    """Identify this process uniquely: host, pid and process start time."""
    proc = psutil.Process()
    return f"{socket.gethostname()}:{proc.pid}:{proc.create_time():.3f}"


class RunRow(NamedTuple):
    """A run as the store holds it, without its result.

    A named tuple: batches make one per run they list or claim, often
    hundreds of thousands at a time.
    """

    position: int
    id: str
    run_type: str
    parameters: str
    state: str
    key: int


class Appended(NamedTuple):
    """What :meth:`Store.add_runs` appended to a batch.

    The run ``ids[i]`` is at position ``start + i`` with row key ``keys[i]``;
    it was new to the store, so inserted PENDING, if its key is ``first_new``
    or more.
    """

    ids: list[str]
    keys: list[int]
    start: int
    first_new: int


@dataclass
class Removal:
    """What :meth:`Store.remove_runs` did."""

    #: Runs taken out of the batch.
    removed: int = 0
    #: Of those, runs another batch still holds (kept, with their results).
    shared: int = 0
    #: Runs no batch held any more that were deleted (``delete_unheld``).
    deleted: int = 0
    #: Runs no batch held any more that were kept because they were being computed.
    running: int = 0
    #: Ids asked for that the batch does not hold.
    missing: list[str] = field(default_factory=list)


@dataclass
class Completion:
    """The outcome of one run, ready to be committed."""

    run_id: str
    run_key: int
    state: RunState
    result_json: str | None = None
    scalars: dict[str, Indexed] | None = None
    arrays: dict[str, np.ndarray] | None = None
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    runtime: float | None = None
    code_fingerprint: str | None = None
    #: FFTW wisdom the worker gained (set on one completion of a chunk, if any).
    wisdom: tuple[bytes, ...] = ()
    #: The run's type and parameters document, and its arrays' CRC-32s by
    #: name: recorded as attributes in the side file beside the arrays.
    run_type: str | None = None
    parameters: str | None = None
    checksums: dict[str, int] | None = None
    #: The host and process that computed the run, when not the claimer (a
    #: pool worker, an ipyparallel engine): recorded as its provenance.
    host: str | None = None
    pid: int | None = None

    def array_info(self) -> RunInfo:
        """What the side file records about the run beside its arrays."""
        info = RunInfo()
        if self.run_type is not None:
            info["run_type"] = self.run_type
        if self.parameters is not None:
            info["parameters"] = self.parameters
        if self.checksums is not None:
            info["checksums"] = self.checksums
        return info


def sqlite_url(db: str | os.PathLike[str], readonly: bool = False,
               query: str | None = None) -> sa.URL:
    """The SQLAlchemy URL of a SQLite file, whatever characters its path holds.

    ``query`` is the URI query of a read-only open (default ``mode=ro``; see
    :func:`runstore.writerhost.reading_query`).
    """
    if not readonly:
        return sa.URL.create("sqlite", database=str(db))
    # A file: URI opens read-only; the path is quoted, since '?', '#' and '%'
    # mean something in a URI.
    options = dict(part.split("=", 1) for part in (query or "mode=ro").split("&"))
    return sa.URL.create("sqlite", database=f"file:{quote(os.fsencode(db))}",
                         query={**options, "uri": "true"})


def arrays_folder(db_path: Path) -> Path:
    """The folder of side files that belongs to a store file."""
    return db_path.with_name(db_path.name.removesuffix(".db") + ".arrays")


class Reserve:
    """A few MiB of disk held by a drain, freed when the disk is full (see Store.draining)."""

    SIZE = 4 * 2**20

    def __init__(self, path: Path | None) -> None:
        self.path = path
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "wb") as f:
                    try:  # blocks allocated without writing them: a tenth of the time
                        os.posix_fallocate(f.fileno(), 0, self.SIZE)
                    except OSError as exc:
                        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                            raise
                        f.write(b"\0" * self.SIZE)  # a filesystem without fallocate
            except OSError:  # no room even for this: nothing to free later
                self.free()

    def free(self) -> None:
        """Delete the reserve file (again is harmless)."""
        if self.path is not None:
            try:
                self.path.unlink(missing_ok=True)
            except OSError:
                pass
            self.path = None


@implementer(IRunStore)
class Store:
    """A runstore store file, opened.

    Only processes of the host where a store lives may write it (SQLite's
    write-ahead log works on one host only): a store opened for writing is
    refused on a network filesystem, or while a process of another host
    writes it. Read-only opens are allowed anywhere while nobody writes the
    store (see :mod:`runstore.writerhost`).

    Parameters
    ----------
    path
        The SQLite file; created (with its folder) if it does not exist, unless
        ``readonly``. ``None`` makes a store in memory that vanishes with the
        process (what ``Batch(..., saveresult=False)`` uses).
    readonly
        Open without writing anything: queries and loads only.
    allow_pickle
        Store results that have no canonical encoding as pickles, and load
        pickles. Pickles can run code when loaded: only for stores you trust.
    arrays
        The folder of the side files, if not ``<name>.arrays`` beside the
        file (a bundle keeps its one side file beside its ``.db``).
    synchronous
        SQLite's ``PRAGMA synchronous`` for every connection: ``"normal"``
        (the default: a power cut may roll back the last transactions, never
        corrupt the store), ``"full"`` or ``"extra"`` (every committed
        transaction survives a power cut, at the cost of an fsync per commit).
        A process killed (``kill -9``) loses nothing committed at any level.
    lease
        Seconds a claim of this process lasts without a heartbeat (default:
        ``RUNSTORE_LEASE`` or 600). Drains extend their leases while they
        compute; a lease only matters to workers on other hosts, since a run
        claimed by a live process of the store's host is never taken from it.
        It is also how long this process's writer record lasts unless renewed.

    Raises
    ------
    NotAStoreError
        If ``path`` is not a regular file (a FIFO, socket, device or
        directory), not a SQLite file, or a SQLite file of another
        application (it is left unchanged).
    StoreOptionError
        If ``synchronous`` is not one of the levels above.
    NetworkFilesystemError
        If opened for writing on a filesystem other hosts mount (NFS, Lustre,
        GPFS, SMB, sshfs ...), or read-only there while it is being written.
    OtherHostWritingError
        If another host writes the store, or did and its record has not expired.
    """

    def __init__(self, path: str | os.PathLike[str] | None, readonly: bool = False,
                 allow_pickle: bool = False,
                 arrays: str | os.PathLike[str] | None = None,
                 synchronous: str = "normal", lease: float | None = None,
                 *, _private: bool = False) -> None:
        self.readonly = readonly
        self.allow_pickle = allow_pickle
        self.synchronous = _synchronous_level(synchronous)
        self.owner = owner_token()
        self.lease = lease_seconds(lease)
        self._claims: set[int] = set()  # held by drains using this object
        self._claims_lock = threading.Lock()
        self._kept: tuple[int, Any, Known] | None = None  # see _kept_reader
        self._kept_lock = threading.Lock()
        self._columns_seen: dict[tuple[int, str, str], frozenset[str]] = {}
        self._found = Survey(None, False)
        self._writer: WriterClaim | None = None
        if path is None:
            self.path = ":memory:"
            self.engine = sa.create_engine("sqlite://", poolclass=StaticPool)
            self.arrays: ArrayStore = MemoryArrayStore()
        else:
            db = Path(path)
            self.path = str(db)
            # _private: runstore's own new file that no other process opens (a
            # bundle being written), so the one-writer-host checks do not apply.
            if not readonly and not _private:
                self._writer = self._become_writer(db)
            try:
                self._found = self._validate_file(db)
                # Read-write but query_only where nothing is in the way, so that
                # closing removes the -wal and -shm that reading makes.
                query = None if not readonly else reading_query(
                    db, writable=reading_mode(db) == "rw")
            except BaseException:
                self._unclaim()
                raise
            self.engine = sa.create_engine(sqlite_url(db, readonly, query))
            self.arrays = ArrayStore(arrays if arrays is not None else arrays_folder(db))
        # Claims held in this process are tracked per file, whatever object opened it.
        self._file = (f":memory:{id(self)}" if path is None
                      else os.path.realpath(self.path))
        event.listen(self.engine, "connect", self._on_connect)
        event.listen(self.engine, "begin", self._on_begin)
        event.listen(self.engine, "connect", self._bound_queries)
        try:
            self._check_schema()
            if not readonly:
                self.recover()
        except BaseException:
            self.close()
            raise

    # -- opening ------------------------------------------------------------------

    def _become_writer(self, db: Path) -> WriterClaim:
        """Refuse a store on a network filesystem or written by another host; else
        record this process as one of its writers (see :mod:`runstore.writerhost`)."""
        refuse_network_write(db)
        require_regular_files(db)  # before making its folder: a part may not be a folder
        db.parent.mkdir(parents=True, exist_ok=True)
        return claim(db, self.lease)

    def _unclaim(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            unclaim(writer)

    def _validate_file(self, db: Path) -> Survey:
        """What the file holds, found before any connection can change it.

        Never opened outside SQLite (see :mod:`runstore.storefile`): closing a
        descriptor of it would drop this process's locks on it.
        """
        return survey_path(db, self.readonly)

    def _on_connect(self, dbapi_conn: Any, record: Any) -> None:
        dbapi_conn.isolation_level = None  # transactions are begun explicitly below
        cursor = dbapi_conn.cursor()
        if self.readonly:  # opened mode=rw where that lets closing clean up: never write
            cursor.execute("PRAGMA query_only = ON")
        cursor.execute("PRAGMA busy_timeout = 60000")
        # Run ids are random keys: B-tree inserts touch pages all over the
        # file, so a page cache larger than SQLite's 2 MB default pays off.
        cursor.execute("PRAGMA cache_size = -131072")  # KiB, i.e. up to 128 MiB
        cursor.execute("PRAGMA temp_store = MEMORY")
        # A file may come from anyone: its views and triggers may not call
        # functions with side effects.
        cursor.execute("PRAGMA trusted_schema = OFF")
        if not self.readonly and self.path != ":memory:":
            # Only once the file was found to be runstore's (or new): the
            # switch to WAL writes to the file.
            _use_wal(cursor)
            # A drain commits every second or so; at SQLite's default (1000
            # pages) every few commits then copied the log into the file and
            # synced both, which took a third of a 100,000-run sweep on a
            # busy disk. The log may now grow to about 40 MB between copies.
            cursor.execute(f"PRAGMA wal_autocheckpoint = {_CHECKPOINT_PAGES}")
        cursor.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
        cursor.close()

    #: Seconds one query may take on a store opened read-only (a file runstore
    #: may not have written); None: ``RUNSTORE_QUERY_TIME_LIMIT``, or 30 s.
    query_time_limit: float | None = None

    def _time_limit(self) -> float:
        return self.query_time_limit or query_time_limit()

    def _bound_queries(self, dbapi_conn: Any, record: Any) -> None:
        """On files opened read-only: bound each query's time, refuse shadowed tables."""
        if self.readonly:
            bound_queries(dbapi_conn, self._time_limit)
            refuse_shadowed_tables(dbapi_conn, self.path,
                                   [*Base.metadata.tables, "alembic_version"])

    def _on_begin(self, conn: sa.Connection) -> None:
        # Straight to sqlite3: SQLAlchemy's work around one statement cost
        # more than a small query (about 40 us against 30 for the query).
        statement = conn.info.get("begin", "BEGIN")
        try:
            conn.connection.driver_connection.execute(statement)  # type: ignore[union-attr]
        except sqlite3.Error as exc:  # as SQLAlchemy would raise it
            raise sa.exc.DBAPIError.instance(statement, (), exc, sqlite3.Error) from exc

    @contextmanager
    def _writing(self, action: str = "write to the store") -> Iterator[sa.Connection]:
        """A write transaction that takes the write lock at once (BEGIN IMMEDIATE)."""
        if self.readonly:
            raise ReadOnlyStoreError(self.path, action)
        if self._writer is not None:
            self._writer.confirm()  # renewed after a quarter lease; refused if another host
        with self.engine.connect() as conn:
            conn.info["begin"] = "BEGIN IMMEDIATE"
            try:
                with conn.begin():
                    yield conn
                # Known only once committed: a rolled-back transaction's
                # columns are recorded again by the next one.
                self._columns_seen.update(conn.info.get("columns_seen", {}))
            except sa.exc.OperationalError as exc:  # SQLITE_FULL: say which disk, what to do
                if self.path != ":memory:" and _disk_full(exc):
                    raise full_disk_error(Path(self.path), action) from exc
                raise
            finally:
                conn.info["begin"] = "BEGIN"
                conn.info.pop("columns_seen", None)

    @contextmanager
    def _reading(self) -> Iterator[sa.Connection]:
        held = self._snapshots().get(threading.get_ident())
        if held is not None:  # inside snapshot(): every read sees the same state
            yield held
            return
        with self.engine.connect() as conn, conn.begin():
            try:
                yield conn
            except sa.exc.OperationalError as exc:
                raise_if_timed_out(exc, self.path, self._time_limit())
                raise

    def _snapshots(self) -> dict[int, sa.Connection]:
        found: dict[int, sa.Connection] = self.__dict__.setdefault("_snapshot_conns", {})
        return found

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Make every read of this thread inside the block see one consistent state.

        The reads share one SQLite read transaction (in WAL mode a snapshot:
        writers go on, and their commits are not seen until the block ends).
        Nested blocks share the outer snapshot. Writes are not allowed inside.
        """
        held = self._snapshots()
        me = threading.get_ident()
        if me in held:
            yield
            return
        with self.engine.connect() as conn, conn.begin():
            # SQLite starts a read transaction at its first read, not at BEGIN.
            conn.exec_driver_sql("SELECT COUNT(*) FROM batches").scalar()
            held[me] = conn
            try:
                yield
            finally:
                del held[me]

    def _check_schema(self) -> None:
        """Refuse a schema too new (or too old, read-only); create, mark or upgrade it."""
        found = self._found
        if found.revision == SCHEMA_REVISION and (found.marked or self.readonly):
            return  # the usual case: nothing to write
        if found.revision is not None and found.revision != SCHEMA_REVISION:
            from . import migration

            if not migration.is_known(found.revision):
                raise SchemaTooNewError(self.path, found.revision, SCHEMA_REVISION)
            if self.readonly:
                raise SchemaOutdatedError(self.path, found.revision, SCHEMA_REVISION)
        self._create_schema()

    def _create_schema(self) -> None:
        """Create the schema, or mark and upgrade an older one, in one write transaction.

        What to do is decided again inside the transaction (BEGIN IMMEDIATE),
        so that processes opening the same file at once do it exactly once.
        """
        with self._writing("create the store's tables") as conn:
            found = survey(lambda sql: conn.exec_driver_sql(sql).all(), self.path)
            if found.revision is None:
                Base.metadata.create_all(conn)
                conn.exec_driver_sql(
                    "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
                    "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))")
                conn.exec_driver_sql("INSERT INTO alembic_version VALUES (?)",
                                     (SCHEMA_REVISION,))
            elif found.revision != SCHEMA_REVISION:
                from . import migration

                if not migration.is_known(found.revision):
                    raise SchemaTooNewError(self.path, found.revision, SCHEMA_REVISION)
                if self.path != ":memory:" and (older := older_writer(Path(self.path))):
                    raise UpgradeBlockedError(self.path, found.revision, SCHEMA_REVISION,
                                              older.pid, older.host, str(older.path))
                migration.upgrade(conn)
                for (batch,) in conn.exec_driver_sql("SELECT id FROM batches").all():
                    create_view(conn, batch)  # stores from before views had none
            if not found.marked:
                conn.exec_driver_sql(f"PRAGMA application_id = {int(APPLICATION_ID)}")
        if not found.marked or found.revision != SCHEMA_REVISION:
            # The mark and the tables reach the file itself now, not only its
            # -wal: a command line finds a store by its first bytes, also
            # while the process that made it still has it open.
            with self.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def recover(self) -> int:
        """Return to PENDING the runs whose owner is gone; return how many.

        Those are the runs claimed by processes of this host that died (a
        zombie counts as dead), the runs of this process that none of its
        drains holds any more (stranded when their drain could record neither
        result nor release), and the runs of other hosts whose lease expired.
        A run claimed by a live process of this host is never taken from it,
        whatever its lease says.
        """
        with self._reading() as conn:
            if conn.exec_driver_sql(
                    "SELECT 1 FROM runs WHERE state = 'running' LIMIT 1").scalar() is None:
                return 0
        host = socket.gethostname()
        with self._writing("recover runs") as conn:
            owners = [row[0] for row in conn.exec_driver_sql(
                "SELECT DISTINCT owner FROM runs WHERE state = 'running'")]
            dead = [o for o in owners if o != self.owner and owner_is_dead(o, host)]
            released = sum(conn.exec_driver_sql(
                "UPDATE runs SET state = 'pending', owner = NULL, lease_expires = NULL "
                "WHERE state = 'running' AND owner IS ?", (owner,)).rowcount for owner in dead)
            if self.owner in owners:
                released += self._release_stranded(conn)
            # Leases decide only for owners whose liveness cannot be seen here.
            alive = [o for o in owners if o not in dead and _on_host(o, host)]
            spared = f" AND owner NOT IN ({','.join('?' * len(alive))})" if alive else ""
            released += conn.exec_driver_sql(
                "UPDATE runs SET state = 'pending', owner = NULL, lease_expires = NULL "
                f"WHERE state = 'running' AND lease_expires < ?{spared}",
                (clock(), *alive)).rowcount
        return released

    def _release_stranded(self, conn: sa.Connection) -> int:
        """Release this process's RUNNING runs that no drain of it holds."""
        held = HELD.held(self._file)  # read inside the write transaction: claims
        # register their runs before they commit, so none is missed
        stranded = [key for (key,) in conn.exec_driver_sql(
            "SELECT key FROM runs WHERE state = 'running' AND owner = ?", (self.owner,))
            if key not in held]
        released = 0
        for chunk in _chunks(stranded):
            released += conn.exec_driver_sql(
                "UPDATE runs SET state = 'pending', owner = NULL, lease_expires = NULL "
                f"WHERE key IN ({','.join('?' * len(chunk))}) AND state = 'running' "
                "AND owner = ?", (*chunk, self.owner)).rowcount
        return released

    # -- batches and registration ---------------------------------------------------

    def batch_id(self, name: str, create: bool = True) -> int | None:
        """Return the id of a batch, creating it if asked."""
        with self._reading() as conn:
            found = conn.exec_driver_sql(
                "SELECT id FROM batches WHERE name = ?", (name,)).scalar()
        if found is not None or not create:
            return found
        with self._writing("create a batch") as conn:
            # Decided again inside the write transaction: another process may
            # have created the batch since.
            raced: int | None = conn.exec_driver_sql(
                "SELECT id FROM batches WHERE name = ?", (name,)).scalar()
            if raced is not None:
                return raced
            check_view_name(conn, name)
            created: int = conn.exec_driver_sql(
                "INSERT INTO batches (name, created_at) VALUES (?, ?) RETURNING id",
                (name, time.time())).scalar_one()
            create_view(conn, created)  # with the row, or neither
            return created

    def batch_names(self) -> list[str]:
        with self._reading() as conn:
            return [r[0] for r in conn.exec_driver_sql("SELECT name FROM batches ORDER BY id")]

    def add_runs(self, batch: int, runs: Sequence[tuple[str, str, str, dict[str, Indexed]]]
                 ) -> Appended:
        """Append runs ``(id, run_type, parameters_json, indexed)`` to a batch.

        Runs new to the store are inserted PENDING with their typed
        parameters; runs already stored keep their state and result. Runs
        already in the batch (or given twice) are not appended again; which
        those are is decided inside the write transaction, so processes
        adding the same runs at once each add them once. Returns what was
        appended: the ids, their keys and positions, and which are new.
        """
        first: dict[str, tuple[str, str, str, dict[str, Indexed]]] = {}
        for run in runs:
            first.setdefault(run[0], run)
        runs = list(first.values())
        if not runs:
            return Appended([], [], 0, 0)
        with self._writing("add runs") as conn:
            start: int = conn.exec_driver_sql(
                "SELECT COALESCE(MAX(position) + 1, 0) FROM entries WHERE batch_id = ?",
                (batch,)).scalar_one()
            next_key: int = conn.exec_driver_sql(
                "SELECT COALESCE(MAX(key), 0) + 1 FROM runs").scalar_one()
            # In a store without runs there is nothing to look up.
            keys = _keys(conn, [run[0] for run in runs], stored=next_key - 1
                         ) if next_key > 1 else {}
            if start > 0 and keys:
                present = _in_batch(conn, batch, list(keys.values()), held=start)
                runs = [run for run in runs if keys.get(run[0]) not in present]
            new = [run for run in runs if run[0] not in keys]
            for i, run in enumerate(new):
                keys[run[0]] = next_key + i
            _executemany(
                conn, "INSERT INTO runs (key, id, run_type, state, parameters, attempts) "
                "VALUES (?, ?, ?, 'pending', ?, 0)",
                [(keys[rid], rid, rtype, params) for rid, rtype, params, _ in new])
            _executemany(
                conn, "INSERT INTO parameters (run_key, name, kind, num, text, canonical) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(keys[rid], name, f.kind, f.number, f.text, f.canonical)
                 for rid, _, _, forms in new for name, f in forms.items()])
            counted = count_values(conn, [forms for _, _, _, forms in new])
            new_ids = {run[0] for run in new}
            existing = [keys[run[0]] for run in runs if run[0] not in new_ids]
            # The kinds of the new runs' values were counted: look only at the others'.
            grown = self._add_columns(conn, batch, "parameter", {
                (name, f.kind) for name, f in counted} | {
                (name, f.kind) for rid, _, _, forms in runs if rid not in new_ids
                for name, f in forms.items()})
            self._add_columns(conn, batch, "result",
                              _distinct(conn, "key", "result_values", existing))
            # The numbers of the batch's slotted parameters go into the entries
            # too: a new run's from its values; a run stored before, from its
            # stored rows (a custom generate_id may give other values its id).
            slotted = slots.assign(conn, batch) if grown else slots.slots_of(conn, batch)
            names, columns = slots.columns(slotted)
            _executemany(
                conn, f"INSERT INTO entries (batch_id, position, run_key{columns}) "
                f"VALUES (?, ?, ?{', ?' * len(names)})",
                [(batch, start + i, keys[run[0]], *slots.values(names, run[3]))
                 for i, run in enumerate(runs)])
            if existing and slotted:
                slots.fill(conn, batch, slotted, start)
        return Appended([run[0] for run in runs], [keys[run[0]] for run in runs], start,
                        next_key)

    def add_existing(self, batch: int, run_ids: Sequence[str]) -> list[str]:
        """Append runs already in the store to a batch; return the missing ids.

        Nothing is added if any id is missing. Which runs the batch holds
        already is decided inside the write transaction (see :meth:`add_runs`).
        """
        wanted = list(dict.fromkeys(run_ids))
        with self._writing("add runs") as conn:
            keys = _keys(conn, wanted)
            missing = [rid for rid in run_ids if rid not in keys]
            if missing:
                return missing
            present = _in_batch(conn, batch, list(keys.values()))
            appended = [keys[rid] for rid in wanted if keys[rid] not in present]
            if not appended:
                return []
            start: int = conn.exec_driver_sql(
                "SELECT COALESCE(MAX(position) + 1, 0) FROM entries WHERE batch_id = ?",
                (batch,)).scalar_one()
            _executemany(
                conn, "INSERT INTO entries (batch_id, position, run_key) VALUES (?, ?, ?)",
                [(batch, start + i, key) for i, key in enumerate(appended)])
            self._add_columns(conn, batch, "parameter",
                              _distinct(conn, "name", "parameters", appended))
            self._add_columns(conn, batch, "result",
                              _distinct(conn, "key", "result_values", appended))
            slots.settle(conn, batch, start)
        return []

    def remove_runs(self, batch: int, run_ids: Sequence[str], delete_unheld: bool = False
                    ) -> Removal:
        """Take runs out of a batch; the runs after them move up (positions stay 0..n-1).

        A run's row and result stay in the store, for the other batches that
        hold it and for this batch if it adds the run again. With
        ``delete_unheld``, the runs that no batch holds afterwards are deleted,
        except those being computed; their arrays are left for :meth:`gc`.
        Decided in one write transaction.
        """
        wanted = list(dict.fromkeys(run_ids))
        removal = Removal()
        with self._writing("remove runs") as conn:
            keys = _keys(conn, wanted)
            held = _in_batch(conn, batch, list(keys.values()))
            removal.missing = [rid for rid in wanted if keys.get(rid) not in held]
            gone = [keys[rid] for rid in wanted if keys.get(rid) in held]
            if not gone:
                return removal
            for chunk in _chunks(gone):
                conn.exec_driver_sql(
                    f"DELETE FROM entries WHERE batch_id = ? AND run_key IN "
                    f"({','.join('?' * len(chunk))})", (batch, *chunk))
            # Renumber what is left, in order; through negative positions, as
            # the primary key (batch, position) is checked row by row.
            left = [r[0] for r in conn.exec_driver_sql(
                "SELECT run_key FROM entries WHERE batch_id = ? ORDER BY position", (batch,))]
            _executemany(conn, "UPDATE entries SET position = ? WHERE batch_id = ? AND "
                         "run_key = ?", [(-1 - i, batch, key) for i, key in enumerate(left)])
            conn.exec_driver_sql(
                "UPDATE entries SET position = -1 - position WHERE batch_id = ?", (batch,))
            removal.removed = len(gone)
            unheld: list[int] = []
            for chunk in _chunks(gone):
                held_elsewhere = {r[0] for r in conn.exec_driver_sql(
                    f"SELECT run_key FROM entries WHERE run_key IN "
                    f"({','.join('?' * len(chunk))})", tuple(chunk))}
                unheld += [key for key in chunk if key not in held_elsewhere]
            removal.shared = len(gone) - len(unheld)
            if delete_unheld:
                self._delete_runs(conn, unheld, removal)
        return removal

    def _delete_runs(self, conn: sa.Connection, run_keys: Sequence[int], removal: Removal
                     ) -> None:
        """Delete the given runs (no batch holds them), except those being computed."""
        states = _states_of(conn, run_keys)
        doomed = [key for key in run_keys if states[key] != RunState.RUNNING.value]
        removal.running = len(run_keys) - len(doomed)
        for chunk in _chunks(doomed):
            marks = ",".join("?" * len(chunk))
            recount(conn, chunk, -1)
            for table in ("parameters", "result_values"):
                conn.exec_driver_sql(f"DELETE FROM {table} WHERE run_key IN ({marks})",
                                     tuple(chunk))
            conn.exec_driver_sql(f"DELETE FROM runs WHERE key IN ({marks})", tuple(chunk))
        removal.deleted = len(doomed)

    # -- reading runs -----------------------------------------------------------------

    def count(self, batch: int) -> int:
        with self._reading() as conn:
            count: int = conn.exec_driver_sql(
                "SELECT COUNT(*) FROM entries WHERE batch_id = ?", (batch,)).scalar_one()
            return count

    _COLUMNS = "SELECT e.position, r.id, r.run_type, r.parameters, r.state, r.key "

    def rows(self, batch: int, start: int = 0, stop: int | None = None) -> list[RunRow]:
        """The runs of a batch with ``start <= position < stop``, in order."""
        stop = sys.maxsize if stop is None else stop
        with self._reading() as conn:
            result = conn.exec_driver_sql(
                self._COLUMNS + "FROM entries e CROSS JOIN runs r WHERE e.batch_id = ? "
                "AND e.position >= ? AND e.position < ? AND r.key = e.run_key "
                "ORDER BY e.position", (batch, start, stop))
            return [RunRow(*row) for row in result]

    def rows_of(self, batch: int, run_ids: Sequence[str]) -> list[RunRow]:
        """The rows of the given runs in a batch, in batch order."""
        rows: list[RunRow] = []
        with self._reading() as conn:
            for chunk in _chunks(run_ids):
                rows += [RunRow(*row) for row in conn.exec_driver_sql(
                    self._COLUMNS + "FROM runs r CROSS JOIN entries e WHERE r.id IN "
                    f"({','.join('?' * len(chunk))}) AND e.run_key = r.key AND "
                    "e.batch_id = ?", (*chunk, batch))]
        return sorted(rows, key=lambda r: r.position)

    def query(self, batch: int, conditions: dict[str, Any]) -> list[RunRow]:
        """The runs of a batch whose parameters match, in batch order."""
        query = Query(conditions)
        with self._reading_sqlite3() as (raw, known):
            return [RunRow(*row) for row in query.rows(raw, batch, known)]

    @contextmanager
    def _reading_sqlite3(self) -> Iterator[tuple[sqlite3.Connection, Known | None]]:
        """A read transaction on the sqlite3 connection itself, as :meth:`_reading`'s.

        For the small queries of ``get_runs_with``: SQLAlchemy's work around
        a connection and transaction costs more than the query (about 50 us
        against 15), and so does taking a connection from its pool (6 us).
        So one connection is kept for these reads, taken by one thread at a
        time (the others take one from the pool), with what its queries
        learned of the store in its present state (a :class:`Known`, else
        None). Errors are raised as SQLAlchemy raises them.
        """
        held = self._snapshots().get(threading.get_ident())
        kept = False
        pooled = None
        try:
            if held is not None:  # inside snapshot(): its transaction
                yield held.connection.driver_connection, None  # type: ignore[misc]
                return
            # (A memory store's one connection is the pool's.)
            kept = self.path != ":memory:" and self._kept_lock.acquire(blocking=False)
            known = None
            if kept:
                raw, known = self._kept_reader()
                if raw.in_transaction:  # a query interrupted where nothing could end it
                    raw.execute("ROLLBACK")
            else:
                pooled = self.engine.raw_connection()
                raw = pooled.driver_connection  # type: ignore[assignment]
            raw.execute("BEGIN")
            try:
                if known is not None:  # (this starts the read: the state is the query's)
                    known = known.at(raw.execute("PRAGMA data_version").fetchone()[0])
                yield raw, known
            finally:  # a read transaction: nothing to keep or to lose
                raw.execute("ROLLBACK")
        except sqlite3.Error as exc:  # as SQLAlchemy would raise it
            error = sa.exc.DBAPIError.instance(None, None, exc, sqlite3.Error)
            if isinstance(error, sa.exc.OperationalError):
                raise_if_timed_out(error, self.path, self._time_limit())
            raise error from exc
        finally:
            if pooled is not None:
                pooled.close()
            if kept:
                self._kept_lock.release()

    def _kept_reader(self) -> tuple[sqlite3.Connection, Known]:
        """The connection kept for :meth:`_reading_sqlite3` (its lock held), and its Known.

        Made by the engine, so set up as every connection is, then detached
        from the pool: it is not one of the pool's connections, and
        :meth:`close` closes it. A process forked since makes its own.
        """
        kept = self._kept
        if kept is None or kept[0] != os.getpid():
            pooled = self.engine.raw_connection()
            raw = pooled.driver_connection
            pooled.detach()
            kept = self._kept = (os.getpid(), raw, Known())
        return kept[1], kept[2]

    def states(self, run_ids: Iterable[str]) -> dict[str, str]:
        """Map run ids to their states (ids not in the store are left out)."""
        ids = list(run_ids)
        out: dict[str, str] = {}
        with self._reading() as conn:
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                out.update(conn.exec_driver_sql(
                    f"SELECT id, state FROM runs WHERE id IN ({marks})", tuple(chunk)).all())
        return out

    def state_counts(self, batch: int, positions: Sequence[int] | None = None
                     ) -> dict[str, int]:
        """How many runs of a batch (or of its runs at ``positions``) are in each state."""
        only, chosen = _only_positions(positions)
        with self._reading() as conn:
            return dict(conn.exec_driver_sql(
                "SELECT r.state, COUNT(*) FROM entries e CROSS JOIN runs r "
                f"WHERE e.batch_id = ? AND r.key = e.run_key{only} GROUP BY r.state",
                (batch, *chosen)).all())

    def run_record(self, run_id: str) -> dict[str, Any]:
        """Everything stored about one run, except its arrays."""
        with self._reading() as conn:
            row = conn.exec_driver_sql("SELECT * FROM runs WHERE id = ?", (run_id,)).mappings().first()
        if row is None:
            raise RunNotFound(run_id, self.path)
        return dict(row)

    def load_arrays(self, run_id: str, filename: str | None, digests: Iterable[str],
                    payloads: Mapping[str, Mapping[str, Any]] | None = None
                    ) -> dict[str, np.ndarray]:
        """Read a run's arrays by name from its side file.

        With ``payloads`` (the ``ndarray`` payloads of the run's result, by
        name), each array's dtype, shape and size are checked against its
        payload before it is read.
        """
        names = list(digests)
        keys = [f"{run_id}/{name}" for name in names]
        if not keys:
            return {}
        if filename is None:
            raise ArrayFileError("(none)", f"is not recorded for run {run_id}")
        expected = None
        if payloads is not None:
            expected = {f"{run_id}/{name}": expected_array(payloads[name], name)
                        for name in names if name in payloads}
        found = self.arrays.read_many(filename, keys, expected)
        return {key.split("/", 1)[1]: array for key, array in found.items()}

    # -- running ------------------------------------------------------------------------

    def claim(self, batch: int, run_types: Sequence[str], limit: int, after: int = -1,
              lease: float | None = None, positions: Sequence[int] | None = None
              ) -> list[RunRow]:
        """Atomically move up to ``limit`` pending runs of a batch to RUNNING.

        Runs are taken in batch order after position ``after``; only runs of
        the given types (whose classes the caller has), and with ``positions``
        only runs at those positions, are taken. The claimed runs are held by
        this object until completed or released.
        """
        if not run_types:
            return []
        marks = ",".join("?" * len(run_types))
        only, chosen = _only_positions(positions)
        with self._writing("run the batch") as conn:
            candidates = _fetch(
                conn, "SELECT r.key, e.position FROM entries e CROSS JOIN runs r "
                "WHERE e.batch_id = ? AND e.position > ? AND r.key = e.run_key AND "
                f"r.state = 'pending' AND r.run_type IN ({marks}){only} "
                "ORDER BY e.position LIMIT ?", (batch, after, *run_types, *chosen, limit))
            return self._claim(conn, dict(candidates), lease)

    def claim_ids(self, run_ids: Sequence[str], lease: float | None = None) -> list[RunRow]:
        """Atomically move the given runs, those still pending, to RUNNING."""
        with self._writing("run runs") as conn:
            keys = _keys(conn, run_ids)
            return self._claim(conn, {keys[rid]: i for i, rid in enumerate(run_ids)
                                      if rid in keys}, lease)

    def claim_rows(self, rows: Sequence[RunRow], lease: float | None = None) -> list[RunRow]:
        """Atomically move the given runs, those still pending, to RUNNING.

        For runs the caller knows already (a batch that has just added
        them, which makes their rows as RUNNING ones): the claim reads back
        only keys and ids, and returns those of the rows given whose runs
        it claimed.
        """
        if not rows:
            return []
        keys = [row.key for row in rows]
        args: tuple[int, ...]
        if keys[-1] - keys[0] == len(keys) - 1 and keys == sorted(keys):
            where, args = "key BETWEEN ? AND ?", (keys[0], keys[-1])  # the usual, contiguous keys
        else:
            where, args = f"key IN ({','.join('?' * len(keys))})", tuple(keys)
        with self._writing("run the batch") as conn:
            claimed = dict(_fetch(
                conn, "UPDATE runs SET state = 'running', owner = ?, lease_expires = ?, "
                "attempts = attempts + 1, host = ?, pid = ? "
                f"WHERE {where} AND state = 'pending' RETURNING key, id",
                (self.owner, clock() + (lease or self.lease), socket.gethostname(),
                 os.getpid(), *args)))
            self._hold(list(claimed))  # before the claim commits (see _claim)
        wanted = {row.key: row.id for row in rows}
        # A key whose id is not the one given was deleted and then reused: give it back.
        strangers = [key for key, rid in claimed.items() if wanted[key] != rid]
        if strangers:
            self.release_runs(strangers)
        return [row for row in rows if claimed.get(row.key) == row.id]

    def _claim(self, conn: sa.Connection, positions: dict[int, int],
               lease: float | None) -> list[RunRow]:
        if not positions:
            return []
        marks = ",".join("?" * len(positions))
        claimed = _fetch(
            conn, "UPDATE runs SET state = 'running', owner = ?, lease_expires = ?, "
            "attempts = attempts + 1, host = ?, pid = ? "
            f"WHERE key IN ({marks}) AND state = 'pending' "
            "RETURNING key, id, run_type, parameters",
            (self.owner, clock() + (lease or self.lease), socket.gethostname(), os.getpid(),
             *positions))
        # Held before the claim commits, so that no recover() of this process
        # sees these runs as stranded.
        self._hold([row[0] for row in claimed])
        running = RunState.RUNNING.value  # looked up once: an enum member's value is a descriptor
        make = RunRow._make
        rows = [make((positions[key], rid, rtype, params, running, key))
                for key, rid, rtype, params in claimed]
        rows.sort(key=_position)
        return rows

    def _hold(self, keys: Sequence[int]) -> None:
        with self._claims_lock:
            self._claims.update(keys)
            HELD.hold(self._file, keys)

    def _drop(self, keys: Iterable[int]) -> None:
        keys = list(keys)
        with self._claims_lock:
            self._claims.difference_update(keys)
            HELD.drop(self._file, keys)

    @contextmanager
    def draining(self) -> Iterator[Reserve]:
        """What a drain runs in: its leases kept alive, and some disk space in reserve.

        A heartbeat thread extends this process's leases every quarter lease.
        The reserve is a small file beside the side files, freed by
        :meth:`give_back` when the disk fills up, so that the runs of the
        drain can still be released.
        """
        if self.path == ":memory:":  # nothing outside this process can take its runs
            yield Reserve(None)
            return
        reserve = Reserve(self.arrays.directory / f".reserve-{os.getpid()}-{id(self):x}")
        try:
            with Heartbeat(self._beat, self.lease / 4):
                yield reserve
        finally:
            reserve.free()

    def _beat(self) -> None:
        """What a drain's heartbeat does: renew the writer record, extend the leases."""
        if self._writer is not None:
            self._writer.confirm()
        self.extend_leases()

    def give_back(self, computed: list[Completion], keys: Iterable[int], batch: int | None,
                  error: BaseException, reserve: Reserve,
                  storage: ArrayOptions | None = None) -> BaseException | None:
        """After ``error`` stopped a drain: keep what was computed, release the rest.

        ``keys`` are the runs the drain claimed and has not recorded. If the
        disk or the database failed, the reserve is freed and every such run is
        released (what was computed is computed again later); else computed
        runs are recorded first. If even the release fails, the runs are no
        longer held, so the next drain of this process takes them back.
        Returns the error to raise instead of ``error``, if any.
        """
        keys = set(keys)
        if _environmental(error):
            reserve.free()
        else:
            try:
                self.complete(computed, batch, storage)  # keep what was computed
                keys -= {c.run_key for c in computed}
            except Exception:  # noqa: BLE001 (the error that stopped the drain is raised)
                pass
        try:
            self.release_runs(sorted(keys))  # and give back what was not
        except Exception:  # noqa: BLE001 (no longer held: the next call takes them back)
            pass
        if _environmental(error) and not isinstance(error, RunstoreError):
            return ResultsNotRecordedError(self.path, len(keys), error)
        return None

    def complete(self, completions: Sequence[Completion], batch: int | None = None,
                 storage: ArrayOptions | None = None) -> int:
        """Record finished runs: arrays to a new side file, then one transaction.

        ``storage`` says how the side file stores the arrays (chunks,
        compression; default: contiguous, uncompressed).

        A run is recorded if it is RUNNING, or PENDING again (its claim was
        lost but nobody recorded it meanwhile); a run already DONE or FAILED
        keeps its outcome, and this duplicate is discarded with a
        :class:`~runstore.errors.DuplicateResultWarning`. Typed result rows are
        written for recorded runs only. A completion whose data cannot be
        stored (the database driver or HDF5 refuses it) is recorded FAILED
        with that error, the others as they are. An error of the disk or the
        database (full, I/O) propagates, and then nothing of the call is
        recorded. The new scalar result keys become columns of ``batch``'s
        SQL view. Returns the number of runs recorded.
        """
        first: dict[int, Completion] = {}
        for completion in completions:  # a run given twice is recorded once
            first.setdefault(completion.run_key, completion)
        unique = list(first.values())
        if not unique:
            return 0
        recorded, discarded = self._record_isolating(unique, batch, storage)
        self._drop(c.run_key for c in unique)  # recorded, or someone else's now
        if discarded:
            warnings.warn(DuplicateResultWarning(self.path, discarded), stacklevel=2)
        return recorded

    def _record_isolating(self, completions: Sequence[Completion], batch: int | None,
                          storage: ArrayOptions | None = None) -> tuple[int, list[str]]:
        """Record completions; find and fail those whose data cannot be stored."""
        try:
            return self._record(completions, batch, storage)
        except Exception as exc:
            if _environmental(exc):
                raise
            if len(completions) == 1:
                return self._record([_unstorable(completions[0], exc)], batch)
        half = len(completions) // 2
        first = self._record_isolating(completions[:half], batch, storage)
        second = self._record_isolating(completions[half:], batch, storage)
        return first[0] + second[0], first[1] + second[1]

    def _record(self, completions: Sequence[Completion], batch: int | None,
                storage: ArrayOptions | None = None) -> tuple[int, list[str]]:
        arrays = {c.run_id: c.arrays for c in completions if c.arrays}
        infos = {c.run_id: c.array_info() for c in completions if c.arrays}
        filename = self._write_arrays(arrays, infos, storage) if arrays else None
        versions = (_runstore_version(), sys.version.split()[0])
        try:
            with self._writing("store results") as conn:
                taken, closed = _record_outcomes(conn, completions, filename, versions)
                self._record_scalars(conn, taken, batch)
        except Exception as exc:
            if filename is not None and not _environmental(exc):
                self.arrays.remove(filename)  # a statement failed: nothing was committed
            raise
        if filename is not None and not any(c.arrays for c in taken):
            self.arrays.remove(filename)  # no committed row points into it
        return len(taken), [c.run_id for c in completions if c.run_key in closed]

    def _write_arrays(self, arrays: dict[str, dict[str, np.ndarray]],
                      infos: dict[str, RunInfo], storage: ArrayOptions | None) -> str:
        try:
            return self.arrays.write(arrays, infos, storage)
        except FileNotFoundError:  # its .part file was removed (`gc --min-age 0`): again
            return self.arrays.write(arrays, infos, storage)

    def _record_scalars(self, conn: sa.Connection, taken: Sequence[Completion],
                        batch: int | None) -> None:
        """Typed result rows of recorded runs, and the view columns (and kinds) they need.

        Every batch holding a recorded run learns its result keys and their
        kinds, not only the batch whose drain computed it.
        """
        if batch is not None:
            carriers = [c for c in taken if c.scalars]
            self._add_columns(conn, batch, "result", _result_kinds(carriers))
            for other in _other_batches(conn, batch) if carriers else ():
                held = _in_batch(conn, other, [c.run_key for c in carriers])
                if held:
                    self._add_columns(conn, other, "result", _result_kinds(
                        [c for c in carriers if c.run_key in held]))
        _executemany(
            conn, "INSERT OR REPLACE INTO result_values "
            "(run_key, key, kind, num, text, canonical) VALUES (?, ?, ?, ?, ?, ?)",
            [(c.run_key, key, f.kind, f.number, f.text, f.canonical)
             for c in taken if c.scalars for key, f in c.scalars.items()])

    def release(self) -> int:
        """Return to PENDING the runs this object holds, and this process's stranded runs.

        Used after an interruption. Even if the release itself fails (a full
        disk), the runs are no longer held, so the next drain of this process
        (or any recover()) takes them back.
        """
        with self._claims_lock:
            keys = list(self._claims)
        self._drop(keys)
        with self._writing("release runs") as conn:
            return self._release_stranded(conn)

    def release_runs(self, keys: Sequence[int]) -> int:
        """Return some of this owner's RUNNING runs to PENDING (held no more, even on failure)."""
        released = 0
        try:
            with self._writing("release runs") as conn:
                for chunk in _chunks(keys):
                    released += conn.exec_driver_sql(
                        "UPDATE runs SET state = 'pending', owner = NULL, lease_expires = NULL "
                        f"WHERE key IN ({','.join('?' * len(chunk))}) AND state = 'running' "
                        "AND owner = ?", (*chunk, self.owner)).rowcount
        finally:
            self._drop(keys)
        return released

    def extend_leases(self, lease: float | None = None) -> int:
        """Extend the leases of this owner's RUNNING runs (a heartbeat)."""
        with self._writing("extend leases") as conn:
            extended: int = conn.exec_driver_sql(
                "UPDATE runs SET lease_expires = ? WHERE state = 'running' AND owner = ?",
                (clock() + (lease or self.lease), self.owner)).rowcount
            return extended

    def reset(self, run_ids: Sequence[str], from_states: Sequence[RunState]) -> int:
        """Move runs in one of ``from_states`` back to PENDING, forgetting results."""
        states = [s.value for s in from_states]
        count = 0
        with self._writing("reset runs") as conn:
            for chunk in _chunks(run_ids):
                marks, smarks = ",".join("?" * len(chunk)), ",".join("?" * len(states))
                count += conn.exec_driver_sql(
                    "UPDATE runs SET state = 'pending', result = NULL, array_file = NULL, "
                    "error_type = NULL, error_message = NULL, traceback = NULL, "
                    "runtime = NULL, started_at = NULL, finished_at = NULL "
                    f"WHERE id IN ({marks}) AND state IN ({smarks})",
                    (*chunk, *states)).rowcount
                conn.exec_driver_sql(
                    "DELETE FROM result_values WHERE run_key IN (SELECT key FROM runs "
                    f"WHERE id IN ({marks}) AND state = 'pending')", tuple(chunk))
        return count

    def pending_run_types(self, batch: int, trusted: bool = False) -> list[str]:
        """The run types of a batch's pending runs (with ``trusted``: of runs not
        imported untrusted, whose type names a module that may be imported)."""
        mine = " AND r.parameters_origin IS NULL" if trusted else ""
        with self._reading() as conn:
            return [r[0] for r in conn.exec_driver_sql(
                "SELECT DISTINCT r.run_type FROM entries e CROSS JOIN runs r WHERE "
                "e.batch_id = ? AND r.key = e.run_key AND r.state = 'pending'" + mine,
                (batch,))]

    def counts_by_batch(self) -> dict[str, dict[str, int]]:
        """Run counts per state, for every batch."""
        out: dict[str, dict[str, int]] = {name: {} for name in self.batch_names()}
        with self._reading() as conn:
            for name, state, count in conn.exec_driver_sql(
                    "SELECT b.name, r.state, COUNT(*) FROM batches b CROSS JOIN entries e "
                    "CROSS JOIN runs r WHERE e.batch_id = b.id AND r.key = e.run_key "
                    "GROUP BY b.name, r.state"):
                out[name][state] = count
        return out

    def in_flight(self) -> list[dict[str, Any]]:
        """The RUNNING runs: id, run type, owner, host, pid, lease expiry, attempts."""
        with self._reading() as conn:
            return [dict(row) for row in conn.exec_driver_sql(
                "SELECT id, run_type, owner, host, pid, lease_expires, attempts FROM runs "
                "WHERE state = 'running' ORDER BY owner").mappings()]

    def failed_runs(self, batch: int) -> list[tuple[str, str, str | None, str | None]]:
        """``(id, parameters, error_type, error_message)`` of the batch's failed runs."""
        with self._reading() as conn:
            return [(r[0], r[1], r[2], r[3]) for r in conn.exec_driver_sql(
                "SELECT r.id, r.parameters, r.error_type, r.error_message "
                "FROM entries e CROSS JOIN runs r WHERE e.batch_id = ? AND "
                "r.key = e.run_key AND r.state = 'failed' ORDER BY e.position", (batch,))]

    def changed_code(self, batch: int, run_type: str, fingerprint: str) -> list[str]:
        """Ids of DONE runs of a type whose stored code fingerprint differs."""
        with self._reading() as conn:
            return [r[0] for r in conn.exec_driver_sql(
                "SELECT DISTINCT r.id FROM entries e CROSS JOIN runs r WHERE "
                "e.batch_id = ? AND r.key = e.run_key AND r.state = 'done' AND "
                "r.run_type = ? AND r.code_fingerprint IS NOT ? ",
                (batch, run_type, fingerprint))]

    # -- copying runs to another store (bundles) ---------------------------------------

    def copy_runs(self, keys: Sequence[int], target: Store, batch_name: str,
                  array_file: str | None) -> int:
        """Copy runs (rows, typed values) into a batch of another, new store.

        Runs keep their state, result and provenance; their arrays are taken
        to be in ``array_file`` of the target. Claims are not copied.
        """
        with self._reading() as conn:
            runs: list[Any] = []
            parameters: list[Any] = []
            values: list[Any] = []
            for chunk in _chunks(keys):
                marks = ",".join("?" * len(chunk))
                runs += conn.exec_driver_sql(
                    f"SELECT * FROM runs WHERE key IN ({marks})", tuple(chunk)).mappings().all()
                parameters += conn.exec_driver_sql(
                    "SELECT run_key, name, kind, num, text, canonical FROM parameters "
                    f"WHERE run_key IN ({marks})", tuple(chunk)).all()
                values += conn.exec_driver_sql(
                    "SELECT run_key, key, kind, num, text, canonical FROM result_values "
                    f"WHERE run_key IN ({marks})", tuple(chunk)).all()
        order = {key: i for i, key in enumerate(keys)}
        columns = [c for c in runs[0].keys()] if runs else []
        batch = target.batch_id(batch_name)
        if batch is None:
            raise ReadOnlyStoreError(target.path, "write the bundle")
        with target._writing("write the bundle") as conn:
            rows = []
            for run in runs:
                row = dict(run)
                row.update(owner=None, lease_expires=None,
                           state="pending" if row["state"] == "running" else row["state"],
                           array_file=array_file if row["array_file"] else None)
                rows.append(tuple(row[c] for c in columns))
            _executemany(conn, f"INSERT INTO runs ({', '.join(columns)}) VALUES "
                         f"({', '.join('?' * len(columns))})", rows)
            _executemany(conn, "INSERT INTO parameters (run_key, name, kind, num, text, "
                         "canonical) VALUES (?, ?, ?, ?, ?, ?)", [tuple(r) for r in parameters])
            recount(conn, keys, 1)
            _executemany(conn, "INSERT INTO result_values (run_key, key, kind, num, text, "
                         "canonical) VALUES (?, ?, ?, ?, ?, ?)", [tuple(r) for r in values])
            _executemany(conn, "INSERT INTO entries (batch_id, position, run_key) "
                         "VALUES (?, ?, ?)", [(batch, order[k], k) for k in keys])
            target._add_columns(conn, batch, "parameter", {(r[1], r[2]) for r in parameters})
            target._add_columns(conn, batch, "result", {(r[1], r[2]) for r in values})
            slots.settle(conn, batch, 0)
        return len(runs)

    def records(self, run_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The ``runs`` rows of the given ids that exist, by id."""
        found: dict[str, dict[str, Any]] = {}
        with self._reading() as conn:
            for chunk in _chunks(run_ids):
                for row in conn.exec_driver_sql(
                        f"SELECT * FROM runs WHERE id IN ({','.join('?' * len(chunk))})",
                        tuple(chunk)).mappings():
                    found[row["id"]] = dict(row)
        return found

    def adopt_runs(self, batch: int, runs: Sequence[Adopted], array_file: str | None,
                   with_arrays: Iterable[str] = ()) -> tuple[int, int]:
        """Add runs taken from another store to a batch, in one transaction.

        Runs new to this store are inserted as they were (claims dropped: a
        running run arrives pending); a run this store holds pending or failed
        takes the incoming result if the incoming run is done; a run it holds
        done is left as it is (the caller has compared the two). Every run is
        then appended to the batch unless it is in it already. The states are
        decided here, inside the write transaction, whatever the caller read
        before it. ``array_file`` (already written) holds the arrays of the
        runs ``with_arrays``: a done run with arrays that are not in it is
        taken without its result (new) or not taken (held), so that no run is
        ever done without its arrays; if no recorded run points into
        ``array_file``, it is deleted. Returns (added, completed).
        """
        written = set(with_arrays)
        runs = [run if run.record["state"] != RunState.DONE.value or
                not run.record["array_file"] or run.record["id"] in written
                else run.without_result() for run in runs]
        try:
            added, taken = self._adopt(batch, runs, array_file)
        except BaseException:
            if array_file is not None:
                self.arrays.remove(array_file)  # nothing was committed
            raise
        if array_file is not None and not any(
                run.record["array_file"] for run in taken):
            self.arrays.remove(array_file)  # no committed row points into it
        return added, sum(1 for run in taken if not run.new)

    def _adopt(self, batch: int, runs: Sequence[Adopted], array_file: str | None
               ) -> tuple[int, list[Adopted]]:
        """The transaction of :meth:`adopt_runs`: (runs added, runs recorded with results)."""
        columns = [c.name for c in Base.metadata.tables["runs"].columns if c.name != "key"]
        with self._writing("import runs") as conn:
            keys = _keys(conn, [run.record["id"] for run in runs])
            next_key: int = conn.exec_driver_sql(
                "SELECT COALESCE(MAX(key), 0) + 1 FROM runs").scalar_one()
            new = [run for run in runs if run.record["id"] not in keys]
            old = [run for run in runs if run.record["id"] in keys]
            for run in new:
                run.new = True
            for i, run in enumerate(new):
                keys[run.record["id"]] = next_key + i
            rows = [(keys[run.record["id"]], run.row(array_file)) for run in new]
            _executemany(conn, f"INSERT INTO runs (key, {', '.join(columns)}) VALUES "
                         f"({', '.join('?' * (len(columns) + 1))})",
                         [(key, *(row[c] for c in columns)) for key, row in rows])
            _executemany(conn, "INSERT INTO parameters (run_key, name, kind, num, text, "
                         "canonical) VALUES (?, ?, ?, ?, ?, ?)",
                         [(keys[run.record["id"]], name, f.kind, f.number, f.text, f.canonical)
                          for run in new for name, f in run.parameters.items()])
            count_values(conn, [run.parameters for run in new])
            completed = [run for run in old if run.record["state"] == RunState.DONE.value]
            taken = []
            for run in completed:
                row = run.row(array_file)
                updated = conn.exec_driver_sql(
                    f"UPDATE runs SET {', '.join(f'{c} = ?' for c in _RESULT_COLUMNS)} "
                    "WHERE key = ? AND state IN ('pending', 'failed')",
                    (*(row[c] for c in _RESULT_COLUMNS), keys[run.record["id"]])).rowcount
                if updated:
                    taken.append(run)
                    conn.exec_driver_sql("DELETE FROM result_values WHERE run_key = ?",
                                         (keys[run.record["id"]],))
            _executemany(conn, "INSERT INTO result_values (run_key, key, kind, num, text, "
                         "canonical) VALUES (?, ?, ?, ?, ?, ?)",
                         [(keys[run.record["id"]], name, f.kind, f.number, f.text, f.canonical)
                          for run in [*new, *taken] for name, f in run.scalars.items()])
            in_batch: set[int] = set()
            for chunk in _chunks(list(keys.values())):
                in_batch.update(r[0] for r in conn.exec_driver_sql(
                    "SELECT run_key FROM entries WHERE batch_id = ? AND run_key IN "
                    f"({','.join('?' * len(chunk))})", (batch, *chunk)))
            start: int = conn.exec_driver_sql(
                "SELECT COALESCE(MAX(position) + 1, 0) FROM entries WHERE batch_id = ?",
                (batch,)).scalar_one()
            appended = [keys[run.record["id"]] for run in runs
                        if keys[run.record["id"]] not in in_batch]
            _executemany(conn, "INSERT INTO entries (batch_id, position, run_key) "
                         "VALUES (?, ?, ?)",
                         [(batch, start + i, key) for i, key in enumerate(appended)])
            self._add_columns(conn, batch, "parameter", {
                (name, f.kind) for run in runs for name, f in run.parameters.items()})
            self._add_columns(conn, batch, "result", _distinct(
                conn, "key", "result_values", [keys[run.record["id"]] for run in runs]))
            slots.settle(conn, batch, start)
        recorded = [run for run in new if run.record["state"] == RunState.DONE.value]
        return len(new), recorded + taken

    def vouch_parameters(self, runs: Sequence[tuple[str, str]]) -> int:
        """Take ``(id, parameters document)`` of runs the user's own code added.

        A stored run of one of these ids whose parameters were imported and
        not trusted takes the user's document, and its parameters are trusted
        from now on (the same id means the same public parameters); an
        imported result stays untrusted. Returns how many runs were vouched for.
        """
        if not runs:
            return 0
        with self._reading() as conn:
            if conn.exec_driver_sql("SELECT 1 FROM runs WHERE parameters_origin IS NOT NULL "
                                    "LIMIT 1").scalar() is None:
                return 0  # the usual case, answered by a partial index
            foreign: set[str] = set()
            for chunk in _chunks([rid for rid, _ in runs]):
                foreign.update(r[0] for r in conn.exec_driver_sql(
                    f"SELECT id FROM runs WHERE id IN ({','.join('?' * len(chunk))}) "
                    "AND parameters_origin IS NOT NULL", tuple(chunk)))
        if not foreign:
            return 0
        with self._writing("add runs") as conn:
            vouched: int = conn.exec_driver_sql(
                "UPDATE runs SET parameters = ?, parameters_origin = NULL "
                "WHERE id = ? AND parameters_origin IS NOT NULL",
                [(document, rid) for rid, document in runs if rid in foreign]).rowcount
        return vouched

    def trust_runs(self, run_ids: Sequence[str] | None = None) -> int:
        """Trust runs imported from other files (all, or the given ids).

        Their parameters and results are then decoded like the store's own:
        the functions and classes they name are imported when the run's class
        is here. Only for files whose author you trust. Returns how many runs
        were trusted.
        """
        from .run import with_origin

        where = "(parameters_origin IS NOT NULL OR result_origin IS NOT NULL)"
        found: list[tuple[str, str]] = []
        with self._reading() as conn:
            if run_ids is None:
                found += conn.exec_driver_sql(f"SELECT id, parameters FROM runs WHERE {where}"
                                              ).all()
            for chunk in _chunks(list(run_ids or ())):
                found += conn.exec_driver_sql(
                    f"SELECT id, parameters FROM runs WHERE id IN "
                    f"({','.join('?' * len(chunk))}) AND {where}", tuple(chunk)).all()
        if not found:
            return 0
        with self._writing("trust runs") as conn:
            _executemany(conn, "UPDATE runs SET parameters = ?, parameters_origin = NULL, "
                         "result_origin = NULL WHERE id = ?",
                         [(with_origin(document, None), rid) for rid, document in found])
        return len(found)

    def seal(self) -> None:
        """Mark the file as a bundle, leave it self-contained (no write-ahead log), close it.

        The mark (``PRAGMA user_version = 1``) is how ``gc`` and ``check
        --fix`` tell a bundle from a store.
        """
        # Leaving WAL needs the file to itself: no other connection of this
        # store may stay open, not even idle (the kept reader, the pool's).
        self._release_kept()
        self.engine.dispose()
        raw = self.engine.raw_connection()  # outside any transaction (autocommit)
        try:
            raw.driver_connection.execute(  # type: ignore[union-attr]
                f"PRAGMA user_version = {BUNDLE_MARK}")
            raw.driver_connection.execute("PRAGMA journal_mode = DELETE")  # type: ignore[union-attr]
        finally:
            raw.close()
        self.close()

    # -- FFTW wisdom -----------------------------------------------------------------

    def fftw_wisdom(self, machine: str | None = None) -> tuple[bytes, ...]:
        """The FFTW wisdom kept for a kind of machine (default: this one), or ``()``.

        Wisdom is FFTW's plain-text record of the fastest plans it measured;
        :func:`runstore.performance.fft.import_wisdom` takes it.
        """
        with self._reading() as conn:
            if conn.exec_driver_sql("SELECT 1 FROM fftw_wisdom LIMIT 1").scalar() is None:
                return ()  # the usual case: no FFTs, and no need to load pyfftw
            if machine is None:
                from .performance.fft import wisdom_machine

                machine = wisdom_machine()
            text = conn.exec_driver_sql("SELECT wisdom FROM fftw_wisdom WHERE machine = ?",
                                        (machine,)).scalar()
        if text is None:
            return ()
        try:
            parts = json.loads(text)
            return tuple(part.encode("ascii") for part in parts)
        except (ValueError, AttributeError, UnicodeEncodeError):
            return ()  # not wisdom: plans are simply measured again

    def save_fftw_wisdom(self, wisdom: Sequence[bytes], machine: str | None = None) -> None:
        """Keep FFTW wisdom (from :func:`runstore.performance.fft.export_wisdom`)."""
        if not wisdom:
            return
        from .performance.fft import wisdom_machine

        text = json.dumps([bytes(part).decode("ascii") for part in wisdom])
        with self._writing("keep FFTW wisdom") as conn:
            conn.exec_driver_sql(
                "INSERT OR REPLACE INTO fftw_wisdom (machine, wisdom, updated_at) "
                "VALUES (?, ?, ?)", (machine or wisdom_machine(), text, time.time()))

    # -- SQL views ----------------------------------------------------------------------

    def _add_columns(self, conn: sa.Connection, batch: int, source: str,
                     kinds: Iterable[tuple[str, str]]) -> set[str]:
        """Record the columns of a batch's view and the kinds of value they hold.

        ``kinds`` gives ``(name, kind)`` pairs of typed rows. The view is
        rebuilt when a column is new or its SQL type changes (ints joined
        by floats ...). Returns the names whose kinds grew (new names among them).
        """
        seen = self._columns_seen
        pending: dict[tuple[int, str, str], frozenset[str]] = conn.info.setdefault(
            "columns_seen", {})  # this transaction's, for _writing to keep once committed
        fresh: dict[str, set[str]] = {}
        for name, kind in kinds:
            known = pending.get((batch, source, name)) or seen.get((batch, source, name))
            if known is None or kind not in known:
                fresh.setdefault(name, set()).add(kind)
        if not fresh:
            return set()
        stored = {name: parse_kinds(text) for name, text in conn.exec_driver_sql(
            "SELECT name, kinds FROM batch_columns WHERE batch_id = ? AND source = ?",
            (batch, source))}
        grown: dict[str, frozenset[str]] = {}
        for name, found in fresh.items():
            before = stored.get(name)
            merged = (before or frozenset()) | found
            pending[(batch, source, name)] = merged
            if merged != before:
                grown[name] = merged
        if grown:
            conn.exec_driver_sql(
                "INSERT INTO batch_columns (batch_id, source, name, kinds) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (batch_id, source, name) DO UPDATE SET kinds = excluded.kinds",
                [(batch, source, name, ",".join(sorted(merged)))
                 for name, merged in sorted(grown.items())])
            if any(name not in stored or column_type(merged) != column_type(stored[name])
                   for name, merged in grown.items()):
                create_view(conn, batch)
        return set(grown)

    def view_rows(self, batch: int, run_ids: Sequence[str] | None = None
                  ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """The column names and rows of a batch's SQL view (all, or some runs), in order.

        The rows are computed from the tables, by the same SELECT the view
        holds, built here: a file's views are never read (one that runstore
        did not write may say anything, or never end). A column that holds
        only booleans (0 and 1 in SQL) gives False and True.
        """
        with self._reading() as conn:
            select = batch_select(conn, batch)
            flags = [label for label, _, _, kinds in batch_columns(conn, batch)
                     if kinds == {"bool"}]
            if run_ids is None:
                result = conn.exec_driver_sql(select + " ORDER BY e.position")
                columns = list(result.keys())
                return columns, _as_bools(columns, flags, [tuple(row) for row in result])
            columns = []
            rows: list[tuple[Any, ...]] = []
            for chunk in _chunks(run_ids):
                result = conn.exec_driver_sql(
                    select + f" AND r.id IN ({','.join('?' * len(chunk))})", tuple(chunk))
                columns = list(result.keys())
                rows += [tuple(row) for row in result]
            if not columns:
                columns = list(conn.exec_driver_sql(select + " LIMIT 0").keys())
            at = columns.index("position")
            return columns, _as_bools(columns, flags, sorted(rows, key=lambda row: row[at]))

    def view_columns(self, batch: int) -> list[tuple[str, str, str, frozenset[str]]]:
        """The ``(label, source, name, kinds)`` of a batch's parameter and result columns."""
        with self._reading() as conn:
            return batch_columns(conn, batch)

    def canonical_cells(self, batch: int, source: str, name: str, inexact: bool = False
                        ) -> dict[int, str]:
        """A view column's values as canonical JSON, by run position (runs without one left out).

        Exact where the view cannot be: structured values, columns mixing
        kinds, and (all that ``inexact`` asks for) NaN, which SQL holds as
        NULL, and ints beyond 64 bits, held as their nearest float.
        """
        table, key = (("parameters", "name") if source == "parameter"
                      else ("result_values", '"key"'))
        only = (" AND ((c.kind = 'float' AND c.num IS NULL) OR "
                "(c.kind = 'int' AND typeof(c.num) = 'real'))") if inexact else ""
        with self._reading() as conn:
            return dict(conn.exec_driver_sql(
                f"SELECT e.position, c.canonical FROM entries e CROSS JOIN {table} c "
                f"WHERE e.batch_id = ? AND c.run_key = e.run_key AND c.{key} = ?{only}",
                (batch, name)).all())

    def find_run(self, prefix: str) -> str:
        """The full id of the one run whose id starts with ``prefix``."""
        if not re.fullmatch(r"[0-9a-f]{4,40}", prefix):
            raise RunNotFound(prefix, f"{self.path} (give 4 to 40 hex digits of a run id)")
        with self._reading() as conn:
            found = [r[0] for r in conn.exec_driver_sql(
                "SELECT id FROM runs WHERE id >= ? AND id < ? ORDER BY id LIMIT 6",
                (prefix, prefix + "g"))]
        if not found:
            raise RunNotFound(prefix, self.path)
        if len(found) > 1:
            raise RunNotFound(prefix, f"{self.path}: it is the start of several ids "
                              f"({', '.join(f[:12] for f in found[:5])}...); give more digits")
        return str(found[0])

    def batches_of(self, run_id: str) -> list[tuple[str, int]]:
        """The batches holding a run, with its position in each."""
        with self._reading() as conn:
            return [(r[0], r[1]) for r in conn.exec_driver_sql(
                "SELECT b.name, e.position FROM runs r CROSS JOIN entries e CROSS JOIN "
                "batches b WHERE r.id = ? AND e.run_key = r.key AND b.id = e.batch_id "
                "ORDER BY b.id", (run_id,))]

    def holds_callables(self, name: str) -> bool:
        """Whether any run has a parameter ``name`` that is a function."""
        with self._reading() as conn:
            return conn.exec_driver_sql(
                "SELECT 1 FROM parameters WHERE name = ? AND num IS NULL AND canonical >= ? "
                "AND canonical < ? LIMIT 1", (name, '["callable",', '["callable",\uffff')
            ).scalar() is not None

    def value_kinds(self, name: str, source: str = "parameter") -> set[str]:
        """The kinds of value (``int``, ``text`` ...) a parameter or scalar result holds in any batch."""
        with self._reading() as conn:
            rows = conn.exec_driver_sql(
                "SELECT kinds FROM batch_columns WHERE source = ? AND name = ?",
                (source, name)).all()
        return {kind for (kinds,) in rows for kind in (kinds or "").split(",") if kind}

    def names_a_result(self, name: str) -> bool:
        """Whether ``name`` is a scalar result of some run and no run's parameter."""
        with self._reading() as conn:
            if conn.exec_driver_sql("SELECT 1 FROM parameters WHERE name = ? LIMIT 1",
                                    (name,)).scalar() is not None:
                return False
            return conn.exec_driver_sql("SELECT 1 FROM result_values WHERE key = ? LIMIT 1",
                                        (name,)).scalar() is not None

    def check(self, fix: bool = False, dry_run: bool = False, bundle: bool = False,
              progress: bool | None = False) -> CheckReport:
        """Report inconsistencies; with ``fix=True``, repair what can be repaired.

        ``dry_run=True`` (with ``fix``) reports what would be repaired and
        changes nothing. A bundle is repaired only with ``bundle=True``.
        ``progress`` shows a progress bar (``None``: when on a terminal).
        See :func:`runstore.check.check_store` for what is checked and repaired.
        """
        if fix and not dry_run and self.readonly:
            raise ReadOnlyStoreError(self.path, "repair the store")
        return check_store(self, fix, dry_run, bundle, progress)

    def gc(self, min_age: float = ORPHAN_AGE, dry_run: bool = False,
           bundle: bool = False) -> GcReport:
        """Remove side files and arrays no run needs, and compact the SQLite file.

        ``dry_run=True`` only reports (and works on a store opened read-only).
        A bundle is changed only with ``bundle=True``.
        See :func:`runstore.check.collect_garbage`.
        """
        if self.readonly and not dry_run:
            raise ReadOnlyStoreError(self.path, "collect garbage")
        return collect_garbage(self, min_age, dry_run, bundle)

    def vacuum(self) -> tuple[int, int]:
        """Compact the SQLite file; return its size (with its log) before and after."""
        def size() -> int:
            return sum(os.path.getsize(p) for p in (self.path, self.path + "-wal")
                       if os.path.exists(p))

        before = size()
        raw = self.engine.raw_connection()  # VACUUM runs outside any transaction
        try:
            raw.driver_connection.execute("VACUUM")  # type: ignore[union-attr]
            raw.driver_connection.execute(  # type: ignore[union-attr]
                "PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            raw.close()
        return before, size()

    def close(self) -> None:
        """Release the database connections (and, for the last handle of this process
        that writes the store, its writer record)."""
        self._release_kept()
        self.engine.dispose()
        self._unclaim()

    def _release_kept(self) -> None:
        """Close the connection kept for queries (see :meth:`_kept_reader`)."""
        kept, self._kept = self._kept, None
        # (A forked process leaves its parent's connection alone.)
        if kept is not None and kept[0] == os.getpid():
            with self._kept_lock:  # once a query of another thread is done with it
                kept[1].close()

    def __repr__(self) -> str:
        mode = ", readonly" if self.readonly else ""
        return f"Store({self.path!r}{mode})"


def _only_positions(positions: Sequence[int] | None) -> tuple[str, tuple[str, ...]]:
    """The SQL condition (on ``e.position``) and its argument that keep only some positions.

    One JSON argument whatever the number of positions (SQLite limits the
    number of arguments of a statement).
    """
    if positions is None:
        return "", ()
    return (" AND e.position IN (SELECT value FROM json_each(?))",
            (json.dumps([int(p) for p in positions]),))


def _other_batches(conn: sa.Connection, batch: int) -> list[int]:
    """The ids of the store's batches other than ``batch`` (usually none)."""
    return [r[0] for r in conn.exec_driver_sql("SELECT id FROM batches WHERE id != ?", (batch,))]


def _record_outcomes(conn: sa.Connection, completions: Sequence[Completion],
                     filename: str | None, versions: tuple[str, str]
                     ) -> tuple[list[Completion], set[int]]:
    """Write the outcomes of runs into their rows, RUNNING or PENDING ones only.

    Returns the completions recorded, and the keys of the runs not recorded
    because they are DONE or FAILED already.

    The common outcome, a result without arrays computed by this process,
    has statements of their own: each updates many rows from a list of
    values, binds only what varies from run to run (binding the rest, NULL
    or unchanged, took a quarter of the time), and returns the keys of the
    rows it updated, so that their states need not be read first.
    """
    done = _DONE
    plain: list[Completion] = []
    others: list[Completion] = []
    for c in completions:
        (plain if c.state is done and not c.arrays and c.host is None and c.pid is None
         else others).append(c)
    states = _states_of(conn, [c.run_key for c in others])
    taken = [c for c in others if states.get(c.run_key) in _OPEN]
    _executemany(
        conn, "UPDATE runs SET state = ?, result = ?, array_file = ?, "
        "error_type = ?, error_message = ?, traceback = ?, started_at = ?, "
        "finished_at = ?, runtime = ?, code_fingerprint = ?, "
        "runstore_version = ?, python_version = ?, owner = NULL, "
        "lease_expires = NULL, result_origin = NULL, "
        "host = COALESCE(?, host), pid = COALESCE(?, pid) "
        "WHERE key = ? AND state IN ('running', 'pending')",
        [(_STATE_VALUES[c.state], c.result_json, filename if c.arrays else None,
          c.error_type, c.error_message, c.traceback, c.started_at,
          c.finished_at, c.runtime, c.code_fingerprint, *versions,
          c.host, c.pid, c.run_key) for c in taken])
    updated: set[int] = set()
    for chunk in _chunks(plain):
        rows = ",".join(["(?, ?, ?, ?, ?, ?)"] * len(chunk))
        updated.update(key for (key,) in _fetch(
            conn, "UPDATE runs SET state = 'done', result = v.column2, array_file = NULL, "
            "error_type = NULL, error_message = NULL, traceback = NULL, "
            "started_at = v.column3, finished_at = v.column4, runtime = v.column5, "
            "code_fingerprint = v.column6, runstore_version = ?, python_version = ?, "
            "owner = NULL, lease_expires = NULL, result_origin = NULL "
            f"FROM (VALUES {rows}) AS v WHERE runs.key = v.column1 "
            "AND runs.state IN ('running', 'pending') RETURNING key",
            (*versions, *[value for c in chunk for value in (
                c.run_key, c.result_json, c.started_at, c.finished_at, c.runtime,
                c.code_fingerprint)])))
    taken += [c for c in plain if c.run_key in updated]
    if len(updated) < len(plain):  # done or failed already, or deleted
        states.update(_states_of(conn, [c.run_key for c in plain if c.run_key not in updated]))
    return taken, {key for key, state in states.items() if state in _CLOSED}


def _result_kinds(completions: Sequence[Completion]) -> set[tuple[str, str]]:
    """The ``(result key, kind)`` pairs of the scalar rows of some completions."""
    return {(key, f.kind) for c in completions if c.scalars for key, f in c.scalars.items()}


def _in_batch(conn: sa.Connection, batch: int, run_keys: Sequence[int],
              held: int | None = None) -> set[int]:
    """The given run keys that a batch holds.

    ``held`` is about how many runs the batch holds: when the keys are a third
    as many or more, one scan of the batch's entries costs less than looking
    each key up.
    """
    if held is not None and 3 * len(run_keys) >= held:
        wanted = set(run_keys)
        return {key for (key,) in _scan(conn, "SELECT run_key FROM entries WHERE batch_id = ?",
                                        (batch,)) if key in wanted}
    found: set[int] = set()
    for chunk in _chunks(run_keys):
        found.update(r[0] for r in conn.exec_driver_sql(
            "SELECT run_key FROM entries WHERE batch_id = ? AND run_key IN "
            f"({','.join('?' * len(chunk))})", (batch, *chunk)))
    return found


def _synchronous_level(level: object) -> str:
    """A valid ``PRAGMA synchronous`` level (see :class:`Store`), lower case."""
    if isinstance(level, str) and level.lower() in SYNCHRONOUS:
        return level.lower()
    raise StoreOptionError("synchronous", level, SYNCHRONOUS)


def _distinct(conn: sa.Connection, column: str, table: str, run_keys: Sequence[int]
              ) -> set[tuple[str, str]]:
    """The distinct ``(table.column, kind)`` over some runs (names are ours, not users')."""
    found: set[tuple[str, str]] = set()
    for chunk in _chunks(run_keys):
        found.update((r[0], r[1]) for r in conn.exec_driver_sql(
            f'SELECT DISTINCT "{column}", kind FROM {table} WHERE run_key IN '
            f"({','.join('?' * len(chunk))})", tuple(chunk)))
    return found


def _executemany(conn: sa.Connection, sql: str, rows: list[tuple[Any, ...]]) -> None:
    """Run one statement over many rows; nothing to do for no rows."""
    if rows:
        conn.exec_driver_sql(sql, rows)


def _states_of(conn: sa.Connection, run_keys: Sequence[int]) -> dict[int, str]:
    """Map the given run keys to their states."""
    states: dict[int, str] = {}
    for chunk in _chunks(run_keys):
        states.update(_fetch(
            conn, f"SELECT key, state FROM runs WHERE key IN ({','.join('?' * len(chunk))})",
            tuple(chunk)))
    return states


def _keys(conn: sa.Connection, run_ids: Sequence[str], stored: int | None = None
          ) -> dict[str, int]:
    """Map the given run ids that are stored to their row keys.

    ``stored`` is about how many runs the store holds: when the ids are half
    as many or more, one scan of the index of ids costs less than looking
    each id up (measured: about 0.7 us a row scanned, 1.3 us an id looked up).
    """
    if stored is not None and 2 * len(run_ids) >= stored:
        wanted = set(run_ids)
        return {rid: key for rid, key in _scan(conn, "SELECT id, key FROM runs", ())
                if rid in wanted}
    keys: dict[str, int] = {}
    for chunk in _chunks(run_ids):
        keys.update(conn.exec_driver_sql(
            f"SELECT id, key FROM runs WHERE id IN ({','.join('?' * len(chunk))})",
            tuple(chunk)).all())
    return keys


def _scan(conn: sa.Connection, sql: str, args: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
    """The rows of a query that reads many, one at a time, through the sqlite3
    connection itself (in the same transaction): SQLAlchemy's work per row
    would cost more than reading it."""
    raw: sqlite3.Connection = conn.connection.driver_connection  # type: ignore[assignment]
    try:
        yield from raw.execute(sql, args)
    except sqlite3.Error as exc:  # as SQLAlchemy would raise it
        raise sa.exc.DBAPIError.instance(sql, args, exc, sqlite3.Error) from exc


def _fetch(conn: sa.Connection, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """All the rows of a statement, as plain tuples, read through the sqlite3
    connection itself (in the same transaction), as :func:`_scan` reads them:
    for the statements of a drain, which read a row for every run they handle."""
    raw: sqlite3.Connection = conn.connection.driver_connection  # type: ignore[assignment]
    try:
        return raw.execute(sql, args).fetchall()
    except sqlite3.Error as exc:  # as SQLAlchemy would raise it
        raise sa.exc.DBAPIError.instance(sql, args, exc, sqlite3.Error) from exc


_position = attrgetter("position")

_T = TypeVar("_T")


def _as_bools(columns: list[str], flags: list[str], rows: list[tuple[Any, ...]]
              ) -> list[tuple[Any, ...]]:
    """The rows with the view's 0 and 1 of columns holding only booleans as False and True."""
    at = [columns.index(label) for label in flags if label in columns]
    if not at:
        return rows
    out = []
    for row in rows:
        cells = list(row)
        for i in at:
            if cells[i] is not None:
                cells[i] = bool(cells[i])
        out.append(tuple(cells))
    return out


def _chunks(items: Sequence[_T], size: int = 500) -> Iterator[Sequence[_T]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _use_wal(cursor: Any, patience: float = 60.0) -> None:
    """Put the database in WAL mode, waiting for other processes doing the same.

    The switch needs an exclusive lock, and SQLite reports a competing switch
    (processes opening a new store together) as "database is locked" at once,
    without waiting for the busy timeout; so it is tried again here.
    """
    deadline = time.monotonic() + patience
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.005, 0.05))


def _environmental(exc: BaseException) -> bool:
    """Whether a failed commit is the disk's or the database's fault, not one run's data."""
    return isinstance(exc, (OSError, MemoryError, sa.exc.OperationalError))


def _unstorable(completion: Completion, exc: BaseException) -> Completion:
    """Turn a run whose outcome cannot be stored into a FAILED one saying why (in place,
    so that the drain that made it sees the failure)."""
    completion.state = RunState.FAILED
    completion.result_json = completion.scalars = completion.arrays = None
    completion.error_type = type(exc).__qualname__
    completion.error_message = (f"its result could not be stored: {exc}. Return values "
                                f"runstore and SQLite can store (see the results how-to)")
    completion.traceback = "".join(traceback.format_exception(exc))
    return completion


def _on_host(owner: str | None, host: str) -> bool:
    """Whether an owner token names a process of ``host``, whose liveness is seen."""
    return bool(owner) and str(owner).rsplit(":", 2)[0] == host


def _disk_full(exc: sa.exc.OperationalError) -> bool:
    """Whether SQLite failed for lack of space (SQLITE_FULL, code 13)."""
    return getattr(exc.orig, "sqlite_errorcode", None) == 13 or (
        "database or disk is full" in str(exc.orig))


def _runstore_version() -> str:
    from . import __version__

    return __version__
