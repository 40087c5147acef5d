"""Design invariant 3: killing a writer at any instant never corrupts committed results."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from runstore import Batch

from .runs import Sleepy

ROOT = Path(__file__).resolve().parent.parent
N_RUNS = 400
WRITER = """
import sys
sys.path.insert(0, sys.argv[1])
import runstore.batch
from runstore import Batch
from tests.runs import Sleepy
runstore.batch._FLUSH_SECONDS = 0.02  # commit often: more instants to be killed at
batch = Batch("crash", path=sys.argv[2])
batch.add_factorial_runs(Sleepy, {"i": list(range(%d)), "seconds": 0.004})
print("started", flush=True)
batch(verbose=0)
""" % N_RUNS


def _start_writer(folder: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(ROOT), str(folder)],
                            stdout=subprocess.PIPE, text=True)


def _check(folder: Path) -> int:
    """Reopen the store; every done run loads intact, every other run is pending."""
    batch = Batch("crash", path=folder)
    batch.add_factorial_runs(Sleepy, {"i": list(range(N_RUNS)), "seconds": 0.004})
    states = [run.state for run in batch.run]
    assert set(states) <= {"done", "pending"}, states
    for run in batch.run:
        if run.done:
            result = run.result
            i = run.parameters["i"]
            assert result["i"] == i and np.array_equal(result["data"], np.full(1000, float(i)))
    batch.store.close()
    return states.count("done")


@pytest.mark.slow
def test_sigkill_at_random_moments_never_corrupts_committed_results(tmp_path):
    rng = random.Random(20261122)
    done_counts = []
    for _ in range(12):
        with _start_writer(tmp_path) as writer:
            assert writer.stdout is not None and writer.stdout.readline() == "started\n"
            time.sleep(rng.uniform(0.0, 0.25))
            os.kill(writer.pid, signal.SIGKILL)
        done_counts.append(_check(tmp_path))
        # Killed, unless it had already finished everything.
        assert writer.returncode == -signal.SIGKILL or done_counts[-1] == N_RUNS
    assert done_counts == sorted(done_counts)  # committed results are never lost
    assert 0 < done_counts[-1] < N_RUNS, done_counts  # it was killed mid-batch
    with _start_writer(tmp_path) as writer:
        writer.communicate(timeout=120)
    assert writer.returncode == 0
    assert _check(tmp_path) == N_RUNS
