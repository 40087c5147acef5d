"""A parameter sweep of a damped, driven oscillator, kept in a runstore store.

Run it twice: the second time nothing is computed, every result comes from
the store. It prints a query of the results and where the files are.

    python examples/sweep.py
"""

from __future__ import annotations

import numpy as np

import runstore


class Oscillator(runstore.Run):
    """x'' + 2 gamma x' + omega^2 x = sin(drive t), from x = 1, x' = 0."""

    def run(self, omega=1.0, gamma=0.1, drive=0.5, t_end=50.0, steps=20_000):
        dt = t_end / steps
        t = np.linspace(0.0, t_end, steps + 1)
        x, v = np.empty(steps + 1), np.empty(steps + 1)
        x[0], v[0] = 1.0, 0.0
        for i in range(steps):  # semi-implicit Euler
            a = np.sin(drive * t[i]) - 2 * gamma * v[i] - omega**2 * x[i]
            v[i + 1] = v[i] + dt * a
            x[i + 1] = x[i] + dt * v[i + 1]
        tail = x[steps // 2:]
        return {
            "t": t,
            "x": x,
            "amplitude": float(tail.max() - tail.min()) / 2,
            "energy": float(0.5 * v[-1] ** 2 + 0.5 * omega**2 * x[-1] ** 2),
        }


def main() -> None:
    batch = runstore.Batch("oscillator")
    batch.add_factorial_runs(Oscillator, {
        "omega": [0.25, 0.5, 1.0, 2.0],
        "gamma": [0.02, 0.1, 0.5],
        "drive": [0.25, 0.5, 1.0],
    })
    batch()  # computes what is not in the store yet, with a progress bar

    print(f"{len(batch.run)} runs, all done: {all(run.done for run in batch.run)}")
    print("\nResonances (drive = omega), light damping: amplitude by omega")
    for run in batch.get_runs_with(gamma=0.02, omega__le=1.0):
        p = run.parameters
        if p["drive"] == p["omega"]:
            print(f"  omega={p['omega']:<5} amplitude={run.result['amplitude']:8.3f}")
    run = batch.get_runs_with(omega=1.0, gamma=0.1, drive=1.0)[0]
    print(f"\nOne trajectory: {run.result['x'].shape[0]} points of x(t), "
          f"run id {run.id[:12]}..., computed in {run.runtime:.3f} s")
    print(f"\nStore:  {batch.store.path}")
    print(f"Arrays: {batch.store.arrays.directory}/")
    print(f'SQL:    sqlite3 {batch.store.path} "select omega, gamma, drive, amplitude '
          f'from oscillator order by amplitude desc limit 3"')


if __name__ == "__main__":
    main()
