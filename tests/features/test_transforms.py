"""Snapshots and labels on the hand-made history: values by hand, and no leakage either way."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from analytics_assets import settings
from analytics_assets.defs.features import offline, transforms
from analytics_assets.lib import outcomes, snapshots
from analytics_assets.lib.days import day_range, snapshot_instant
from tests.analytics.conftest import ingest
from tests.conftest import event, purchase
from tests.features.conftest import FIRST, LAST, roll_up, warehouse

CREATED = datetime(2024, 4, 1, tzinfo=UTC)


def snapshot_frame(first: date = FIRST, last: date = LAST) -> pl.DataFrame:
    with warehouse() as conn:
        days = day_range(first, last + timedelta(days=1))
        rel = transforms.customer_snapshots(conn, days, CREATED)
        return rel.pl().sort("customer_id", "as_of")


def row(frame: pl.DataFrame, customer: str, as_of: date) -> dict:
    (found,) = frame.filter(
        (pl.col("customer_id") == customer) & (pl.col("as_of") == as_of)
    ).to_dicts()
    return found


def test_purchase_behaviour_by_hand(history) -> None:
    frame = snapshot_frame()
    mar3 = row(frame, "a", date(2024, 3, 3))
    assert mar3["event_timestamp"] == datetime(2024, 3, 4, tzinfo=UTC)
    assert {
        k: mar3[k]
        for k in snapshots.FEATURE_COLUMNS
        if "purchase" in k
        or k
        in (
            "frequency",
            "recency_days",
            "tenure_days",
            "monetary_value",
            "orders",
            "average_order_value",
            "total_revenue",
        )
    } == {
        "frequency": 1,  # purchase days Mar 1 and Mar 3
        "recency_days": 2.0,
        "tenure_days": 2.0,
        "monetary_value": 15.0,  # the repeat day's $10 + $5
        "orders": 3,
        "average_order_value": 15.0,
        "total_revenue": 45.0,
        "days_since_last_purchase": 0.0,
    }
    mar10 = row(frame, "a", date(2024, 3, 10))
    assert (mar10["tenure_days"], mar10["days_since_last_purchase"]) == (9.0, 7.0)
    # b has browsed but not bought until Mar 9
    mar8 = row(frame, "b", date(2024, 3, 8))
    assert (mar8["orders"], mar8["frequency"], mar8["monetary_value"]) == (0, 0, 0.0)
    assert mar8["tenure_days"] is None and mar8["days_since_last_purchase"] is None


def test_engagement_by_hand(history) -> None:
    frame = snapshot_frame()
    mar5 = row(frame, "a", date(2024, 3, 5))
    assert (mar5["sessions_7d"], mar5["sessions_28d"], mar5["page_views_7d"]) == (3, 3, 2)
    assert mar5["cart_abandonment_rate_28d"] == 1.0  # one cart session, no purchase in it
    assert mar5["days_since_last_session"] == 0.0
    assert mar5["mobile_share_28d"] == pytest.approx(2 / 3)
    assert mar5["desktop_share_28d"] == pytest.approx(1 / 3)
    # 7 days later the Mar 1 session has left the 7-day window
    mar8 = row(frame, "a", date(2024, 3, 8))
    assert (mar8["sessions_7d"], mar8["sessions_28d"], mar8["days_since_last_session"]) == (
        2,
        3,
        3.0,
    )
    # c does not exist before its first event
    assert frame.filter(pl.col("customer_id") == "c")["as_of"].min() == date(2024, 3, 8)


def test_a_snapshot_never_sees_a_later_event(history, resources) -> None:
    before = snapshot_frame(FIRST, date(2024, 3, 6))
    # events from the very first instant after Mar 6 on, for old and new customers
    ingest(
        settings.warehouse_path(),
        "late",
        [
            purchase(20, 99.0, customer_id="a", occurred_at="2024-03-07T00:00:00Z"),
            event(21, customer_id="b", occurred_at="2024-03-07T00:00:00Z"),
            event(22, customer_id="z", occurred_at="2024-03-07T00:00:01Z"),
        ],
    )
    roll_up(resources)
    after = snapshot_frame(FIRST, date(2024, 3, 6))
    assert before.drop("created_at").equals(after.drop("created_at"))
    assert snapshot_frame()["customer_id"].unique().to_list().count("z") == 1


def test_days_are_replaced_not_appended(history, tmp_path) -> None:
    directory = tmp_path / "snapshots"
    with warehouse() as conn:
        for _ in range(2):
            days = day_range(FIRST, LAST)
            rel = transforms.customer_snapshots(conn, days, CREATED)
            written = snapshots.replace_days(rel, directory, days)
    assert written[FIRST.isoformat()] == 1 and written["2024-03-09"] == 3
    assert pl.read_parquet(directory / "*.parquet").height == sum(written.values())
    assert not list(directory.glob(".staging-*"))


def test_labels_start_exactly_where_features_end(history) -> None:
    t = snapshot_instant(date(2024, 3, 1))  # Mar 2 00:00
    entities = (
        pl.DataFrame(
            {"customer_id": ["a", "a", "b"], "event_timestamp": [t, t + timedelta(days=2), t]}
        )
        .with_columns(pl.col("event_timestamp").dt.replace_time_zone("UTC"))
        .to_arrow()
    )
    with warehouse() as conn:
        conn.register("entities", entities)
        got = outcomes.labels(conn, "entities", churn_days=2, value_days=8).pl()
    got = got.sort("customer_id", "event_timestamp").to_dicts()
    # a at Mar 2: Mar 3's purchases are within 2 days; value counts them, not Mar 1's $30
    assert (got[0]["churned"], got[0]["future_value"]) == (False, 15.0)
    # a at Mar 4: nothing in the next 2 days (or 8)
    assert (got[1]["churned"], got[1]["future_value"]) == (True, 0.0)
    # b at Mar 2: Mar 9 is after the 2-day churn window but inside the 8-day value window
    assert (got[2]["churned"], got[2]["future_value"]) == (True, 20.0)


def test_only_matured_as_of_days(tmp_path) -> None:
    for day in range(1, 31):
        (tmp_path / f"2024-03-{day:02d}.parquet").touch()
    observed_until = datetime(2024, 3, 31, tzinfo=UTC)
    chosen = offline.matured_as_of_days(tmp_path, observed_until, horizon_days=10, every_days=7)
    # the newest as-of day whose 10-day window ends by Mar 31 is Mar 20 (valid from Mar 21)
    assert chosen == [date(2024, 3, 6), date(2024, 3, 13), date(2024, 3, 20)]
    assert offline.matured_as_of_days(tmp_path, observed_until, 60, 7) == []
