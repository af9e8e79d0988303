"""A synthetic point-in-time training set (the columns ``training_set`` writes), for tests and
benchmarks of the models without running the whole pipeline first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl


def synthetic_training_set(
    customers: int = 1_500, as_of_days: int = 8, seed: int = 7
) -> pl.DataFrame:
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
    return pl.concat(frames)
