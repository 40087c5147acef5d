"""One writer host: no writing over a network filesystem, no second host writing.

Real filesystems and real processes: a tmpfs and a bind mount for mountinfo, a
real sshfs mount (SFTP to an sshd on this machine, installed by
``tests/sshfs_mount.sh`` if needed) for a network filesystem, and processes in
their own UTS namespace (``unshare --uts``), with another host name, for a
second host sharing the store's folder.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runstore import Batch, Store, open_bundle
from runstore.bundle import export
from runstore.errors import NetworkFilesystemError, OtherHostWritingError
from runstore.filesystems import Mount, is_network_type, mount_of, parse_mountinfo
from runstore.writerhost import records

from .runs import Sweep

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, PYTHONPATH=str(ROOT))
ENV.pop("RUNSTORE_ALLOW_NETWORK_FS", None)


# -- mountinfo ---------------------------------------------------------------------

MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
40 27 0:40 / /home rw,relatime shared:5 master:1 - nfs4 srv:/export/home rw,vers=4.2
41 40 0:41 / /home/me/local\\040disk rw - ext4 /dev/sdb1 rw
42 27 0:40 /me/proj /work rw - nfs4 srv:/export/home rw
43 27 0:42 / /scratch rw - tmpfs tmpfs rw
44 27 0:43 / /scratch rw - lustre 10.0.0.1@tcp:/fs rw
45 27 0:44 / /mnt/ssh rw - fuse.sshfs me@host:/data rw
46 27 0:45 / /mnt/weird rw -
"""


@pytest.mark.parametrize("path, fstype, point", [
    ("/home/me/run.db", "nfs4", "/home"),
    ("/home/me/local disk/run.db", "ext4", "/home/me/local disk"),  # \040 is a space
    ("/home/me/local diskette/run.db", "nfs4", "/home"),  # a prefix of a name is not a folder
    ("/work/run.db", "nfs4", "/work"),  # a bind mount shows the type of what it shows
    ("/scratch/run.db", "lustre", "/scratch"),  # stacked: the last mounted is on top
    ("/mnt/ssh/a/b.db", "fuse.sshfs", "/mnt/ssh"),
    ("/tmp/run.db", "ext4", "/"),
])
def test_the_longest_mount_point_above_a_path_decides(path, fstype, point):
    from runstore.filesystems import _find

    found = _find(parse_mountinfo(MOUNTINFO), path)
    assert found is not None and (found.fstype, found.point) == (fstype, point)


def test_network_types_and_local_types():
    for fstype in ["nfs", "nfs4", "lustre", "gpfs", "beegfs", "cifs", "smb3", "smbfs",
                   "fuse.sshfs", "sshfs", "ceph", "fuse.ceph", "glusterfs", "fuse.glusterfs",
                   "afs", "9p", "ncpfs", "davfs", "fuse.s3fs", "NFS4"]:
        assert is_network_type(fstype), fstype
    for fstype in ["ext4", "xfs", "btrfs", "tmpfs", "overlay", "zfs", "fuse", "fuseblk",
                   "virtiofs", "squashfs"]:
        assert not is_network_type(fstype), fstype


def test_the_filesystem_of_this_machine_is_found():
    found = mount_of(ROOT)
    assert found is not None and os.path.realpath(ROOT).startswith(found.point)


def _mount(*args):
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        reason = f"cannot mount here: {done.stderr.strip() or done.returncode}"
        print(reason)
        pytest.skip(reason)


def test_a_real_tmpfs_with_a_space_in_its_path_and_a_bind_mount_of_it(tmp_path):
    spaced = tmp_path / "a disk\twith tab"
    bound = tmp_path / "bound here"
    spaced.mkdir()
    bound.mkdir()
    try:
        _mount("-t", "tmpfs", "-o", "size=1m", "tmpfs", str(spaced))
        _mount("--bind", str(spaced), str(bound))
        assert mount_of(spaced / "x.db") == Mount(str(spaced), "tmpfs", "tmpfs")
        assert mount_of(bound / "sub" / "x.db") == Mount(str(bound), "tmpfs", "tmpfs")
        link = tmp_path / "link"
        link.symlink_to(bound)
        assert mount_of(link / "x.db").point == str(bound)  # links are resolved
        store = Store(spaced / "x.db")  # local: written as ever
        store.close()
    finally:
        subprocess.run(["umount", "-l", str(bound)], check=False)
        subprocess.run(["umount", "-l", str(spaced)], check=False)
    assert mount_of(spaced / "x.db").fstype != "tmpfs"  # unmounted: the cache follows


# -- a real network filesystem: sshfs ------------------------------------------------------

@pytest.fixture(scope="module")
def sshfs(tmp_path_factory):
    """``(source, mounted)``: a local folder and the same folder over a real sshfs mount."""
    work = tmp_path_factory.mktemp("sshfs")
    source, mounted = work / "disk", work / "mnt"
    script = str(ROOT / "tests" / "sshfs_mount.sh")
    done = subprocess.run(["sh", script, "mount", str(work), str(source), str(mounted)],
                          capture_output=True, text=True)
    try:
        if done.returncode != 0:
            reason = f"cannot mount sshfs here: {done.stderr.strip()}"
            print(reason)
            pytest.skip(reason)
        assert mount_of(mounted).fstype == "fuse.sshfs"
        yield source, mounted
    finally:
        subprocess.run(["sh", script, "umount", str(work), str(mounted)], check=False)


@pytest.fixture
def shared(sshfs, request):
    """A fresh folder, local on one side, over sshfs on the other."""
    source, mounted = sshfs
    name = request.node.name.replace("[", "-").replace("]", "")
    (source / name).mkdir()
    yield source / name, mounted / name
    shutil.rmtree(source / name, ignore_errors=True)


def _filled(folder: Path, name: str = "example") -> Path:
    batch = Batch(name, store=folder / f"{name}.db")
    batch.add_factorial_runs(Sweep, {"A": [1, 2, 3]})
    batch()
    batch.store.close()
    return folder / f"{name}.db"


@pytest.mark.slow
def test_writing_over_a_network_filesystem_is_refused_before_anything_is_made(shared):
    local, remote = shared
    db = _filled(local)
    before = sorted(os.listdir(local))
    with pytest.raises(NetworkFilesystemError, match=r"(?s)fuse\.sshfs.*sqlite.org/wal.html"
                       r".*runstore\.Cluster.*get_executor.*parallel") as refused:
        Store(remote / "example.db")
    assert refused.value.fstype == "fuse.sshfs" and isinstance(refused.value, PermissionError)
    with pytest.raises(NetworkFilesystemError):
        Batch("example", store=remote / "example.db")
    with pytest.raises(NetworkFilesystemError):
        Store(remote / "new.db")  # a new store too
    assert sorted(os.listdir(local)) == before
    assert db.exists()


@pytest.mark.slow
def test_a_standalone_worker_over_a_network_filesystem_refuses(shared):
    local, remote = shared
    _filled(local)
    done = subprocess.run([sys.executable, "-m", "runstore", "worker",
                           str(remote / "example.db")], env=ENV, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode != 0
    assert "network filesystem" in done.stderr and "Dask" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_reading_over_a_network_filesystem_works_and_leaves_nothing(shared):
    local, remote = shared
    _filled(local)
    source = Batch("example", store=local / "example.db")
    export(source, local / "shared.db")
    source.store.close()
    before = sorted(os.listdir(local))
    store = Store(remote / "example.db", readonly=True)
    assert store.batch_names() == ["example"]
    store.close()
    batch = Batch("example", store=Store(remote / "example.db", readonly=True))
    assert sorted(r.parameters["A"] for r in batch.get_runs_with(A__ge=2)) == [2, 3]
    assert [r.result["val"] for r in batch.get_runs_with(A=3)] == [0]
    batch.store.close()
    bundle = open_bundle(remote / "shared.db")
    assert len(bundle.get_runs_with()) == 3
    bundle.store.close()
    for command in (["runs", "--batch", "example"], ["status"], ["sql"]):
        done = subprocess.run([sys.executable, "-m", "runstore", command[0],
                               str(remote / "example.db"), *command[1:]], env=ENV,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(local)) == before  # no -wal, no -shm, no record


@pytest.mark.slow
def test_reading_over_a_network_filesystem_while_it_is_written_is_refused(shared):
    local, remote = shared
    _filled(local)
    writer = Store(local / "example.db")  # through the local path, on the store's host
    try:
        with pytest.raises(NetworkFilesystemError, match=r"writing it through another path"):
            Store(remote / "example.db", readonly=True)
        writer.batch_id("more")
        for record in records(local / "example.db"):
            record.path.unlink()  # a writer that left no record: its log still tells
        with pytest.raises(NetworkFilesystemError, match=r"example\.db-wal holds changes"):
            Store(remote / "example.db", readonly=True)
    finally:
        writer.close()
    Store(remote / "example.db", readonly=True).close()  # closed: the log was folded in


@pytest.mark.slow
def test_allowing_a_network_filesystem_written_by_one_host(shared):
    local, remote = shared
    code = ("import sys; from runstore import Batch; from tests.runs import Sweep; "
            "b = Batch('example', store=sys.argv[1] + '/example.db'); "
            "b.add_factorial_runs(Sweep, {'A': [1, 2]}); "
            "b(); print(len(b.get_runs_with()))")
    done = subprocess.run([sys.executable, "-c", code, str(remote)], capture_output=True,
                          text=True, env=dict(ENV, RUNSTORE_ALLOW_NETWORK_FS="1"), timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2"
    assert (local / "example.db").exists()


# -- another host: a UTS namespace with another host name ------------------------------------

HOLDER = """
import sys, time
from runstore import Batch
from tests.runs import Sweep
from runstore import Store
batch = Batch("example", store=Store(sys.argv[1] + "/example.db", lease=float(sys.argv[2])))
batch.add_factorial_runs(Sweep, {"A": [1, 2, 3]})
batch()
print("writing", flush=True)
sys.stdin.readline()  # until told to stop
batch.store.close()
"""

OPEN = """
import sys
from runstore import Batch
from runstore.errors import OtherHostWritingError
from tests.runs import Sweep
try:
    batch = Batch("example", store=sys.argv[1] + "/example.db")
    batch.add_factorial_runs(Sweep, {"A": [4]})
    batch()
except OtherHostWritingError as exc:
    print("refused:", exc)
    sys.exit(3)
print("wrote", len(batch.get_runs_with()))
"""


def _as_host(name: str, args: list[str], **env: str) -> list[str]:
    """A command run in a new UTS namespace whose host name is ``name``."""
    return ["unshare", "--uts", "sh", "-c", f'hostname "$0" && exec "$@"', name, *args]


@pytest.fixture
def other_host():
    """Runs a command as another host; skips where UTS namespaces cannot be made."""
    probe = subprocess.run(_as_host("probe-host", ["hostname"]), capture_output=True, text=True)
    if probe.returncode != 0 or probe.stdout.strip() != "probe-host":
        reason = f"cannot make a UTS namespace here: {probe.stderr.strip()}"
        print(reason)
        pytest.skip(reason)

    def run(name: str, code: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(_as_host(name, [sys.executable, "-c", code, *args]),
                              capture_output=True, text=True, timeout=120,
                              env=dict(ENV, **env))
    return run


def _holder(folder: Path, lease: float = 600) -> subprocess.Popen[str]:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), str(lease)],
                              env=ENV, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "writing"
    return holder


@pytest.mark.slow
def test_a_second_host_refuses_while_the_first_writes_and_writes_once_it_closed(
        tmp_path, other_host):
    holder = _holder(tmp_path)
    try:
        done = other_host("host-b", OPEN, str(tmp_path))
        assert done.returncode == 3, done.stderr
        assert f"host {socket.gethostname()!r}" in done.stdout and "Dask" in done.stdout
        worker = subprocess.run(_as_host("host-b", [sys.executable, "-m", "runstore", "worker",
                                                    str(tmp_path / "example.db")]),
                                env=ENV, capture_output=True, text=True, timeout=120)
        assert worker.returncode != 0 and "is writing it" in worker.stderr
        here = other_host(socket.gethostname(), OPEN, str(tmp_path))  # this host: welcome
        assert here.returncode == 0 and here.stdout.strip() == "wrote 4", here.stderr
    finally:
        holder.communicate("stop\n", timeout=120)
    assert holder.returncode == 0
    assert records(tmp_path / "example.db") == []  # closed: its record went with it
    done = other_host("host-b", OPEN, str(tmp_path))
    assert done.returncode == 0 and done.stdout.strip() == "wrote 4", done.stderr + done.stdout


@pytest.mark.slow
def test_a_dead_hosts_record_blocks_until_it_expires(tmp_path, other_host):
    holder = _holder(tmp_path, lease=600)
    holder.kill()  # kill -9: the record stays behind, as if the host went down
    holder.communicate(timeout=120)
    [record] = records(tmp_path / "example.db")
    done = other_host("host-b", OPEN, str(tmp_path))
    assert done.returncode == 3
    assert str(record.path) in done.stdout and "s from now" in done.stdout
    # Ten minutes later (host-b's clock runs ahead), the record has expired.
    done = other_host("host-b", OPEN, str(tmp_path), RUNSTORE_TEST_CLOCK_OFFSET="700")
    assert done.returncode == 0 and done.stdout.strip() == "wrote 4", done.stderr + done.stdout
    assert records(tmp_path / "example.db") == []


@pytest.mark.slow
def test_a_dead_process_of_this_host_never_blocks_this_host(tmp_path):
    holder = _holder(tmp_path)
    holder.kill()
    holder.communicate(timeout=120)
    batch = Batch("example", store=tmp_path / "example.db")
    batch.add_factorial_runs(Sweep, {"A": [4]})
    batch()
    assert [r.pid for r in records(tmp_path / "example.db")] == [os.getpid()]
    batch.store.close()
    assert records(tmp_path / "example.db") == []


HOLD_AS_B = """
import sys
from runstore import Store
store = Store(sys.argv[1])
print("writing", flush=True)
sys.stdin.readline()
store.close()
"""


@pytest.mark.slow
def test_an_idle_writer_whose_record_expired_refuses_once_another_host_took_over(tmp_path):
    store = Store(tmp_path / "x.db", lease=0.5)  # this process: idle beyond its record
    store.batch_id("a")
    time.sleep(0.2)  # more than a quarter lease: the next write renews the record
    other = subprocess.Popen(_as_host("host-b", [sys.executable, "-c", HOLD_AS_B,
                                                 str(tmp_path / "x.db")]),
                             env=dict(ENV, RUNSTORE_TEST_CLOCK_OFFSET="5"),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = other.stdout.readline().strip() if other.stdout else ""
        if line != "writing":
            pytest.skip("cannot make a UTS namespace here")
        with pytest.raises(OtherHostWritingError, match="host 'host-b'"):
            store.batch_id("b")
    finally:
        other.communicate("stop\n", timeout=120)
    store.batch_id("b")  # host-b closed: this host writes again
    store.close()


@pytest.mark.slow
def test_many_processes_of_one_host_write_together(tmp_path):
    _filled(tmp_path)
    procs = [subprocess.Popen([sys.executable, "-c", OPEN, str(tmp_path)], env=ENV,
                              stdout=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outs
    assert records(tmp_path / "example.db") == []
