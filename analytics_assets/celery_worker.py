"""A Celery worker that executes Dagster runs: dagster-celery's ``execute_job`` task, in processes
forked from a parent that has imported the code location once.

``analytics worker`` (or ``python -m analytics_assets.celery_worker``) starts one on any host
that reaches the broker, the Dagster storage and the data; the run launcher
(:mod:`analytics_assets.celery_runs`) starts one itself on this machine when no broker is
configured. What it adds to a plain ``celery worker`` on dagster-celery's app:

- **Imports paid once.** The parent imports Dagster, the code location, Pandera, polars, DuckDB
  and pyarrow, and builds the jobs, before Celery forks its pool; each process that runs a run
  starts from that state (copy-on-write), so a run costs no interpreter start and no imports.
- **Recycling.** A process is replaced by a fresh fork after
  ``ANALYTICS_CELERY_MAX_RUNS_PER_PROCESS`` runs or once it holds
  ``ANALYTICS_CELERY_MAX_MIB_PER_PROCESS`` MiB (Celery's
  ``max_tasks_per_child`` and ``max_memory_per_child``).
- **Isolation between runs in one process.** Every run gets its own Dagster instance and
  resources (dagster-celery's task opens one per run); what a run may change in the process
  itself, its environment variables, working directory and ``sys.path``, is put back when it ends.
- **Its owner.** Started for a daemon (``--owner-file``, which holds the daemon's pid), it shuts
  down warm (runs in progress finish) once no daemon has been alive for ``--owner-grace``
  seconds: it comes up and goes down with the daemon, and a daemon restarted after a kill adopts
  it.

Prefork processes are daemonic and cannot have children: the code location runs its jobs with
``in_process_executor`` (``definitions.py``).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

PRELOAD = (
    "dagster",
    "dagster_duckdb",
    "duckdb",
    "polars",
    "pyarrow",
    "pyarrow.compute",
    "pandera.polars",
    "yaml",
    "analytics_assets.definitions",
)
"""Imported by the worker's parent before it forks: what every run of the streaming lane
imports. Heavier libraries (Feast, MLflow, scikit-learn) stay where they are used."""

BROKER_SETTING = "ANALYTICS_CELERY_BROKER"

APP_CONFIG: dict[str, Any] = {
    # one run reserved per free process: a run never waits behind another in a busy process
    "worker_prefetch_multiplier": 1,
    # STARTED (with the worker's node name and pid) is stored before the run begins: run
    # monitoring reads it (celery_runs.CeleryRunLauncher.check_run_worker_health)
    "task_track_started": True,
    # finished tasks keep the worker's node name too (AsyncResult.worker): which host ran a run
    "result_extended": True,
    "result_expires": 7 * 24 * 3600,
    "broker_connection_retry_on_startup": True,
    "worker_hijack_root_logger": False,
    "worker_send_task_events": False,
    "task_send_sent_event": False,
}
"""Celery settings the launcher and the workers share (besides dagster-celery's defaults)."""

_log = logging.getLogger(__name__)


def make_app(broker: str, backend: str | None = None, config: dict | None = None):
    """dagster-celery's app on ``broker`` with its run tasks registered."""
    from dagster_celery.config import DEFAULT_CONFIG
    from dagster_celery.make_app import make_app as dagster_celery_app
    from dagster_celery.tasks import create_execute_job_task

    app = dagster_celery_app(
        app_args={
            "broker": broker,
            "backend": backend or broker,
            "include": [],
            "config_source": {**DEFAULT_CONFIG, **APP_CONFIG, **(config or {})},
            "task_default_queue": DEFAULT_CONFIG["task_default_queue"],
        }
    )
    create_execute_job_task(app)
    return app


def task_worker(app, task_id: str) -> str | None:
    """The node name of the worker that took task ``task_id``: in its STARTED state, then (with
    ``result_extended``) in its result."""
    result = app.AsyncResult(task_id)
    info = result.info
    if isinstance(info, dict) and info.get("hostname"):
        return info["hostname"]
    return result.worker


def check_broker(app, setting: str = BROKER_SETTING) -> None:
    """Fail at once, with the setting to fix, when the broker cannot be reached (Celery would
    otherwise retry quietly for minutes)."""
    from analytics_assets.settings import redacted

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=2, interval_start=0.2, interval_step=0.5)
    except Exception as exc:
        raise SystemExit(
            f"cannot reach the Celery broker at {redacted(app.conf.broker_url)} "
            f"(set {setting}): {exc}"
        ) from exc


def preload() -> float:
    """Import what runs import and build the jobs; returns the seconds it took."""
    import importlib

    started = time.perf_counter()
    for module in PRELOAD:
        importlib.import_module(module)
    from analytics_assets.definitions import defs
    from analytics_assets.defs.ingest.schema import event_schema

    event_schema()
    defs.get_repository_def().get_all_jobs()
    if os.environ.get("DAGSTER_HOME"):
        import dagster as dg

        with dg.DagsterInstance.get() as instance:  # storage modules and checks loaded once
            instance.get_runs(limit=1)
    return time.perf_counter() - started


class RunIsolation:
    """What one run may change in its process, put back before the next: environment variables,
    the working directory, ``sys.path``."""

    def __init__(self) -> None:
        self._saved: tuple[dict[str, str], str, list[str]] | None = None

    def before(self, **_: Any) -> None:
        self._saved = (dict(os.environ), os.getcwd(), list(sys.path))

    def after(self, **_: Any) -> None:
        if self._saved is None:
            return
        environ, cwd, path = self._saved
        for name in set(os.environ) - set(environ):
            del os.environ[name]
        for name, value in environ.items():
            if os.environ.get(name) != value:
                os.environ[name] = value
        if os.getcwd() != cwd:
            os.chdir(cwd)
        sys.path[:] = path
        self._saved = None


def watch_owner(owner_file: Path, grace_s: float, interval_s: float = 1.0) -> None:
    """A warm shutdown (runs in progress finish, no new ones are taken) once the owner is gone
    (:class:`analytics_assets.lib.local_redis.Owner`)."""
    from analytics_assets.lib.local_redis import Owner

    owner = Owner(owner_file, grace_s)

    def _watch() -> None:
        while not owner.gone():
            time.sleep(interval_s)
        _log.info("no owner alive for %ss (%s): shutting down", grace_s, owner_file)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=_watch, name="owner-watch", daemon=True).start()


def node_name(name: str | None = None) -> str:
    """Unique per worker even on hosts that share a host name (network namespaces, pods with
    one image): run monitoring pings a run's worker by this name."""
    return f"{name or 'runs'}-{os.getpid()}@{socket.gethostname()}"


def worker_argv(
    name: str,
    queues: list[str],
    concurrency: int,
    max_runs: int,
    max_mib: int,
    loglevel: str = "INFO",
) -> list[str]:
    return [
        "worker",
        "--pool=prefork",
        f"--concurrency={concurrency}",
        f"--hostname={name}",
        f"--queues={','.join(queues)}",
        f"--max-tasks-per-child={max_runs}",
        f"--max-memory-per-child={max_mib * 1024}",
        "--optimization=fair",
        # no gossip, mingle or event heartbeats: nothing here reads them, and each costs CPU
        # on every worker all the time; run monitoring pings the one worker it asks about
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        f"--loglevel={loglevel}",
    ]


def run_worker(
    broker: str,
    backend: str | None = None,
    *,
    owner_file: Path | None = None,
    owner_grace_s: float = 30.0,
    name: str | None = None,
    queues: list[str] | None = None,
    concurrency: int | None = None,
    max_runs: int | None = None,
    max_mib: int | None = None,
    setting: str = BROKER_SETTING,
) -> None:
    """Preload, then serve runs until stopped (SIGTERM/Ctrl-C: warm shutdown)."""
    from celery import signals

    from analytics_assets import settings

    app = make_app(broker, backend)
    check_broker(app, setting)
    isolation = RunIsolation()
    signals.task_prerun.connect(isolation.before, weak=False)
    signals.task_postrun.connect(isolation.after, weak=False)

    def _preload(**_: Any) -> None:
        _log.info("preloaded the code location in %.1fs", preload())

    signals.worker_init.connect(_preload, weak=False)
    if owner_file is not None:
        watch_owner(owner_file, owner_grace_s)
    app.worker_main(
        worker_argv(
            node_name(name),
            queues or settings.celery_queues(),
            concurrency or settings.celery_concurrency(),
            max_runs or settings.celery_max_runs_per_process(),
            max_mib or settings.celery_max_mib_per_process(),
        )
    )


def main(argv: list[str] | None = None) -> None:
    from analytics_assets import settings

    parser = argparse.ArgumentParser(description="A Celery worker for the platform's Dagster runs.")
    parser.add_argument("--broker", default=settings.celery_broker())
    parser.add_argument("--backend", default=settings.celery_backend())
    parser.add_argument("--owner-file", type=Path, help="holds the pid of the owner (a daemon)")
    parser.add_argument("--owner-grace", type=float, default=30.0, help="seconds without owner")
    parser.add_argument("--name", help="node name prefix (default: runs)")
    parser.add_argument("--concurrency", type=int)
    parser.add_argument("--max-runs", type=int)
    parser.add_argument("--max-mib", type=int)
    parser.add_argument("--queues", help="comma-separated (default: ANALYTICS_CELERY_QUEUES)")
    args = parser.parse_args(argv)
    if not args.broker:
        raise SystemExit(f"no broker: set {BROKER_SETTING} (e.g. redis://broker:6379/0)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    run_worker(
        args.broker,
        args.backend,
        owner_file=args.owner_file,
        owner_grace_s=args.owner_grace,
        name=args.name,
        queues=args.queues.split(",") if args.queues else None,
        concurrency=args.concurrency,
        max_runs=args.max_runs,
        max_mib=args.max_mib,
    )


if __name__ == "__main__":
    main()
