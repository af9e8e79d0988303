"""Resources shared by every domain, configured from the environment with embedded defaults."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from analytics_assets import settings


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


_ATTACHED: dict[tuple, object] = {}
"""Each process's lakehouse connection, by process id (a forked process makes its own) and
location."""


class Warehouse(DuckDBResource):
    """The lakehouse (``lib/lakehouse.py``), opened for writing: dagster-duckdb's connection
    (an in-memory DuckDB) with the DuckLake attached and in use, so SQL names its tables
    directly. Many runs hold one at once; a commit that conflicts with another writer's is
    retried (``lakehouse.run_transaction``), each retry in the run's log (dagster.yaml's
    ``python_logs``)."""

    database: str = ":memory:"
    catalog: str
    """DuckLake's catalog (``sqlite:<path>`` or ``postgres:<connection string>``)."""
    data_path: str
    """Folder or object store URL of the Parquet data files."""

    @property
    def location(self):
        from analytics_assets.lib.lakehouse import Location

        return Location(self.catalog, self.data_path)

    @contextmanager
    def get_connection(self) -> Iterator:
        """A cursor of this process's lakehouse connection (attached once per process: a run's
        steps and checks each attached it again, 0.1-0.2 s apiece, which tripled a streaming
        run). Each cursor has its own transactions; closed when the block ends."""
        from analytics_assets.lib import lakehouse

        conn = self._attached()
        cursor = conn.cursor()
        try:
            cursor.execute(f"USE {lakehouse.ALIAS}")
            yield cursor
        finally:
            cursor.close()

    def _attached(self):
        from analytics_assets.lib import duckdb_extensions, lakehouse

        key = (os.getpid(), self.catalog, self.data_path, self.database)
        conn = _ATTACHED.get(key)
        if conn is None:
            config = {
                "custom_user_agent": "dagster",
                **duckdb_extensions.config(),
                **self.connection_config,
            }
            import duckdb

            conn = duckdb.connect(self.database, config=config)
            lakehouse.attach(conn, self.location)
            _ATTACHED[key] = conn
        return conn


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
    return Warehouse(
        catalog=from_env("ANALYTICS_LAKEHOUSE_CATALOG", settings.lakehouse_catalog()),
        data_path=from_env("ANALYTICS_LAKEHOUSE_DATA", settings.lakehouse_data()),
    )


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


FEAST_REGISTRY_POOL = "feast_registry"
"""Concurrency pool of everything that writes the Feast registry (apply, materialize)."""

MODEL_REGISTRY_POOL = "model_registry"
"""Concurrency pool of everything that moves the ``champion`` alias (promotion, rollback)."""
