"""Training fixtures: MLflow and the BentoML model store under the test's ANALYTICS_HOME, a
Feast registry, and a synthetic point-in-time training set with a learnable churn signal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import numpy as np
import polars as pl
import pytest

from analytics_assets import settings
from analytics_assets.defs.features.assets import feast_definitions
from analytics_assets.resources import BentoModelStore, FeastRepo, MlflowTracking

CHURN_FEATURES = [
    "frequency",
    "recency_days",
    "tenure_days",
    "monetary_value",
    "days_since_last_purchase",
    "sessions_7d",
    "sessions_28d",
    "page_views_28d",
    "cart_abandonment_rate_28d",
    "days_since_last_session",
]


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


def synthetic_training_set(customers: int = 1_500, as_of_days: int = 8, seed: int = 7):
    """Customers at as-of dates 28 days apart; churn is likelier the longer since the last
    purchase and session, and with fewer sessions - with noise, so AUC is well below 1."""
    rng = np.random.default_rng(seed)
    first = datetime(2024, 1, 1, tzinfo=UTC)
    frames = []
    for k in range(as_of_days):
        n = customers
        since_purchase = rng.exponential(40, n)
        sessions_28d = rng.poisson(3, n)
        features = {
            "frequency": rng.poisson(2, n).astype(np.int64),
            "recency_days": rng.uniform(0, 200, n),
            "tenure_days": rng.uniform(0, 400, n),
            "monetary_value": rng.gamma(2, 20, n),
            "days_since_last_purchase": since_purchase,
            "sessions_7d": rng.poisson(1, n).astype(np.int64),
            "sessions_28d": sessions_28d.astype(np.int64),
            "page_views_28d": (sessions_28d * rng.uniform(1, 5, n)).astype(np.int64),
            "cart_abandonment_rate_28d": np.where(
                rng.random(n) < 0.3, np.nan, rng.uniform(0, 1, n)
            ),
            "days_since_last_session": rng.exponential(20, n),
        }
        logit = -1.0 + 0.02 * since_purchase - 0.3 * sessions_28d + rng.normal(0, 1.0, n)
        frames.append(
            pl.DataFrame(
                {
                    "customer_id": [f"c{i}" for i in range(n)],
                    "event_timestamp": [first + timedelta(days=28 * k)] * n,
                    **features,
                    "average_order_value": rng.gamma(2, 20, n),
                    "total_revenue": rng.gamma(2, 50, n),
                    "churned": rng.random(n) < 1 / (1 + np.exp(-logit)),
                    "future_value": rng.gamma(1, 30, n),
                }
            ).with_columns(pl.col("event_timestamp").dt.cast_time_unit("us"))
        )
    frame = pl.concat(frames)
    path = settings.training_set_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path)
    return frame


@pytest.fixture
def training_set_file(analytics_home) -> pl.DataFrame:
    return synthetic_training_set()
