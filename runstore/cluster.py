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

import copy
import logging
import os
from collections.abc import Callable, Mapping
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
    """An ipyparallel cluster: a controller and ``n`` engines, here or on other hosts.

    The controller and the engines are started by ipyparallel's launchers:
    ``engines="local"`` (processes of this host, the default), ``"mpi"``,
    ``"ssh"``, ``"slurm"``, ``"pbs"``, ``"sge"``, ``"lsf"``, ``"htcondor"``
    ... (any name of an ``ipyparallel.engine_launchers`` entry point, or a
    launcher class); ``controller=`` likewise. Only this process (the
    coordinator) writes the store: engines compute and send results back.

    Parameters
    ----------
    profile
        The IPython profile (its folder holds the connection files).
    n
        The number of engines; by default from ``PBS_NODEFILE``, SLURM's
        variables, or the CPU count.
    cluster_id
        Tells apart several clusters of one profile.
    log_level
        The level of ipyparallel's log messages in this process.
    engines
        How engines are launched: an ipyparallel engine launcher's name or class.
    controller
        How the controller is launched: a controller launcher's name or class.
    controller_ip
        The address the controller listens on; engines on other hosts need
        one they can reach (``"0.0.0.0"`` for every interface, then
        ``controller_location=`` names the host engines connect to).
    **options
        Passed to ``ipyparallel.Cluster`` unchanged: ``controller_location``,
        ``controller_args`` (e.g. ``["--HeartMonitor.period=1000"]``),
        ``engine_timeout``, ``delay``, ``shutdown_atexit``, and ``config``: a
        traitlets ``Config`` (or a mapping of the same shape) with the
        launchers' options, e.g. ``{"SlurmEngineSetLauncher": {"account":
        "proj", "queue": "short", "timelimit": "1:00:00", "options":
        "#SBATCH --mem=4G"}}``. A ``config`` replaces the profile's
        ``ipcluster_config.py``.

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

        cluster = runstore.Cluster(n=64, engines="slurm", controller_ip="0.0.0.0",
                                   config={"SlurmEngineSetLauncher": {"account": "proj"}})
    """

    #: Seconds a drain goes on with no engine registered (or no answer from
    #: the controller) before it stops; its runs in flight are then pending.
    no_engines_timeout: float = 60.0

    def __init__(self, profile: str = "default", n: int | None = None,
                 cluster_id: str = "", log_level: int = logging.WARNING, *,
                 engines: str | type = "local", controller: str | type = "local",
                 controller_ip: str | None = None, **options: Any) -> None:
        self.profile = profile
        self.n = n if n is not None else default_engines()
        self.cluster_id = cluster_id
        self.log_level = log_level
        self.engines = _launcher(engines, "engine")
        self.controller = _launcher(controller, "controller")
        self.controller_ip = controller_ip
        self.options = _options(options)
        self._cluster: Any = None  # an ipyparallel.Cluster, started or attached
        self._client: Any = None
        self._owned = True  # started here (stop() and `with` stop it), not attached
        self._engineless_since: float | None = None
        _REGISTRY[(profile, cluster_id)] = self

    # -- life cycle ----------------------------------------------------------------

    def start(self) -> Cluster:
        """Start the controller and the engines (without waiting for the engines).

        With a batch system the engines are submitted as a job and come up
        when it runs: :meth:`wait` waits for them.
        """
        import ipyparallel
        from traitlets import TraitError

        if self._cluster is not None or self._client is not None:
            return self
        address = {} if self.controller_ip is None else {"controller_ip": self.controller_ip}
        try:
            cluster = ipyparallel.Cluster(
                n=self.n, profile=self.profile, cluster_id=self.cluster_id,
                log_level=self.log_level, engines=self.engines, controller=self.controller,
                **address, **self.options)
        except (TraitError, TypeError, ValueError) as exc:
            raise ClusterError(f"ipyparallel refused the options of {self!r}: {exc}. "
                               f"Correct them (see ipyparallel.Cluster)") from exc
        try:
            cluster.start_cluster_sync()
        except Exception as exc:
            _quietly(cluster.stop_cluster_sync)  # what did start, the controller
            raise ClusterError(
                f"the cluster of profile {self.profile!r} could not start (controller "
                f"{_name(self.controller)!r}, engines {_name(self.engines)!r}): "
                f"{type(exc).__name__}: {exc}. Check the launcher's options and its "
                f"output in the profile's log folder ({cluster.profile_dir})") from exc
        self._cluster, self._owned = cluster, True
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
        launchers = "" if (self.engines, self.controller) == ("local", "local") else (
            f", engines={_name(self.engines)!r}, controller={_name(self.controller)!r}")
        return f"Cluster(profile={self.profile!r}, n={self.n}{launchers}, {state})"


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


#: Names ``Cluster`` passes to ``ipyparallel.Cluster`` itself: not in ``**options``.
_NAMED = {"n": "n", "profile": "profile", "cluster_id": "cluster_id",
          "log_level": "log_level", "engine_launcher_class": "engines",
          "controller_launcher_class": "controller"}


def _launcher(name: str | type, kind: str) -> str | type:
    """A launcher name or class, checked against ipyparallel's entry points."""
    if not isinstance(name, str):
        return name
    if "." in name or ":" in name:  # an import path: ipyparallel imports it
        return name
    from importlib.metadata import entry_points

    known = sorted({ep.name.lower() for ep in entry_points(group=f"ipyparallel.{kind}_launchers")})
    if name.lower() not in known:
        raise ClusterError(f"no {kind} launcher {name!r} in ipyparallel; choose one of "
                           f"{', '.join(known)}, or give a launcher class")
    return name


def _options(options: dict[str, Any]) -> dict[str, Any]:
    """``**options`` checked against ``ipyparallel.Cluster``'s settings; a config mapping as Config."""
    import ipyparallel
    from traitlets.config import Config

    for name in options:
        if name in _NAMED:
            raise ClusterError(f"give {name!r} as runstore.Cluster's {_NAMED[name]}= "
                               f"parameter, not among the ipyparallel options")
    unknown = sorted(set(options) - set(ipyparallel.Cluster.class_trait_names()))
    if unknown:
        raise ClusterError(
            f"ipyparallel.Cluster has no option {', '.join(map(repr, unknown))}; launcher "
            f"options go in config={{'SlurmEngineSetLauncher': {{...}}}} (the launcher's "
            f"class name, then its settings)")
    config = options.get("config")
    if isinstance(config, Mapping) and not isinstance(config, Config):
        options = {**options, "config": Config(copy.deepcopy(dict(config)))}
    return options


def _name(launcher: str | type) -> str:
    return launcher if isinstance(launcher, str) else launcher.__name__


def _quietly(action: Callable[[], object]) -> None:
    try:
        action()
    except Exception:  # noqa: BLE001 (cleaning up after the error being raised)
        pass
