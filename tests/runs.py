"""Run classes shared by the tests (module level, so that they are importable)."""

from __future__ import annotations

import os
import time

import numpy as np

import runstore


class ExampleRun(runstore.Run):
    """The Quickstart's run, without the print."""

    def run(self, A=0, B=[1, 2, 3], operator=max):  # noqa: B006 (the Quickstart's signature)
        return {"val": self.parameters["A"] * self.parameters["operator"](self.parameters["B"])}


class OtherRun(runstore.Run):
    def run(self, A=0, B=[1, 2, 3], operator=max):  # noqa: B006
        return {"val": -A}


class Sweep(runstore.Run):
    """A trivial sweep run: the benchmark's W1 workload."""

    def run(self, A=0, B=0, C=0):
        return {"val": A * B + C}


class Arrays(runstore.Run):
    """Returns arrays of several shapes and dtypes, and nested values."""

    def run(self, n=4, seed=0):
        rng = np.random.default_rng(seed)
        return {
            "x": rng.normal(size=n),
            "m": np.arange(n * n, dtype=np.int16).reshape(n, n),
            "flags": rng.normal(size=n) > 0,
            "z": np.full(2, 1 + 2j, dtype=np.complex64),
            "stats": {"mean": float(rng.normal()), "n": n, "label": f"n={n}"},
            "none": None,
            "c": 1 - 1j,
        }


class Flaky(runstore.Run):
    """Fails for odd x, with a message naming x."""

    def run(self, x=0):
        if x % 2:
            raise ValueError(f"odd x={x} is not allowed\nsecond line")
        return {"y": x}


class Private(runstore.Run):
    """Has a private parameter that is passed to run but not hashed."""

    def run(self, a=1, _verbose=False):
        return {"a": a, "verbose": _verbose}


class Sleepy(runstore.Run):
    """Sleeps, then returns arrays: slow enough to be killed mid-batch."""

    def run(self, i=0, seconds=0.01):
        time.sleep(seconds)
        return {"i": i, "data": np.full(1000, float(i)), "pid": os.getpid()}


class Counting(runstore.Run):
    """Appends to a file each time it computes, to count computations."""

    def run(self, x=0, log=""):
        with open(log, "a") as f:
            f.write(f"{x}\n")
        return {"x": x}


class Unstorable(runstore.Run):
    def run(self, x=0):
        return {"ok": 1, "bad": object()}


class CustomId(runstore.Run):
    def generate_id(self, parameters):
        return f"{parameters['k']:040x}"

    def run(self, k=0):
        return {"k": k}


class BadId(runstore.Run):
    def generate_id(self, parameters):
        return "not-hex"

    def run(self, k=0):
        return {"k": k}


class ContainerResult(runstore.Run):
    """Returns a Container holding an array and a nested dict."""

    def run(self, n=3):
        return runstore.Container(x=np.arange(n), info={"n": n, "half": n / 2})


class OddArrays(runstore.Run):
    """Arrays of every awkward kind: unicode, bytes, datetimes, 0-d, empty."""

    def run(self, k=0):
        return {
            "names": np.array(["a", "bc", "déf"]),
            "raw": np.array([b"x", b"yz"]),
            "when": np.array(["2020-01-01", "2021-06-30"], dtype="M8[D]"),
            "span": np.array([1, 2], dtype="m8[s]"),
            "scalar": np.array(3.5),
            "empty": np.zeros((0, 3)),
            "half": np.arange(4, dtype=np.float16).reshape(2, 2),
            "long": np.arange(3, dtype=np.clongdouble),
        }


class KillsWorkerOnce(runstore.Run):
    """The first time (while the file ``flag`` exists) kills its worker process."""

    def run(self, x=0, flag="", log=""):
        if x == 3 and os.path.exists(flag):
            os.unlink(flag)
            os.kill(os.getpid(), 9)
        with open(log, "a") as f:
            f.write(f"{x}\n")
        return {"x": x, "pid": os.getpid()}


class KillsWorkerAlways(runstore.Run):
    def run(self, x=0):
        if x == 1:
            os.kill(os.getpid(), 9)
        return {"x": x}


class SlowCounting(runstore.Run):
    """Sleeps, then appends x to a log file: counts computations across processes."""

    def run(self, x=0, log="", seconds=0.0):
        time.sleep(seconds)
        with open(log, "a") as f:
            f.write(f"{x}\n")
        return {"x": x, "pid": os.getpid()}


class Named(runstore.Run):
    """Declares its own name, so workers need --import to find it."""

    __runstore_name__ = "lab.Named"

    def run(self, x=0):
        return {"x": x}


class ThreadCount(runstore.Run):
    """Reports the thread limits its process runs with."""

    def run(self, i=0):
        import pyfftw
        from threadpoolctl import threadpool_info

        return {"fftw": pyfftw.config.NUM_THREADS,
                "blas": [pool["num_threads"] for pool in threadpool_info()]}


class Anything(runstore.Run):
    """Takes any keyword parameters and returns them, plus a flag and a None."""

    def run(self, **kw):
        return {**{k: v for k, v in kw.items() if not isinstance(v, list)},
                "flag": True, "nothing": None}


class Collides(runstore.Run):
    """A parameter and a result of the same name, and a parameter named like a fixed column."""

    def run(self, x=0, state="s"):
        return {"x": x * 10}


class Noisy(runstore.Run):
    """A different result each time it is computed (same id, different content)."""

    def run(self, k=0):
        draw = np.random.default_rng().normal(size=3)
        return {"draw": draw, "first": float(draw[0])}


class Spectral(runstore.Run):
    """Uses runstore.performance.fft (FFTW, measured plans); reports whether the
    process already had wisdom for its transform before planning it."""

    def run(self, n=2048, seed=0):
        import pyfftw

        from runstore.performance import fft

        a = pyfftw.empty_aligned(n, dtype="complex128")
        b = pyfftw.empty_aligned(n, dtype="complex128")
        try:
            pyfftw.FFTW(a, b, flags=("FFTW_MEASURE", "FFTW_WISDOM_ONLY"), threads=1)
            had_wisdom = True
        except RuntimeError:
            had_wisdom = False
        x = np.random.default_rng(seed).normal(size=n) + 0j
        spectrum = fft.get_fft(x, backend="fftw", threads=1)(x)
        return {"peak": float(np.abs(spectrum).max()), "had_wisdom": had_wisdom}


class BigSender(runstore.Run):
    """Returns 4 MiB of arrays; just before, leaves a file ``<folder>/<i>-<pid>``.

    The file tells a test the instant the worker starts sending its result, so
    that it can kill the worker mid-send.
    """

    def run(self, i=0, folder="", mib=4):
        data = np.full(mib * 2**17, float(i))  # 8-byte floats
        if folder:
            open(os.path.join(folder, f"{i}-{os.getpid()}"), "w").close()
        return {"i": i, "data": data}


class Stamped(runstore.Run):
    """Sleeps, logs ``x nonce pid`` to a file, returns the nonce: tells computations apart."""

    def run(self, x=0, log="", seconds=0.0):
        import uuid

        time.sleep(seconds)
        nonce = uuid.uuid4().hex
        with open(log, "a") as f:
            f.write(f"{x} {nonce} {os.getpid()}\n")
        return {"x": x, "nonce": nonce, "pad": np.full(64, float(x))}


class FillsDisk(runstore.Run):
    """Returns an 8 KiB array; run ``at`` fills the disk with the file ``ballast``.

    It does so once: it leaves the file ``once`` (elsewhere) when it did.
    """

    def run(self, i=0, ballast="", once="", at=-1, seconds=0.0, reserves=""):
        time.sleep(seconds)
        if i == at and ballast and not os.path.exists(once):
            open(once, "w").close()
            chunk = b"\0" * 2**16
            with open(ballast, "wb") as f:
                for left in (True, bool(reserves)):  # with ``reserves``, theirs too
                    if not left:
                        break
                    for name in os.listdir(reserves) if reserves else ():
                        if name.startswith(".reserve-"):
                            os.unlink(os.path.join(reserves, name))
                    try:
                        while True:
                            f.write(chunk)
                            f.flush()
                    except OSError:  # the disk is full now
                        pass
        return {"i": i, "data": np.full(1024, float(i))}


class MovesFolder(runstore.Run):
    """Run ``at`` puts a file where the store's side-file folder was (moved aside), once."""

    def run(self, i=0, folder="", at=-1):
        if i == at and os.path.isdir(folder) and not os.path.exists(folder + "-once"):
            open(folder + "-once", "w").close()
            os.rename(folder, folder + "-aside")
            open(folder, "w").close()
        return {"i": i, "data": np.full(16, float(i))}


class Unbindable(runstore.Run):
    """Run ``bad`` returns a string SQLite cannot take (a lone surrogate)."""

    def run(self, i=0, bad=-1):
        return {"i": i, "text": "\ud800" if i == bad else "fine", "data": np.arange(3.0) + i}


class Stolen(runstore.Run):
    """Loses its claim while it computes: its owner is made another host's, with an
    expired lease, and another process opens the store (``mode="release"``) or
    computes the run itself (``mode="recompute"``)."""

    def run(self, x=0, mode="release"):
        import sqlite3
        import subprocess
        import sys

        if os.environ.get("RUNSTORE_TEST_SECOND"):
            return {"who": "second", "data": np.arange(3.0)}
        path = self._batch.store.path
        with sqlite3.connect(path) as db:
            db.execute("UPDATE runs SET owner = 'elsewhere:1:1.000', lease_expires = 0")
        from tests.test_leases import STEAL, ROOT

        subprocess.run([sys.executable, "-c", STEAL, str(ROOT), path, mode], check=True,
                       env=dict(os.environ, RUNSTORE_TEST_SECOND="1"), capture_output=True)
        return {"who": "first", "data": np.arange(3.0)}


class Echo(runstore.Run):
    """Returns its parameter ``x`` as the result ``r``."""

    def run(self, i=0, x=None):
        return {"r": x}


class FailsWithMarkup(runstore.Run):
    """Fails with a message that is also HTML, to see that it is shown escaped."""

    def run(self, x=0):
        raise RuntimeError(f"<script>alert({x})</script> & more\nsecond line")


class Frames(runstore.Run):
    """Returns large arrays, alone and inside a list."""

    def run(self, n=2, size=1000):
        return {"t": np.arange(size, dtype=float), "frames": [np.ones(size)] * n, "n": n}


class Large(runstore.Run):
    """Returns what a simulation returns: large arrays of several shapes, and scalars."""

    def run(self, n=100_000):
        return {"x": np.linspace(0.0, 1.0, n), "m": np.arange(40_000.0).reshape(200, 200),
                "counts": np.arange(500, dtype=np.int32), "few": np.arange(3),
                "history": [float(i) for i in range(5000)], "steps": n, "label": "large",
                "nested": {"frames": [np.ones(300)] * 2, "mean": 0.5}}


class Driven(runstore.Run):
    """A driven oscillator's amplitude: several parameters to plot against each other."""

    def run(self, A=1, drive=1.0, damping=0.1, label="a"):
        return {"amp": A * drive / (1 + damping) + len(label), "steps": 10 * A}


class HostCounting(runstore.Run):
    """Sleeps, then logs ``x``, the host name and pid: where each computation happened."""

    def run(self, x=0, log="", seconds=0.0):
        import socket

        time.sleep(seconds)
        with open(log, "a") as f:
            f.write(f"{x} {socket.gethostname()} {os.getpid()}\n")
        return {"x": x, "host": socket.gethostname()}


class Where(runstore.Run):
    """Appends x to a log file and says where it computed: host, pid, SLURM job."""

    def run(self, x=0, log=""):
        import socket

        with open(log, "a") as f:
            f.write(f"{x}\n")
        return {"x": x, "host": socket.gethostname(), "pid": os.getpid(),
                "slurm_job": os.environ.get("SLURM_JOB_ID", "")}


def slurm_job_and_pid() -> tuple[str, int]:
    """Where an engine runs: its SLURM job ('' outside one) and its process id."""
    return os.environ.get("SLURM_JOB_ID", ""), os.getpid()


class Positioned(runstore.Run):
    """Returns where it is in its batch and what it was given."""

    def run(self, A=0, B="b"):
        return {"index": self.index, "A": A, "B": B, "seen": repr(self.parameters)}
