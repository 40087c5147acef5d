"""The table a benchmark prints, with the machine and command, saved in results/."""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import runstore

RESULTS = Path(__file__).resolve().parent / "results"


class Report:
    """Lines printed as they come, then written to ``results/<name>.txt``."""

    def __init__(self, title: str) -> None:
        self.lines: list[str] = []
        self.say(f"# runstore {runstore.__version__}: {title}")
        self.say(f"# {platform.platform()}, Python {platform.python_version()}, "
                 f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
        self.say(f"# command: python {' '.join(['benchmarks/' + Path(sys.argv[0]).name, *sys.argv[1:]])}")
        self.say()

    def say(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)

    def write(self, name: str) -> Path:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"{name}.txt"
        path.write_text("\n".join(self.lines) + "\n")
        return path
