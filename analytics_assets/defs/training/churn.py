"""The churn classifier: time-based split, fit, and holdout metrics (no Dagster, no MLflow).

The estimator is scikit-learn's ``HistGradientBoostingClassifier``: the LightGBM algorithm
(histogram-binned gradient boosting) in a library already locked (MLflow depends on it), with
native missing values (Feast returns nulls for customers without sessions), deterministic for a
fixed ``random_state``, and serialized by MLflow with skops rather than pickle. Against LightGBM
it fits as fast, to the same holdout AUC (BENCHMARKS.md, "Figures the code's choices rest on"),
so no second native dependency for nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import polars as pl

from analytics_assets.lib.days import snapshot_day

LABEL = "churned"
TIMESTAMP = "event_timestamp"


@dataclass(frozen=True)
class Split:
    train: pl.DataFrame
    holdout: pl.DataFrame
    train_start: datetime
    train_end: datetime
    holdout_at: datetime

    def as_of_days(self) -> list[date]:
        """The snapshot days the training rows come from."""
        return sorted({snapshot_day(t) for t in self.train[TIMESTAMP].unique().to_list()})


def time_split(frame: pl.DataFrame, label_days: int) -> Split:
    """Holdout: the newest as-of date. Train: as-of dates whose label window closed by then.

    Rows whose ``label_days`` window reaches past the holdout's as-of instant are dropped, not
    trained on: their labels describe the holdout period, so keeping them would leak it.
    """
    if frame.height == 0:
        raise ValueError("the training set is empty")
    holdout_at = frame[TIMESTAMP].max()
    cutoff = holdout_at - timedelta(days=label_days)
    holdout = frame.filter(pl.col(TIMESTAMP) == holdout_at)
    train = frame.filter(pl.col(TIMESTAMP) <= cutoff)
    if train.height == 0:
        dates = sorted({t.date().isoformat() for t in frame[TIMESTAMP].unique().to_list()})
        raise ValueError(
            f"no as-of date is {label_days} days older than the holdout ({holdout_at:%Y-%m-%d}):"
            f" the training set has {dates}. Let more history mature or lower the spacing."
        )
    if train[LABEL].n_unique() < 2:
        raise ValueError("the training rows hold a single class: nothing to learn")
    return Split(train, holdout, train[TIMESTAMP].min(), train[TIMESTAMP].max(), holdout_at)


def matrix(frame: pl.DataFrame, features: list[str]):
    """The feature columns as a float64 pandas frame (nulls become NaN, which the model
    handles natively); column names are the model's input schema."""
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise ValueError(f"feature columns missing from the frame: {missing}")
    return frame.select(pl.col(features).cast(pl.Float64)).to_pandas()


def fit(train: pl.DataFrame, features: list[str], hyperparameters: dict[str, float | int]):
    """Fit the classifier on ``train`` with ``HistGradientBoostingClassifier``'s keyword
    ``hyperparameters``. No internal early stopping: its validation split is random across
    time, which the time-based split exists to avoid."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    x = matrix(train, features)
    # A feature no training row has (CDNOW has no sessions, so no cart abandonment) cannot be
    # split on; scikit-learn 1.9's binning fails on a column with no value at all, so give it
    # one constant value: still no split, and scoring (where it may be present) is unchanged.
    empty = [name for name in features if x[name].isna().all()]
    if empty:
        x[empty] = 0.0
    model = HistGradientBoostingClassifier(**hyperparameters, early_stopping=False)
    return model.fit(x, train[LABEL].cast(pl.Int8).to_numpy())


def positive_scores(predictions) -> np.ndarray:
    """Churn probabilities from a model's output: the positive column of ``predict_proba``
    (what our pyfunc returns), or a single column as is."""
    values = np.asarray(getattr(predictions, "values", predictions), dtype=float)
    if values.ndim == 2:
        values = values[:, -1] if values.shape[1] > 1 else values[:, 0]
    return values


def metrics(y: np.ndarray, p: np.ndarray, bins: int = 10) -> dict[str, float]:
    """ROC AUC, PR AUC, log loss, Brier score and expected calibration error on a holdout.

    Callers check :func:`valid_probabilities` first: the metrics are undefined for NaN.
    """
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    y = np.asarray(y, dtype=int)
    two_classes = len(np.unique(y)) == 2
    return {
        "roc_auc": float(roc_auc_score(y, p)) if two_classes else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if two_classes else float("nan"),
        "log_loss": float(log_loss(y, np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "ece": expected_calibration_error(y, p, bins),
        "base_rate": float(y.mean()),
        "mean_prediction": float(p.mean()),
        "rows": float(len(y)),
    }


def valid_probabilities(p: np.ndarray) -> tuple[bool, str]:
    """Whether every prediction is a finite probability; if not, how many are not."""
    nan = int(np.isnan(p).sum())
    out_of_range = int(((p < 0) | (p > 1)).sum())
    if nan or out_of_range:
        return False, f"{nan} NaN and {out_of_range} out-of-range of {len(p)} predictions"
    return True, f"all {len(p)} predictions finite and within [0, 1]"


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pl.DataFrame:
    """Equal-width probability bins: mean prediction vs observed churn rate per bin."""
    frame = pl.DataFrame({"y": np.asarray(y, dtype=float), "p": p})
    return (
        frame.with_columns(
            (pl.col("p") * bins).floor().clip(0, bins - 1).cast(pl.Int32).alias("bin")
        )
        .group_by("bin")
        .agg(
            pl.len().alias("customers"),
            pl.col("p").mean().alias("mean_predicted"),
            pl.col("y").mean().alias("observed_rate"),
        )
        .sort("bin")
    )


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Share-weighted mean gap between predicted and observed rates over the bins."""
    table = calibration_table(y, p, bins)
    gap = (table["mean_predicted"] - table["observed_rate"]).abs()
    return float((gap * table["customers"]).sum() / len(p))


def decile_lift(y: np.ndarray, p: np.ndarray) -> pl.DataFrame:
    """Customers ranked by churn probability in ten equal groups (1 = riskiest): churn rate,
    lift over the overall rate, and the share of all churners captured down to that decile."""
    n = len(p)
    order = np.argsort(-p, kind="stable")
    decile = np.empty(n, dtype=np.int32)
    decile[order] = np.arange(n) * 10 // max(n, 1) + 1
    overall = float(np.mean(y)) if n else 0.0
    table = (
        pl.DataFrame({"decile": decile, "y": np.asarray(y, dtype=float), "p": p})
        .group_by("decile")
        .agg(
            pl.len().alias("customers"),
            pl.col("p").mean().alias("mean_predicted"),
            pl.col("y").mean().alias("churn_rate"),
            pl.col("y").sum().alias("churners"),
        )
        .sort("decile")
    )
    total = max(float(table["churners"].sum()), 1.0)
    return table.with_columns(
        (pl.col("churn_rate") / overall if overall else pl.lit(None)).alias("lift"),
        (pl.col("churners").cum_sum() / total).alias("cumulative_capture"),
    ).drop("churners")
