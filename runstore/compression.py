"""How arrays are laid out in side files: chunks and compression (no SQL). Internal module.

:class:`ArrayOptions` says how a batch's arrays are stored: contiguous and
uncompressed by default; chunked, shuffled and compressed with gzip, lzf
(both built into h5py) or Blosc (from the ``hdf5plugin`` package, the
``runstore[blosc]`` extra) when asked. Small arrays stay contiguous and
uncompressed whatever is asked (below :attr:`ArrayOptions.min_bytes`):
chunking a tiny array costs more (a chunk index, a filter pipeline) than it
saves. Options change only how arrays are written; readers need nothing but
the filters (:func:`check_filters` names what to install when one is missing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from .errors import MissingFilterError

__all__ = ["ArrayOptions", "dataset_plist", "check_filters"]

#: The compressors :class:`ArrayOptions` knows, and their default options.
_COMPRESSIONS = {"gzip": 4, "lzf": None, "blosc": 5}
#: HDF5's registered id of the Blosc filter (hdf5plugin).
_BLOSC = 32001
#: Filters from hdf5plugin, by id, with the name HDF5 gives them.
_PLUGIN_FILTERS = {32001: "blosc", 32026: "blosc2", 32004: "lz4", 32015: "zstd",
                   307: "bzip2", 32008: "bitshuffle"}
#: Bytes per chunk aimed at when chunks are not given (about 1 MiB).
_CHUNK_BYTES = 2**20


@dataclass(frozen=True)
class ArrayOptions:
    """How the arrays of results are stored in HDF5: chunking and compression.

    Give it to a batch (``Batch(name, storage=ArrayOptions(compression="gzip"))``)
    for all its drains, or to one call (``batch(storage=...)``). Arrays of at
    least ``min_bytes`` bytes are stored with these options; smaller ones
    (and scalars) stay contiguous and uncompressed.

    Parameters
    ----------
    compression
        ``None`` (the default: no compression), ``"gzip"`` (any HDF5 reads
        it), ``"lzf"`` (fast; h5py reads it) or ``"blosc"`` (fastest; readers
        need ``hdf5plugin``: ``pip install 'runstore[blosc]'``).
    compression_opts
        gzip's level (0-9, default 4), or Blosc's (0-9, default 5; with the
        lz4 compressor). Not for lzf.
    shuffle
        Reorder the bytes of each chunk by significance before compressing
        (HDF5's shuffle filter; with Blosc, its own byte shuffle): often
        better ratios for numbers.
    chunks
        The chunk shape, for arrays of as many dimensions (clipped to the
        array's shape); ``None`` chooses about 1 MiB chunks along the first
        axes. Compression needs chunks; uncompressed arrays are chunked only
        if this is given.
    min_bytes
        Arrays smaller than this (64 KiB by default) stay contiguous and
        uncompressed.
    """

    compression: str | None = None
    compression_opts: int | None = None
    shuffle: bool = False
    chunks: tuple[int, ...] | None = None
    min_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        if self.compression is not None and self.compression not in _COMPRESSIONS:
            raise ValueError(f"compression must be None, 'gzip', 'lzf' or 'blosc', not "
                             f"{self.compression!r}")
        if self.compression_opts is not None and (
                self.compression not in ("gzip", "blosc")
                or not 0 <= self.compression_opts <= 9):
            raise ValueError(f"compression_opts={self.compression_opts!r}: a level 0-9, "
                             "for gzip or blosc only")
        if self.chunks is not None and not all(
                isinstance(n, (int, np.integer)) and n > 0 for n in self.chunks):
            raise ValueError(f"chunks must be positive integers, not {self.chunks!r}")
        if self.compression == "blosc":
            _blosc()  # fail now, not when the first result is stored

    @property
    def layout_only(self) -> bool:
        """Whether these are the defaults: every array contiguous, uncompressed."""
        return self.compression is None and not self.shuffle and self.chunks is None


def dataset_plist(options: ArrayOptions | None, data: np.ndarray) -> Any:
    """The dataset creation property list for ``data`` (``None``: contiguous)."""
    if options is None or options.layout_only or data.ndim == 0 or (
            data.nbytes < options.min_bytes) or data.size == 0:
        return None
    plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    plist.set_chunk(_chunk_shape(options.chunks, data))
    if options.shuffle and options.compression != "blosc":
        plist.set_shuffle()
    if options.compression == "gzip":
        plist.set_deflate(_level(options))
    elif options.compression == "lzf":
        plist.set_filter(h5py.h5z.FILTER_LZF, h5py.h5z.FLAG_OPTIONAL)
    elif options.compression == "blosc":
        blosc = _blosc().Blosc(cname="lz4", clevel=_level(options),
                               shuffle=1 if options.shuffle else 0)
        plist.set_filter(blosc.filter_id, h5py.h5z.FLAG_OPTIONAL, blosc.filter_options)
    return plist


def _level(options: ArrayOptions) -> int:
    if options.compression_opts is not None:
        return options.compression_opts
    level = _COMPRESSIONS[options.compression or ""]
    return 0 if level is None else level


def _chunk_shape(wanted: tuple[int, ...] | None, data: np.ndarray) -> tuple[int, ...]:
    """Chunks within the array's shape (the readers refuse chunks beyond it).

    Arrays stored as raw bytes have one more axis than the result's array: a
    chunk spans all of it.
    """
    shape = data.shape
    if wanted is not None and len(wanted) in (len(shape), len(shape) - 1):
        full = tuple(int(n) for n in wanted) + shape[len(wanted):]
        return tuple(max(1, min(c, n)) for c, n in zip(full, shape))
    # About _CHUNK_BYTES: whole trailing axes, as many leading rows as fit.
    chunk = list(shape)
    for axis in range(len(shape)):
        inner = data.dtype.itemsize * int(np.prod(shape[axis + 1:], dtype=np.int64))
        if inner * shape[axis] <= _CHUNK_BYTES:
            break
        if inner <= _CHUNK_BYTES:
            chunk[axis] = _CHUNK_BYTES // inner
            break
        chunk[axis] = 1
    return tuple(max(1, min(c, n)) for c, n in zip(chunk, shape))


def _blosc() -> Any:
    """The hdf5plugin module (importing it registers its filters with HDF5)."""
    try:
        import hdf5plugin
    except ImportError as exc:
        raise MissingFilterError("blosc", None) from exc
    return hdf5plugin


def check_filters(dataset: h5py.Dataset, filename: str, where: str) -> None:
    """Raise :class:`~runstore.errors.MissingFilterError` if a filter of the dataset is missing.

    Filters from hdf5plugin register when it is imported: it is imported
    here the first time a file needs one.
    """
    plist = dataset.id.get_create_plist()
    for index in range(plist.get_nfilters()):
        code = plist.get_filter(index)[0]
        if h5py.h5z.filter_avail(code):
            continue
        if code in _PLUGIN_FILTERS:
            try:
                import hdf5plugin  # noqa: F401 (registers the filters)
            except ImportError:
                pass
            if h5py.h5z.filter_avail(code):
                continue
        raise MissingFilterError(_PLUGIN_FILTERS.get(code, f"HDF5 filter {code}"),
                                 (filename, where))
