"""Model plots as PNG bytes: calibration, decile lift, and CLV conditional expectations."""

from __future__ import annotations

import numpy as np
import polars as pl

from analytics_assets.lib.plotting import figure, png


def lift(table: pl.DataFrame) -> bytes:
    """Churn rate per risk decile against the overall rate."""
    plt, fig, axes = figure(width=7)
    ax = axes[0][0]
    ax.bar(table["decile"].to_list(), table["churn_rate"].to_list(), label="observed")
    ax.plot(
        table["decile"].to_list(),
        table["mean_predicted"].to_list(),
        "o-",
        color="C1",
        label="predicted",
    )
    ax.set(title="Churn by risk decile (1 = riskiest)", xlabel="decile", ylabel="churn rate")
    ax.set_xticks(range(1, 11))
    ax.legend()
    return png(plt, fig)


def conditional_expectations(table: pl.DataFrame, holdout_days: int) -> bytes:
    """Mean holdout purchases, actual vs predicted, by calibration repeat purchases."""
    plt, fig, axes = figure(width=7)
    ax = axes[0][0]
    x = np.arange(table.height)
    ax.bar(x - 0.2, table["actual"].to_list(), width=0.4, label="actual")
    ax.bar(x + 0.2, table["predicted"].to_list(), width=0.4, label="BG/NBD")
    labels = [str(v) for v in table["repeats"].to_list()]
    labels[-1] = labels[-1] + "+"
    ax.set_xticks(x, labels)
    ax.set(
        title=f"Purchases in the next {holdout_days} days",
        xlabel="repeat purchases in calibration",
        ylabel="mean purchases per customer",
    )
    ax.legend()
    return png(plt, fig)
