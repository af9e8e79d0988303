"""The customer value model: BG/NBD for purchase counts and Gamma-Gamma for spend, fitted by
maximum likelihood on the feature store's own RFM snapshot (the fit itself is
:func:`analytics_assets.scoring.customer_value.fit_params`; why ``lifetimes`` and not
``pymc-marketing`` is in ``pyproject.toml``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from analytics_assets.lib import snapshots
from analytics_assets.lib.days import snapshot_instant
from analytics_assets.lib.outcomes import future_purchases
from analytics_assets.scoring.customer_value import (
    INPUTS,
    CustomerValueParams,
    fit_params,
    predict,
)

PERIOD_DAYS = 7.0
"""The model's time unit: weeks, as in the paper (the estimates depend on the unit)."""


def summary(snapshot: pl.DataFrame) -> pl.DataFrame:
    """Customers with a first purchase by the snapshot, with the model's four inputs."""
    return snapshot.filter(pl.col("tenure_days").is_not_null()).select(
        "customer_id",
        "event_timestamp",
        pl.col("frequency").cast(pl.Float64),
        pl.col("recency_days").cast(pl.Float64),
        pl.col("tenure_days").cast(pl.Float64),
        pl.col("monetary_value").cast(pl.Float64),
    )


@dataclass(frozen=True)
class Fit:
    params: CustomerValueParams
    customers: int
    repeat_customers: int


def fit(rfm: pl.DataFrame, period_days: float = PERIOD_DAYS) -> Fit:
    """Maximum likelihood: BG/NBD on every customer, Gamma-Gamma on those with repeat
    purchases of positive value (its spend model is undefined for the others)."""
    if rfm.height == 0:
        raise ValueError("no customer with a purchase in the calibration snapshot")
    repeat = rfm.filter((pl.col("frequency") > 0) & (pl.col("monetary_value") > 0))
    if repeat.height < 2:
        raise ValueError("fewer than two customers with repeat purchases: spend cannot be fitted")
    params = fit_params(
        rfm["frequency"].to_numpy(),
        rfm["recency_days"].to_numpy() / period_days,
        rfm["tenure_days"].to_numpy() / period_days,
        repeat["frequency"].to_numpy(),
        repeat["monetary_value"].to_numpy(),
        period_days,
    )
    return Fit(params, rfm.height, repeat.height)


def score(params: CustomerValueParams, rfm: pl.DataFrame, horizon_days: float) -> pl.DataFrame:
    """``rfm`` with the model's outputs for the next ``horizon_days`` appended."""
    outputs = predict(params, {c: rfm[c].to_numpy() for c in INPUTS}, horizon_days)
    return rfm.with_columns(pl.Series(name, values) for name, values in outputs.items())


def valid_predictions(scored: pl.DataFrame) -> tuple[bool, str]:
    """Finite, non-negative purchases and revenue; probability alive within [0, 1]."""
    purchases = scored["expected_purchases"].to_numpy()
    revenue = scored["expected_revenue"].to_numpy()
    alive = scored["probability_alive"].to_numpy()
    nan = int(np.isnan(purchases).sum() + np.isnan(revenue).sum() + np.isnan(alive).sum())
    bad = int((purchases < 0).sum() + (revenue < 0).sum() + ((alive < 0) | (alive > 1)).sum())
    if nan or bad:
        return False, f"{nan} NaN and {bad} out-of-range values over {scored.height} customers"
    return True, f"all {scored.height} customers have finite, in-range predictions"


def holdout_metrics(scored: pl.DataFrame) -> dict[str, float]:
    """Predicted against actual purchase days and revenue in the holdout window: totals, their
    ratio (aggregate calibration), per-customer MAE and correlation."""
    predicted = scored["expected_purchases"].to_numpy()
    actual = scored["actual_purchases"].to_numpy().astype(float)
    predicted_revenue = scored["expected_revenue"].to_numpy()
    actual_revenue = scored["actual_revenue"].to_numpy()

    def corr(x: np.ndarray, y: np.ndarray) -> float:
        return float(np.corrcoef(x, y)[0, 1]) if np.std(x) > 0 and np.std(y) > 0 else 0.0

    return {
        "customers": float(scored.height),
        "predicted_purchases": float(predicted.sum()),
        "actual_purchases": float(actual.sum()),
        "purchases_ratio": float(predicted.sum() / actual.sum()) if actual.sum() else float("nan"),
        "purchases_mae": float(np.abs(predicted - actual).mean()),
        "purchases_corr": corr(predicted, actual),
        "predicted_revenue": float(predicted_revenue.sum()),
        "actual_revenue": float(actual_revenue.sum()),
        "revenue_ratio": float(predicted_revenue.sum() / actual_revenue.sum())
        if actual_revenue.sum()
        else float("nan"),
        "revenue_corr": corr(predicted_revenue, actual_revenue),
    }


def by_frequency(scored: pl.DataFrame, cap: int = 7) -> pl.DataFrame:
    """Mean actual vs predicted holdout purchases by calibration-period repeat purchases
    (``cap`` = cap or more): the paper's conditional-expectations check."""
    return (
        scored.with_columns(pl.col("frequency").clip(0, cap).cast(pl.Int32).alias("repeats"))
        .group_by("repeats")
        .agg(
            pl.len().alias("customers"),
            pl.col("actual_purchases").mean().alias("actual"),
            pl.col("expected_purchases").mean().alias("predicted"),
        )
        .sort("repeats")
    )


def calibration_day(directory: Path, observed_until: datetime, holdout_days: int) -> date | None:
    """The newest snapshot day at least ``holdout_days`` before the end of the events (so its
    holdout's outcomes are all known), or ``None``."""
    target = observed_until - timedelta(days=holdout_days)
    days = [d for d in snapshots.snapshot_days(directory) if snapshot_instant(d) <= target]
    return max(days) if days else None


def with_outcomes(
    conn: duckdb.DuckDBPyConnection, rfm: pl.DataFrame, holdout_days: int
) -> pl.DataFrame:
    """``rfm`` with what each customer bought in the ``holdout_days`` after the snapshot:
    ``actual_purchases`` (purchase days) and ``actual_revenue``."""
    conn.register("clv_entities", rfm.select("customer_id", "event_timestamp").to_arrow())
    try:
        actual = pl.from_arrow(
            future_purchases(conn, "clv_entities", holdout_days).to_arrow_table()
        )
    finally:
        conn.unregister("clv_entities")
    return rfm.join(
        actual.select(
            "customer_id",
            pl.col("purchase_days").alias("actual_purchases"),
            pl.col("revenue").alias("actual_revenue"),
        ),
        on="customer_id",
    )
