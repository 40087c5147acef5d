"""What does the one-writer-host check add to opening a store for writing?

Each writable open finds the store's filesystem (``/proc/self/mountinfo``,
cached per folder while its device stays the same) and, for the first handle
of a process, writes its writer record and reads the others; later handles
and write transactions only compare a clock until a quarter lease has passed.
This times each piece, and a writable ``Store`` open and close for scale.

Run it:

    python benchmarks/bench_writerhost.py

It prints a table and writes it to benchmarks/results/bench_writerhost.txt.
"""

from __future__ import annotations

import platform
import tempfile
import time
from pathlib import Path

from runstore import filesystems, writerhost
from runstore.store import Store


def per_call(fn, n: int) -> float:
    """Best of three, in microseconds per call."""
    fn()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1e6


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "example.db"
        Store(db).close()

        def uncached() -> None:
            filesystems._cache.clear()
            filesystems.mount_of(db)

        def first_handle() -> None:
            writerhost.unclaim(writerhost.claim(db, 600))

        lines = [
            ("filesystem of the store, cached", per_call(lambda: filesystems.mount_of(db), 5000)),
            ("filesystem of the store, mountinfo read", per_call(uncached, 2000)),
            ("writer record written, others read, removed", per_call(first_handle, 1000)),
        ]
        keep = writerhost.claim(db, 600)
        lines.append(("another handle of a process that writes",
                      per_call(lambda: writerhost.unclaim(writerhost.claim(db, 600)), 5000)))
        lines.append(("check before a write transaction", per_call(keep.confirm, 100000)))
        writerhost.unclaim(keep)
        lines.append(("Store(path) open and close, for scale",
                      per_call(lambda: Store(db).close(), 200)))
    with open("/proc/self/mountinfo") as f:
        mounts = len(f.readlines())
    text = "\n".join([f"{platform.node()}, Python {platform.python_version()}, "
                      f"{mounts} mounts; python benchmarks/bench_writerhost.py", ""]
                     + [f"{name:<48} {us:9.1f} us" for name, us in lines]) + "\n"
    print(text, end="")
    out = Path(__file__).parent / "results" / "bench_writerhost.txt"
    out.write_text(text)


if __name__ == "__main__":
    main()
