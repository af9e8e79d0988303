"""Sessions, customer-day and KPI windows checked against values computed by hand."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import duckdb
import pytest

from analytics_assets.defs.analytics import transforms
from analytics_assets.defs.ingest.batch import ingest_file
from tests.conftest import event, jsonl, purchase

D1, D2, D3 = date(2024, 3, 1), date(2024, 3, 2), date(2024, 3, 3)


@pytest.fixture
def conn(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    """Customer a: three events 10:00-10:20 (one session, a $30 purchase), then 11:00 after a
    40-minute gap (a second session). Customer b: 23:50 on D1 and a $5 purchase at 00:10 on D2,
    one session across midnight that belongs to D1."""
    records = [
        event(1, customer_id="a", occurred_at="2024-03-01T10:00:00Z", device="mobile"),
        event(2, customer_id="a", event_type="add_to_cart", occurred_at="2024-03-01T10:10:00Z"),
        purchase(3, 30.0, customer_id="a", occurred_at="2024-03-01T10:20:00Z", quantity=2),
        event(4, customer_id="a", occurred_at="2024-03-01T11:00:00Z", device="desktop"),
        event(5, customer_id="b", occurred_at="2024-03-01T23:50:00Z", device="tablet"),
        purchase(6, 5.0, customer_id="b", occurred_at="2024-03-02T00:10:00Z", device="tablet"),
    ]
    path = tmp_path / "fixture.jsonl"
    path.write_bytes(jsonl(records))
    connection = duckdb.connect(str(tmp_path / "w.duckdb"))
    assert ingest_file(connection, path, "fixture").result.clean == 6
    return connection


def rows(relation: duckdb.DuckDBPyRelation, columns: str) -> list[tuple]:
    return relation.select(columns).order(columns.split(",")[0]).fetchall()


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
        (datetime(2024, 3, 1), 5, 2, 3, 1, 30.0, pytest.approx(1 / 3), 30.0),
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
