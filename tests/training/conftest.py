"""Training fixtures: MLflow and the BentoML model store under the test's ANALYTICS_HOME, a
Feast registry, and a synthetic point-in-time training set with a learnable churn signal."""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest

from analytics_assets import settings
from analytics_assets.defs.features.assets import feast_definitions
from analytics_assets.producers.training_set import synthetic_training_set
from analytics_assets.resources import BentoModelStore, FeastRepo, MlflowTracking


@pytest.fixture
def model_resources(resources: dict) -> dict:
    return {
        **resources,
        "feast": FeastRepo(repo_path=str(settings.feature_repo_path())),
        "mlflow": MlflowTracking(
            tracking_uri=settings.mlflow_tracking_uri(),
            artifact_root=settings.mlflow_artifact_root(),
        ),
        "bento_store": BentoModelStore(home=str(settings.bentoml_home())),
    }


@pytest.fixture
def feast_registry(model_resources: dict) -> None:
    """The feature services registered, as ``feast_definitions`` does."""
    with dg.DagsterInstance.ephemeral() as instance:
        assert dg.materialize(
            [feast_definitions], resources={"feast": model_resources["feast"]}, instance=instance
        ).success


@pytest.fixture
def training_set_file(analytics_home) -> pl.DataFrame:
    frame = synthetic_training_set()
    path = settings.training_set_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path)
    return frame
