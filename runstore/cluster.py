"""An ipyparallel cluster, started, attached to, used and stopped from Python.

:class:`Cluster` has the semantics of the older ``mmfutils.parallel.Cluster``
(a profile, a number of engines, ``start``, ``wait``, ``stop``, a context
manager that yields a client), built on ipyparallel's own ``Cluster`` API:
the controller and engines are launched by ipyparallel's launchers (local
processes, SSH, MPI, SLURM, PBS ...) from this interpreter's environment,
never by an ``ipcluster`` found on ``PATH``, and nothing probes a cluster
that is not running. :meth:`Cluster.attach` uses a cluster started elsewhere,
from its cluster file or its controller's client connection file.

``batch(cluster=...)`` drains a batch on the engines through ipyparallel's
``concurrent.futures`` executor; this process (the coordinator) alone writes
the store. An engine that dies, or whose host dies or is cut off (dropped by
the controller's heartbeat), only requeues the runs it had; with no engine
left (or no answer from the controller) for :attr:`Cluster.no_engines_timeout`
seconds, the drain stops and says which runs are pending again.

This is the only module of runstore that imports ipyparallel, and only when
a cluster is made.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from .errors import ClusterError, ClusterTimeoutError

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
        self._engineless_since: float | None = None  # since when no engine is registered
        self._asking: threading.Thread | None = None  # a question to the controller
        self._asked = 0.0  # when it was asked
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

    def start_engines(self, n: int | None = None) -> None:
        """Start ``n`` more engines (default: ``self.n``) with this cluster's engine launcher.

        For a cluster attached through a client connection file, start
        engines where its controller was started (``ipcluster engines``, a
        batch job running ``ipengine --file=...``).
        """
        if self._cluster is None:
            raise ClusterError(
                f"cannot start engines for {self!r}: it was not started here nor attached "
                f"through its cluster file; start them with ipengine where the controller runs")
        self._cluster.start_engines_sync(n if n is not None else self.n)

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
            raise ClusterTimeoutError(
                f"only {len(client.ids)} of {wanted} engines of profile {self.profile!r} "
                f"registered within {timeout} s; wait longer (wait(timeout=...)), or ask "
                f"for fewer (wait(n_min=...))") from exc
        if not client.ids:  # none wanted (n_min=0), none registered yet: nothing to ready
            return client
        try:
            client[:].execute("import runstore.pool", block=False).get(timeout=timeout)
        except Exception as exc:
            raise ClusterError(
                f"the engines of profile {self.profile!r} registered but could not import "
                f"runstore within {timeout} s ({type(exc).__name__}: {exc}); install it in "
                f"the engines' environment (or set their PYTHONPATH)") from exc
        return client

    def stop(self) -> None:
        """Stop the engines and the controller, and close the client.

        This stops an attached cluster too (one attached through a client
        connection file is asked to shut down); :meth:`close` leaves it running.
        """
        if self._cluster is None and self._client is not None:  # attached by client file
            _quietly(lambda: self._client.shutdown(hub=True, block=False))
        self.close()
        if self._cluster is not None:
            self._cluster.stop_cluster_sync()
            self._cluster = None

    def close(self) -> None:
        """Disconnect from the cluster, and leave it running (for another coordinator)."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if not self._owned:
            self._cluster = None

    @property
    def running(self) -> bool:
        """Whether this object started (or attached to) a cluster not yet stopped."""
        return self._cluster is not None or self._client is not None

    def __enter__(self) -> Any:
        self.start()
        return self.wait()

    def __exit__(self, *exc: object) -> None:
        """Stop a cluster this object started; only disconnect from an attached one."""
        if self._owned:
            self.stop()
        else:
            self.close()

    @classmethod
    def attach(cls, source: str | os.PathLike[str] | None = None, *,
               profile: str = "default", cluster_id: str = "", n: int | None = None,
               timeout: float = 10.0) -> Cluster:
        """Attach to a running cluster started elsewhere, from its connection file.

        ``source`` is either ipyparallel's *cluster file* (the
        ``security/cluster-<id>.json`` that ``ipcluster start`` or
        :meth:`start` writes in the profile; without ``source``, the one of
        ``profile`` and ``cluster_id``), or the controller's *client
        connection file* ``ipcontroller-client.json`` (of a controller started
        by ``ipcontroller``, or by a batch job): enough to compute, not to
        start engines. ``n`` is how many engines :meth:`wait` waits for (by
        default those registered now, or the cluster file's count).

        The cluster goes on running when this process ends or calls
        :meth:`close` (``with`` closes it too); :meth:`stop` stops it.
        Connecting fails with :class:`~runstore.errors.ClusterError` within
        ``timeout`` seconds if the controller does not answer.
        """
        import ipyparallel

        if source is None:
            source = ipyparallel.Cluster(profile=profile, cluster_id=cluster_id).cluster_file
        path = Path(source)
        kind = _connection_kind(path, profile, cluster_id)
        if kind == "cluster":
            found = _from_cluster_file(path)
            profile, cluster_id = _profile_name(found.profile_dir), found.cluster_id
            connect: Callable[[], Any] = lambda: found.connect_client_sync(timeout=timeout)
        previous = _REGISTRY.get((profile, cluster_id))
        attached = cls(profile, n=n if n is not None else 1, cluster_id=cluster_id)
        attached._owned = False
        if previous is not None and previous.running:  # get_cluster() keeps giving that one
            _REGISTRY[(profile, cluster_id)] = previous
        if kind == "cluster":
            attached._cluster = found
        else:
            connect = lambda: ipyparallel.Client(str(path), timeout=timeout)
        try:
            attached._client = connect()
        except (TimeoutError, OSError) as exc:
            attached._cluster = None
            raise ClusterError(
                f"the controller named in {str(path)!r} did not answer within {timeout} s "
                f"({type(exc).__name__}: {exc}); it is not running, or not reachable from "
                f"this host (start the cluster again, or attach with a longer "
                f"timeout=)") from exc
        if n is None:
            attached.n = max(len(attached._client.ids),
                             (found.n or 0) if kind == "cluster" else 0, 1)
        return attached

    # -- using it --------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """An ``ipyparallel.Client`` connected to the cluster."""
        if self._client is not None:
            return self._client
        if self._cluster is None:
            raise ClusterError(
                f"the cluster of profile {self.profile!r} is not running: call "
                f"start() first (or Cluster.attach() for one started elsewhere)")
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
        return len(self.client.ids) if self.running else 0

    def stalled(self) -> str | None:
        """Why the cluster can compute nothing, once that lasted :attr:`no_engines_timeout` s.

        That is: no engine is registered (all died, or their hosts are cut
        off), or the controller left a question unanswered (it died, or this
        host lost its link to it). None while it can compute. A drain asks
        this, to stop instead of waiting for engines that never come.
        """
        if not self.running:
            return None
        now, limit = time.monotonic(), self.no_engines_timeout
        if self.client.ids:
            self._engineless_since = None
        elif self._engineless_since is None:
            self._engineless_since = now
        if self._engineless_since is not None and now - self._engineless_since >= limit:
            return (f"no engine of the cluster of profile {self.profile!r} has been "
                    f"registered for {limit:g} s (Cluster.no_engines_timeout); start "
                    f"engines (cluster.start_engines(), `ipcluster engines`, a batch job)")
        asked = self._ask_controller(now)
        if asked is not None and now - asked >= limit:
            return (f"the controller of the cluster of profile {self.profile!r} has not "
                    f"answered for {now - asked:.0f} s: it died, or this host lost its link "
                    f"to it; start the cluster again and attach to it (Cluster.attach)")
        return None

    def _ask_controller(self, now: float) -> float | None:
        """When the question the controller has not answered yet was asked (None: it answered).

        One question (``queue_status``) at a time, asked in the background.
        """
        if self._asking is not None and self._asking.is_alive():
            return self._asked
        client = self.client

        def ask() -> None:
            try:
                client.queue_status()
            except Exception:  # noqa: BLE001 (an error is an answer: it is there)
                pass

        self._asked = now
        self._asking = threading.Thread(target=ask, daemon=True,
                                        name="runstore-controller-question")
        self._asking.start()
        return None

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
    writes in the profile's folder (see :meth:`Cluster.attach`); without one,
    this fails at once.
    """
    found = _REGISTRY.get((profile, cluster_id))
    if found is not None:
        return found
    return Cluster.attach(profile=profile, cluster_id=cluster_id)


def _from_cluster_file(path: Path) -> Any:
    """The ``ipyparallel.Cluster`` a cluster file describes, if its controller runs."""
    import ipyparallel

    found = ipyparallel.Cluster.from_file(str(path))
    if found.controller is None:
        raise ClusterError(
            f"the cluster file {str(path)!r} names a controller that is no longer "
            f"running; start the cluster again (and remove the stale file)")
    return found


def _profile_name(profile_dir: str) -> str:
    folder = Path(profile_dir).name
    return folder[len("profile_"):] if folder.startswith("profile_") else folder


def _connection_kind(path: Path, profile: str, cluster_id: str) -> str:
    """``"cluster"`` for an ipyparallel cluster file, ``"client"`` for a client connection file."""
    try:
        with path.open("rb") as f:
            text = f.read(1 << 20)
        found = json.loads(text)
    except FileNotFoundError:
        raise ClusterError(
            f"no cluster of profile {profile!r} (id {cluster_id!r}) is running: there is no "
            f"connection file {str(path)!r}; start one with "
            f"runstore.Cluster(profile={profile!r}).start() or `ipcluster start`") from None
    except (OSError, ValueError) as exc:
        raise ClusterError(f"cannot read the connection file {str(path)!r}: {exc}") from exc
    if isinstance(found, dict) and "cluster" in found:
        return "cluster"
    if isinstance(found, dict) and "registration" in found and "key" in found:
        return "client"
    raise ClusterError(
        f"{str(path)!r} is neither an ipyparallel cluster file (security/cluster-<id>.json) "
        f"nor a client connection file (security/ipcontroller-client.json)")


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
