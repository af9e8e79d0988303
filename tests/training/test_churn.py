"""The churn model: split by time without leakage, metrics and tables, seeded determinism."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import numpy as np
import polars as pl
import pytest

from analytics_assets.defs.training import churn
from analytics_assets.defs.training.assets import churn_model
from analytics_assets.lib import churn_evaluation
from analytics_assets.testing.training_set import synthetic_training_set


def test_time_split_holds_out_the_newest_date_and_drops_overlapping_labels(analytics_home):
    frame = synthetic_training_set(customers=50, as_of_days=8)
    split = churn.time_split(frame, label_days=90)
    newest = frame["event_timestamp"].max()
    assert split.holdout["event_timestamp"].unique().to_list() == [newest]
    # as-of dates 28 days apart: the 3 before the holdout have labels reaching into it
    assert split.train_end == newest - timedelta(days=4 * 28)
    assert split.train["event_timestamp"].max() + timedelta(days=90) <= newest
    assert split.train.height == 50 * 4


def test_time_split_explains_too_little_history(analytics_home):
    frame = synthetic_training_set(customers=20, as_of_days=3)
    with pytest.raises(ValueError, match="no as-of date is 90 days older"):
        churn.time_split(frame, label_days=90)


def test_metrics_tables_and_validity():
    y = np.array([0, 0, 1, 1, 1, 0, 1, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.8, 0.7, 0.9, 0.3, 0.6, 0.4, 0.95, 0.85])
    metrics = churn_evaluation.metrics(y, p)
    assert metrics["roc_auc"] == 1.0 and metrics["pr_auc"] == pytest.approx(1.0)
    assert metrics["brier"] == pytest.approx(np.mean((p - y) ** 2))
    lift = churn_evaluation.decile_lift(y, p)
    assert lift["customers"].sum() == 10 and lift["cumulative_capture"][-1] == 1.0
    assert lift["churn_rate"][0] == 1.0 and lift["lift"][0] == pytest.approx(1 / 0.6)
    table = churn_evaluation.calibration_table(y, p)
    assert table["customers"].sum() == 10
    assert churn_evaluation.valid_probabilities(p)[0]
    ok, detail = churn_evaluation.valid_probabilities(np.array([0.2, np.nan, 1.5]))
    assert not ok and detail.startswith("1 NaN and 1 out-of-range")


def test_seeded_training_gives_the_same_metrics_twice(
    model_resources, feast_registry, training_set_file
):
    resources = {k: model_resources[k] for k in ("feast", "mlflow")}
    runs = []
    with dg.DagsterInstance.ephemeral() as instance:
        for _ in range(2):
            result = dg.materialize([churn_model], resources=resources, instance=instance)
            runs.append(result.asset_materializations_for_node("churn_model")[0].metadata)
    names = ("roc_auc", "pr_auc", "log_loss", "brier", "ece")
    assert [runs[0][n].value for n in names] == [runs[1][n].value for n in names]
    assert runs[0]["model_version"].value == "1" and runs[1]["model_version"].value == "2"
    assert runs[0]["roc_auc"].value > 0.6  # the synthetic signal is learnable
    assert runs[0]["training_window"].value["holdout_at"].startswith("2024-07-")
    client = model_resources["mlflow"].client()
    run_id = runs[0]["mlflow_run_id"].value
    run = client.get_run(run_id)
    assert run.data.params["feature_service"] == "churn_v1"
    assert run.data.params["train_end"] == runs[0]["training_window"].value["train_end"]
    logged = {
        a.path for folder in ("plots", "tables") for a in client.list_artifacts(run_id, folder)
    }
    assert logged == {
        "plots/calibration.png",
        "plots/decile_lift.png",
        "tables/calibration.csv",
        "tables/decile_lift.csv",
    }
    model = client.get_model_version("churn_model", "1")
    assert model.tags["feature_service"] == "churn_v1" and len(model.tags["artifact_sha256"]) == 64


def test_a_feature_no_training_row_has_is_ignored() -> None:
    frame = synthetic_training_set(customers=300, as_of_days=3)
    features = ["days_since_last_purchase", "sessions_28d", "cart_abandonment_rate_28d"]
    train = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias("cart_abandonment_rate_28d"))
    model = churn.fit(train, features, {"max_iter": 20, "random_state": 0})
    with_values = churn_evaluation.matrix(frame, features)
    without = churn_evaluation.matrix(train, features)
    assert (model.predict_proba(with_values) == model.predict_proba(without)).all()
