"""Run classes and functions the benchmarks share (importable by worker processes)."""

from __future__ import annotations

import time

import numpy as np

import runstore


def trivial(A: int, B: int, C: int) -> dict[str, int]:
    return {"val": A * B + C}


class Trivial(runstore.Run):
    def run(self, A=0, B=0, C=0):
        return {"val": A * B + C}


#: Arrays made before timing, so that runs return them without computing.
ARRAYS: list[np.ndarray] = []


def make_arrays(count: int, size: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    ARRAYS[:] = [rng.random(size) for _ in range(count)]
    return ARRAYS


class Stored(runstore.Run):
    """Returns a prepared array: only storing it is measured."""

    def run(self, i=0, size=0):
        return {"x": ARRAYS[i]}


class Burn(runstore.Run):
    def run(self, n=0, steps=400_000):
        total = 0
        for i in range(steps):
            total += (i ^ n) & 7
        return {"total": total}


def burn_steps(n: int, steps: int) -> int:
    total = 0
    for i in range(steps):
        total += (i ^ n) & 7
    return total


def nap(i: int, seconds: float) -> int:
    """Sleep: work that takes time but no CPU."""
    time.sleep(seconds)
    return i


class Nap(runstore.Run):
    def run(self, i=0, seconds=0.05, tag=""):
        return {"i": nap(i, seconds)}
