"""Resources shared by every domain, configured from the environment with embedded defaults."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from analytics_assets import settings

_log = logging.getLogger(__name__)


class LandingZone(dg.ConfigurableResource):
    """The folder producers drop micro-batch files into; where committed files are archived
    (by day) and where files that cannot be ingested go."""

    root: str
    quarantine_root: str
    archive_root: str = ""
    """Default: ``archive`` beside the quarantine folder."""

    @property
    def root_path(self) -> Path:
        return Path(self.root)

    @property
    def archive_path(self) -> Path:
        return (
            Path(self.archive_root)
            if self.archive_root
            else Path(self.quarantine_root).parent / "archive"
        )

    def quarantine_file(self, path: Path, sha256: str) -> Path:
        """Move a file that cannot be ingested out of the landing zone, as
        ``<quarantine>/<digest>__<name>`` (unique per content, bounded in length)."""
        from analytics_assets.lib.atomic_files import move_unique

        return move_unique(path, Path(self.quarantine_root), sha256)

    def archive_file(self, path: Path, sha256: str, day: date) -> Path:
        """Move a committed file to ``<archive>/<day>/<digest>__<name>``; moving the same
        content again (a rerun) is harmless."""
        from analytics_assets.lib.atomic_files import move_unique

        return move_unique(path, self.archive_path / day.isoformat(), sha256)


class Warehouse(DuckDBResource):
    """The DuckDB warehouse, opened for writing; while another process holds the file's lock
    (a run, or a person's ``duckdb`` session: DuckDB allows one process per file, read-only
    ones included) it waits up to ``lock_timeout_s``, and says at once in the run's log, and
    as an alert, which process it waits for."""

    lock_timeout_s: float = 120.0

    @contextmanager
    def get_connection(self) -> Iterator:
        import duckdb

        config = {"custom_user_agent": "dagster", **self.connection_config}
        deadline = time.monotonic() + self.lock_timeout_s
        delay, told = 0.02, False
        while True:
            try:
                conn = duckdb.connect(self.database, read_only=False, config=config)
                break
            except duckdb.IOException as exc:
                holder = lock_holder(str(exc))
                if holder is None:
                    raise
                waited = self.lock_timeout_s - (deadline - time.monotonic())
                if not told and waited > 1.0:  # runs take turns in the pool: say it only
                    told = True  # when the wait is not one of those
                    self._tell(holder)
                if time.monotonic() > deadline:
                    raise dg.Failure(
                        f"The warehouse {self.database} stayed locked for "
                        f"{self.lock_timeout_s:.0f}s by {holder}. DuckDB lets one process "
                        "open the file at a time: close that session (or stop it) and the "
                        "run's retry goes through."
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        try:
            yield conn
        finally:
            conn.close()

    def _tell(self, holder: str) -> None:
        message = (
            f"waiting for the warehouse {self.database}: its lock is held by {holder}. "
            f"A DuckDB session opened on the file (even read-only) blocks every run; "
            f"giving up after {self.lock_timeout_s:.0f}s."
        )
        try:
            context = self.get_resource_context()
            log, run = context.log, context.dagster_run
        except Exception:  # outside a run
            log, run = None, None
        (log or _log).warning(message)
        from analytics_assets.lib import alerts

        alerts.raise_alert(
            {
                "alert_id": f"warehouse-lock:{run.run_id if run else holder}",
                "kind": "warehouse_locked",
                "run_id": run.run_id if run else "",
                "job_name": run.job_name if run else "",
                "message": message,
            }
        )


def lock_holder(error: str) -> str | None:
    """The process a DuckDB lock error names, with its command line when it is on this host:
    ``"PID 123 (duckdb /path/warehouse.duckdb)"``; ``None`` for other IO errors."""
    if "lock" not in error.lower():
        return None
    found = re.search(r"held in (.+?) \(PID (\d+)\)", error)
    if found is None:
        return "another process"
    program, pid = found.group(1), int(found.group(2))
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        command = " ".join(a.decode(errors="replace") for a in argv if a)[:200]
    except OSError:
        command = program
    return f"PID {pid} ({command})"


class FeastRepo(dg.ConfigurableResource):
    """The Feast repo (``feature_repo/``) and the stores its ``feature_store.yaml`` names."""

    repo_path: str

    @property
    def path(self) -> Path:
        return Path(self.repo_path)

    def store(self):
        """A ``feast.FeatureStore`` on this repo's configuration."""
        from analytics_assets.lib.feast_repo import open_store

        return open_store(self.path)


class MlflowTracking(dg.ConfigurableResource):
    """MLflow tracking and model registry (one store for both).

    A small resource around ``MlflowClient`` rather than ``dagster_mlflow.mlflow_tracking``:
    that resource opens one MLflow run per Dagster run in one experiment fixed by its config,
    at resource start-up (for every step that requires it), keeps it in MLflow's process-global
    active run, and closes it only through an op-job hook. We need one experiment per model and
    a run per trained model inside one Dagster run, from assets.
    """

    tracking_uri: str
    artifact_root: str | None = None
    """Artifact location of experiments this resource creates (``None``: the server decides)."""

    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def activate(self) -> None:
        """Point MLflow's fluent API (``mlflow.log_*``, ``log_model``) at this store."""
        import os

        import mlflow

        # a progress bar per download is noise in run logs
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)

    def experiment_id(self, name: str) -> str:
        client = self.client()
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        location = f"{self.artifact_root.rstrip('/')}/{name}" if self.artifact_root else None
        return client.create_experiment(name, artifact_location=location)

    @contextmanager
    def start_run(self, experiment: str, run_name: str, tags: dict[str, str]) -> Iterator:
        """An MLflow run in ``experiment`` (created if new), ended when the block ends (failed
        if it raises)."""
        import mlflow

        self.activate()
        experiment_id = self.experiment_id(experiment)
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as run:
            yield run


class BentoModelStore(dg.ConfigurableResource):
    """The BentoML model store the scoring service loads champions from (``<home>/models``).

    Passed explicitly to BentoML's store functions instead of relying on ``BENTOML_HOME``, which
    BentoML resolves once per process: the code location and the tests can point anywhere.
    """

    home: str

    def store(self):
        from analytics_assets.lib.bento_store import open_store

        return open_store(self.home)


def from_env(name: str, default: object) -> str | dg.EnvVar:
    """``dg.EnvVar(name)`` when the variable is set, so the UI shows the variable, never its
    value (a tracking URI may hold a password); the embedded default otherwise."""
    return dg.EnvVar(name) if os.environ.get(name) else str(default)


def warehouse_resource() -> Warehouse:
    return Warehouse(database=from_env("ANALYTICS_WAREHOUSE", settings.warehouse_path()))


def landing_resource() -> LandingZone:
    return LandingZone(
        root=from_env("ANALYTICS_LANDING_DIR", settings.landing_dir()),
        quarantine_root=from_env("ANALYTICS_QUARANTINE_DIR", settings.quarantine_dir()),
        archive_root=from_env("ANALYTICS_ARCHIVE_DIR", settings.archive_dir()),
    )


def build_resources() -> dict[str, object]:
    """Every resource of the code location, resolved from the environment now."""
    return {
        "warehouse": warehouse_resource(),
        "landing_zone": landing_resource(),
        "feast": FeastRepo(repo_path=from_env("FEAST_REPO_PATH", settings.feature_repo_path())),
        "mlflow": MlflowTracking(
            tracking_uri=from_env("MLFLOW_TRACKING_URI", settings.mlflow_tracking_uri()),
            artifact_root=(
                dg.EnvVar("ANALYTICS_MLFLOW_ARTIFACTS")
                if os.environ.get("ANALYTICS_MLFLOW_ARTIFACTS")
                else settings.mlflow_artifact_root()
            ),
        ),
        "bento_store": BentoModelStore(home=from_env("BENTOML_HOME", settings.bentoml_home())),
    }


WAREHOUSE_POOL = "duckdb_warehouse"
"""Concurrency pool of everything that writes the DuckDB file: one writer at a time."""

FEAST_REGISTRY_POOL = "feast_registry"
"""Concurrency pool of everything that writes the Feast registry (apply, materialize)."""

MODEL_REGISTRY_POOL = "model_registry"
"""Concurrency pool of everything that moves the ``champion`` alias (promotion, rollback)."""
