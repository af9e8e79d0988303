"""The customer-base audit (Fader, Hardie and Ross, "The Customer-Base Audit", 2022).

Pure polars over purchases: one row per customer and day with ``orders`` and ``revenue``. A
customer's cohort is the period of their first purchase. Every lens is one table.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

PERIODS = {"month": "1mo", "quarter": "1q", "year": "1y"}


@dataclass
class Audit:
    summary: pl.DataFrame
    purchase_distribution: pl.DataFrame
    revenue_deciles: pl.DataFrame
    lorenz: pl.DataFrame
    period_comparison: pl.DataFrame
    cohort_evolution: pl.DataFrame
    cohort_comparison: pl.DataFrame
    layer_cake: pl.DataFrame

    def tables(self) -> dict[str, pl.DataFrame]:
        return {f"audit_{name}": frame for name, frame in vars(self).items()}


def by_period(purchases: pl.DataFrame, period: str) -> pl.DataFrame:
    """Orders and revenue per customer per period, with each customer's cohort."""
    if period not in PERIODS:
        raise ValueError(f"period must be one of {sorted(PERIODS)}, not {period!r}")
    return (
        purchases.with_columns(pl.col("day").dt.truncate(PERIODS[period]).alias("period"))
        .group_by("customer_id", "period")
        .agg(pl.col("orders").sum(), pl.col("revenue").sum())
        .with_columns(pl.col("period").min().over("customer_id").alias("cohort"))
        .sort("period", "customer_id")
    )


def _ranked(active: pl.DataFrame) -> pl.DataFrame:
    """Customers of each period ranked by revenue, highest first (ties by id, stable)."""
    return active.sort(
        ["period", "revenue", "customer_id"], descending=[False, True, False]
    ).with_columns(
        pl.int_range(pl.len()).over("period").alias("rank"),
        pl.len().over("period").alias("n"),
    )


def _top_share(share: float) -> pl.Expr:
    """Share of the period's revenue from its top ``share`` of customers (rounded up)."""
    top = pl.col("rank") < (pl.col("n") * share).ceil()
    return pl.col("revenue").filter(top).sum() / pl.col("revenue").sum()


def summary(active: pl.DataFrame) -> pl.DataFrame:
    """Lens 1: customers, orders, revenue, average order value and concentration per period."""
    ranked = _ranked(active)
    return (
        ranked.group_by("period")
        .agg(
            pl.len().alias("customers"),
            pl.col("orders").sum(),
            pl.col("revenue").sum(),
            _top_share(0.1).alias("top10_share"),
            _top_share(0.2).alias("top20_share"),
        )
        .with_columns(
            (pl.col("revenue") / pl.col("orders")).alias("average_order_value"),
            (pl.col("orders") / pl.col("customers")).alias("orders_per_customer"),
            (pl.col("revenue") / pl.col("customers")).alias("revenue_per_customer"),
        )
        .sort("period")
    )


def purchase_distribution(active: pl.DataFrame, cap: int = 10) -> pl.DataFrame:
    """Lens 1: how many customers bought 1, 2, ... ``cap``+ times in each period."""
    return (
        active.with_columns(pl.col("orders").clip(upper_bound=cap).alias("orders_bucket"))
        .group_by("period", "orders_bucket")
        .agg(pl.len().alias("customers"))
        .sort("period", "orders_bucket")
    )


def revenue_deciles(active: pl.DataFrame) -> pl.DataFrame:
    """Lens 1: revenue by customer decile (1 = the top tenth) per period."""
    return (
        _ranked(active)
        .with_columns((pl.col("rank") * 10 // pl.col("n") + 1).alias("decile"))
        .group_by("period", "decile")
        .agg(pl.len().alias("customers"), pl.col("revenue").sum())
        .with_columns((pl.col("revenue") / pl.col("revenue").sum().over("period")).alias("share"))
        .sort("period", "decile")
    )


def lorenz(active: pl.DataFrame) -> pl.DataFrame:
    """Lens 1: the Lorenz curve per period (customers poorest first, cumulative shares)."""
    ordered = active.sort(["period", "revenue", "customer_id"])
    return ordered.select(
        "period",
        ((pl.int_range(pl.len()).over("period") + 1) / pl.len().over("period")).alias(
            "customer_share"
        ),
        (pl.col("revenue").cum_sum().over("period") / pl.col("revenue").sum().over("period")).alias(
            "revenue_share"
        ),
    )


def calendar(active: pl.DataFrame, period: str) -> pl.DataFrame:
    """Every period from the first active one to the last, quiet ones included, numbered: the
    period before another is the calendar's, never merely the last one with purchases (a
    customer of March is not retained in May across a quiet April)."""
    if active.is_empty():
        return pl.DataFrame(schema={"index": pl.UInt32, "period": pl.Date})
    every = pl.date_range(
        active["period"].min(), active["period"].max(), PERIODS[period], eager=True
    )
    return every.alias("period").to_frame().with_row_index("index")


def period_comparison(active: pl.DataFrame, period: str = "month") -> pl.DataFrame:
    """Lens 2: new, repeat, retained, reactivated and lapsed customers, and the revenue bridge
    ``revenue = previous - lost + retained_change + reactivated + new`` per calendar period
    (a quiet period's customers are all lapsed, the next one's reactivated or new)."""
    periods = calendar(active, period)
    indexed = active.join(periods, on="period")
    previous = indexed.select(
        "customer_id", (pl.col("index") + 1).alias("index"), pl.col("revenue").alias("prev_revenue")
    )
    current = indexed.join(previous, on=["customer_id", "index"], how="left")
    lapsed = previous.join(indexed, on=["customer_id", "index"], how="anti")
    now = current.group_by("index").agg(
        pl.len().alias("customers"),
        (pl.col("cohort") == pl.col("period")).sum().alias("new"),
        (pl.col("cohort") < pl.col("period")).sum().alias("repeat"),
        pl.col("prev_revenue").is_not_null().sum().alias("retained"),
        ((pl.col("cohort") < pl.col("period")) & pl.col("prev_revenue").is_null())
        .sum()
        .alias("reactivated"),
        pl.col("revenue").sum().alias("revenue"),
        pl.col("revenue").filter(pl.col("cohort") == pl.col("period")).sum().alias("revenue_new"),
        (pl.col("revenue") - pl.col("prev_revenue"))
        .filter(pl.col("prev_revenue").is_not_null())
        .sum()
        .alias("retained_change"),
        pl.col("revenue")
        .filter((pl.col("cohort") < pl.col("period")) & pl.col("prev_revenue").is_null())
        .sum()
        .alias("revenue_reactivated"),
    )
    gone = lapsed.group_by("index").agg(
        pl.len().alias("lapsed"), pl.col("prev_revenue").sum().alias("revenue_lost")
    )
    before = indexed.group_by("index").agg(pl.col("revenue").sum().alias("revenue_previous"))
    before = before.with_columns(pl.col("index") + 1)
    return (
        periods.join(now, on="index", how="left")
        .join(gone, on="index", how="left")
        .join(before, on="index", how="left")
        .filter(pl.col("index") > 0)
        .with_columns(
            pl.col(
                "^(customers|new|repeat|retained|reactivated|lapsed|revenue_lost|revenue.*)$"
            ).fill_null(0),
            pl.col("retained_change").fill_null(0.0),
        )
        .select(
            "period",
            "customers",
            "new",
            "repeat",
            "retained",
            "reactivated",
            "lapsed",
            "revenue_previous",
            "revenue_lost",
            "retained_change",
            "revenue_reactivated",
            "revenue_new",
            "revenue",
        )
        .sort("period")
    )


def cohort_evolution(active: pl.DataFrame, cohort=None) -> pl.DataFrame:
    """Lens 3: one cohort (default: the first) period by period."""
    chosen = cohort if cohort is not None else active["cohort"].min()
    members = active.filter(pl.col("cohort") == chosen)
    size = members["customer_id"].n_unique()
    return (
        members.group_by("period")
        .agg(pl.len().alias("active"), pl.col("orders").sum(), pl.col("revenue").sum())
        .with_columns(
            pl.lit(chosen).alias("cohort"),
            pl.lit(size).alias("cohort_size"),
            (pl.col("active") / size).alias("active_share"),
            (pl.col("revenue") / size).alias("revenue_per_member"),
        )
        .select(
            "cohort",
            "period",
            "cohort_size",
            "active",
            "active_share",
            "orders",
            "revenue",
            "revenue_per_member",
        )
        .sort("period")
    )


def cohort_comparison(active: pl.DataFrame, period: str = "month") -> pl.DataFrame:
    """Lens 4: every cohort by calendar periods since acquisition (quiet ones have no row):
    retention and revenue per member."""
    periods = calendar(active, period)
    indexed = active.join(periods, on="period").join(
        periods.rename({"period": "cohort", "index": "cohort_index"}), on="cohort"
    )
    sizes = indexed.group_by("cohort").agg(pl.col("customer_id").n_unique().alias("cohort_size"))
    return (
        indexed.with_columns((pl.col("index") - pl.col("cohort_index")).alias("periods_since"))
        .group_by("cohort", "periods_since")
        .agg(pl.len().alias("active"), pl.col("revenue").sum())
        .join(sizes, on="cohort")
        .sort("cohort", "periods_since")
        .with_columns(
            (pl.col("active") / pl.col("cohort_size")).alias("retention"),
            (pl.col("revenue") / pl.col("cohort_size")).alias("revenue_per_member"),
            (pl.col("revenue").cum_sum().over("cohort") / pl.col("cohort_size")).alias(
                "cumulative_revenue_per_member"
            ),
        )
    )


def layer_cake(active: pl.DataFrame) -> pl.DataFrame:
    """Lens 5: each period's revenue and customers split by acquisition cohort (the C3)."""
    return (
        active.group_by("period", "cohort")
        .agg(pl.len().alias("customers"), pl.col("revenue").sum())
        .sort("period", "cohort")
    )


def audit(purchases: pl.DataFrame, period: str = "month") -> Audit:
    """All five lenses from ``customer_id, day, orders, revenue`` purchase rows."""
    active = by_period(purchases.filter(pl.col("orders") > 0), period)
    return Audit(
        summary=summary(active),
        purchase_distribution=purchase_distribution(active),
        revenue_deciles=revenue_deciles(active),
        lorenz=lorenz(active),
        period_comparison=period_comparison(active, period),
        cohort_evolution=cohort_evolution(active),
        cohort_comparison=cohort_comparison(active, period),
        layer_cake=layer_cake(active),
    )
