"""Sessions, customer-day and KPI windows checked against values computed by hand."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from analytics_assets.defs.analytics import transforms
from analytics_assets.lib import lakehouse
from tests.analytics.conftest import D1, D2, D3, RECORDS, ingest
from tests.conftest import event, purchase


@pytest.fixture
def conn(analytics_home: Path) -> duckdb.DuckDBPyConnection:
    ingest(analytics_home / "w", "fixture", RECORDS)
    return lakehouse.connect()


def test_sessions_split_on_inactivity_and_belong_to_their_start_day(conn) -> None:
    got = transforms.sessions(conn, D1, D2).order("customer_id, session_start")
    assert got.select(
        "customer_id, day, events, page_views, carts, purchases, revenue, duration_s"
    ).fetchall() == [
        ("a", D1, 3, 1, 1, 1, 30.0, 1200.0),
        ("a", D1, 1, 1, 0, 0, 0.0, 0.0),
        ("b", D1, 2, 1, 0, 1, 5.0, 1200.0),
    ]
    assert transforms.sessions(conn, D2, D3).fetchall() == []


def test_gap_is_configurable(conn) -> None:
    assert len(transforms.sessions(conn, D1, D2, gap_minutes=60).fetchall()) == 2


def test_session_ids_are_stable(conn) -> None:
    first = transforms.sessions(conn, D1, D2).select("session_id").order("session_id").fetchall()
    again = transforms.sessions(conn, D1, D3).select("session_id").order("session_id").fetchall()
    assert first == again and len({r[0] for r in first}) == 3


def test_customer_daily(conn) -> None:
    got = transforms.customer_daily(conn, D1, D3).order("customer_id, day")
    assert got.select("customer_id, day, events, purchases, units, revenue").fetchall() == [
        ("a", D1, 4, 1, 2, 30.0),
        ("b", D1, 1, 0, 0, 0.0),
        ("b", D2, 1, 1, 1, 5.0),
    ]


def test_daily_kpis(conn) -> None:
    transforms.sessions(conn, D1, D3).create("sessions")
    got = transforms.kpis(conn, D1, D3, "day").fetchall()
    assert got == [
        (datetime(2024, 3, 1), 5, 2, 3, 1, 30.0, pytest.approx(2 / 3), 30.0),
        (datetime(2024, 3, 2), 1, 1, 0, 1, 5.0, None, 5.0),
    ]


def test_hourly_kpis(conn) -> None:
    transforms.sessions(conn, D1, D2).create("sessions")
    got = transforms.kpis(conn, D1, D2, "hour").fetchall()
    assert [(r[0].hour, r[1], r[3], r[4]) for r in got] == [
        (10, 3, 1, 1),
        (11, 1, 1, 0),
        (23, 1, 1, 0),
    ]
    with pytest.raises(ValueError, match="grain"):
        transforms.kpis(conn, D1, D2, "week")
    with pytest.raises(ValueError, match="table name"):
        transforms.kpis(conn, D1, D2, "day", sessions_table="sessions; DROP TABLE events")


def test_late_events_reach_back_one_day() -> None:
    assert transforms.session_days_affected([D2, D3]) == [D1, D2, D3]


def test_conversion_is_a_share_of_sessions(analytics_home) -> None:
    """By hand: three sessions start on D1, one with two purchases ($10 + $20), one with
    one ($6), one with none: 2 of 3 sessions converted (never purchases / sessions = 1.0),
    3 purchases, average order value $36 / 3."""
    records = [
        event(1, customer_id="x", occurred_at="2024-03-01T09:00:00Z"),
        purchase(2, 10.0, customer_id="x", occurred_at="2024-03-01T09:05:00Z"),
        purchase(3, 20.0, customer_id="x", occurred_at="2024-03-01T09:10:00Z"),
        purchase(4, 6.0, customer_id="y", occurred_at="2024-03-01T12:00:00Z"),
        event(5, customer_id="z", occurred_at="2024-03-01T15:00:00Z"),
    ]
    ingest(analytics_home / "w", "two-purchases", records)
    with lakehouse.connect() as conn:
        transforms.sessions(conn, D1, D2).create("sessions")
        (row,) = transforms.kpis(conn, D1, D2, "day").fetchall()
        hourly = transforms.kpis(conn, D1, D2, "hour").fetchall()
    assert row == (datetime(2024, 3, 1), 5, 3, 3, 3, 36.0, pytest.approx(2 / 3), 12.0)
    assert [(r[0].hour, r[3], r[6]) for r in hourly] == [(9, 1, 1.0), (12, 1, 1.0), (15, 1, 0.0)]
    assert all(0 <= r[6] <= 1 for r in hourly)
