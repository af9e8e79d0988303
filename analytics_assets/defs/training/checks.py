"""The gate's blocking checks on ``model_evaluation``: a failed one stops ``promoted_models``
in the same run (and the promotion itself refuses a challenger that failed one)."""

import dagster as dg

from analytics_assets.defs.training.evaluation import read_evaluation


def _check(name: str) -> dg.AssetCheckResult:
    evaluation = read_evaluation()
    results = {model: result["checks"][name] for model, result in evaluation.items()}
    return dg.AssetCheckResult(
        passed=all(r["passed"] for r in results.values()),
        metadata={model: r["detail"] for model, r in results.items()},
    )


@dg.asset_check(asset="model_evaluation", blocking=True)
def predictions_valid() -> dg.AssetCheckResult:
    """Every challenger prediction on the holdout is finite and in range (probabilities in
    [0, 1], purchases and revenue non-negative)."""
    return _check("predictions_valid")


@dg.asset_check(asset="model_evaluation", blocking=True)
def calibration_within_bounds() -> dg.AssetCheckResult:
    """Churn: expected calibration error within its bound. CLV: predicted / actual holdout
    purchases within bounds."""
    return _check("calibration_within_bounds")


@dg.asset_check(asset="model_evaluation", blocking=True)
def metric_above_floor() -> dg.AssetCheckResult:
    """The deciding holdout metric (churn ROC AUC, CLV purchases correlation) is above its
    floor."""
    return _check("metric_above_floor")
