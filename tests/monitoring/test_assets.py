"""drift_report and model_performance materialized against a real champion (trained, gated
and promoted through the training assets on the synthetic training set)."""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg
import mlflow
import numpy as np
import polars as pl
import pytest

from analytics_assets import settings
from analytics_assets.defs.monitoring.assets import drift_report, model_performance
from analytics_assets.lib import lakehouse
from tests.training.test_gate import champion, train_and_gate

SHIFTED = ("days_since_last_purchase", "recency_days", "sessions_28d", "page_views_28d")


@pytest.fixture
def promoted(model_resources, feast_registry, training_set_file, tmp_path) -> dict:
    assert train_and_gate(model_resources).success
    assert champion(model_resources) == "1"
    # a fresh run process has MLflow's global store unset: the assets must set their own
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    mlflow.set_tracking_uri(elsewhere)
    mlflow.set_registry_uri(elsewhere)
    return model_resources


def write_snapshots(frame: pl.DataFrame) -> None:
    """The training set's rows as the daily snapshot files they came from."""
    directory = settings.feature_snapshots_dir()
    for (instant,), rows in frame.group_by("event_timestamp"):
        day = instant.date() - timedelta(days=1)
        rows.drop("churned", "future_value").write_parquet(directory / f"{day}.parquet")


def latest_snapshot(frame: pl.DataFrame, day: date, shift: bool) -> pl.DataFrame:
    last = frame.filter(pl.col("event_timestamp") == frame["event_timestamp"].max())
    rows = last.drop("churned", "future_value").with_columns(
        pl.lit(day + timedelta(days=1)).cast(pl.Datetime("us", "UTC")).alias("event_timestamp")
    )
    if shift:
        rows = rows.with_columns((pl.col(c) * 3 + 5).cast(rows[c].dtype) for c in SHIFTED)
    rows.write_parquet(settings.feature_snapshots_dir() / f"{day}.parquet")
    return last


def materialize(asset, resources: dict):
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize([asset], resources=resources, instance=instance)
        assert result.success
        (event,) = result.get_asset_materialization_events()
        return event.materialization.metadata


def test_drift_report_flags_shifted_features_only(promoted, training_set_file) -> None:
    write_snapshots(training_set_file)
    resources = {k: promoted[k] for k in ("feast", "mlflow")}
    latest_snapshot(training_set_file, date(2024, 9, 1), shift=False)
    steady = materialize(drift_report, resources)
    assert steady["retrain_recommended"].value is False
    assert steady["features_compared"].value == 10 and steady["features_drifted"].value == 0
    assert "no champion yet" in steady["summary"].value["clv_model"]
    latest_snapshot(training_set_file, date(2024, 9, 2), shift=True)
    drifted = materialize(drift_report, resources)
    assert drifted["retrain_recommended"].value is True
    assert drifted["features_drifted"].value == len(SHIFTED)
    plots = {k for k in drifted if k.startswith("plot_churn_v1_")}
    assert plots == {f"plot_churn_v1_{c}" for c in SHIFTED}
    table = pl.read_parquet(settings.reports_dir() / "drift" / "features.parquet")
    assert set(table.filter("drifted")["feature"]) == set(SHIFTED)


def test_drift_thresholds_are_configurable(promoted, training_set_file, monkeypatch) -> None:
    write_snapshots(training_set_file)
    latest_snapshot(training_set_file, date(2024, 9, 2), shift=True)
    monkeypatch.setenv("ANALYTICS_DRIFT_MIN_FEATURES", "5")
    metadata = materialize(drift_report, {k: promoted[k] for k in ("feast", "mlflow")})
    assert metadata["features_drifted"].value == 4
    assert metadata["retrain_recommended"].value is False


def outcomes(last: pl.DataFrame, as_of: date, informative: bool) -> None:
    """Purchases after ``as_of`` in the warehouse: from the same signal the model learnt
    (informative) or at random; customer_daily says events run to 2024-12-31."""
    rng = np.random.default_rng(3)
    since = last["days_since_last_purchase"].to_numpy()
    sessions = last["sessions_28d"].to_numpy()
    logit = -1.0 + 0.02 * since - 0.3 * sessions + rng.normal(0, 1.0, last.height)
    churned = rng.random(last.height) < (
        1 / (1 + np.exp(-logit)) if informative else np.full(last.height, 0.5)
    )
    buyers = last.filter(~pl.Series(churned))["customer_id"]
    start = as_of + timedelta(days=10)
    with lakehouse.connect() as conn:
        conn.execute(
            "CREATE TABLE events AS SELECT customer_id, 'purchase' AS event_type, "
            "$t::TIMESTAMPTZ AS occurred_at, 10.0 AS amount FROM unnest($ids) AS t(customer_id)",
            {"t": f"{start}T12:00:00Z", "ids": buyers.to_list()},
        )
        conn.execute("CREATE TABLE customer_daily AS SELECT DATE '2024-12-31' AS day")


@pytest.mark.parametrize("informative", [True, False])
def test_model_performance_compares_realized_with_training_auc(
    promoted, training_set_file, informative
) -> None:
    as_of = date(2024, 8, 1)
    last = latest_snapshot(training_set_file, as_of, shift=False)
    outcomes(last, as_of, informative)
    resources = {k: promoted[k] for k in ("mlflow", "warehouse")}
    metadata = materialize(model_performance, resources)
    assert metadata["as_of_day"].value == "2024-08-01"
    assert metadata["customers"].value == last.height
    realized, trained = metadata["realized_auc"].value, metadata["training_auc"].value
    assert 0.6 < trained < 0.95
    if informative:
        assert abs(realized - trained) < 0.05 and metadata["degraded"].value is False
    else:
        assert realized < 0.6 and metadata["degraded"].value is True


def test_model_performance_waits_for_labels(promoted, training_set_file) -> None:
    as_of = date(2024, 12, 1)
    last = latest_snapshot(training_set_file, as_of, shift=False)
    outcomes(last, date(2024, 8, 1), informative=True)
    metadata = materialize(model_performance, {k: promoted[k] for k in ("mlflow", "warehouse")})
    assert metadata["degraded"].value is False
    assert "first matures on 2025-03-02" in metadata["status"].value
