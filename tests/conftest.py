"""Fixtures shared by the tests."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# CI runs on two cores: keep property tests thorough but bounded.
settings.register_profile("ci", max_examples=200, deadline=None)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _environment_restored() -> Iterator[None]:
    """Each test leaves the process environment as it found it.

    A Dask ``LocalCluster`` of worker processes sets ``OMP_NUM_THREADS=1``
    (and MKL's and OpenBLAS's) in the process that starts it, before spawning
    each worker (``distributed.nanny.pre-spawn-environ``): without this, every
    later test, and every process it starts, would run with those caps.
    """
    before = dict(os.environ)
    yield
    if os.environ != before:
        os.environ.clear()
        os.environ.update(before)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run the test inside a fresh temporary directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def tmpfs(tmp_path):
    """Mount small tmpfs filesystems (``tmpfs("4m")`` gives its folder); unmounted afterwards.

    A real full disk needs a real small filesystem. CI runs as root; where
    mounting is not allowed, the test is skipped with the reason printed.
    """
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        folder = tmp_path / f"disk-{len(mounted)}"
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                               str(folder)], capture_output=True, text=True)
        if done.returncode != 0:
            reason = f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}"
            print(reason)
            pytest.skip(reason)
        mounted.append(folder)
        return folder

    try:
        yield mount
    finally:
        for folder in mounted:
            subprocess.run(["umount", "-l", str(folder)], check=False)


SLURM_SCRIPTS = Path(__file__).resolve().parent / "slurm"


@pytest.fixture(scope="session")
def slurm_conf() -> Iterator[Path]:
    """A real single-node SLURM for this test run; its ``slurm.conf``.

    tests/slurm/start-slurm.sh installs slurm-wlm and munge where they are
    missing (apt-get, as root) and starts munged, slurmctld and slurmd in a
    folder of their own; stop-slurm.sh cancels the jobs, stops the daemons and
    removes the folder afterwards, however the tests ended (a watchdog does it
    if this process is killed). Where SLURM cannot work (not root, no apt-get,
    the package archive unreachable) the tests are skipped with the reason.
    """
    # munged refuses a socket inside a folder closed to others, as pytest's
    # tmp_path is: the cluster's folder is a fresh one in the system's tmp.
    folder = Path(tempfile.mkdtemp(prefix="runstore-slurm-"))
    try:
        # At most three apt-get commands of 300 s each, then a minute for the daemons.
        started = subprocess.run(
            ["bash", str(SLURM_SCRIPTS / "start-slurm.sh"), str(folder), str(os.getpid())],
            capture_output=True, text=True, timeout=1200,
            env={**os.environ, "PYTHON": sys.executable})
        if started.returncode == 77:
            reason = (started.stderr.strip().splitlines() or ["cannot start SLURM here"])[-1]
            print(reason)
            pytest.skip(reason)
        if started.returncode != 0:
            pytest.fail(f"tests/slurm/start-slurm.sh failed (status {started.returncode}); "
                        f"what it said, with the end of the daemons' logs:\n{started.stderr}",
                        pytrace=False)
        yield folder / "slurm.conf"
    finally:
        subprocess.run(["bash", str(SLURM_SCRIPTS / "stop-slurm.sh"), str(folder)],
                       capture_output=True, timeout=120)


@pytest.fixture
def slurm(slurm_conf, monkeypatch) -> Path:
    """The SLURM of :func:`slurm_conf`, found by ``sbatch``, ``squeue``... of this test."""
    monkeypatch.setenv("SLURM_CONF", str(slurm_conf))
    return slurm_conf
