"""runstore.cluster across hosts: engines on simulated hosts that die or are cut off.

Each "host" is a Linux network namespace with its own UTS namespace (so its
own host name), made by the test: the coordinator and the controller stay in
the root namespace, on a bridge with a private address; two engine hosts
(``hostB``, ``hostC``) reach it through veth pairs. The namespaces share the
filesystem, but engines only compute: results travel back to the coordinator,
which alone writes the store.

Needs root (CI runs as root) and ``ip``/``unshare``; skipped otherwise, saying
why. Names carry this process's pid, so a run killed by a timeout leaves
nothing another run trips on: the next run removes namespaces and links whose
process is gone.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from runstore import Batch, Cluster
from runstore.errors import PoolError

from .runs import HostCounting

ROOT = Path(__file__).resolve().parent.parent
PID = os.getpid()
SUBNET = f"10.231.{PID % 250 + 1}"
BRIDGE = f"rsb{PID}"
#: Seconds any single wait of these tests may take before it fails.
PATIENCE = 90.0
#: How the controller watches engines: a ping each 0.5 s, dropped after 4 missed.
HEARTBEAT = ["--HeartMonitor.period=500", "--HeartMonitor.max_heartmonitor_misses=4"]

pytestmark = pytest.mark.slow


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check,
                          timeout=30)


def _remove_stale() -> None:
    """Namespaces and links of earlier runs whose process is gone (killed by a timeout)."""
    listed = _ip("netns", "list", check=False).stdout
    for name in re.findall(r"^(rsh-(\d+)-\w+)", listed, re.M):
        if int(name[1]) != PID and not psutil.pid_exists(int(name[1])):
            _kill_namespace(name[0])
            _ip("netns", "del", name[0], check=False)
    for link, pid in re.findall(r"^\d+: ((?:rsb|rsv)(\d+)\w*)[@:]", _ip("-o", "link").stdout,
                                re.M):
        if int(pid) != PID and not psutil.pid_exists(int(pid)):
            _ip("link", "del", link, check=False)


def _kill_namespace(namespace: str) -> list[int]:
    """SIGKILL every process of a namespace at once (a host that dies); their pids."""
    pids = [int(p) for p in _ip("netns", "pids", namespace, check=False).stdout.split()]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


class Hosts:
    """A bridge in the root namespace, and engine hosts on it, each its own namespace."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.namespaces: dict[str, str] = {}  # host name -> namespace
        self.veths: dict[str, str] = {}  # host name -> its link's end on the bridge
        self.processes: list[subprocess.Popen[bytes]] = []
        self.profile = tmp_path / "profile"
        _ip("link", "add", BRIDGE, "type", "bridge")
        _ip("addr", "add", f"{SUBNET}.1/24", "dev", BRIDGE)
        _ip("link", "set", BRIDGE, "up")

    def add(self, host: str) -> None:
        index = len(self.namespaces) + 2
        namespace, outer, inner = f"rsh-{PID}-{host}", f"rsv{PID}{host[-1]}", f"rsp{PID}"
        _ip("netns", "add", namespace)
        self.namespaces[host], self.veths[host] = namespace, outer
        _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", namespace)
        _ip("link", "set", outer, "master", BRIDGE)
        _ip("link", "set", outer, "up")
        inside = ("netns", "exec", namespace, "ip")
        _ip(*inside, "link", "set", inner, "name", "eth0")
        _ip(*inside, "addr", "add", f"{SUBNET}.{index}/24", "dev", "eth0")
        _ip(*inside, "link", "set", "eth0", "up")
        _ip(*inside, "link", "set", "lo", "up")

    def controller(self) -> Path:
        """Start a controller here, on the bridge's address; its client connection file."""
        with open(self.tmp_path / "controller.log", "wb") as output:
            self.processes.append(subprocess.Popen(
                [sys.executable, "-m", "ipyparallel.controller", f"--ip={SUBNET}.1",
                 f"--profile-dir={self.profile}", "--log-level=WARN", *HEARTBEAT],
                stdout=subprocess.DEVNULL, stderr=output, start_new_session=True))
        security = self.profile / "security"
        wanted = [security / "ipcontroller-client.json", security / "ipcontroller-engine.json"]
        deadline = time.monotonic() + PATIENCE
        while not all(p.exists() for p in wanted):
            assert time.monotonic() < deadline, "the controller wrote no connection files"
            assert self.processes[-1].poll() is None, (
                self.tmp_path / "controller.log").read_text()
            time.sleep(0.1)
        time.sleep(0.2)  # written whole
        return wanted[0]

    def engines(self, host: str, n: int) -> None:
        """Start ``n`` engines on a host, named ``host`` there (its own UTS namespace)."""
        engine = (f"{sys.executable} -m ipyparallel.engine --log-level=WARN "
                  f"--file={self.profile / 'security' / 'ipcontroller-engine.json'}")
        script = f"hostname {host}; " + " & ".join([engine] * n) + " & wait"
        env = dict(os.environ, PYTHONPATH=str(ROOT), IPYTHONDIR=str(self.tmp_path / "ipy"))
        with open(self.tmp_path / f"{host}.log", "wb") as output:
            self.processes.append(subprocess.Popen(
                ["ip", "netns", "exec", self.namespaces[host], "unshare", "--uts", "sh",
                 "-c", script], env=env, stdout=subprocess.DEVNULL, stderr=output,
                start_new_session=True))

    def kill(self, host: str) -> list[int]:
        return _kill_namespace(self.namespaces[host])

    def cut(self, host: str) -> None:
        """Take the host's network link down: its processes live on, unreachable."""
        _ip("link", "set", self.veths[host], "down")

    def remove(self) -> None:
        for namespace in self.namespaces.values():
            _kill_namespace(namespace)
        for process in self.processes:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(timeout=30)
        for namespace in self.namespaces.values():
            _ip("netns", "del", namespace, check=False)
        for veth in self.veths.values():
            _ip("link", "del", veth, check=False)
        _ip("link", "del", BRIDGE, check=False)


@pytest.fixture
def hosts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hosts]:
    if os.geteuid() != 0 or not (shutil.which("ip") and shutil.which("unshare")):
        reason = "simulated hosts need root, ip and unshare (CI runs as root)"
        print(reason)
        pytest.skip(reason)
    _remove_stale()
    probe = _ip("netns", "add", f"rsh-{PID}-probe", check=False)
    if probe.returncode != 0:
        reason = f"cannot make network namespaces here: {probe.stderr.strip()}"
        print(reason)
        pytest.skip(reason)
    _ip("netns", "del", f"rsh-{PID}-probe", check=False)
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipy"))
    monkeypatch.chdir(tmp_path)
    made = None
    # Should the coordinator hang all the same, every engine dies after a while:
    # then the batch stops within Cluster.no_engines_timeout, and the test fails.
    watchdog = threading.Timer(4 * PATIENCE, lambda: made and [
        made.kill(host) for host in made.namespaces])
    watchdog.daemon = True
    watchdog.start()
    try:
        made = Hosts(tmp_path)
        made.add("hostB")
        made.add("hostC")
        yield made
    finally:
        watchdog.cancel()
        if made is not None:
            made.remove()
        else:
            _ip("link", "del", BRIDGE, check=False)
    assert f"rsh-{PID}-" not in _ip("netns", "list").stdout


def _cluster(hosts: Hosts) -> Cluster:
    """A controller here, two engines on each of hostB and hostC, attached to."""
    client_file = hosts.controller()
    hosts.engines("hostB", 2)
    hosts.engines("hostC", 2)
    cluster = Cluster.attach(client_file, n=4, timeout=30)
    cluster.no_engines_timeout = 20.0  # bounds the batch, should everything be lost
    cluster.wait(timeout=PATIENCE)
    names = cluster.direct_view().apply_sync(__import__("socket").gethostname)
    assert sorted(names) == ["hostB", "hostB", "hostC", "hostC"]
    return cluster


def _batch(tmp_path: Path, name: str) -> tuple[Batch, Path]:
    log = tmp_path / f"{name}.log"
    batch = Batch(name)
    batch.add_factorial_runs(HostCounting, {"x": list(range(16)), "log": str(log),
                                            "seconds": 1.0})
    return batch, log


def _when_b_delivered(log: Path, then: object) -> threading.Thread:
    """Call ``then()`` mid-batch, once a result of hostB surely reached the coordinator.

    That is once an engine of hostB finished a second run: an engine is given
    its next task only after its last result reached the controller.
    """

    def watch() -> None:
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline:
            engines = Counter(line.split()[2] for line in _lines(log)
                              if line.split()[1] == "hostB")
            if engines and max(engines.values()) >= 2:
                break
            time.sleep(0.02)
        then()  # type: ignore[operator]

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _engines_dropped(cluster: Cluster, wanted: int, since: float, out: dict[str, float]
                     ) -> threading.Thread:
    """Record in ``out`` when the controller dropped engines down to ``wanted``."""

    def watch() -> None:
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline:
            if len(cluster.client.ids) <= wanted:
                out["noticed"] = time.monotonic() - since
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _check_each_run_recorded_once_where_it_ran(batch: Batch, log: Path) -> None:
    runs = list(batch.run)
    assert [r.state for r in runs] == ["done"] * 16
    assert [r.result["x"] for r in runs] == list(range(16))
    for run in runs:  # the provenance names the host that computed the recorded result
        assert run.provenance["host"] == run.result["host"]
    assert {r.provenance["host"] for r in runs} == {"hostB", "hostC"}
    computed = {int(line.split()[0]) for line in _lines(log)}
    assert computed == set(range(16))


def test_a_host_that_dies_loses_only_its_runs_in_flight(hosts, tmp_path):
    cluster = _cluster(hosts)
    try:
        batch, log = _batch(tmp_path, "killed")
        times: dict[str, float] = {}
        watchers: list[threading.Thread] = []

        def kill_host_b() -> None:
            times["killed"] = time.monotonic()
            assert hosts.kill("hostB")  # every process of the host at once
            watchers.append(_engines_dropped(cluster, 2, times["killed"], times))

        killer = _when_b_delivered(log, kill_host_b)
        batch(cluster=cluster, verbose=0)
        times["done"] = time.monotonic() - times["killed"]
        killer.join(timeout=PATIENCE)
        for watcher in watchers:
            watcher.join(timeout=PATIENCE)
        print(f"\nhostB killed: its engines dropped after {times.get('noticed', -1):.1f} s, "
              f"the batch done {times['done']:.1f} s after the kill")
        _check_each_run_recorded_once_where_it_ran(batch, log)
        after = [r for r in batch.run if r.provenance["attempts"] > 1]
        assert after and {r.provenance["host"] for r in after} == {"hostC"}  # redone on C
        assert len(cluster) == 2
    finally:
        cluster.close()


def test_a_host_cut_off_the_network_loses_only_its_runs_in_flight(hosts, tmp_path):
    cluster = _cluster(hosts)
    try:
        batch, log = _batch(tmp_path, "cut")
        times: dict[str, float] = {}
        watchers: list[threading.Thread] = []

        def cut_host_b() -> None:
            times["cut"] = time.monotonic()
            hosts.cut("hostB")  # its engines live on, unreachable
            watchers.append(_engines_dropped(cluster, 2, times["cut"], times))

        cutter = _when_b_delivered(log, cut_host_b)
        batch(cluster=cluster, verbose=0)
        times["done"] = time.monotonic() - times["cut"]
        cutter.join(timeout=PATIENCE)
        for watcher in watchers:
            watcher.join(timeout=PATIENCE)
        print(f"\nhostB cut off: its engines dropped after {times.get('noticed', -1):.1f} s, "
              f"the batch done {times['done']:.1f} s after the cut")
        runs = list(batch.run)
        # Runs hostB finished after the cut never reached the coordinator: they were
        # computed again on hostC, and only that result is recorded.
        _check_each_run_recorded_once_where_it_ran(batch, log)
        after = [r for r in runs if r.provenance["attempts"] > 1]
        assert after and {r.provenance["host"] for r in after} == {"hostC"}
        assert len(cluster) == 2
        alive = [p for p in psutil.process_iter(["cmdline"])
                 if "ipyparallel.engine" in " ".join(p.info["cmdline"] or [])
                 and str(PID) in _ip("netns", "identify", str(p.pid), check=False).stdout]
        assert alive  # hostB's engines still run, cut off: not what was noticed
    finally:
        cluster.close()


def test_a_controller_that_dies_stops_the_batch_saying_what_is_pending(hosts, tmp_path):
    cluster = _cluster(hosts)
    cluster.no_engines_timeout = 3.0
    try:
        batch, log = _batch(tmp_path, "headless")
        controller = hosts.processes[0]

        def kill_controller() -> None:
            os.killpg(controller.pid, signal.SIGKILL)

        killer = _when_b_delivered(log, kill_controller)
        with pytest.raises(PoolError, match=(
                r"controller .* has not answered for \d+ s.*Cluster.attach.*pending again")):
            batch(cluster=cluster, verbose=0)  # bounded, although engines look registered
        killer.join(timeout=PATIENCE)
        states = [r.state for r in batch.run]
        assert "running" not in states and 1 <= states.count("pending") < 16
        for run in batch.run:
            if run.done:
                assert run.result["x"] == run.parameters["x"]
    finally:
        cluster.close()
