"""Runs as Celery tasks: dagster-celery's ``CeleryRunLauncher``, with the broker from settings,
an embedded broker and worker when none is configured, and a run health check that notices a
dead worker.

- **Broker.** ``ANALYTICS_CELERY_BROKER`` (and ``ANALYTICS_CELERY_BACKEND``, default the
  broker), or ``broker``/``backend`` in ``dagster.yaml``. Unset: the embedded default. On the
  first launch the daemon starts a ``redis-server`` on a Unix socket
  (:mod:`analytics_assets.lib.local_redis`) and one worker
  (:mod:`analytics_assets.celery_worker`), both owned by the daemon: they stop with it (Ctrl-C
  and SIGTERM reach its process group), and when it is killed alone they stop once no daemon
  has owned them for 30 s; a daemon restarted sooner adopts them and the runs queued in the
  broker (``$DAGSTER_HOME/celery/owner`` holds the owner's pid). A worker running code older than
  ``analytics_assets/`` on disk is replaced by a new one at the next launch (it finishes what it
  runs first). With a broker configured nothing is started here: ``analytics worker`` runs on
  each worker host.
- **Health.** dagster-celery reads the task's state from the result backend; a worker killed
  mid-run (SIGKILL, a lost host) leaves it STARTED forever and the run with it. Here a STARTED
  task's worker, named in the state, is pinged over the broker; after ``missed_pings`` checks
  without an answer (run monitoring checks every ``poll_interval_seconds``) the run is failed,
  so that run retries take it up on a worker that is alive. A killed worker process (not the
  whole worker) is reported by Celery itself (``WorkerLostError``: FAILURE). A started run
  whose task state the broker has forgotten (a Redis restarted without persistence) is asked
  about among the workers' active tasks, and failed only when none has it.
- **Cancel.** A run is marked CANCELING and its process sent Dagster's interrupt (SIGINT), so it
  ends CANCELED, not retried (dagster-celery sends SIGTERM, which kills it unmarked).
- **No resume.** dagster-celery 0.29's ``resume_run`` passes its arguments under a name its
  task does not take; runs are retried instead (``run_retries``), never resumed.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_celery.launcher import CeleryRunLauncher as _DagsterCeleryRunLauncher
from dagster_celery.tags import DAGSTER_CELERY_TASK_ID_TAG

from analytics_assets import settings
from analytics_assets.celery_worker import APP_CONFIG, BROKER_SETTING, make_app
from analytics_assets.lib import local_redis
from analytics_assets.lib.names import DEFAULT_QUEUE

PACKAGE = Path(__file__).resolve().parent


def code_fingerprint(root: Path = PACKAGE) -> str:
    """Changes whenever a module of the code location changes (names, sizes, mtimes)."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        stat = path.stat()
        digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class CeleryRunLauncher(_DagsterCeleryRunLauncher):
    """dagster-celery's run launcher with settings, an embedded default and a liveness check."""

    def __init__(
        self,
        broker: str | None = None,
        backend: str | None = None,
        default_queue: str = DEFAULT_QUEUE,
        include: list[str] | None = None,
        config_source: dict | None = None,
        missed_pings: int = 2,
        ping_timeout_seconds: float = 2.0,
        inst_data=None,
    ) -> None:
        broker = broker or settings.celery_broker()
        self._embedded = broker is None
        self._config = {**APP_CONFIG, **(config_source or {})}
        super().__init__(
            default_queue=default_queue,
            # the embedded broker's socket is named for the instance: set in register_instance
            broker=broker or "memory://",
            backend=backend or settings.celery_backend() or broker,
            include=include,
            config_source=self._config,
            inst_data=inst_data,
        )
        self._missed_pings = missed_pings
        self._ping_timeout = ping_timeout_seconds
        self._misses: dict[str, int] = {}
        self._broker_ok_at = float("-inf")
        self._workers: list[subprocess.Popen] = []  # started here (reaped at dispose)
        self._lock = threading.Lock()

    @classmethod
    def config_type(cls):
        return {
            **super().config_type(),
            # no default: unset means ANALYTICS_CELERY_BACKEND, else the broker (never rpc://,
            # which run monitoring in the daemon cannot read)
            "backend": dg.Field(dg.Noneable(dg.StringSource), is_required=False),
            "missed_pings": dg.Field(int, is_required=False, default_value=2),
            "ping_timeout_seconds": dg.Field(float, is_required=False, default_value=2.0),
        }

    @classmethod
    def from_config_value(cls, inst_data, config_value: Mapping[str, Any]):
        return cls(inst_data=inst_data, **config_value)

    def register_instance(self, instance) -> None:
        super().register_instance(instance)
        if self._embedded:
            url = self.embedded_broker_url()
            self.broker = self.backend = url
            self.celery = make_app(url, url, self._config)

    def embedded_broker_url(self) -> str:
        return local_redis.url(local_redis.socket_path(self._home()))

    def _home(self) -> str:
        return str(Path(self._instance.root_directory or settings.dagster_home()).resolve())

    # ---- launching

    def launch_run(self, context) -> None:
        if self._embedded:
            self.ensure_local_worker()
        else:
            self.check_broker()
        backend = self.celery.backend  # one per thread
        if not getattr(backend, "_launch_only", False):
            # Redis backends subscribe the sender to each task's result channel, for a get()
            # that never comes here (run monitoring polls the state): a daemon would hold one
            # subscription per run it ever launched, and be sent every result
            backend.on_task_call = lambda producer, task_id: None
            backend._launch_only = True
        super().launch_run(context)

    def check_broker(self, every_s: float = 30.0) -> None:
        """Raise, naming the setting, when the broker cannot be reached (checked at most every
        ``every_s`` while it answers): Celery itself would retry the result store for 20 s and
        then say only that it "must be restarted"."""
        if time.monotonic() - self._broker_ok_at < every_s:
            return
        try:
            with self.celery.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, interval_start=0.2)
        except Exception as exc:
            raise RuntimeError(
                f"cannot reach the Celery broker at {settings.redacted(self.broker or '')} "
                f"(set {BROKER_SETTING}, or run_launcher.config.broker in dagster.yaml): {exc}"
            ) from exc
        self._broker_ok_at = time.monotonic()

    @property
    def supports_resume_run(self) -> bool:
        return False

    def terminate(self, run_id: str) -> bool:
        """Cancel a run (the UI's Terminate): mark it CANCELING, then send its process SIGINT,
        Dagster's own interrupt, which its execution turns into a clean cancel (the run
        CANCELED, its step stopped at the next check). dagster-celery's own terminate sends
        SIGTERM, which kills the process, and does not mark the run: run monitoring would fail
        it, and run retries could run it again."""
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished or DAGSTER_CELERY_TASK_ID_TAG not in run.tags:
            return False
        self._instance.report_run_canceling(run)
        self.celery.control.revoke(
            run.tags[DAGSTER_CELERY_TASK_ID_TAG], terminate=True, signal="SIGINT"
        )
        return True

    def ensure_local_worker(self) -> None:
        """The embedded broker and worker are up, the worker on the code as it is on disk.

        Their pids are kept in ``$DAGSTER_HOME/celery/worker.json``, under a file lock: every
        launcher object in the daemon (and a daemon restarted after a kill) sees the same
        worker."""
        home = Path(self._home())
        state = home / "celery"
        with self._lock, _locked(state / "local.lock"):
            owner = state / "owner"
            local_redis.Owner.claim(owner)
            path = local_redis.socket_path(str(home))
            if not local_redis.is_up(path):
                (state / "broker.pid").write_text(str(local_redis.start(path, owner, state)))
            fingerprint = code_fingerprint()
            record = state / "worker.json"
            known = json.loads(record.read_text()) if record.exists() else {}
            pid = _pid_in(record)
            alive = pid is not None and local_redis.alive(pid)
            if alive and known.get("fingerprint") == fingerprint:
                return
            if alive:  # older code: it finishes its runs and goes; a new one takes the next
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            log_dir = home / "logs"
            log_dir.mkdir(parents=True, exist_ok=True)
            with (log_dir / "celery_worker.log").open("a") as log:
                worker = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "analytics_assets.celery_worker",
                        "--broker",
                        local_redis.url(path),
                        "--backend",
                        local_redis.url(path),
                        "--owner-file",
                        str(owner),
                        "--name",
                        "embedded",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env={**os.environ, "DAGSTER_HOME": str(home)},
                )
            self._workers.append(worker)
            record.write_text(json.dumps({"pid": worker.pid, "fingerprint": fingerprint}))

    # ---- health

    def check_run_worker_health(self, run: dg.DagsterRun):
        from dagster._core.launcher import CheckRunHealthResult, WorkerStatus

        task_id = run.tags.get(DAGSTER_CELERY_TASK_ID_TAG)
        if task_id is None:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "the run has no Celery task")
        result = self.celery.AsyncResult(task_id)
        state = result.state
        if state == "STARTED":
            info = result.info if isinstance(result.info, dict) else {}
            node = info.get("hostname")
            alive = not node or bool(
                self.celery.control.ping(destination=[node], timeout=self._ping_timeout)
            )
            gone = f"its Celery worker {node} (pid {info.get('pid')}) does not answer pings"
        elif state == "PENDING":
            # the run has started, so its task did: a broker restarted without persistence has
            # forgotten the state. Whether a worker still runs it, the workers themselves say.
            node = None
            active = self.celery.control.inspect(timeout=self._ping_timeout).active() or {}
            alive = any(task.get("id") == task_id for tasks in active.values() for task in tasks)
            gone = "no Celery worker runs its task (its state was lost with the broker's)"
        else:
            self._misses.pop(run.run_id, None)
            return super().check_run_worker_health(run)
        if alive:
            self._misses.pop(run.run_id, None)
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=node)
        misses = self._misses[run.run_id] = self._misses.get(run.run_id, 0) + 1
        if misses < self._missed_pings:
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=node)
        self._misses.pop(run.run_id, None)
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"the run's process is lost: {gone} ({misses} checks); killed, or its host is gone",
            run_worker_id=node,
        )

    def dispose(self) -> None:
        """A daemon that stops (not killed) takes its embedded worker and broker with it."""
        for worker in self._workers:
            if worker.poll() is None:
                worker.terminate()
        if self._embedded and self.has_instance and self._instance is not None:
            state = Path(self._home()) / "celery"
            if local_redis.Owner(state / "owner").pid() == os.getpid():
                for pid in (_pid_in(state / "worker.json"), _pid_in(state / "broker.pid")):
                    if pid is not None:
                        with suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGTERM)
        super().dispose()


def _pid_in(path: Path) -> int | None:
    """The pid recorded in ``path`` (``worker.json`` or a bare ``broker.pid``), if any."""
    try:
        text = path.read_text()
        return int(json.loads(text)["pid"] if path.suffix == ".json" else text)
    except (OSError, ValueError, KeyError):
        return None
