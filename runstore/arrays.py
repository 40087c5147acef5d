"""HDF5 side files holding the arrays of results (no SQL). Internal module.

Each call to :meth:`ArrayStore.write` writes a *new* file: it is written under
a temporary ``.part`` name, closed, fsynced, renamed, and its folder fsynced;
only then does the store commit the rows that point into it. A file that rows point into is never
opened for writing again, so a crash can only leave behind ``.part`` files or
files no row points into, which ``check``/``gc`` find. Every read opens and
closes its file.

Inside a file (format 2, :data:`FORMAT`), the arrays of run ``<id>`` sit at
``/<id>/<key path>``: ``/<id>/fields/E`` for ``result["fields"]["E"]`` (the
name recorded in the array's payload in the result, see
:func:`runstore.results.name_arrays`). Attributes say what things are, so
that h5py or ``h5dump`` alone explain a file:

- the root: ``runstore_format`` (2; files without it are format 1, whose
  arrays are named ``0``, ``1`` ... in the order of the result) and
  ``creator`` (``"runstore <version>"``);
- each run's group: ``run_id``, ``run_type``, ``parameters`` (the canonical
  JSON document of the run's parameters, as in ``runs.parameters``),
  ``parameters.<name>`` for each parameter that is an int (within int64),
  float, bool or str, and ``runstore_format``;
- each dataset: ``crc32`` (of the array's bytes, as in its payload), and
  ``raw_dtype`` (a numpy dtype string) for arrays of dtypes HDF5 has no type
  for, stored as raw ``uint8`` bytes with one more axis.

Text attributes are variable-length UTF-8 strings.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import socket
import stat
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypedDict, TypeVar

import h5py
import numpy as np
import psutil

from .compression import ArrayOptions, check_filters, dataset_plist
from .errors import ArrayFileError, DecodingError, StorageFullError, UnsafeArrayFileError
from .interfaces import IArrayStore, implementer

__all__ = ["ArrayStore", "MemoryArrayStore", "RAW_KINDS", "raw_bytes", "SIDE_FILE_PATTERN",
           "PARTIAL_FILE_PATTERN", "side_file_writer", "full_disk_error", "expected_array",
           "FORMAT", "RunInfo"]

#: What an array must be: its dtype and shape, from its result's payload.
Expected = tuple[np.dtype[Any], tuple[int, ...]]

_SUFFIX = ".h5"
#: numpy kinds HDF5 has no type for (unicode, datetime, timedelta); these, and
#: any other dtype h5py cannot map, are stored as their raw bytes (uint8 with
#: one more axis) and viewed back from the dtype recorded in the result.
RAW_KINDS = "UMm"
_PARTIAL = ".part"
#: Type codes of long doubles (float128, complex256): padded, stored as raw bytes.
_PADDED = "gG"
#: The version of the layout of side files and bundles' ``.h5`` files this
#: runstore writes (its root's ``runstore_format``; 1 for files without one).
FORMAT = 2


class RunInfo(TypedDict, total=False):
    """What a side file records about a run beside its arrays (plain data, no SQL)."""

    #: The run type's name (``runs.run_type``).
    run_type: str
    #: The canonical JSON document of its parameters (``runs.parameters``).
    parameters: str
    #: The CRC-32 of each array, by name (from its payload).
    checksums: Mapping[str, int]
    #: The names of all its arrays (from their payloads): what a copy takes.
    arrays: Sequence[str]


# -- attributes, with h5py's low-level API (about three times as fast) -------------

_TEXT = h5py.string_dtype()
_TEXT_FILE = h5py.h5t.py_create(_TEXT, logical=True)  # variable-length UTF-8
_TEXT_MEMORY = h5py.h5t.py_create(_TEXT)  # Python str objects
_SCALAR = h5py.h5s.create(h5py.h5s.SCALAR)
_I8, _F8, _BOOL = np.dtype("<i8"), np.dtype("<f8"), np.dtype(bool)
_NUMBER_TYPES = {dtype: h5py.h5t.py_create(dtype) for dtype in (_I8, _F8, _BOOL)}
_INT64 = 2**63


def _set_attribute(obj: Any, name: str, value: str | int | float | bool) -> None:
    """Give the HDF5 object ``obj`` (a low-level id) a scalar attribute.

    HDF5 takes about 10 us to add an attribute whatever is done; what is
    done here on top of it is kept to a minimum (types made once).
    """
    kind = type(value)
    if kind is str:
        hdf5_type, data, memory = _TEXT_FILE, np.array(value, dtype=_TEXT), _TEXT_MEMORY
    else:
        dtype = _I8 if kind is int else _F8 if kind is float else _BOOL
        hdf5_type = memory = _NUMBER_TYPES[dtype]
        data = np.array(value, dtype=dtype)
    h5py.h5a.create(obj, name.encode(), hdf5_type, _SCALAR).write(data, mtype=memory)


def _file_attributes(f: h5py.File) -> None:
    _set_attribute(f.id, "runstore_format", FORMAT)
    _set_attribute(f.id, "creator", f"runstore {_version()}")


def _version() -> str:
    from . import __version__  # the package imports this module

    return __version__


def run_attributes(run_id: str, info: RunInfo) -> dict[str, str | int | float | bool]:
    """The attributes of a run's group: its id, type, parameters and the format."""
    attributes: dict[str, str | int | float | bool] = {"run_id": run_id}
    if "run_type" in info:
        attributes["run_type"] = info["run_type"]
    if "parameters" in info:
        attributes["parameters"] = info["parameters"]
        attributes.update(_typed_parameters(info["parameters"]))
    attributes["runstore_format"] = FORMAT
    return attributes


def _typed_parameters(document: str) -> dict[str, str | int | float | bool]:
    """``parameters.<name>`` for each int (within int64), float, bool and str parameter."""
    try:
        values = json.loads(document)["values"]
    except (ValueError, TypeError, KeyError):
        return {}
    typed: dict[str, str | int | float | bool] = {}
    for pair in values if isinstance(values, list) else []:
        if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)):
            continue
        name, tree = pair
        if isinstance(tree, (str, bool, float)) or (
                isinstance(tree, int) and -_INT64 <= tree < _INT64):
            typed[f"parameters.{name}"] = tree
        elif tree in (["float", "nan"], ["float", "inf"], ["float", "-inf"]):
            typed[f"parameters.{name}"] = float(tree[1])
    return typed


def _write_dataset(group: h5py.h5g.GroupID, key: str, array: np.ndarray,
                   checksum: int | None = None, options: ArrayOptions | None = None
                   ) -> None:
    """Write one array with h5py's low-level API (about twice as fast per dataset)."""
    raw = None
    try:
        if array.dtype.kind in RAW_KINDS or array.dtype.char in _PADDED or (
                array.ndim == 0 and array.dtype.kind == "S"):
            # No HDF5 type; or HDF5 would not keep the bytes exactly (the
            # padding of long doubles), or h5py reads a 0-d string back as
            # bytes of another length.
            raise TypeError(f"HDF5 has no exact type for {array.dtype}")
        hdf5_type = h5py.h5t.py_create(array.dtype)
    except TypeError:  # e.g. unicode, datetimes, complex256: keep the bytes
        raw = array.dtype.str
        array = raw_bytes(array)
        hdf5_type = h5py.h5t.py_create(array.dtype)
    data = np.ascontiguousarray(array) if array.ndim else array
    space = h5py.h5s.create_simple(data.shape) if data.ndim else _SCALAR
    dataset = h5py.h5d.create(group, key.encode(), hdf5_type, space,
                              dcpl=dataset_plist(options, data))
    if data.size:
        dataset.write(h5py.h5s.ALL, h5py.h5s.ALL, data)
    if checksum is not None:
        _set_attribute(dataset, "crc32", checksum)
    if raw is not None:
        _set_attribute(dataset, "raw_dtype", raw)


#: Free space (bytes) beyond four times a side file's size under which it is
#: built in memory first (see :func:`_write_file`).
_ROOM = 256 * 2**20


Arrays = Mapping[str, Mapping[str, np.ndarray]]
Runs = Mapping[str, RunInfo]


def _write_file(path: Path, arrays: Arrays, runs: Runs, free: int | None,
                options: ArrayOptions | None = None) -> None:
    """Write a side file at ``path``, safely even on a disk about to be full.

    HDF5 does not survive running out of space while it writes (h5py raises
    from object destructors, and the process can crash), so where the disk
    may be too small for the file it is built in memory and written by
    Python, whose errors are plain ``OSError`` exceptions; with room to
    spare HDF5 writes it directly (no copy of the arrays in memory).
    """
    size = sum(a.nbytes + 4096 for named in arrays.values() for a in named.values())
    if free is not None and free > 4 * size + _ROOM:
        with h5py.File(path, "w", libver="latest") as f:
            _fill(f, arrays, runs, options)
        return
    image = _file_image(arrays, runs, size, options)
    with open(path, "wb") as out:
        out.write(image)


def _fill(f: h5py.File, arrays: Arrays, runs: Runs, options: ArrayOptions | None) -> None:
    _file_attributes(f)
    for run_id, named in arrays.items():
        group = h5py.h5g.create(f.id, run_id.encode())
        info = runs.get(run_id, {})
        for attr, value in run_attributes(run_id, info).items():
            _set_attribute(group, attr, value)
        checksums = info.get("checksums", {})
        subgroups: dict[str, Any] = {}
        for name, array in named.items():
            parent, _, leaf = name.rpartition("/")
            where = _subgroup(group, parent, subgroups) if parent else group
            _write_dataset(where, leaf, array, checksums.get(name), options)


def _subgroup(group: Any, path: str, made: dict[str, Any]) -> Any:
    """The group at ``path`` under a run's group, made (with its parents) if new."""
    found = made.get(path)
    if found is None:
        parent, _, leaf = path.rpartition("/")
        above = _subgroup(group, parent, made) if parent else group
        found = made[path] = h5py.h5g.create(above, leaf.encode())
    return found


def _file_image(arrays: Arrays, runs: Runs, size: int, options: ArrayOptions | None
                ) -> bytes:
    """The bytes of an HDF5 file holding ``{run_id: {key: array}}``, made in memory."""
    # libver="latest": newer object headers write large datasets faster; any
    # HDF5 since 1.10 (2017) reads them. One allocation of about the final
    # size (the core driver grows by 64 KiB otherwise).
    with h5py.File(f"runstore-{uuid.uuid4().hex}.h5", "w", driver="core",
                   backing_store=False, libver="latest",
                   block_size=max(65536, size + 65536)) as f:
        _fill(f, arrays, runs, options)
        f.flush()
        image: bytes = f.id.get_file_image()
    return image


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


def expected_array(payload: Mapping[str, Any], name: str) -> Expected:
    """The dtype and shape an array's ``ndarray`` payload promises."""
    try:
        dtype = np.dtype(payload["dtype"])
        shape = tuple(int(n) for n in payload["shape"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DecodingError(f"result array {name}", f"a malformed payload ({exc})") from exc
    if dtype.hasobject or any(n < 0 for n in shape):
        raise DecodingError(f"result array {name}", f"the array type {dtype}{shape}")
    return dtype, shape


def _regular_file(path: Path, filename: str) -> None:
    """Refuse a path that is not a regular file (a FIFO would block), without opening it."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ArrayFileError(filename, f"is missing (there is no {path})") from None
    if not stat.S_ISREG(mode):
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a directory" if stat.S_ISDIR(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "a device file")
        raise UnsafeArrayFileError(filename, str(path), f"{kind}, not a regular file,")


_H5 = TypeVar("_H5", h5py.Group, h5py.Dataset)


def _member(parent: h5py.Group, name: str, kind: type[_H5], filename: str, where: str) -> _H5:
    """``parent[name]``, if it is a group or dataset (``kind``) linked there and only there.

    The link is looked at before the object is touched: soft and external
    links are refused, never followed (an external link reads another file).
    """
    if not name or "/" in name or name in (".", ".."):
        raise UnsafeArrayFileError(filename, where, f"the path {name!r}")
    link = parent.get(name, getlink=True)
    if link is None:
        raise KeyError(f"{where} is missing")
    if not isinstance(link, h5py.HardLink):
        found = "an external link" if isinstance(link, h5py.ExternalLink) else "a soft link"
        raise UnsafeArrayFileError(filename, where, found)
    obj = parent[name]
    if not isinstance(obj, kind):
        found = ("a group" if isinstance(obj, h5py.Group) else "a dataset"
                 if isinstance(obj, h5py.Dataset) else "a named datatype")
        belongs = ("an array" if kind is h5py.Dataset else "a group" if "/" in where
                   else "a run's group")
        raise UnsafeArrayFileError(filename, where, f"{found} where {belongs} belongs,")
    if h5py.h5o.get_info(obj.id).rc != 1:
        raise UnsafeArrayFileError(filename, where, "an object linked from several places")
    return obj


def _dataset(f: h5py.File, filename: str, key: str, expected: Expected | None
             ) -> h5py.Dataset:
    """The dataset at ``key`` ("<run id>/<path>"), checked before any of it is read.

    Each component of the path is looked up as :func:`_member` does: a hard
    link to an object linked nowhere else, a group on the way and a
    dataset at the end.
    """
    parts = key.split("/")
    group: h5py.Group = f
    for depth, part in enumerate(parts[:-1]):
        group = _member(group, part, h5py.Group, filename, "/".join(parts[:depth + 1]))
    dataset = _member(group, parts[-1], h5py.Dataset, filename, key)
    _check_dataset(dataset, filename, key, expected)
    return dataset


def _check_dataset(dataset: h5py.Dataset, filename: str, key: str,
                   expected: Expected | None) -> None:
    """Refuse a dataset stored elsewhere, oddly chunked, or not of the expected type."""
    if dataset.is_virtual:
        raise UnsafeArrayFileError(filename, key, "a virtual dataset (mapped from others)")
    if dataset.external:
        raise UnsafeArrayFileError(filename, key, "a dataset stored in external files")
    shape = dataset.shape
    if shape is None:
        raise UnsafeArrayFileError(filename, key, "a dataset without a dataspace")
    chunks = dataset.chunks
    if chunks is not None and any(c > max(n, 1) for c, n in zip(chunks, shape)):
        raise UnsafeArrayFileError(filename, key, f"chunks {chunks} larger than its "
                                   f"shape {shape}")
    if chunks is not None:  # only chunked datasets have filters
        check_filters(dataset, filename, key)
    if expected is not None:
        dtype, wanted = expected
        raw = dataset.dtype == np.uint8 and shape == wanted + (dtype.itemsize,)
        if not raw and (dataset.dtype != dtype or shape != wanted):
            raise UnsafeArrayFileError(filename, key, f"{dataset.dtype.str}{shape} data "
                                       f"(expected {dtype.str}{wanted})")


def _copy_tree(source: h5py.Group, out: h5py.Group, filename: str, where: str) -> None:
    """Copy a run's group member by member, checking each as :func:`_dataset` does.

    Never a blind copy of a subtree: every link is looked at first (soft and
    external links, objects linked twice, virtual and external datasets, and
    anything that is neither group nor dataset are refused).
    """
    _copy_attributes(source, out)
    for name in source:
        path = f"{where}/{name}"
        hard = isinstance(source.get(name, getlink=True), h5py.HardLink)
        if hard and source.get(name, getclass=True) is h5py.Group:
            group = _member(source, name, h5py.Group, filename, path)
            _copy_tree(group, out.create_group(name), filename, path)
        else:
            dataset = _member(source, name, h5py.Dataset, filename, path)
            _check_dataset(dataset, filename, path, None)
            source.copy(dataset, out, name=name)


def _copy_attributes(source: h5py.Group, out: h5py.Group) -> None:
    """Copy a group's attributes that are plain values (numbers, text, small arrays)."""
    for name in source.attrs:
        try:
            value = source.attrs[name]
            if isinstance(value, np.ndarray) and value.dtype.kind not in "biufcSU":
                continue  # references, compounds ...: not runstore's
            out.attrs[name] = value
        except (OSError, TypeError, ValueError):  # a type h5py cannot read: skip it
            continue


def _add_missing(group: h5py.Group, attributes: Mapping[str, str | int | float | bool]
                 ) -> None:
    for name, value in attributes.items():
        if name not in group.attrs:
            _set_attribute(group.id, name, value)


@implementer(IArrayStore)
class ArrayStore:
    """The folder of HDF5 side files beside a store's SQLite file."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def write(self, arrays: Arrays, runs: Runs | None = None,
              options: ArrayOptions | None = None) -> str:
        """Write ``{run_id: {name: array}}`` into a new file; return its name.

        A name is a ``/``-separated path under the run's group (nested groups
        are made). ``runs`` gives, by run id, what the file records about
        each run beside its arrays (:class:`RunInfo`: its type, parameters
        and the arrays' CRC-32s) as attributes (see the module documentation).
        ``options`` chunks and compresses the arrays large enough
        (:class:`~runstore.compression.ArrayOptions`; default: contiguous).

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
            _write_file(partial, arrays, runs or {}, _free_bytes(self.directory), options)
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

    def pack(self, runs: Mapping[str, Sequence[str]], target: Path,
             infos: Runs | None = None) -> None:
        """Copy the groups of runs ``{side file: [run ids]}`` into one new HDF5 file.

        Each run's groups and datasets are checked as :meth:`read_many`
        checks them (links, objects linked twice, virtual and external
        datasets are refused, not copied) and copied with their attributes:
        the arrays ``infos[run_id]["arrays"]`` names (those its result
        points to), or else every member, walked one by one. ``infos`` (by
        run id) also adds the run attributes a group lacks (groups written
        before format 2 have none). The file is written under a temporary
        name and renamed when complete.
        """
        partial = target.with_name(target.name + _PARTIAL)
        try:
            with h5py.File(partial, "w", libver="latest") as out:
                _file_attributes(out)
                for filename, run_ids in runs.items():
                    path = self.path(filename)
                    _regular_file(path, filename)
                    with h5py.File(path, "r") as source:
                        for run_id in run_ids:
                            info = (infos or {}).get(run_id, RunInfo())
                            self._copy_group(source, filename, run_id, out,
                                             info.get("arrays"))
                            if infos and run_id in infos:
                                _add_missing(out[run_id], run_attributes(run_id, info))
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, target)

    def _copy_group(self, source: h5py.File, filename: str, run_id: str,
                    out: h5py.File, names: Sequence[str] | None) -> None:
        try:
            group = _member(source, run_id, h5py.Group, filename, run_id)
            copy = out.create_group(run_id)
            if names is None:
                _copy_tree(group, copy, filename, run_id)
                return
            _copy_attributes(group, copy)
            for name in names:
                dataset = _dataset(source, filename, f"{run_id}/{name}", None)
                parent, _, leaf = name.rpartition("/")
                target = copy.require_group(parent) if parent else copy
                source.copy(dataset, target, name=leaf)
        except (KeyError, TypeError, ValueError) as exc:
            raise ArrayFileError(filename, f"cannot be read ({exc})") from exc

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
        path = self.path(filename)
        _regular_file(path, filename)
        with h5py.File(path, "r") as f:
            return list(f)

    def path(self, filename: str) -> Path:
        """Return the full path of a side file, refusing names that leave the folder."""
        if Path(filename).name != filename or not filename.endswith(_SUFFIX):
            raise ArrayFileError(filename, "is not the name of a side file")
        return self.directory / filename

    def read(self, filename: str, key: str, expected: Expected | None = None) -> np.ndarray:
        """Read one array, ``key`` being ``"<run_id>/<digest>"``."""
        (array,) = self.read_many(filename, [key],
                                  None if expected is None else {key: expected}).values()
        return array

    def read_many(self, filename: str, keys: Iterable[str],
                  expected: Mapping[str, Expected] | None = None) -> dict[str, np.ndarray]:
        """Read several arrays from one file, opening it once.

        Before anything is read, the file must be a regular file, and each
        array a dataset stored in it and linked only at its key (soft and
        external links, virtual and external datasets are refused, never
        followed); with ``expected`` (``{key: (dtype, shape)}``), its dtype and
        shape (hence its size) must be the expected ones.
        """
        wanted = expected or {}
        with self._open(filename) as f:
            datasets = {key: _dataset(f, filename, key, wanted.get(key)) for key in keys}
            return {key: np.asarray(dataset[()]) for key, dataset in datasets.items()}

    @contextmanager
    def _open(self, filename: str) -> Iterator[h5py.File]:
        """A side file opened to read, once it is known to be a regular file of the folder.

        Errors reading it become :class:`~runstore.errors.ArrayFileError`
        (those of a hostile file stay :class:`~runstore.errors.UnsafeArrayFileError`).
        """
        path = self.path(filename)
        _regular_file(path, filename)
        try:
            with h5py.File(path, "r") as f:
                yield f
        except FileNotFoundError:
            raise ArrayFileError(filename, f"is missing (there is no {path})") from None
        except (OSError, KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ArrayFileError):
                raise
            raise ArrayFileError(filename, f"cannot be read ({exc})") from exc

    def read_box(self, filename: str, key: str, expected: Expected,
                 box: tuple[slice, ...]) -> np.ndarray:
        """Read a box (one positive-step slice per axis) of one array, checked first.

        The file and the dataset are checked as :meth:`read_many` checks them
        (``expected`` is required), then only the box is read. Arrays stored
        as raw bytes come back viewed as their dtype.
        """
        with self._open(filename) as f:
            dataset = _dataset(f, filename, key, expected)
            dtype, shape = expected
            if all(s.start == 0 and s.stop == n and s.step in (None, 1)
                   for s, n in zip(box, shape)):
                data = np.asarray(dataset[()])  # whole: HDF5's fastest read
            elif dataset.shape == shape:
                return np.asarray(dataset[box])
            else:
                data = np.asarray(dataset[box + (slice(None),)])
        if data.shape == shape + (dtype.itemsize,) or data.dtype != dtype:
            raw = np.ascontiguousarray(data)
            return raw.view(dtype).reshape(raw.shape[:-1])
        return data

    def verify(self, filename: str,
               runs: Sequence[tuple[str, Sequence[tuple[str, tuple[int, ...]]]]]
               ) -> dict[str, str]:
        """Check that runs' arrays are in a side file with their shapes.

        ``runs`` gives, for each run id, the (name, shape) of its arrays.
        Returns a problem description for each run that fails. Arrays are
        checked as :meth:`read_many` checks them, without reading them.
        """
        problems: dict[str, str] = {}
        try:
            path = self.path(filename)
            _regular_file(path, filename)
            with h5py.File(path, "r") as f:
                for run_id, arrays in runs:
                    problem = _verify_run(f, filename, run_id, arrays)
                    if problem:
                        problems[run_id] = problem
        except (OSError, TypeError, ValueError) as exc:  # ArrayFileError is an OSError
            missing = isinstance(exc, FileNotFoundError) or (
                isinstance(exc, ArrayFileError) and "is missing" in str(exc))
            problem = "is missing" if missing else f"cannot be read ({exc})"
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


def _verify_run(f: h5py.File, filename: str, run_id: str,
                arrays: Sequence[tuple[str, tuple[int, ...]]]) -> str | None:
    """What is wrong with one run's arrays in an open side file, if anything."""
    for name, shape in arrays:
        key = f"{run_id}/{name}"
        try:
            stored = _dataset(f, filename, key, None).shape
        except KeyError:
            return f"{key} is missing from {filename}"
        except UnsafeArrayFileError as exc:
            return f"{key} in {filename} is refused: {exc.found} there"
        except (TypeError, ValueError) as exc:
            return f"{key} in {filename} cannot be read ({exc})"
        if stored != shape and stored[:-1] != shape:  # raw bytes add an axis
            return f"{key} has shape {stored}, expected {shape}"
    return None


class MemoryArrayStore(ArrayStore):
    """Side "files" kept in memory, for stores that keep results in memory only."""

    def __init__(self) -> None:
        super().__init__(Path("(memory)"))
        self._files: dict[str, dict[str, np.ndarray]] = {}

    def write(self, arrays: Arrays, runs: Runs | None = None,
              options: ArrayOptions | None = None) -> str:
        name = f"{uuid.uuid4().hex}{_SUFFIX}"
        self._files[name] = {
            f"{run_id}/{digest}": array
            for run_id, named in arrays.items() for digest, array in named.items()
        }
        return name

    def read_many(self, filename: str, keys: Iterable[str],
                  expected: Mapping[str, Expected] | None = None) -> dict[str, np.ndarray]:
        try:
            stored = self._files[filename]
            return {key: stored[key] for key in keys}
        except KeyError:
            raise ArrayFileError(filename, "is not in memory") from None

    def read_box(self, filename: str, key: str, expected: Expected,
                 box: tuple[slice, ...]) -> np.ndarray:
        (array,) = self.read_many(filename, [key]).values()
        return array[box] if box else array

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
