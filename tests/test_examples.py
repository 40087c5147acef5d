"""The examples run as the README says, and a second run computes nothing."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_sweep_example_runs_twice_and_computes_once(tmp_path):
    script = ROOT / "examples" / "sweep.py"
    first = subprocess.run([sys.executable, str(script)], cwd=tmp_path,
                           capture_output=True, text=True, check=True)
    assert "36 runs, all done: True" in first.stdout
    assert "omega=1.0   amplitude=" in first.stdout
    assert "Store:  _res/oscillator.db" in first.stdout
    assert "36/36" in first.stderr  # the progress bar
    second = subprocess.run([sys.executable, str(script)], cwd=tmp_path,
                            capture_output=True, text=True, check=True)
    assert second.stdout == first.stdout.replace(
        _runtime_line(first.stdout), _runtime_line(second.stdout))
    with sqlite3.connect(tmp_path / "_res" / "oscillator.db") as db:
        assert db.execute("SELECT COUNT(*), MAX(attempts) FROM runs WHERE state = 'done'"
                          ).fetchone() == (36, 1)
    assert list((tmp_path / "_res" / "oscillator.arrays").glob("*.h5"))
    hint = next(line for line in first.stdout.splitlines() if line.startswith("SQL:"))
    command = hint.removeprefix("SQL:").strip()
    rows = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True,
                          check=True).stdout.splitlines()
    assert len(rows) == 3 and rows[0].split("|")[:3] == ["0.25", "0.02", "0.25"]


def _runtime_line(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("One trajectory"))
