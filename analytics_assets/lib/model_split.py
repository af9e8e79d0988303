"""The champion/challenger traffic split read as an experiment: each arm's customers (the
scoring service routes a customer to one arm by a hash of their id, so the arms are random
halves of the customers it scored), what each arm's model predicted for them, and what then
happened (from the later purchases): AUC, calibration and top-decile lift, with intervals, and
the challenger against the champion.

A customer counts once per arm, by their first answer from that arm's model; their outcome is
the churn label of the training set (no purchase in the ``churn_days`` after the features'
as-of time), known only once that window has passed.
"""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
from scipy import stats

from analytics_assets.lib.names import CHURN_MODEL

Z = float(stats.norm.ppf(0.975))


def first_answers(root: Path, model: str = CHURN_MODEL) -> pl.DataFrame:
    """Per arm (``role``) and customer: the first answer its model served for a known
    customer (``model_version``, ``as_of``, ``churn_probability``), from the prediction log."""
    folder = root / model
    empty = pl.DataFrame(
        schema={
            "role": pl.String,
            "model_version": pl.String,
            "customer_id": pl.String,
            "as_of": pl.Datetime("us", "UTC"),
            "churn_probability": pl.Float64,
        }
    )
    if not any(folder.glob("date=*/*.parquet")):
        return empty
    with duckdb.connect() as conn:
        conn.execute("SET TimeZone = 'UTC'")
        relation = conn.execute(
            """
            SELECT role, arg_min(model_version, logged_at) AS model_version, customer_id,
                   arg_min(CAST(features_as_of AS TIMESTAMPTZ), logged_at) AS as_of,
                   arg_min(CAST(churn_probability AS DOUBLE), logged_at) AS churn_probability
            FROM read_parquet($glob, hive_partitioning = true, union_by_name = true)
            WHERE served AND known AND features_as_of IS NOT NULL
            GROUP BY role, customer_id
            """,
            {"glob": str(folder / "date=*" / "*.parquet")},
        )
        frame = pl.from_arrow(relation.fetch_arrow_table())
    return frame.cast(empty.schema) if frame.height else empty


def auc_with_se(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """ROC AUC (Mann-Whitney, ties halved) and its standard error by Hanley and McNeil (1982)."""
    positives, negatives = int(y.sum()), int(y.size - y.sum())
    if positives == 0 or negatives == 0:
        return math.nan, math.nan
    ranks = stats.rankdata(p)
    auc = (ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives)
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (positives - 1) * (q1 - auc**2) + (negatives - 1) * (q2 - auc**2)) / (
        positives * negatives
    )
    return float(auc), float(math.sqrt(max(var, 0.0)))


def arm_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """One arm's realized quality: AUC, calibration-in-the-large (observed churn rate minus
    mean predicted), the churn rate of its top predicted decile over the base rate (lift),
    each with a 95 % interval; and the Brier score."""
    n = y.size
    auc, auc_se = auc_with_se(y, p)
    rate, predicted = float(y.mean()), float(p.mean())
    gap_se = math.sqrt(rate * (1 - rate) / n) if n else math.nan
    top = np.argsort(-p, kind="stable")[: max(1, n // 10)]
    top_rate = float(y[top].mean())
    # delta method on top_rate / rate (the top decile is a tenth of the same customers)
    lift = top_rate / rate if rate else math.nan
    lift_se = (
        lift * math.sqrt((1 - top_rate) / (top_rate * top.size) + (1 - rate) / (rate * n))
        if rate and top_rate
        else math.nan
    )
    return {
        "customers": n,
        "churn_rate": rate,
        "mean_predicted": predicted,
        "auc": auc,
        "auc_low": auc - Z * auc_se,
        "auc_high": auc + Z * auc_se,
        "auc_se": auc_se,
        "calibration_gap": rate - predicted,
        "calibration_low": rate - predicted - Z * gap_se,
        "calibration_high": rate - predicted + Z * gap_se,
        "top_decile_lift": lift,
        "lift_low": lift - Z * lift_se,
        "lift_high": lift + Z * lift_se,
        "brier": float(np.mean(np.square(p - y))),
    }


def compare(challenger: dict, champion: dict) -> dict[str, float]:
    """Challenger minus champion in AUC and in absolute calibration gap, with 95 % intervals
    (the arms are disjoint customers: the variances add)."""
    diff = challenger["auc"] - champion["auc"]
    se = math.sqrt(challenger["auc_se"] ** 2 + champion["auc_se"] ** 2)
    return {
        "auc_diff": diff,
        "auc_diff_low": diff - Z * se,
        "auc_diff_high": diff + Z * se,
        "calibration_gap_diff": abs(challenger["calibration_gap"])
        - abs(champion["calibration_gap"]),
    }


def verdict(comparison: dict | None) -> tuple[bool | None, str]:
    """Whether the live split shows the challenger worse (its AUC interval below 0): ``None``
    while there is no comparison."""
    if comparison is None:
        return None, "no realized outcomes of both arms yet"
    low, high = comparison["auc_diff_low"], comparison["auc_diff_high"]
    diff = comparison["auc_diff"]
    text = f"realized AUC challenger - champion {diff:+.4f} [{low:+.4f}, {high:+.4f}]"
    if high < 0:
        return True, f"worse on live traffic: {text}"
    if low > 0:
        return False, f"better on live traffic: {text}"
    return False, f"no difference shown on live traffic: {text}"
