"""One writer host: a store is written only by processes of the host where it lives.
Internal module.

SQLite's write-ahead log works only between processes of one host: its index
(``-shm``) is memory shared between them, and its locks are POSIX locks
(https://sqlite.org/wal.html). Two rules follow, checked when a store is
opened for writing (and again while it is written):

1. **No writing over a network filesystem.** :func:`refuse_network_write`
   refuses a store whose folder is on a filesystem other hosts mount
   (:mod:`runstore.filesystems`), unless ``RUNSTORE_ALLOW_NETWORK_FS=1``
   says that no other host ever writes stores there.
2. **No second host.** Folders can be shared in ways ``mountinfo`` does not
   show (or are allowed above), so each process that writes a store keeps a
   *writer record*: a small JSON file ``<store file>.writer-<host>~<pid>~<start>``
   beside the store that names its host and the time it *expires*. A process
   refuses to write while a record of another host has not expired
   (:class:`~runstore.errors.OtherHostWritingError`); records of its own host
   never stand in its way, so any number of processes of one host write
   together.

A record lasts one lease (``Store(lease=...)``, ``RUNSTORE_LEASE``, 600 s)
and is renewed after a quarter of it, by the next write transaction or by the
heartbeat of a drain, so a computing process keeps its record however long
it runs, and an idle one lets it expire. Renewing writes the own record first
and reads the others after (a new record is renamed into place, never seen
half-written): of two hosts that start at once, at least one sees the other,
so two hosts never both write, though both may refuse. A record goes away
when its process closes its last handle of the store or exits; a process
that dies leaves it behind, and then processes of its host remove it at once
(they see that its process is gone), other hosts once it has expired: a
dead host blocks its store for one lease at most, and the message says until
when and which file to delete to clear it sooner.

Reading needs neither rule on a local disk. Over a network filesystem a
reader would map a ``-shm`` index that another host's writer does not see,
so :func:`reading_query` opens the file ``immutable`` (no locks, no
``-wal``/``-shm`` made) when nobody writes it: no record of another host is
alive and no ``-wal`` (or ``-journal``) holds data that is not yet in the
file; otherwise it refuses with :class:`~runstore.errors.NetworkFilesystemError`.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import NetworkFilesystemError, OtherHostWritingError
from .filesystems import Mount, mount_of
from .leases import clock, process_is_dead
from .schema import SCHEMA_REVISION

__all__ = ["ALLOW_ENV", "Record", "WriterClaim", "claim", "network_mount",
           "reading_query", "record_prefix", "records", "refuse_network_write", "unclaim"]

#: Set to 1 when no other host ever writes stores on the network filesystem used.
ALLOW_ENV = "RUNSTORE_ALLOW_NETWORK_FS"


def _allowed() -> bool:
    return os.environ.get(ALLOW_ENV, "").strip().lower() in ("1", "true", "yes")


def network_mount(db: Path) -> Mount | None:
    """The network filesystem that holds ``db``; ``None`` if local, unknown or allowed."""
    if _allowed():
        return None
    mount = mount_of(db)
    return mount if mount is not None and mount.network else None


def refuse_network_write(db: Path) -> None:
    """Refuse to write a store on a network filesystem (see the module docstring)."""
    mount = network_mount(db)
    if mount is not None:
        raise NetworkFilesystemError(str(db), mount.fstype, mount.point, mount.source)


def record_prefix(db: Path) -> str:
    """How the names of a store's writer records begin (they sit beside it)."""
    return db.name + ".writer-"


@dataclass(frozen=True)
class Record:
    """A writer record: which process of which host writes the store, until when."""

    path: Path
    host: str
    pid: int
    started: float
    expires: float
    #: The schema revision of the runstore that writes (None: before records said).
    schema: str | None = None

    def mine(self, host: str) -> bool:
        return self.host == host


def records(db: Path) -> list[Record]:
    """The writer records of the store ``db``.

    Files being written (dot files) and files that are not records are skipped.
    """
    found = []
    prefix = record_prefix(db)
    try:
        entries = list(os.scandir(db.parent))
    except (FileNotFoundError, NotADirectoryError):
        return []
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        try:
            with open(entry.path, encoding="utf-8") as f:
                data = json.load(f)
            schema = data.get("schema")
            found.append(Record(Path(entry.path), str(data["host"]), int(data["pid"]),
                                float(data["started"]), float(data["expires"]),
                                schema if isinstance(schema, str) else None))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # removed meanwhile, or not a record
    return found


_token_cache: dict[int, tuple[int, float]] = {}


def _process() -> tuple[int, float]:
    """This process's pid and start time."""
    pid = os.getpid()
    found = _token_cache.get(pid)
    if found is None:
        import psutil

        found = _token_cache[pid] = (pid, psutil.Process(pid).create_time())
    return found


def _name(host: str, pid: int, started: float) -> str:
    return f"{re.sub(r'[^A-Za-z0-9.-]', '-', host)[:64] or '-'}~{pid}~{started:.3f}"


class WriterClaim:
    """This process's writer record of one store, shared by its handles of the store."""

    def __init__(self, db: Path, ttl: float) -> None:
        self.db, self.ttl = db, ttl
        self.users = 0
        self._lock = threading.Lock()
        self._renewed = -float("inf")  # time.monotonic() of the last renewal
        self._pid = -1

    def confirm(self) -> None:
        """Renew this process's record if a quarter of its life has passed.

        Cheap when not due (one comparison). Raises
        :class:`~runstore.errors.OtherHostWritingError` if another host's
        record is alive.
        """
        if time.monotonic() < self._renewed + self.ttl / 4 and self._pid == os.getpid():
            return
        with self._lock:
            if time.monotonic() < self._renewed + self.ttl / 4 and self._pid == os.getpid():
                return
            self._renew()

    def _renew(self) -> None:
        host = socket.gethostname()
        pid, started = _process()
        own = self._own(host, pid, started)
        now = clock()
        self._write(own, {"host": host, "pid": pid, "started": started,
                          "expires": now + self.ttl, "store": str(self.db),
                          "schema": SCHEMA_REVISION})
        blocking = None
        for record in records(self.db):  # read after writing: see the module docstring
            if record.path == own:
                continue
            if record.mine(host):
                if process_is_dead(record.pid, record.started):
                    record.path.unlink(missing_ok=True)  # a dead process of this host
            elif record.expires < now:
                record.path.unlink(missing_ok=True)  # another host's, expired
            elif blocking is None or record.expires > blocking.expires:
                blocking = record
        if blocking is not None:
            own.unlink(missing_ok=True)
            self._renewed = -float("inf")
            raise OtherHostWritingError(str(self.db), blocking.host, blocking.pid,
                                        blocking.expires, str(blocking.path), now)
        self._renewed, self._pid = time.monotonic(), pid

    def _own(self, host: str, pid: int, started: float) -> Path:
        return self.db.with_name(record_prefix(self.db) + _name(host, pid, started))

    @staticmethod
    def _write(path: Path, data: dict[str, object]) -> None:
        """Put a record in place whole: written beside it, then renamed."""
        temporary = path.with_name(f".{path.name}.tmp")
        with open(temporary, "w", encoding="utf-8") as f:
            f.write(json.dumps(data, sort_keys=True))
        os.replace(temporary, path)

    def release(self) -> None:
        """Remove this process's record."""
        with self._lock:
            self._renewed = -float("inf")
            if self._pid != os.getpid():
                return  # a forked child: the record is its parent's
            self._own(socket.gethostname(), *_process()).unlink(missing_ok=True)


_claims: dict[str, WriterClaim] = {}
_claims_lock = threading.Lock()


def older_writer(db: Path) -> Record | None:
    """A live process of an earlier runstore (another schema revision) that writes ``db``.

    Live: on this host, its process runs (it keeps its record while it has
    the store open); on another host, its record has not expired.
    """
    host, now = socket.gethostname(), clock()
    own = _name(host, *_process())
    for record in records(db):
        if record.schema == SCHEMA_REVISION or record.path.name.endswith(own):
            continue
        if (not process_is_dead(record.pid, record.started) if record.mine(host)
                else record.expires >= now):
            return record
    return None


def claim(db: Path, ttl: float) -> WriterClaim:
    """Become (or stay) one of the writers of the store ``db``; see the module docstring.

    Each call must be matched by :func:`unclaim` (a store's ``close()``);
    records left at exit are removed then.
    """
    key = os.path.realpath(db)
    with _claims_lock:
        found = _claims.get(key)
        if found is None:
            found = _claims[key] = WriterClaim(db, ttl)
        found.ttl = max(found.ttl, ttl)
        found.users += 1
    try:
        found.confirm()
    except BaseException:
        unclaim(found)
        raise
    return found


def unclaim(found: WriterClaim) -> None:
    """A handle of the store is closed; the last one removes the record."""
    with _claims_lock:  # held while removing, so that a new claim writes after
        found.users -= 1
        if found.users > 0:
            return
        if _claims.get(os.path.realpath(found.db)) is found:
            del _claims[os.path.realpath(found.db)]
        found.release()


@atexit.register
def _release_all() -> None:
    with _claims_lock:
        left = list(_claims.values())
        _claims.clear()
    for found in left:
        try:
            found.release()
        except OSError:
            pass


def _forget() -> None:
    # A forked child writes under its own pid: the parent's records stay the parent's.
    global _claims_lock
    _claims_lock = threading.Lock()
    _claims.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget)


def read_only_filesystem(path: Path) -> bool:
    """Whether ``path`` is on a filesystem mounted read-only."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def pending_log(db: Path) -> str | None:
    """The name of ``db``'s write-ahead log or journal if it holds changes, else None."""
    real = Path(os.path.realpath(db))
    for suffix in ("-wal", "-journal"):
        side = real.with_name(real.name + suffix)
        try:
            if os.stat(side).st_size:
                return side.name
        except OSError:
            continue
    return None


def reading_query(db: Path, writable: bool) -> str:
    """The URI query with which a connection that only reads opens ``db``.

    On a local disk (or an allowed network filesystem): ``mode=rw`` where
    ``writable`` and nothing but this connection would be in the way (see
    :func:`runstore.storefile.reading_mode`), else ``mode=ro``; on a
    read-only filesystem ``mode=ro&immutable=1`` unless a log holds changes
    (nobody can write the file, and SQLite cannot make its ``-shm``). On a network
    filesystem: ``mode=ro&immutable=1`` when nobody writes the store, else
    :class:`~runstore.errors.NetworkFilesystemError` or
    :class:`~runstore.errors.OtherHostWritingError`. A writer of this very
    host counts too: it writes through a local path, whose ``-shm`` is not
    the file this mount would map.
    """
    mount = network_mount(db)
    if mount is None:
        if not writable and read_only_filesystem(db) and not pending_log(db):
            # Nobody writes a file on a read-only filesystem, and SQLite could
            # not make the -shm it needs to read a store in WAL mode there.
            return "mode=ro&immutable=1"
        return f"mode={'rw' if writable else 'ro'}"
    host, now = socket.gethostname(), clock()
    live = [r for r in records(db) if r.expires >= now]
    for record in live:
        if record.mine(host):  # through a local path: its -shm is not what we would map
            raise NetworkFilesystemError(
                str(db), mount.fstype, mount.point, mount.source,
                f"process {record.pid} of this host is writing it through another path "
                f"(its record is {record.path}). Reading it through the network mount "
                f"while it is written can return wrong results: open it through the "
                f"path that process uses.")
    if live:
        other = max(live, key=lambda r: r.expires)
        raise OtherHostWritingError(str(db), other.host, other.pid, other.expires,
                                    str(other.path), now,
                                    action="read it over a network filesystem")
    real = Path(os.path.realpath(db))
    for suffix, what in (("-wal", "write-ahead log"), ("-journal", "rollback journal")):
        side = real.with_name(real.name + suffix)
        try:
            size = os.stat(side).st_size
        except OSError:
            continue
        if size:
            raise NetworkFilesystemError(
                str(db), mount.fstype, mount.point, mount.source,
                f"its {what} {side.name} holds changes that are not in the file yet (a "
                f"process on the store's host is writing it, or stopped without closing "
                f"it). Read it on the host whose disk holds it; or wait until its writer "
                f"is done, or open it once for writing on that host (runstore upgrade "
                f"{db} does only that for a current store), which folds the log into "
                f"the file; or export a bundle there (runstore export) and read that.")
    return "mode=ro&immutable=1"
