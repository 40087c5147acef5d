"""An ipyparallel cluster, started, used and stopped from Python.

:class:`Cluster` has the semantics of the older ``mmfutils.parallel.Cluster``
(a profile, a number of engines, ``start``, ``wait``, ``stop``, a context
manager that yields a client), built on ipyparallel's own ``Cluster`` API: the
controller and engines are launched by ipyparallel from this interpreter's
environment, never by an ``ipcluster`` found on ``PATH``, and nothing probes a
cluster that is not running. ``batch(cluster=...)`` drains a batch on its
engines through ipyparallel's ``concurrent.futures`` executor; an engine that
dies only requeues the runs it had.

This is the only module of runstore that imports ipyparallel.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from .errors import ClusterError

__all__ = ["Cluster", "get_cluster", "default_engines"]

_REGISTRY: dict[tuple[str, str], Cluster] = {}


def default_engines() -> int:
    """How many engines to start here: from PBS, SLURM, or the CPU count."""
    nodefile = os.environ.get("PBS_NODEFILE")
    if nodefile and Path(nodefile).is_file():
        lines = [line for line in Path(nodefile).read_text().splitlines() if line.strip()]
        if lines:
            return len(lines)
    for variable in ("SLURM_NTASKS", "SLURM_NPROCS", "SLURM_CPUS_ON_NODE"):
        value = os.environ.get(variable, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return os.cpu_count() or 1


class Cluster:
    """A local ipyparallel cluster: a controller and ``n`` engines.

    Parameters
    ----------
    profile
        The IPython profile (its folder holds the connection files).
    n
        The number of engines; by default from ``PBS_NODEFILE``, SLURM's
        variables, or the CPU count.
    cluster_id
        Tells apart several clusters of one profile.
    engines, controller
        How ipyparallel launches the engines and the controller: ``"local"``
        (processes of this host), ``"slurm"`` (a job submitted with
        ``sbatch``), ``"mpi"``, ``"ssh"``, ... (ipyparallel's launcher names).
    controller_ip
        The address the controller listens on, which engines on other hosts
        must reach.
    options
        Passed to ``ipyparallel.Cluster`` unchanged (for example ``config=``
        with the launcher's settings).

    Examples
    --------
    ::

        with runstore.Cluster(n=4) as client:   # started, engines waited for
            view = client.load_balanced_view()
        # stopped

        cluster = runstore.Cluster(n=4).start()
        cluster.wait()
        batch(cluster=cluster)
        cluster.stop()
    """

    def __init__(self, profile: str = "default", n: int | None = None,
                 cluster_id: str = "", log_level: int = logging.WARNING, *,
                 engines: str = "local", controller: str = "local",
                 controller_ip: str | None = None, **options: Any) -> None:
        self.profile = profile
        self.n = n if n is not None else default_engines()
        self.cluster_id = cluster_id
        self.log_level = log_level
        self.engines = engines
        self.controller = controller
        self.controller_ip = controller_ip
        self.options = options
        self._cluster: Any = None
        self._client: Any = None
        _REGISTRY[(profile, cluster_id)] = self

    # -- life cycle ----------------------------------------------------------------

    def start(self) -> Cluster:
        """Start the controller and the engines (without waiting for the engines)."""
        import ipyparallel

        if self._cluster is None:
            options = dict(self.options)
            if self.controller_ip is not None:
                options["controller_ip"] = self.controller_ip
            self._cluster = ipyparallel.Cluster(
                n=self.n, profile=self.profile, cluster_id=self.cluster_id,
                log_level=self.log_level, engines=self.engines,
                controller=self.controller, **options)
            self._cluster.start_cluster_sync()
        return self

    def wait(self, n_min: int | None = None, timeout: float = 60.0) -> Any:
        """Wait until at least ``n_min`` engines (default: all) are ready; return the client.

        Ready means registered, with runstore's worker side imported, so that
        the first runs sent to an engine do not pay for the imports.
        """
        client = self.client
        wanted = self.n if n_min is None else n_min
        try:
            client.wait_for_engines(wanted, timeout=timeout)
        except TimeoutError as exc:
            raise ClusterError(
                f"only {len(client.ids)} of {wanted} engines of profile {self.profile!r} "
                f"registered within {timeout} s; wait longer (wait(timeout=...)), or ask "
                f"for fewer (wait(n_min=...))") from exc
        client[:].execute("import runstore.pool", block=True)
        return client

    def stop(self) -> None:
        """Stop the engines and the controller, and close the client."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.stop_cluster_sync()
            self._cluster = None

    @property
    def running(self) -> bool:
        """Whether this object started (or attached to) a cluster not yet stopped."""
        return self._cluster is not None

    def __enter__(self) -> Any:
        self.start()
        return self.wait()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- using it --------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """An ``ipyparallel.Client`` connected to the cluster."""
        if self._cluster is None:
            raise ClusterError(
                f"the cluster of profile {self.profile!r} is not running: call "
                f"start() first (or use get_cluster() for one started elsewhere)")
        if self._client is None:
            self._client = self._cluster.connect_client_sync()
        return self._client

    def load_balanced_view(self) -> Any:
        """A load-balanced view of all engines."""
        return self.client.load_balanced_view()

    def direct_view(self) -> Any:
        """A direct view of all engines."""
        return self.client[:]

    def executor(self) -> Executor:
        """A ``concurrent.futures.Executor`` on the engines (load balanced)."""
        executor: Executor = self.client.executor()
        return executor

    def __len__(self) -> int:
        """The number of engines registered now (0 if not running)."""
        return len(self.client.ids) if self._cluster is not None else 0

    @staticmethod
    def is_lost(exc: BaseException) -> bool:
        """Whether a task's exception means its engine died (not that the run failed)."""
        import ipyparallel

        return (isinstance(exc, ipyparallel.error.RemoteError)
                and exc.ename == "EngineError") or isinstance(exc, ipyparallel.error.EngineError)

    def __repr__(self) -> str:
        state = f"{len(self)} engines" if self.running else "not running"
        return f"Cluster(profile={self.profile!r}, n={self.n}, {state})"


def get_cluster(profile: str = "default", cluster_id: str = "") -> Cluster:
    """The cluster of a profile: one made in this process, or one started elsewhere.

    A cluster started elsewhere is found through the cluster file ipyparallel
    writes in the profile's folder; without one, this fails at once.
    """
    found = _REGISTRY.get((profile, cluster_id))
    if found is not None:
        return found
    import ipyparallel

    try:
        attached = ipyparallel.Cluster.from_file(profile=profile, cluster_id=cluster_id)
    except FileNotFoundError:
        raise ClusterError(
            f"no cluster of profile {profile!r} (id {cluster_id!r}) is running: start one "
            f"with runstore.Cluster(profile={profile!r}).start()") from None
    cluster = Cluster(profile, n=attached.n or default_engines(), cluster_id=cluster_id)
    cluster._cluster = attached
    return cluster
