"""runstore.cluster: ipyparallel clusters, one of them real."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

import runstore
from runstore import Batch, Cluster, get_cluster
from runstore.cluster import default_engines
from runstore.errors import ClusterError

from .runs import SlowCounting, Sweep

ROOT = Path(__file__).resolve().parent.parent
#: The controller pings engines every 0.5 s and drops one after 4 missed pings
#: (ipyparallel's defaults, 3 s and 10, take half a minute to see a dead host).
FAST_HEARTBEAT = ["--HeartMonitor.period=500", "--HeartMonitor.max_heartmonitor_misses=4"]


def test_engine_count_comes_from_pbs_slurm_or_the_cpus(tmp_path, monkeypatch):
    for variable in ("PBS_NODEFILE", "SLURM_NTASKS", "SLURM_NPROCS", "SLURM_CPUS_ON_NODE"):
        monkeypatch.delenv(variable, raising=False)
    assert default_engines() == os.cpu_count()
    monkeypatch.setenv("SLURM_NTASKS", "5")
    assert default_engines() == 5
    nodes = tmp_path / "nodes"
    nodes.write_text("node1\nnode1\nnode2\n")
    monkeypatch.setenv("PBS_NODEFILE", str(nodes))
    assert default_engines() == 3
    assert Cluster(profile="counted").n == 3


def test_a_cluster_that_is_not_running_fails_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    started = time.monotonic()
    with pytest.raises(ClusterError, match="no cluster of profile 'nowhere'.*start"):
        get_cluster("nowhere")
    with pytest.raises(ClusterError, match="not running: call start"):
        Cluster(profile="idle").client
    assert len(Cluster(profile="idle2")) == 0
    assert time.monotonic() - started < 2.0  # no probing


@pytest.mark.slow
def test_a_batch_drains_on_a_real_cluster_and_survives_a_killed_engine(tmp_path, monkeypatch):
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # engines import tests.runs
    monkeypatch.chdir(tmp_path)
    cluster = Cluster(profile="runstore-test", n=2, controller_args=FAST_HEARTBEAT).start()
    try:
        client = cluster.wait(timeout=120)
        assert len(cluster) == 2 and get_cluster("runstore-test") is cluster
        engine_pids = cluster.direct_view().apply_sync(os.getpid)
        batch = Batch("cluster")
        batch.add_factorial_runs(Sweep, {"A": list(range(20)), "B": [3]})
        batch(cluster=cluster, verbose=0)
        assert [r.result["val"] for r in batch.run] == [3 * a for a in range(20)]

        log = tmp_path / "log"
        slow = Batch("slow")
        slow.add_factorial_runs(SlowCounting, {"x": list(range(6)), "log": str(log),
                                               "seconds": 1.0})
        victim = engine_pids[0]

        def kill_soon():
            time.sleep(1.5)
            os.kill(victim, signal.SIGKILL)

        killer = threading.Thread(target=kill_soon)
        killer.start()
        slow(cluster=cluster, verbose=0)
        killer.join()
        runs = list(slow.run)
        assert all(r.done for r in runs)
        assert {r.result["pid"] for r in runs} <= set(engine_pids)
        assert {r.provenance["pid"] for r in runs} <= set(engine_pids)  # who computed
        assert {r.provenance["host"] for r in runs} == {socket.gethostname()}
        assert sorted(set(map(int, log.read_text().split()))) == list(range(6))
        assert max(r.provenance["attempts"] for r in runs) == 2  # requeued once
        assert len(client.ids) == 1
    finally:
        cluster.stop()
    time.sleep(1.0)
    assert not [pid for pid in engine_pids if psutil.pid_exists(pid)
                and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert not cluster.running


def test_launchers_and_ipyparallel_options_pass_through(tmp_path, monkeypatch):
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    cluster = Cluster(n=2, engines="slurm", controller_ip="127.0.0.1", engine_timeout=5,
                      controller_location="coordinator", controller_args=["--debug"],
                      config={"SlurmEngineSetLauncher": {"account": "proj",
                                                          "timelimit": "0:10:00"}})
    assert (cluster.engines, cluster.controller, cluster.controller_ip) == (
        "slurm", "local", "127.0.0.1")
    assert cluster.options["engine_timeout"] == 5
    assert cluster.options["config"].SlurmEngineSetLauncher.account == "proj"
    assert "engines='slurm'" in repr(cluster) and not cluster.running
    with pytest.raises(ClusterError, match="no engine launcher 'slrum'.*slurm"):
        Cluster(engines="slrum")
    with pytest.raises(ClusterError, match="no controller launcher 'nowhere'"):
        Cluster(controller="nowhere")
    with pytest.raises(ClusterError, match="no option 'acount'.*config="):
        Cluster(engines="slurm", acount="proj")
    with pytest.raises(ClusterError, match="'engine_launcher_class' as .* engines="):
        Cluster(engine_launcher_class="mpi")


def test_a_cluster_that_cannot_launch_says_why_and_leaves_nothing_running(tmp_path,
                                                                          monkeypatch):
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no mpiexec here
    # Processes earlier tests left for the life of this one (multiprocessing's
    # resource tracker, after a Dask LocalCluster) are not the cluster's.
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    cluster = Cluster(profile="nompi", n=1, engines="mpi", engine_timeout=5)
    with pytest.raises(ClusterError, match="could not start .*engines 'mpi'"):
        cluster.start()
    assert not cluster.running
    time.sleep(0.5)
    left = [p for p in psutil.Process().children(recursive=True)
            if p.status() != psutil.STATUS_ZOMBIE and p.pid not in before]
    assert left == []  # its controller was stopped


COORDINATOR = """
import sys
sys.path.insert(0, sys.argv[1])
import runstore
from runstore import Batch
from tests.runs import SlowCounting
cluster = runstore.Cluster.attach(profile="resumed")
batch = Batch("resumed", path=sys.argv[2])
batch.add_factorial_runs(SlowCounting, {"x": list(range(12)), "log": sys.argv[3],
                                        "seconds": 1.0})
print("started", flush=True)
batch(cluster=cluster, verbose=0)
"""


@pytest.mark.slow
def test_a_new_coordinator_attaches_and_resumes_what_a_killed_one_left(tmp_path, monkeypatch):
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.chdir(tmp_path)
    log = tmp_path / "log"
    cluster = Cluster(profile="resumed", n=2, controller_args=FAST_HEARTBEAT).start()
    try:
        cluster.wait(timeout=120)
        engine_pids = set(cluster.direct_view().apply_sync(os.getpid))
        script = tmp_path / "coordinator.py"
        script.write_text(COORDINATOR)
        with subprocess.Popen([sys.executable, str(script), str(ROOT), str(tmp_path),
                               str(log)], stdout=subprocess.PIPE, text=True) as first:
            assert first.stdout.readline() == "started\n"
            deadline = time.monotonic() + 60
            while len(_lines(log)) < 3 and time.monotonic() < deadline:
                time.sleep(0.1)
            first.kill()  # SIGKILL, mid-batch, with runs claimed and in flight
            first.wait(timeout=30)
        db = tmp_path / "_res" / "resumed.db"
        store = runstore.Store(db, readonly=True)
        claimed = [run["id"] for run in store.in_flight()]
        assert claimed  # the dead coordinator's claims, still RUNNING under it
        store.close()
        store = runstore.Store(db)  # opening for writing takes them back at once
        assert store.in_flight() == [] and set(claimed) <= {
            rid for rid, state in store.states(claimed).items() if state == "pending"}
        store.close()

        # A new coordinator attaches (here: through the cluster file) and resumes.
        again = Cluster.attach(cluster._cluster.cluster_file)
        assert not again._owned and len(again) == 2 and again.profile == "resumed"
        assert get_cluster("resumed") is cluster  # still the one this process started
        batch = Batch("resumed", path=tmp_path)
        batch.add_factorial_runs(SlowCounting, {"x": list(range(12)), "log": str(log),
                                                "seconds": 1.0})
        started = time.monotonic()
        batch(cluster=again, verbose=0)
        print(f"resumed and finished in {time.monotonic() - started:.1f} s")
        runs = list(batch.run)
        assert [r.result["x"] for r in runs] == list(range(12))  # each recorded once
        assert {r.provenance["pid"] for r in runs} <= engine_pids
        assert set(map(int, _lines(log))) == set(range(12))
        again.close()  # leaves the cluster running
        assert cluster.running and len(cluster) == 2
    finally:
        cluster.stop()


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


@pytest.mark.slow
def test_when_every_engine_is_gone_the_batch_stops_and_says_what_is_pending(tmp_path,
                                                                            monkeypatch):
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.chdir(tmp_path)
    cluster = Cluster(profile="gone", n=2, controller_args=FAST_HEARTBEAT).start()
    client_file = None
    try:
        cluster.wait(timeout=120)
        client_file = next((tmp_path / "ipython" / "profile_gone" / "security").glob(
            "ipcontroller*-client.json"))
        connection = client_file.read_text()
        engine_pids = cluster.direct_view().apply_sync(os.getpid)
        cluster.no_engines_timeout = 2.0
        log = tmp_path / "log"
        batch = Batch("gone")
        batch.add_factorial_runs(SlowCounting, {"x": list(range(10)), "log": str(log),
                                                "seconds": 0.5})

        def kill_all_soon():
            deadline = time.monotonic() + 60
            while not _lines(log) and time.monotonic() < deadline:
                time.sleep(0.05)
            for pid in engine_pids:
                os.kill(pid, signal.SIGKILL)

        killer = threading.Thread(target=kill_all_soon)
        killer.start()
        with pytest.raises(runstore.PoolError, match=(
                r"no engine .* registered for 2 s.*start engines.*pending again")):
            batch(cluster=cluster, verbose=0)
        killer.join()
        states = [r.state for r in batch.run]
        assert "running" not in states and states.count("pending") >= 1
        assert all(r.result["x"] == r.parameters["x"] for r in batch.run if r.done)

        # With no engine registered, wait(n_min=0) gives the client at once, and
        # waiting for one times out as a TimeoutError that says how many came.
        assert cluster.wait(n_min=0, timeout=5).ids == []
        with pytest.raises(runstore.ClusterTimeoutError, match="only 0 of 1 engines") as caught:
            cluster.wait(n_min=1, timeout=1)
        assert isinstance(caught.value, TimeoutError) and isinstance(caught.value, ClusterError)
        cluster.start_engines(1)  # what the error says to do; then the batch goes on
        cluster.wait(n_min=1, timeout=120)
        batch(cluster=cluster, verbose=0)
        assert all(r.done for r in batch.run)
    finally:
        cluster.stop()
    # A controller that is gone: attaching fails within the timeout, saying so.
    if client_file is not None:
        client_file.parent.mkdir(parents=True, exist_ok=True)
        client_file.write_text(connection)
        with pytest.raises(ClusterError, match="did not answer within 1.0 s"):
            Cluster.attach(client_file, timeout=1.0)
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(ClusterError, match="neither an ipyparallel cluster file"):
        Cluster.attach(tmp_path / "other.json")
