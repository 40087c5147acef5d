"""runstore.cluster on a real SLURM: engines submitted with sbatch, and the docs' recipe.

The ``slurm`` fixture (tests/conftest.py) starts a single-node SLURM on this
machine, installing it first where it is missing.
"""

from __future__ import annotations

import doctest
import os
import re
import shlex
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest
from traitlets.config import Config

from runstore import Batch, Cluster
from runstore.errors import PoolError

from .runs import SlowCounting, Where, slurm_job_and_pid

ROOT = Path(__file__).resolve().parent.parent
#: Seconds any one wait on SLURM may take (the node is idle; nothing else queues).
BOUND = 120.0


def squeue() -> dict[str, tuple[str, str]]:
    """The jobs SLURM knows now: id -> (name, state)."""
    listed = subprocess.run(["squeue", "-h", "-o", "%i|%j|%T"], capture_output=True,
                            text=True, timeout=30, check=True).stdout
    return {job: (name, state) for job, name, state in
            (line.split("|") for line in listed.splitlines() if line.strip())}


def wait_until_gone(job: str) -> None:
    deadline = time.monotonic() + BOUND
    while job in squeue():
        if time.monotonic() > deadline:
            pytest.fail(f"SLURM job {job} still in squeue {BOUND} s after the cluster "
                        f"stopped: {squeue()[job]}")
        time.sleep(0.5)


@pytest.mark.slow
def test_a_batch_drains_on_engines_slurm_runs(slurm, tmp_path, monkeypatch):
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # engines import tests.runs
    monkeypatch.chdir(tmp_path)
    assert not squeue()
    log = tmp_path / "log"
    options = {"config": Config({"SlurmEngineSetLauncher": {"timelimit": "10:00"}})}
    cluster = Cluster(profile="runstore-slurm", n=2, engines="slurm",
                      controller_ip="127.0.0.1", **options).start()
    engine_pids: list[int] = []
    jobs: dict[str, tuple[str, str]] = {}
    try:
        client = cluster.wait(timeout=BOUND)
        jobs = squeue()
        assert [(name.split("-")[0], state) for name, state in jobs.values()] == [
            ("ipengine", "RUNNING")]  # one job for both engines, submitted by sbatch
        (job,) = jobs
        engines = client[:].apply_sync(slurm_job_and_pid)
        assert {slurm_job for slurm_job, _ in engines} == {job}
        engine_pids = [pid for _, pid in engines]

        batch = Batch("slurm")
        batch.add_factorial_runs(Where, {"x": list(range(12)), "log": str(log)})
        batch(cluster=cluster, verbose=0)
        runs = list(batch.run)
        assert all(run.done for run in runs)
        assert sorted(map(int, log.read_text().split())) == list(range(12))  # each once
        assert [run.result["x"] for run in runs] == list(range(12))
        # Computed in the SLURM job, on this (its only) node, by its engines ...
        assert {run.result["slurm_job"] for run in runs} == {job}
        assert {run.result["host"] for run in runs} == {socket.gethostname()}
        assert {run.result["pid"] for run in runs} <= set(engine_pids)
        # ... which the provenance names; each run was claimed once.
        assert [(run.provenance["host"], run.provenance["pid"], run.provenance["attempts"])
                for run in runs] == [(run.result["host"], run.result["pid"], 1) for run in runs]
    finally:
        cluster.stop()
    for job in jobs:
        wait_until_gone(job)
    assert not [pid for pid in engine_pids if psutil.pid_exists(pid)
                and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]


@pytest.mark.slow
def test_when_the_engine_job_ends_the_batch_stops_and_its_runs_are_pending(
        slurm, tmp_path, monkeypatch):
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.chdir(tmp_path)
    log = tmp_path / "log"
    # Engines that stop answering are noticed after 10 heartbeats of 1 s.
    cluster = Cluster(profile="runstore-slurm-end", n=2, engines="slurm",
                      controller_ip="127.0.0.1",
                      controller_args=["--HeartMonitor.period=1000"]).start()
    cluster.no_engines_timeout = 5.0
    jobs: dict[str, tuple[str, str]] = {}
    try:
        cluster.wait(timeout=BOUND)
        jobs = squeue()
        (job,) = jobs
        batch = Batch("ended")
        batch.add_factorial_runs(SlowCounting, {"x": list(range(8)), "log": str(log),
                                                "seconds": 0.5})

        def cancel_once_a_run_is_done():  # as the job's time limit would
            deadline = time.monotonic() + BOUND
            while not (log.exists() and log.read_text()) and time.monotonic() < deadline:
                time.sleep(0.2)
            subprocess.run(["scancel", job], check=True, timeout=30)

        canceller = threading.Thread(target=cancel_once_a_run_is_done)
        canceller.start()
        with pytest.raises(PoolError, match=r"no engine .* has been registered for .*pending again"):
            batch(cluster=cluster, verbose=0)
        canceller.join()
        wait_until_gone(job)
        done = [run for run in batch.run if run.done]
        assert 0 < len(done) < 8
        assert {run.result["x"] for run in done} <= set(map(int, log.read_text().split()))
        assert batch.store.in_flight() == []  # nothing left RUNNING: the rest is pending
        batch(verbose=0)  # here, serially
        assert all(run.done for run in batch.run)
        assert set(map(int, log.read_text().split())) == set(range(8))
    finally:
        cluster.stop()
    for job in jobs:
        wait_until_gone(job)


def slurm_recipe() -> tuple[dict[str, str], list[list[tuple[str, str]]]]:
    """The SLURM section's files (by caption) and console blocks (commands with their output)."""
    text = (ROOT / "docs" / "howto" / "parallel.rst").read_text()
    section = re.search(r"^On a SLURM cluster\n-+\n(.*?)(?=^\S[^\n]*\n-+\n|\Z)", text,
                        re.M | re.S)
    assert section, "docs/howto/parallel.rst has a section 'On a SLURM cluster'"
    body = section.group(1)
    block = r"((?:    .*\n|\n)+)"
    files = {name: textwrap.dedent(code) for name, code in re.findall(
        r"\.\. code-block:: \w+\n    :caption: (\S+)\n\n" + block, body)}
    consoles = []
    for console in re.findall(r"\.\. code-block:: console\n\n" + block, body):
        commands = []
        for chunk in re.split(r"^\$ ", textwrap.dedent(console), flags=re.M)[1:]:
            command, _, output = chunk.partition("\n")
            commands.append((command, output.strip("\n") + "\n"))
        consoles.append(commands)
    return files, consoles


def run_watching_slurm(command: str, folder: Path, env: dict[str, str],
                       seen: set[tuple[str, str, str]]) -> str:
    """Run a documented command in ``folder``; add the jobs seen meanwhile to ``seen``."""
    argv = shlex.split(command)
    assert argv[0] in ("python", "sbatch"), f"a command of the SLURM recipe: {command}"
    with subprocess.Popen(argv, cwd=folder, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as process:
        try:
            deadline = time.monotonic() + 3 * BOUND
            while process.poll() is None:
                if time.monotonic() > deadline:
                    pytest.fail(f"$ {command} did not end within {3 * BOUND} s; "
                                f"SLURM's queue: {squeue()}")
                seen.update((job, *named) for job, named in squeue().items())
                time.sleep(0.5)
            out, err = process.communicate()
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0, f"$ {command}\n{err}"
    return out


@pytest.mark.slow
def test_the_slurm_recipe_runs_as_written(slurm, tmp_path, monkeypatch):
    files, consoles = slurm_recipe()
    assert {"mymodels.py", "sweep.py", "cluster.sbatch", "attach.py"} <= set(files)
    assert len(consoles) == 2, "a console block for each way"
    job_names = set(re.findall(r"--job-name=(\S+)", "".join(files.values())))
    # "python" is the python whose runstore is tested, in the jobs too.
    bin_folder = tmp_path / "bin"
    bin_folder.mkdir()
    (bin_folder / "python").symlink_to(sys.executable)
    checker = doctest.OutputChecker()
    for number, commands in enumerate(consoles):
        folder = tmp_path / f"way-{number}"  # each way in a fresh folder
        folder.mkdir()
        for name, code in files.items():
            (folder / name).write_text(code)
        env = {**os.environ, "IPYTHONDIR": str(folder / "ipython"),
               "PATH": os.pathsep.join([str(bin_folder), os.environ["PATH"]]),
               "PYTHONPATH": os.pathsep.join([str(folder), str(ROOT)])}
        assert not squeue()
        seen: set[tuple[str, str, str]] = set()  # job, name, state
        for command, expected in commands:
            out = run_watching_slurm(command, folder, env, seen)
            assert checker.check_output(expected, out, doctest.ELLIPSIS), (
                f"$ {command}\nexpected:\n{expected}\ngot:\n{out}")
        running = {name for _, name, state in seen if state == "RUNNING"}
        assert running and running <= job_names, (
            f"a job the recipe names ({job_names}) ran while {commands} ran: {seen}")
        for job in {job for job, _, _ in seen}:
            wait_until_gone(job)
        monkeypatch.chdir(folder)
        batch = Batch("damped")
        assert len(batch.run) == 12 and all(run.done for run in batch.run)
        assert {run.provenance["attempts"] for run in batch.run} == {1}
