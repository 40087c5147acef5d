"""HDF5 side files holding the arrays of results (no SQL). Internal module.

Each call to :meth:`ArrayStore.write` writes a *new* file: it is written under
a temporary ``.part`` name, closed, fsynced, renamed, and its folder fsynced;
only then does the store commit the rows that point into it. A file that rows point into is never
opened for writing again, so a crash can only leave behind ``.part`` files or
files no row points into, which ``check``/``gc`` find. Every read opens and
closes its file.

Inside a file, the arrays of run ``<id>`` sit at ``/<id>/<digest>``.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import socket
import stat
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np
import psutil

from .errors import ArrayFileError, StorageFullError
from .interfaces import IArrayStore, implementer

__all__ = ["ArrayStore", "MemoryArrayStore", "RAW_KINDS", "raw_bytes", "SIDE_FILE_PATTERN",
           "PARTIAL_FILE_PATTERN", "side_file_writer", "full_disk_error"]

_SUFFIX = ".h5"
#: numpy kinds HDF5 has no type for (unicode, datetime, timedelta); these, and
#: any other dtype h5py cannot map, are stored as their raw bytes (uint8 with
#: one more axis) and viewed back from the dtype recorded in the result.
RAW_KINDS = "UMm"
_PARTIAL = ".part"
#: Type codes of long doubles (float128, complex256): padded, stored as raw bytes.
_PADDED = "gG"


def _write_dataset(group: h5py.h5g.GroupID, key: str, array: np.ndarray) -> None:
    """Write one array with h5py's low-level API (about twice as fast per dataset)."""
    try:
        if array.dtype.kind in RAW_KINDS or array.dtype.char in _PADDED or (
                array.ndim == 0 and array.dtype.kind == "S"):
            # No HDF5 type; or HDF5 would not keep the bytes exactly (the
            # padding of long doubles), or h5py reads a 0-d string back as
            # bytes of another length.
            raise TypeError(f"HDF5 has no exact type for {array.dtype}")
        hdf5_type = h5py.h5t.py_create(array.dtype)
    except TypeError:  # e.g. unicode, datetimes, complex256: keep the bytes
        array = raw_bytes(array)
        hdf5_type = h5py.h5t.py_create(array.dtype)
    data = np.ascontiguousarray(array) if array.ndim else array
    space = (h5py.h5s.create_simple(data.shape) if data.ndim
             else h5py.h5s.create(h5py.h5s.SCALAR))
    dataset = h5py.h5d.create(group, key.encode(), hdf5_type, space)
    if data.size:
        dataset.write(h5py.h5s.ALL, h5py.h5s.ALL, data)


def _fsync(path: Path) -> None:
    """Flush a file's (or a folder's) content to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _disk_full(exc: BaseException, directory: Path,
               arrays: Mapping[str, Mapping[str, np.ndarray]]) -> bool:
    """Whether a failed write failed for lack of space (called before cleaning up).

    By errno where the error (or one it was raised from) has it; h5py often
    keeps only the text of HDF5's error, so else by the space left, which is
    then less than the write needed.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if getattr(seen, "errno", None) in _FULL_ERRNOS:
            return True
        seen = seen.__cause__ or seen.__context__
    if not isinstance(exc, (OSError, RuntimeError)):
        return False
    free = _free_bytes(directory)
    needed = sum(a.nbytes for named in arrays.values() for a in named.values())
    return free is not None and free < needed + _HEADROOM


_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
#: Space below which a failed write counts as a full disk (HDF5's metadata).
_HEADROOM = 1 << 20


def full_disk_error(path: Path, what: str) -> StorageFullError:
    """The :class:`StorageFullError` for ``path``: its filesystem, free space, what failed."""
    folder = path if path.is_dir() else path.parent
    return StorageFullError(str(path), _mount_point(folder), _free_bytes(folder), what)


def _free_bytes(directory: Path) -> int | None:
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return None


def _mount_point(path: Path) -> str:
    """The mount point of the filesystem holding ``path``."""
    path = path.resolve()
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return str(path)


def raw_bytes(array: np.ndarray) -> np.ndarray:
    """An array's bytes as uint8, shaped ``array.shape + (itemsize,)``."""
    flat = np.ascontiguousarray(array).reshape(-1)
    return flat.view(np.uint8).reshape(array.shape + (array.dtype.itemsize,))


@implementer(IArrayStore)
class ArrayStore:
    """The folder of HDF5 side files beside a store's SQLite file."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def write(self, arrays: Mapping[str, Mapping[str, np.ndarray]]) -> str:
        """Write ``{run_id: {digest: array}}`` into a new file; return its name.

        The file is written under a ``.part`` name, closed, fsynced, renamed
        into place, and its folder is fsynced, all before this returns: rows
        committed afterwards never point into a file a power cut could lose.

        Raises
        ------
        StorageFullError
            If the filesystem is full (or the quota is reached); the ``.part``
            file is removed.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        name = self._new_name()
        final = self.directory / name
        partial = final.with_name(name + _PARTIAL)
        try:
            # libver="latest": newer object headers write large datasets faster;
            # any HDF5 since 1.10 (2017) reads them.
            with h5py.File(partial, "w", libver="latest") as f:
                for run_id, named in arrays.items():
                    group = h5py.h5g.create(f.id, run_id.encode())
                    for key, array in named.items():
                        _write_dataset(group, key, array)
            _fsync(partial)
            os.replace(partial, final)
            _fsync(self.directory)
        except BaseException as exc:
            full = isinstance(exc, Exception) and _disk_full(exc, self.directory, arrays)
            partial.unlink(missing_ok=True)
            if full:
                raise full_disk_error(self.directory, f"write the side file {name}") from exc
            raise
        return name

    def pack(self, runs: Mapping[str, Sequence[str]], target: Path) -> None:
        """Copy the groups of runs ``{side file: [run ids]}`` into one new HDF5 file.

        The file is written under a temporary name and renamed when complete.
        """
        partial = target.with_name(target.name + _PARTIAL)
        with h5py.File(partial, "w", libver="latest") as out:
            for filename, run_ids in runs.items():
                with h5py.File(self.path(filename), "r") as source:
                    for run_id in run_ids:
                        source.copy(source[run_id], out, name=run_id)
        os.replace(partial, target)

    def _new_name(self) -> str:
        """A new side file's name: ``<ns hex>-<12 hex>-<host>~<pid>~<start>.h5``.

        The writer (this process: host, pid, start time, as
        ``store.owner_token()``) is part of the name, and so of its
        ``.part`` name, so that ``check``/``gc`` never remove the file of a
        writer that is alive (see :func:`side_file_writer`).
        """
        return f"{time.time_ns():x}-{uuid.uuid4().hex[:12]}-{_writer_tag()}{_SUFFIX}"

    def repack(self, filename: str, run_ids: Iterable[str]) -> str:
        """Copy the groups of some runs of a side file into a new side file; return its name.

        Used to drop the arrays of runs that no longer point into a file.
        The new file is written under a temporary name and renamed when complete.
        """
        name = self._new_name()
        self.pack({filename: list(run_ids)}, self.directory / name)
        return name

    def groups(self, filename: str) -> list[str]:
        """The run ids a side file holds arrays of."""
        with h5py.File(self.path(filename), "r") as f:
            return list(f)

    def path(self, filename: str) -> Path:
        """Return the full path of a side file, refusing names that leave the folder."""
        if Path(filename).name != filename or not filename.endswith(_SUFFIX):
            raise ArrayFileError(filename, "is not the name of a side file")
        return self.directory / filename

    def read(self, filename: str, key: str) -> np.ndarray:
        """Read one array, ``key`` being ``"<run_id>/<digest>"``."""
        (array,) = self.read_many(filename, [key]).values()
        return array

    def read_many(self, filename: str, keys: Iterable[str]) -> dict[str, np.ndarray]:
        """Read several arrays from one file, opening it once."""
        path = self.path(filename)
        try:
            with h5py.File(path, "r") as f:
                return {key: np.asarray(f[key][()]) for key in keys}
        except FileNotFoundError:
            raise ArrayFileError(filename, f"is missing from {self.directory}") from None
        except (OSError, KeyError) as exc:
            raise ArrayFileError(filename, f"cannot be read ({exc})") from exc

    def verify(self, filename: str,
               runs: Sequence[tuple[str, Sequence[tuple[str, tuple[int, ...]]]]]
               ) -> dict[str, str]:
        """Check that runs' arrays are in a side file with their shapes.

        ``runs`` gives, for each run id, the (name, shape) of its arrays.
        Returns a problem description for each run that fails.
        """
        problems: dict[str, str] = {}
        try:
            with h5py.File(self.path(filename), "r") as f:
                for run_id, arrays in runs:
                    for name, shape in arrays:
                        key = f"{run_id}/{name}"
                        if key not in f:
                            problems[run_id] = f"{key} is missing from {filename}"
                            break
                        stored = f[key].shape
                        if stored != shape and stored[:-1] != shape:  # raw bytes add an axis
                            problems[run_id] = f"{key} has shape {stored}, expected {shape}"
                            break
        except (OSError, ArrayFileError) as exc:
            problem = "is missing" if isinstance(exc, FileNotFoundError) else (
                f"cannot be read ({exc})")
            for run_id, _ in runs:
                problems[run_id] = f"side file {filename} {problem}"
        return problems

    def files(self) -> list[str]:
        """List this store's complete side files present, oldest first.

        Only regular files (not symbolic links, folders, FIFOs) whose names
        match :data:`SIDE_FILE_PATTERN` count: anything else in the folder
        is not runstore's, and is never listed for deletion.
        """
        return self._own_entries(SIDE_FILE_PATTERN)

    def partial_files(self) -> list[str]:
        """List half-written side files (``.part``) present: a writer's, alive or dead."""
        return self._own_entries(PARTIAL_FILE_PATTERN)

    def _own_entries(self, pattern: re.Pattern[str]) -> list[str]:
        try:
            entries = list(os.scandir(self.directory))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(entry.name for entry in entries if pattern.fullmatch(entry.name)
                      and entry.is_file(follow_symlinks=False))

    def strange_entries(self) -> list[str]:
        """Entries with a side file's name that are not regular files (never deleted)."""
        try:
            entries = list(os.scandir(self.directory))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(entry.name for entry in entries if (
            SIDE_FILE_PATTERN.fullmatch(entry.name) or PARTIAL_FILE_PATTERN.fullmatch(entry.name))
            and not entry.is_file(follow_symlinks=False))

    def remove(self, filename: str) -> None:
        """Delete a side file of this store (that no committed row points into).

        Refuses names that are not this store's side files; never follows a
        symbolic link, and leaves anything that is not a regular file alone.
        """
        if Path(filename).name != filename or not (
                SIDE_FILE_PATTERN.fullmatch(filename)
                or PARTIAL_FILE_PATTERN.fullmatch(filename)):
            raise ArrayFileError(filename, "is not the name of a side file of this store")
        target = self.directory / filename
        try:
            if not stat.S_ISREG(target.lstat().st_mode):
                return
        except FileNotFoundError:
            return
        target.unlink(missing_ok=True)


class MemoryArrayStore(ArrayStore):
    """Side "files" kept in memory, for stores that keep results in memory only."""

    def __init__(self) -> None:
        super().__init__(Path("(memory)"))
        self._files: dict[str, dict[str, np.ndarray]] = {}

    def write(self, arrays: Mapping[str, Mapping[str, np.ndarray]]) -> str:
        name = f"{uuid.uuid4().hex}{_SUFFIX}"
        self._files[name] = {
            f"{run_id}/{digest}": array
            for run_id, named in arrays.items() for digest, array in named.items()
        }
        return name

    def read_many(self, filename: str, keys: Iterable[str]) -> dict[str, np.ndarray]:
        try:
            stored = self._files[filename]
            return {key: stored[key] for key in keys}
        except KeyError:
            raise ArrayFileError(filename, "is not in memory") from None

    def verify(self, filename: str,
               runs: Sequence[tuple[str, Sequence[tuple[str, tuple[int, ...]]]]]
               ) -> dict[str, str]:
        stored = self._files.get(filename, {})
        return {run_id: f"are not in memory file {filename}" for run_id, arrays in runs
                if any(f"{run_id}/{name}" not in stored for name, _ in arrays)}

    def files(self) -> list[str]:
        return sorted(self._files)

    def partial_files(self) -> list[str]:
        return []

    def remove(self, filename: str) -> None:
        self._files.pop(filename, None)


# -- side-file names and their writers ----------------------------------------------

#: The names of a store's complete side files: ``<ns hex>-<12 hex>.h5``
#: (earlier runstores) or ``<ns hex>-<12 hex>-<host>~<pid>~<start>.h5``.
SIDE_FILE_PATTERN = re.compile(
    r"[0-9a-f]{1,16}-[0-9a-f]{12}(?:-(?P<host>[A-Za-z0-9.-]{1,64})~(?P<pid>[0-9]{1,10})"
    r"~(?P<start>[0-9]{1,12}\.[0-9]{3}))?\.h5")
#: The names of half-written side files: a side file's name and ``.part``.
PARTIAL_FILE_PATTERN = re.compile(SIDE_FILE_PATTERN.pattern + r"\.part")


def _host_tag(host: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "-", host)[:64] or "-"


def _writer_tag() -> str:
    """``<host>~<pid>~<start>`` of this process (its start time to the millisecond)."""
    proc = psutil.Process()
    return f"{_host_tag(socket.gethostname())}~{proc.pid}~{proc.create_time():.3f}"


def side_file_writer(filename: str) -> str:
    """Whether the writer named in a side file's name is ``"alive"``, ``"dead"`` or ``"unknown"``.

    ``"dead"`` only when the name says the writer ran on this host and no
    process with its pid and start time exists; ``"unknown"`` for files
    from another host, or named before writers were part of the name
    (their age decides).
    """
    found = (SIDE_FILE_PATTERN.fullmatch(filename)
             or PARTIAL_FILE_PATTERN.fullmatch(filename))
    if found is None or found["host"] is None:
        return "unknown"
    if found["host"] != _host_tag(socket.gethostname()):
        return "unknown"
    try:
        proc = psutil.Process(int(found["pid"]))
        alive = (abs(proc.create_time() - float(found["start"])) <= 0.01
                 and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return "dead"
    except psutil.Error:  # e.g. access denied: it exists, so it may be writing
        return "alive"
    return "alive" if alive else "dead"
