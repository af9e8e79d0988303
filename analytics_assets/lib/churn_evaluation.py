"""How a churn classifier is judged, wherever it is judged (training's holdout, the gate, the
champion's realized performance): its input matrix, the positive-class scores, the metrics,
the calibration table and plot, and decile lift."""

from __future__ import annotations

import numpy as np
import polars as pl

from analytics_assets.lib.plotting import figure, png

LABEL = "churned"
"""The label column (``training_set``'s): no purchase within the label window."""


def matrix(frame: pl.DataFrame, features: list[str]):
    """The feature columns as a float64 pandas frame (nulls become NaN, which the model
    handles natively); column names are the model's input schema."""
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise ValueError(f"feature columns missing from the frame: {missing}")
    return frame.select(pl.col(features).cast(pl.Float64)).to_pandas()


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


def calibration_png(table: pl.DataFrame, p: np.ndarray, title: str) -> bytes:
    """Reliability diagram (mean predicted vs observed churn per bin) over the score histogram."""
    plt, fig, axes = figure(1, 2, width=10)
    ax = axes[0][0]
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    ax.plot(table["mean_predicted"], table["observed_rate"], marker="o", label="model")
    ax.set(title=title, xlabel="mean predicted churn probability", ylabel="observed churn rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    axes[0][1].hist(p, bins=20, range=(0, 1))
    axes[0][1].set(title="predictions", xlabel="churn probability", ylabel="customers")
    return png(plt, fig)
