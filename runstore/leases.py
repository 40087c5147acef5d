"""Claims and their leases: who holds a running run, and until when. Internal module.

A claimed run is RUNNING under an *owner token*, ``host:pid:start time``. On
the store's own host (the only host that writes a store) whether the owner
lives is seen directly, so a run claimed by a live process is never taken from
it, whatever its lease says; leases only matter for owners whose liveness
cannot be seen (other hosts). Every drain keeps its leases alive with a
:class:`Heartbeat` thread while it computes.

Within one process, :data:`HELD` records the runs that drains of this process
hold right now (per store file, thread-safely). A run RUNNING under this
process's own token that no drain holds is *stranded* (its drain could record
neither its result nor its release, e.g. on a full disk); the next drain of
this process takes it back.

Configuration:

``RUNSTORE_LEASE``
    Seconds a claim lasts without a heartbeat (default 600), unless a store
    is opened with ``lease=``.
``RUNSTORE_TEST_CLOCK_OFFSET``
    For tests only: seconds added to this process's clock when leases are
    set and compared, to act as a host whose clock runs ahead.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable

import psutil

from .errors import LeaseError

__all__ = ["DEFAULT_LEASE", "HELD", "Heartbeat", "HeldClaims", "clock", "lease_seconds",
           "owner_is_dead", "process_is_dead"]

#: Seconds a claim lasts before a worker on another host may take the run over.
DEFAULT_LEASE = 600.0


def lease_seconds(lease: float | None = None) -> float:
    """The lease to use: ``lease`` if given, else ``RUNSTORE_LEASE``, else the default."""
    source = "lease="
    if lease is None:
        text = os.environ.get("RUNSTORE_LEASE", "").strip()
        if not text:
            return DEFAULT_LEASE
        source = "RUNSTORE_LEASE"
        try:
            lease = float(text)
        except ValueError:
            raise LeaseError(source, text) from None
    if isinstance(lease, bool) or not isinstance(lease, (int, float)) or not (
            math.isfinite(lease) and lease > 0):
        raise LeaseError(source, lease)
    return float(lease)


def clock() -> float:
    """Seconds since the epoch, as leases are set and compared in this process."""
    offset = os.environ.get("RUNSTORE_TEST_CLOCK_OFFSET", "")
    try:
        return time.time() + (float(offset) if offset else 0.0)
    except ValueError:
        return time.time()


def process_is_dead(pid: int, started: float | None = None) -> bool:
    """Whether process ``pid`` (started at ``started``, if given) is gone.

    A zombie (exited, not yet reaped) is dead; a pid reused by a process
    started at another time is dead.
    """
    try:
        proc = psutil.Process(pid)
        if started is not None and abs(proc.create_time() - started) > 0.01:
            return True
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:  # e.g. access denied: it exists
        return False


def owner_is_dead(owner: str | None, host: str | None = None) -> bool:
    """Whether an owner token names a process of this host that is gone.

    Owners of other hosts (or tokens that cannot be read) are not known to
    be dead: only their lease tells.
    """
    if not owner:
        return True
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != (host or socket.gethostname()):
        return False
    try:
        pid, started = int(parts[1]), float(parts[2])
    except ValueError:
        return False
    return process_is_dead(pid, started)


class HeldClaims:
    """The run keys held by drains of this process, per store file (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, set[int]] = {}

    def hold(self, store: str, keys: Iterable[int]) -> None:
        with self._lock:
            self._keys.setdefault(store, set()).update(keys)

    def drop(self, store: str, keys: Iterable[int]) -> None:
        with self._lock:
            held = self._keys.get(store)
            if held is not None:
                held.difference_update(keys)

    def held(self, store: str) -> set[int]:
        with self._lock:
            return set(self._keys.get(store, ()))

    def _forget(self) -> None:
        # In a forked child no drain of the parent runs; a lock held by a
        # parent's thread would never be released there.
        self._lock = threading.Lock()
        self._keys = {}


#: The runs drains of this process hold.
HELD = HeldClaims()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=HELD._forget)


class Heartbeat:
    """A thread that calls ``beat()`` every ``interval`` seconds until stopped.

    Used as a context manager around a drain: leases are extended while runs
    compute, however long one takes. A failing beat (a locked or full disk)
    is retried at the next interval; the thread never raises.
    """

    def __init__(self, beat: Callable[[], object], interval: float) -> None:
        self._beat, self.interval = beat, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="runstore-heartbeat")

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._beat()
            except Exception:  # noqa: BLE001 (a beat that fails is tried again)
                continue

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
