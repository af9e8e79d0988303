"""Plots of the audit lenses as PNG bytes (matplotlib is imported only when drawing)."""

from __future__ import annotations

import polars as pl

from analytics_assets.defs.analytics.audit import Audit
from analytics_assets.lib.plotting import figure, png


def single_period(result: Audit) -> bytes:
    """Lens 1 for the latest period: purchase distribution, revenue deciles, Lorenz curve."""
    period = result.summary["period"].max()
    plt, fig, axes = figure(1, 3, width=13)
    dist = result.purchase_distribution.filter(pl.col("period") == period)
    axes[0][0].bar(dist["orders_bucket"].to_list(), dist["customers"].to_list())
    axes[0][0].set(
        title=f"Orders per customer, {period}", xlabel="orders (10 = 10+)", ylabel="customers"
    )
    deciles = result.revenue_deciles.filter(pl.col("period") == period)
    axes[0][1].bar(deciles["decile"].to_list(), (deciles["share"] * 100).to_list())
    axes[0][1].set(title="Revenue share by decile", xlabel="decile (1 = top)", ylabel="% revenue")
    curve = result.lorenz.filter(pl.col("period") == period)
    axes[0][2].plot([0, *curve["customer_share"].to_list()], [0, *curve["revenue_share"].to_list()])
    axes[0][2].plot([0, 1], [0, 1], linestyle="--", color="grey")
    axes[0][2].set(title="Lorenz curve", xlabel="share of customers", ylabel="share of revenue")
    return png(plt, fig)


def period_comparison(result: Audit) -> bytes:
    """Lens 2: new, retained, reactivated and lapsed customers per period."""
    frame = result.period_comparison
    plt, fig, axes = figure(width=9)
    ax = axes[0][0]
    x = frame["period"].cast(pl.String).to_list()
    ax.bar(x, frame["new"].to_list(), label="new")
    ax.bar(x, frame["retained"].to_list(), bottom=frame["new"].to_list(), label="retained")
    stacked = (frame["new"] + frame["retained"]).to_list()
    ax.bar(x, frame["reactivated"].to_list(), bottom=stacked, label="reactivated")
    ax.bar(x, [-n for n in frame["lapsed"].to_list()], label="lapsed")
    ax.set(title="Customers: period over period", ylabel="customers")
    ax.tick_params(axis="x", labelrotation=60)
    ax.legend()
    return png(plt, fig)


def cohort_evolution(result: Audit) -> bytes:
    """Lens 3: the share of one cohort active, and its revenue, period by period."""
    frame = result.cohort_evolution
    plt, fig, axes = figure(width=9)
    ax = axes[0][0]
    x = frame["period"].cast(pl.String).to_list()
    ax.bar(x, frame["revenue"].to_list(), color="tab:blue", alpha=0.6)
    ax.set(title=f"Cohort {frame['cohort'][0]} over time", ylabel="revenue")
    ax.tick_params(axis="x", labelrotation=60)
    share = ax.twinx()
    share.plot(x, (frame["active_share"] * 100).to_list(), color="tab:red", marker="o")
    share.set(ylabel="% of cohort active")
    return png(plt, fig)


def cohort_comparison(result: Audit) -> bytes:
    """Lens 4: retention curves of every cohort by periods since acquisition."""
    plt, fig, axes = figure(width=9)
    ax = axes[0][0]
    for (cohort,), part in result.cohort_comparison.group_by("cohort", maintain_order=True):
        ax.plot(
            part["periods_since"].to_list(), (part["retention"] * 100).to_list(), label=str(cohort)
        )
    ax.set(title="Retention by cohort", xlabel="periods since acquisition", ylabel="% active")
    if result.cohort_comparison["cohort"].n_unique() <= 12:
        ax.legend(fontsize="small")
    return png(plt, fig)


def layer_cake(result: Audit) -> bytes:
    """Lens 5: revenue per period stacked by acquisition cohort (the C3 chart)."""
    wide = (
        result.layer_cake.pivot(on="cohort", index="period", values="revenue")
        .sort("period")
        .fill_null(0)
    )
    plt, fig, axes = figure(width=9)
    ax = axes[0][0]
    cohorts = wide.columns[1:]
    ax.stackplot(range(wide.height), *[wide[c].to_list() for c in cohorts], labels=cohorts)
    ax.set_xticks(range(wide.height), wide["period"].cast(pl.String).to_list(), rotation=60)
    ax.set(title="Revenue by acquisition cohort", ylabel="revenue")
    if len(cohorts) <= 12:
        ax.legend(fontsize="small", loc="upper left")
    return png(plt, fig)


def no_purchases(name: str) -> bytes:
    """What a lens shows before any customer has purchased (the audit has no period yet)."""
    plt, fig, axes = figure(width=9)
    ax = axes[0][0]
    ax.text(0.5, 0.5, "no purchases yet", ha="center", va="center", fontsize=16, color="grey")
    ax.set(title=name.replace("_", " "), xticks=[], yticks=[])
    return png(plt, fig)


LENSES = {
    "lens1_single_period": single_period,
    "lens2_period_comparison": period_comparison,
    "lens3_cohort_evolution": cohort_evolution,
    "lens4_cohort_comparison": cohort_comparison,
    "lens5_layer_cake": layer_cake,
}
