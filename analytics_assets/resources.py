"""Resources shared by every domain, configured from the environment with embedded defaults."""

from __future__ import annotations

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
        from analytics_assets.defs.ingest.landing import move_unique

        return move_unique(path, Path(self.quarantine_root), sha256)

    def archive_file(self, path: Path, sha256: str, day: date) -> Path:
        """Move a committed file to ``<archive>/<day>/<digest>__<name>``; moving the same
        content again (a rerun) is harmless."""
        from analytics_assets.defs.ingest.landing import move_unique

        return move_unique(path, self.archive_path / day.isoformat(), sha256)


class FeastRepo(dg.ConfigurableResource):
    """The Feast repo (``feature_repo/``) and the stores its ``feature_store.yaml`` names."""

    repo_path: str

    @property
    def path(self) -> Path:
        return Path(self.repo_path)

    def store(self):
        """A ``feast.FeatureStore`` on this repo's configuration."""
        from analytics_assets.feast_repo import open_store

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
        from bentoml._internal.models import ModelStore

        return ModelStore(str(Path(self.home) / "models"))


def warehouse_resource() -> DuckDBResource:
    return DuckDBResource(database=str(settings.warehouse_path()))


def landing_resource() -> LandingZone:
    return LandingZone(
        root=str(settings.landing_dir()),
        quarantine_root=str(settings.quarantine_dir()),
        archive_root=str(settings.archive_dir()),
    )


def build_resources() -> dict[str, object]:
    """Every resource of the code location, resolved from the environment now."""
    return {
        "warehouse": warehouse_resource(),
        "landing_zone": landing_resource(),
        "feast": FeastRepo(repo_path=str(settings.feature_repo_path())),
        "mlflow": MlflowTracking(
            tracking_uri=settings.mlflow_tracking_uri(),
            artifact_root=settings.mlflow_artifact_root(),
        ),
        "bento_store": BentoModelStore(home=str(settings.bentoml_home())),
    }


WAREHOUSE_POOL = "duckdb_warehouse"
"""Concurrency pool of everything that writes the DuckDB file: one writer at a time."""

FEAST_REGISTRY_POOL = "feast_registry"
"""Concurrency pool of everything that writes the Feast registry (apply, materialize)."""

MODEL_REGISTRY_POOL = "model_registry"
"""Concurrency pool of everything that moves the ``champion`` alias (promotion, rollback)."""
