"""The gate's evaluation: challenger and champion scored on one holdout, the blocking checks'
inputs, and the verdict, written to ``<home>/models/evaluation.json``."""

import json

import dagster as dg
import numpy as np
import polars as pl

from analytics_assets import settings
from analytics_assets.defs.training import clv, gate
from analytics_assets.lib import churn_evaluation, model_registry
from analytics_assets.lib.atomic_files import write_text
from analytics_assets.lib.names import CHURN_MODEL, CLV_MODEL
from analytics_assets.scoring.customer_value import INPUTS as CLV_INPUTS


def holdout_path(model: str):
    return settings.models_dir() / f"{model}_holdout.parquet"


def evaluation_path():
    return settings.models_dir() / "evaluation.json"


def read_evaluation() -> dict[str, dict]:
    """The latest evaluation (empty before the first)."""
    path = evaluation_path()
    return json.loads(path.read_text()) if path.exists() else {}


def write_evaluation(evaluation: dict[str, dict]) -> None:
    write_text(evaluation_path(), json.dumps(evaluation, indent=2, default=str))


class EvaluationConfig(dg.Config):
    churn_auc_floor: float = 0.6
    """The lowest holdout ROC AUC a churn model may be promoted with."""
    churn_margin: float = 0.005
    """ROC AUC the challenger must gain over the champion on the same holdout."""
    churn_max_calibration_error: float = 0.1
    """Highest expected calibration error (10 bins) allowed."""
    clv_corr_floor: float = 0.3
    """The lowest correlation of predicted and actual holdout purchases per customer."""
    clv_margin: float = 0.005
    """Correlation the challenger must gain over the champion on the same holdout."""
    clv_min_ratio: float = 0.7
    """Aggregate calibration: predicted / actual holdout purchases at least this ..."""
    clv_max_ratio: float = 1.3
    """... and at most this."""


def _policies(config: EvaluationConfig) -> dict[str, gate.Policy]:
    return {
        CHURN_MODEL: gate.Policy("roc_auc", True, config.churn_auc_floor, config.churn_margin),
        CLV_MODEL: gate.Policy("purchases_corr", True, config.clv_corr_floor, config.clv_margin),
    }


def fast_scorer_check(model: str, fetched: model_registry.Fetched, holdout) -> gate.Check:
    """Whether the fast scorer the service would use agrees with the model (churn: treelite's
    GTIL against scikit-learn, :mod:`analytics_assets.scoring.churn_trees`). A model treelite
    cannot convert passes: the service scores it with scikit-learn and says so."""
    if model != CHURN_MODEL:
        return gate.Check(True, "scored by its closed-form formulas: no fast scorer to check")
    from analytics_assets.scoring import churn_trees

    classifier = model_registry.load_native(fetched)
    try:
        _, found = churn_trees.check(classifier, holdout)
    except churn_trees.Unconvertible as error:
        return gate.Check(True, f"{error}; the service will score it with scikit-learn")
    return gate.Check(found.agrees, found.detail())


def _score(model: str, fetched: model_registry.Fetched, holdout: pl.DataFrame) -> dict:
    """Load a verified version and score the holdout with it: validity and metrics."""
    pyfunc = model_registry.load_pyfunc(fetched)
    if model == CHURN_MODEL:
        inputs = pyfunc.metadata.get_input_schema().input_names()
        p = churn_evaluation.positive_scores(
            pyfunc.predict(churn_evaluation.matrix(holdout, inputs))
        )
        valid, detail = churn_evaluation.valid_probabilities(p)
        y = holdout[churn_evaluation.LABEL].cast(pl.Int8).to_numpy()
        metrics = churn_evaluation.metrics(y, p) if valid else {}
        return {"valid": valid, "valid_detail": detail, "metrics": metrics}
    horizon = float(holdout["holdout_days"][0])
    outputs = pyfunc.predict(
        holdout.select(CLV_INPUTS).to_pandas(), params={"horizon_days": horizon}
    )
    scored = holdout.with_columns(
        pl.Series(name, np.asarray(outputs[name], dtype=float)) for name in outputs.columns
    )
    valid, detail = clv.valid_predictions(scored)
    metrics = clv.holdout_metrics(scored) if valid else {}
    return {"valid": valid, "valid_detail": detail, "metrics": metrics}


def _calibration(model: str, metrics: dict, config: EvaluationConfig) -> gate.Check:
    if not metrics:
        return gate.Check(False, "no metrics: predictions invalid")
    if model == CHURN_MODEL:
        ece, bound = metrics["ece"], config.churn_max_calibration_error
        return gate.Check(ece <= bound, f"calibration error {ece:.4f} (bound {bound})")
    ratio = metrics["purchases_ratio"]
    ok = config.clv_min_ratio <= ratio <= config.clv_max_ratio
    return gate.Check(
        ok,
        f"predicted / actual purchases {ratio:.3f} "
        f"(bounds {config.clv_min_ratio} .. {config.clv_max_ratio})",
    )


def live_split(model: str, challenger: str, champion) -> tuple[dict | None, gate.Check]:
    """The live traffic split's realized outcomes (``model_split``) for exactly this challenger
    and champion, and the check on them: the challenger must not be shown worse."""
    path = settings.model_split_path()
    none = gate.Check(True, "no live split of this challenger and champion yet")
    if model != CHURN_MODEL or champion is None or not path.exists():
        return None, none
    evidence = json.loads(path.read_text())
    arms = evidence.get("arms", {})
    versions = {role: str(arm.get("model_version")) for role, arm in arms.items()}
    if versions != {"challenger": str(challenger), "champion": str(champion.version)}:
        return None, none
    return evidence, gate.Check(not evidence["challenger_worse"], evidence["reason"])


def evaluate_model(model: str, client, config: EvaluationConfig, workdir) -> dict | None:
    """The challenger and champion of ``model`` on the challenger's holdout, the blocking
    checks on the challenger, and the gate's verdict. ``None`` without a challenger."""
    challenger = model_registry.by_alias(client, model, model_registry.CHALLENGER)
    if challenger is None:
        return None
    champion = model_registry.by_alias(client, model, model_registry.CHAMPION)
    holdout = pl.read_parquet(holdout_path(model))
    policy = _policies(config)[model]
    result = {
        "challenger": {"version": challenger.version},
        "champion": None,
        "policy": policy.as_dict(),
    }
    fetched = model_registry.fetch(client, model, challenger.version, workdir)
    result["challenger"].update(_score(model, fetched, holdout))
    if champion is not None:
        result["champion"] = {"version": champion.version}
        result["champion"].update(
            _score(model, model_registry.fetch(client, model, champion.version, workdir), holdout)
        )
    scored = result["challenger"]
    value = scored["metrics"].get(policy.metric, float("nan"))
    checks = {
        "predictions_valid": gate.Check(scored["valid"], scored["valid_detail"]),
        "calibration_within_bounds": _calibration(model, scored["metrics"], config),
        "metric_above_floor": gate.above_floor(policy, value),
        "fast_scorer_agrees": fast_scorer_check(model, fetched, holdout),
    }
    evidence, checks["live_split_not_worse"] = live_split(model, challenger.version, champion)
    result["live_split"] = evidence
    result["checks"] = {name: check.__dict__ for name, check in checks.items()}
    if champion is not None and champion.version == challenger.version:
        verdict = gate.Verdict(False, f"version {challenger.version} is already the champion")
    else:
        champion_value = (
            result["champion"]["metrics"].get(policy.metric, float("nan"))
            if result["champion"]
            else None
        )
        verdict = gate.decide(policy, value, champion_value, checks)
    result["verdict"] = verdict.__dict__
    return result
