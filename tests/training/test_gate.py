"""The promotion gate end to end through the real assets, MLflow registry and BentoML store:
a first model needs the floor, a worse challenger is rejected, a better one promoted, NaN
predictions block, and a rollback re-points the champion in both places."""

from __future__ import annotations

import tempfile

import dagster as dg
import mlflow
import numpy as np
import pandas as pd
import pytest

from analytics_assets import settings
from analytics_assets.defs.training.assets import churn_model, model_evaluation, promoted_models
from analytics_assets.defs.training.evaluation import evaluation_path, read_evaluation
from analytics_assets.defs.training.jobs import rollback_champion
from analytics_assets.defs.training.promotion import promote
from analytics_assets.lib import bento_store, model_registry
from analytics_assets.lib.artifacts import directory_sha256
from analytics_assets.resources import MlflowTracking

WEAK = {"max_iter": 1, "max_leaf_nodes": 2, "learning_rate": 0.05}


def train_and_gate(resources: dict, churn: dict | None = None, gate: dict | None = None):
    """One retraining run: churn_model -> model_evaluation (+ checks) -> promoted_models."""
    run_config = {
        "ops": {
            "churn_model": {"config": churn or {}},
            "model_evaluation": {"config": gate or {}},
        }
    }
    with dg.DagsterInstance.ephemeral() as instance:
        return dg.materialize(
            [churn_model, model_evaluation, promoted_models],
            resources=resources,
            run_config=run_config,
            instance=instance,
            raise_on_error=False,
        )


def champion(resources: dict) -> str | None:
    version = model_registry.by_alias(resources["mlflow"].client(), "churn_model", "champion")
    return version.version if version else None


def challenger(resources: dict) -> str:
    return model_registry.by_alias(
        resources["mlflow"].client(), "churn_model", "challenger"
    ).version


def served(resources: dict) -> str | None:
    model = bento_store.current(resources["bento_store"].store(), "churn_model")
    return model.info.labels["mlflow_version"] if model else None


@pytest.fixture
def gated(model_resources, feast_registry, training_set_file) -> dict:
    return model_resources


def test_gate_floor_margin_and_rollback(gated: dict) -> None:
    # a first model below the floor is registered as challenger but not promoted
    result = train_and_gate(gated, WEAK, {"churn_auc_floor": 0.99})
    assert not result.success  # the blocking floor check failed
    floor = next(
        e for e in result.get_asset_check_evaluations() if e.check_name == "metric_above_floor"
    )
    assert not floor.passed
    assert challenger(gated) == "1" and champion(gated) is None and served(gated) is None

    # a weak but acceptable first model is promoted on the floor alone
    result = train_and_gate(gated, WEAK, {"churn_auc_floor": 0.55})
    assert result.success
    assert champion(gated) == "2" and served(gated) == "2"
    weak_auc = read_evaluation()["churn_model"]["challenger"]["metrics"]["roc_auc"]

    # a better challenger beats it on the same holdout
    result = train_and_gate(gated, {}, {"churn_auc_floor": 0.55})
    assert result.success
    evaluation = read_evaluation()["churn_model"]
    assert evaluation["champion"]["version"] == "2"
    assert evaluation["champion"]["metrics"]["roc_auc"] == pytest.approx(weak_auc)
    assert evaluation["challenger"]["metrics"]["roc_auc"] > weak_auc + 0.005
    assert champion(gated) == "3" and served(gated) == "3"
    bento = bento_store.current(gated["bento_store"].store(), "churn_model")
    assert bento.info.labels["feature_service"] == "churn_v1"
    assert bento.info.labels["mlflow_run_id"]
    assert bento.info.labels["promotion"] == "gate"
    assert {"train_start", "train_end", "holdout_at", "roc_auc"} <= set(bento.info.labels)

    # a worse challenger is rejected, stays challenger, with the reason on the version
    result = train_and_gate(gated, WEAK, {"churn_auc_floor": 0.55})
    assert result.success
    verdict = read_evaluation()["churn_model"]["verdict"]
    assert not verdict["promote"] and "does not beat the champion" in verdict["reason"]
    assert champion(gated) == "3" and challenger(gated) == "4" and served(gated) == "3"
    tags = gated["mlflow"].client().get_model_version("churn_model", "4").tags
    assert tags[model_registry.DECISION_TAG].startswith("rejected: does not beat")
    kept = bento_store.current(gated["bento_store"].store(), "churn_model_challenger")
    assert (
        kept.info.labels["mlflow_version"] == "4" and kept.info.labels["promotion"] == "challenger"
    )

    # rollback to the previous champion, in MLflow and in the BentoML store
    with dg.DagsterInstance.ephemeral() as instance:
        assert rollback_champion.execute_in_process(resources=gated, instance=instance).success
    assert champion(gated) == "2" and served(gated) == "2"
    assert bento_store.current(gated["bento_store"].store(), "churn_model_challenger") is not None
    # and forward again to a named version
    with dg.DagsterInstance.ephemeral() as instance:
        assert rollback_champion.execute_in_process(
            run_config={"ops": {"rollback": {"config": {"version": "3"}}}},
            resources=gated,
            instance=instance,
        ).success
    assert champion(gated) == "3" and served(gated) == "3"

    # the kept challenger (v4) promoted after all: MLflow's challenger alias is on the
    # champion now, so the store keeps no challenger for the service to serve
    with tempfile.TemporaryDirectory() as work:
        promote(gated["mlflow"].client(), gated["bento_store"], "churn_model", "4", work, {}, "t")
    assert served(gated) == "4"
    assert bento_store.current(gated["bento_store"].store(), "churn_model_challenger") is None


def test_a_champion_whose_fast_scorer_disagrees_is_not_promoted(
    gated: dict, monkeypatch, tmp_path
) -> None:
    from pathlib import Path

    from analytics_assets.scoring import churn_trees

    assert train_and_gate(gated, WEAK, {"churn_auc_floor": 0.55}).success
    bento = bento_store.current(gated["bento_store"].store(), "churn_model")
    metadata = bento.info.metadata
    assert metadata["fast_scorer"].startswith("treelite ")
    assert "largest difference" in metadata["fast_scorer_check"]
    assert (Path(bento.path_of(churn_trees.FOLDER)) / churn_trees.FILE).is_file()
    assert metadata["fast_scorer_sha256"] == directory_sha256(
        Path(bento.path_of(churn_trees.FOLDER))
    )

    # a converter that gets the trees wrong (it converts another model): the gate's check
    # fails and blocks the promotion of a better challenger
    weak = model_registry.load_native(
        model_registry.fetch(gated["mlflow"].client(), "churn_model", "1", str(tmp_path))
    )
    wrong = churn_trees.convert(weak)
    monkeypatch.setattr(churn_trees, "convert", lambda _model: wrong)
    result = train_and_gate(gated, {}, {"churn_auc_floor": 0.55})
    assert not result.success
    check = next(
        e for e in result.get_asset_check_evaluations() if e.check_name == "fast_scorer_agrees"
    )
    assert not check.passed and "largest difference" in check.metadata["churn_model"].value
    assert champion(gated) == "1" and served(gated) == "1"

    # and the promotion itself refuses one (a rollback, or a gate that saw other rows)
    with tempfile.TemporaryDirectory() as work, pytest.raises(churn_trees.Disagrees):
        promote(gated["mlflow"].client(), gated["bento_store"], "churn_model", "2", work, {}, "t")
    assert champion(gated) == "1" and served(gated) == "1"


class NaNModel(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: pd.DataFrame, params=None):
        return np.full(len(model_input), np.nan)


def test_nan_predictions_block_promotion(gated: dict) -> None:
    assert train_and_gate(gated, {}, {"churn_auc_floor": 0.55}).success
    assert champion(gated) == "1"
    tracking: MlflowTracking = gated["mlflow"]
    with tracking.start_run("churn_model", "nan", {}):
        example = pd.DataFrame({"frequency": [1.0]})
        logged = mlflow.pyfunc.log_model(
            name="model",
            python_model=NaNModel(),
            signature=mlflow.models.infer_signature(example, np.array([0.5])),
        )
    model_registry.register(tracking.client(), "churn_model", logged.model_uri, {})
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            [model_evaluation, promoted_models],
            resources=gated,
            instance=instance,
            raise_on_error=False,
        )
    valid = next(
        e for e in result.get_asset_check_evaluations() if e.check_name == "predictions_valid"
    )
    assert not valid.passed
    assert "NaN" in valid.metadata["churn_model"].value
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "promoted_models" not in materialized  # blocked by the check
    assert champion(gated) == "1" and served(gated) == "1"
    assert not read_evaluation()["churn_model"]["verdict"]["promote"]


def test_tampered_artifact_is_refused(gated: dict) -> None:
    assert train_and_gate(gated, {}, {"churn_auc_floor": 0.55}).success
    # the registered model's file in the artifact store, changed after it was logged
    artifacts = settings.analytics_home() / "mlflow" / "artifacts"
    model_file = next(artifacts.rglob("model.skops"))
    model_file.write_bytes(model_file.read_bytes() + b"\0")
    evaluation_path().unlink()
    result = train_and_gate(gated, {}, {"churn_auc_floor": 0.55})
    assert not result.success
    failure = result.get_step_failure_events()[0]
    assert failure.step_key == "model_evaluation"
    assert "differs from the recorded" in str(failure.event_specific_data.error)
    assert champion(gated) == "1"
