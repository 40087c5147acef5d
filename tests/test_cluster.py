"""runstore.cluster: ipyparallel clusters, one of them real."""

from __future__ import annotations

import os
import signal
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
    cluster = Cluster(profile="runstore-test", n=2).start()
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

        import threading

        killer = threading.Thread(target=kill_soon)
        killer.start()
        slow(cluster=cluster, verbose=0)
        killer.join()
        runs = list(slow.run)
        assert all(r.done for r in runs)
        assert {r.result["pid"] for r in runs} <= set(engine_pids)
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
    cluster = Cluster(profile="nompi", n=1, engines="mpi", engine_timeout=5)
    with pytest.raises(ClusterError, match="could not start .*engines 'mpi'"):
        cluster.start()
    assert not cluster.running
    time.sleep(0.5)
    assert [p for p in psutil.Process().children(recursive=True)
            if p.status() != psutil.STATUS_ZOMBIE] == []  # its controller was stopped
