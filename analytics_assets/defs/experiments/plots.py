"""One plot per experiment: each treatment's lift on the primary metric over the daily looks,
with its 95 % interval (valid at one pre-planned look) and the always-valid interval (valid at
every look: the one a verdict reads)."""

from __future__ import annotations

import polars as pl

from analytics_assets.lib.plotting import figure, png


def lift_over_time(looks: pl.DataFrame, experiment: str, metric: str, verdict: str) -> bytes:
    """``looks``: the experiment's rows of ``experiment_looks`` for ``metric``, every day."""
    plt, fig, axes = figure(width=8, height=4)
    ax = axes[0][0]
    treatments = looks.filter(~pl.col("is_control") & pl.col("lift").is_not_null()).sort("day")
    for variant, rows in treatments.group_by("variant", maintain_order=True):
        name = variant[0]
        day = rows["day"].to_list()
        base = rows["control_mean"]
        (line,) = ax.plot(day, (rows["lift"] * 100).to_list(), marker="o", ms=3, label=name)
        ax.fill_between(
            day, (rows["lift_low"] * 100).to_list(), (rows["lift_high"] * 100).to_list(),
            color=line.get_color(), alpha=0.25, label=f"{name}: 95 % interval",
        )  # fmt: skip
        ax.plot(day, (rows["seq_low"] / base * 100).to_list(), ls="--", color=line.get_color(),
                label=f"{name}: always-valid interval")  # fmt: skip
        ax.plot(day, (rows["seq_high"] / base * 100).to_list(), ls="--", color=line.get_color())
    ax.axhline(0, color="grey", lw=1)
    ax.set(
        title=f"{experiment}: lift in {metric} against control ({verdict})",
        xlabel="look (end of day, UTC)",
        ylabel=f"{metric} lift, %",
    )
    if treatments.height:
        ax.legend(fontsize=7, loc="best")
    else:
        ax.text(0.5, 0.5, "no comparison yet", ha="center", va="center", transform=ax.transAxes)
    fig.autofmt_xdate()
    return png(plt, fig)
