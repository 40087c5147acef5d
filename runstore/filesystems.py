"""Which filesystem a path lives on, and whether other hosts share it. Internal module.

SQLite's write-ahead log keeps an index in a ``-shm`` file that every process
using the database maps into memory, and it relies on POSIX locks: both work
only between processes of one host (https://sqlite.org/wal.html). A store on a
filesystem that other hosts mount (NFS, Lustre, GPFS, SMB, sshfs ...) must
therefore not be written from here (see :mod:`runstore.writerhost`).

:func:`mount_of` reads ``/proc/self/mountinfo`` (Linux; this process's mount
namespace) and returns the mount whose mount point is the longest prefix of
the path with its symbolic links resolved. Mount points there escape space,
tab, newline and backslash as octal (``\\040``); a bind mount is listed with
the type of the filesystem it shows, which is what counts. Where there is no
``/proc`` (another system, a sandbox), the filesystem is unknown and
:func:`mount_of` returns ``None``.

The answer is cached per folder while the folder's device number
(``st_dev``) stays the same, so opening stores in one folder again and again
reads ``mountinfo`` once; a filesystem mounted over the folder changes the
device and is seen.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass

__all__ = ["Mount", "NETWORK_TYPES", "is_network_type", "mount_of", "parse_mountinfo"]

#: Filesystem types (as ``mountinfo`` names them) that other hosts can mount too.
#: Kernel clients: NFS, SMB/CIFS, AFS, Coda, NCP, 9P, Ceph, GlusterFS, Lustre,
#: IBM Storage Scale (GPFS), BeeGFS, PanFS, WekaFS, OrangeFS/PVFS2, and the
#: shared-disk cluster filesystems OCFS2 and GFS2 (several hosts mount one
#: disk). FUSE clients appear as ``fuse.<name>``: sshfs, s3fs, rclone, gcsfuse,
#: goofys, JuiceFS, MooseFS, LizardFS, Quobyte, CephFS, GlusterFS, davfs2,
#: curlftpfs, smbnetfs, and GNOME's gvfs. ``fuse`` alone, ``fuseblk`` (NTFS
#: and the like on a local disk), ``virtiofs`` and ``overlay`` are local.
NETWORK_TYPES = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "smb2", "ncpfs", "ncp", "afs", "openafs",
    "coda", "9p", "ceph", "glusterfs", "lustre", "gpfs", "beegfs", "panfs", "wekafs",
    "orangefs", "pvfs2", "ocfs2", "gfs2", "davfs", "sshfs", "s3fs", "juicefs",
    "fuse.sshfs", "fuse.s3fs", "fuse.rclone", "fuse.gcsfuse", "fuse.goofys",
    "fuse.juicefs", "fuse.mfs", "fuse.mfsmount", "fuse.lizardfs", "fuse.quobyte",
    "fuse.ceph", "fuse.ceph-fuse", "fuse.glusterfs", "fuse.davfs2", "fuse.davfs",
    "fuse.curlftpfs", "fuse.smbnetfs", "fuse.gvfsd-fuse", "fuse.xtreemfs",
    "fuse.beegfs", "fuse.cvmfs", "fuse.objectivefs",
})

_MOUNTINFO = "/proc/self/mountinfo"
_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class Mount:
    """A mounted filesystem: where it is mounted, its type, and what it shows."""

    point: str
    fstype: str
    source: str

    @property
    def network(self) -> bool:
        """Whether other hosts may mount this filesystem too."""
        return is_network_type(self.fstype)

    def describe(self) -> str:
        """``nfs4 (server:/export, mounted at /home)``: for messages."""
        return f"{self.fstype} ({self.source}, mounted at {self.point})"


def is_network_type(fstype: str) -> bool:
    """Whether a filesystem type (as ``mountinfo`` names it) is shared by hosts."""
    fstype = fstype.lower()
    return fstype in NETWORK_TYPES or fstype.startswith("nfs")


def _unescape(field: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """The mounts a ``mountinfo`` text lists, in its order (lines it cannot read are skipped).

    Each line is ``id parent major:minor root point options [optional...] -
    type source superoptions``.
    """
    mounts = []
    for line in text.splitlines():
        fields = line.split(" ")
        try:
            dash = fields.index("-", 6)
        except ValueError:
            continue
        if len(fields) < dash + 2:
            continue
        source = _unescape(fields[dash + 2]) if len(fields) > dash + 2 else ""
        mounts.append(Mount(_unescape(fields[4]), fields[dash + 1], source))
    return mounts


def _within(point: str, path: str) -> bool:
    return point == "/" or path == point or path.startswith(point.rstrip("/") + "/")


def _find(mounts: list[Mount], path: str) -> Mount | None:
    """The mount that holds ``path`` (absolute, resolved): the longest mount point
    above it; of mounts stacked on one point, the last (the one on top)."""
    best: Mount | None = None
    for mount in mounts:
        if _within(mount.point, path) and (best is None or len(mount.point) >= len(best.point)):
            best = mount
    return best


_cache: dict[str, tuple[int, Mount | None]] = {}
_cache_lock = threading.Lock()


def mount_of(path: str | os.PathLike[str]) -> Mount | None:
    """The filesystem ``path`` is on (or would be, if it does not exist yet).

    ``None`` when it cannot be told (no ``/proc/self/mountinfo``).
    """
    real = os.path.realpath(path)
    folder = real
    while True:  # the nearest folder that exists decides
        try:
            device = os.stat(folder).st_dev
            break
        except OSError:
            parent = os.path.dirname(folder)
            if parent == folder:
                return None
            folder = parent
    with _cache_lock:
        cached = _cache.get(folder)
    if cached is not None and cached[0] == device:
        return cached[1]
    try:
        with open(_MOUNTINFO, encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except OSError:
        return None
    found = _find(parse_mountinfo(text), real)
    with _cache_lock:
        if len(_cache) > 256:
            _cache.clear()
        _cache[folder] = (device, found)
    return found
