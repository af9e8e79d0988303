"""The five audit lenses on a small base whose answers were worked out by hand.

a: Jan 1 $10 and Jan 5 $20, Feb $15.   b: Jan $100, Mar $50.   c: Feb $5, Mar $5.   d: Mar $40.
"""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from analytics_assets.defs.analytics.audit import audit

JAN, FEB, MAR = date(2024, 1, 1), date(2024, 2, 1), date(2024, 3, 1)
PURCHASES = pl.DataFrame(
    {
        "customer_id": ["a", "a", "a", "b", "b", "c", "c", "d", "e"],
        "day": [
            date(2024, 1, 1),
            date(2024, 1, 5),
            date(2024, 2, 3),
            date(2024, 1, 9),
            date(2024, 3, 9),
            date(2024, 2, 2),
            date(2024, 3, 3),
            date(2024, 3, 4),
            date(2024, 3, 5),
        ],
        "orders": [1, 1, 1, 1, 1, 1, 1, 1, 0],
        "revenue": [10.0, 20.0, 15.0, 100.0, 50.0, 5.0, 5.0, 40.0, 0.0],
    }
)


@pytest.fixture(scope="module")
def result():
    return audit(PURCHASES, "month")


def rows(frame: pl.DataFrame, *columns: str) -> list[tuple]:
    return frame.select(columns).rows()


def test_lens1_single_period_summary(result) -> None:
    assert rows(result.summary, "period", "customers", "orders", "revenue") == [
        (JAN, 2, 3, 130.0),
        (FEB, 2, 2, 20.0),
        (MAR, 3, 3, 95.0),
    ]
    jan = result.summary.row(0, named=True)
    assert jan["average_order_value"] == pytest.approx(130 / 3)
    assert jan["top10_share"] == pytest.approx(100 / 130)
    assert result.summary["top20_share"][2] == pytest.approx(50 / 95)
    assert rows(
        result.purchase_distribution.filter(pl.col("period") == JAN), "orders_bucket", "customers"
    ) == [(1, 1), (2, 1)]
    assert rows(result.revenue_deciles.filter(pl.col("period") == JAN), "decile", "revenue") == [
        (1, 100.0),
        (6, 30.0),
    ]
    jan_curve = result.lorenz.filter(pl.col("period") == JAN)
    assert rows(jan_curve, "customer_share", "revenue_share") == [(0.5, 30 / 130), (1.0, 1.0)]


def test_lens2_period_comparison_and_bridge(result) -> None:
    got = rows(
        result.period_comparison,
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
    assert got == [
        (FEB, 2, 1, 1, 1, 0, 1, 130.0, 100.0, -15.0, 0.0, 5.0, 20.0),
        (MAR, 3, 1, 2, 1, 1, 1, 20.0, 15.0, 0.0, 50.0, 40.0, 95.0),
    ]
    bridge = result.period_comparison.select(
        pl.col("revenue_previous")
        - pl.col("revenue_lost")
        + pl.col("retained_change")
        + pl.col("revenue_reactivated")
        + pl.col("revenue_new")
        - pl.col("revenue")
    )
    assert bridge.to_series().abs().max() < 1e-9


def test_lens3_one_cohort(result) -> None:
    assert rows(
        result.cohort_evolution, "period", "cohort_size", "active", "active_share", "revenue"
    ) == [(JAN, 2, 2, 1.0, 130.0), (FEB, 2, 1, 0.5, 15.0), (MAR, 2, 1, 0.5, 50.0)]


def test_lens4_cohorts_compared(result) -> None:
    jan = result.cohort_comparison.filter(pl.col("cohort") == JAN)
    assert rows(jan, "periods_since", "retention", "cumulative_revenue_per_member") == [
        (0, 1.0, 65.0),
        (1, 0.5, 72.5),
        (2, 0.5, 97.5),
    ]
    assert rows(
        result.cohort_comparison.filter(pl.col("cohort") == FEB), "periods_since", "retention"
    ) == [(0, 1.0), (1, 1.0)]


def test_lens5_layer_cake(result) -> None:
    assert rows(result.layer_cake, "period", "cohort", "revenue") == [
        (JAN, JAN, 130.0),
        (FEB, JAN, 15.0),
        (FEB, FEB, 5.0),
        (MAR, JAN, 50.0),
        (MAR, FEB, 5.0),
        (MAR, MAR, 40.0),
    ]


def test_unknown_period_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="period must be one of"):
        audit(PURCHASES, "fortnight")


def test_a_quiet_period_breaks_retention() -> None:
    """By hand: a buys in January and March, b in January only, nobody in February. February
    is a period of the bridge (both lapse), March's a is reactivated, never retained; a's
    March is two periods after its cohort."""
    quiet = pl.DataFrame(
        {
            "customer_id": ["a", "b", "a"],
            "day": [date(2024, 1, 2), date(2024, 1, 3), date(2024, 3, 4)],
            "orders": [1, 1, 1],
            "revenue": [10.0, 20.0, 7.0],
        }
    )
    found = audit(quiet, "month")
    columns = ("period", "customers", "retained", "reactivated", "lapsed", "revenue_lost")
    assert rows(found.period_comparison, *columns) == [
        (FEB, 0, 0, 0, 2, 30.0),
        (MAR, 1, 0, 1, 0, 0.0),
    ]
    bridge = found.period_comparison.with_columns(
        check=pl.col("revenue_previous")
        - pl.col("revenue_lost")
        + pl.col("retained_change")
        + pl.col("revenue_reactivated")
        + pl.col("revenue_new")
    )
    assert bridge["check"].to_list() == pytest.approx(bridge["revenue"].to_list())
    a = found.cohort_comparison.filter(pl.col("cohort") == JAN)
    assert rows(a, "periods_since", "active", "retention") == [(0, 2, 1.0), (2, 1, 0.5)]
