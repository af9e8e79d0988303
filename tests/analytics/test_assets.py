"""The analytics assets materialized for real over day ranges, re-run, and fed late data."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from analytics_assets import settings
from analytics_assets.defs.analytics import checks
from analytics_assets.defs.analytics.assets import customer_daily, kpis_daily, kpis_hourly, sessions
from analytics_assets.lib import lakehouse
from tests.analytics.conftest import D1, RECORDS, ingest
from tests.conftest import purchase

ASSETS = [sessions, customer_daily, kpis_hourly, kpis_daily]
CHECKS = [
    checks.customer_daily_reconciles,
    checks.sessions_well_formed,
    checks.kpis_daily_reconciles,
]
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def build(resources, instance, first: str, last: str):
    return dg.materialize(
        [*ASSETS, *CHECKS],
        resources={"warehouse": resources["warehouse"]},
        instance=instance,
        tags={RANGE_START: first, RANGE_END: last},
    )


def query(sql: str) -> list[tuple]:
    with lakehouse.connect(read_only=True) as conn:
        return conn.execute(sql).fetchall()


def snapshot() -> dict[str, list[tuple]]:
    return {
        "sessions": query("SELECT * FROM sessions ORDER BY session_id"),
        "customer_daily": query("SELECT * FROM customer_daily ORDER BY ALL"),
        "kpis_daily": query("SELECT * FROM kpis_daily ORDER BY ALL"),
        "kpis_hourly": query("SELECT * FROM kpis_hourly ORDER BY ALL"),
    }


def test_range_run_builds_every_table(resources, instance) -> None:
    ingest(settings.warehouse_path(), "b1", RECORDS)
    result = build(resources, instance, "2024-03-01", "2024-03-02")
    assert result.success
    assert {e.check_name: e.passed for e in result.get_asset_check_evaluations()} == {
        "customer_daily_reconciles": True,
        "sessions_well_formed": True,
        "kpis_daily_reconciles": True,
        "data_files_present": True,
    }
    # each reconciliation read the events snapshot its table was built from
    pinned = {
        e.check_name: e.metadata["events_snapshot"].value
        for e in result.get_asset_check_evaluations()
        if "events_snapshot" in e.metadata
    }
    assert set(pinned) == {
        "customer_daily_reconciles",
        "sessions_well_formed",
        "kpis_daily_reconciles",
    }
    assert all(isinstance(v, int) for v in pinned.values()), pinned
    assert query("SELECT customer_id, day, events, revenue FROM sessions ORDER BY ALL") == [
        ("a", D1, 1, 0.0),
        ("a", D1, 3, 30.0),
        ("b", D1, 2, 5.0),
    ]
    assert query("SELECT sum(revenue), sum(purchases) FROM customer_daily") == [(35.0, 2)]
    assert query("SELECT sum(revenue), sum(sessions) FROM kpis_daily") == [(35.0, 3)]
    rolling = query(
        "SELECT customer_id, day, purchases_7d, revenue_28d FROM customer_daily_rolling "
        "WHERE customer_id = 'b' ORDER BY day"
    )
    assert [r[2:] for r in rolling] == [(0, 0.0), (1, 5.0)]


def test_rerun_changes_nothing(resources, instance) -> None:
    ingest(settings.warehouse_path(), "b1", RECORDS)
    build(resources, instance, "2024-03-01", "2024-03-02")
    before = snapshot()
    build(resources, instance, "2024-03-01", "2024-03-02")
    assert snapshot() == before


def test_late_event_is_picked_up_by_a_rebuild_of_its_days(resources, instance) -> None:
    ingest(settings.warehouse_path(), "b1", RECORDS)
    build(resources, instance, "2024-03-01", "2024-03-02")
    untouched = query("SELECT * FROM customer_daily WHERE day = DATE '2024-03-01' ORDER BY ALL")
    # a late batch: a purchase on D2 that extends b's midnight session (which starts on D1)
    ingest(
        settings.warehouse_path(),
        "late",
        [purchase(7, 8.0, customer_id="b", occurred_at="2024-03-02T00:30:00Z", device="tablet")],
    )
    build(resources, instance, "2024-03-01", "2024-03-02")
    assert query("SELECT events, revenue FROM sessions WHERE customer_id = 'b'") == [(3, 13.0)]
    assert (
        query("SELECT * FROM customer_daily WHERE day = DATE '2024-03-01' ORDER BY ALL")
        == untouched
    )
    assert query("SELECT revenue FROM customer_daily WHERE day = DATE '2024-03-02'") == [(13.0,)]
    assert query("SELECT count(*) FROM sessions") == [(3,)]


def test_checks_catch_a_table_that_drifted_from_events(resources, instance) -> None:
    ingest(settings.warehouse_path(), "b1", RECORDS)
    build(resources, instance, "2024-03-01", "2024-03-02")
    with lakehouse.connect() as conn:
        conn.execute("UPDATE customer_daily SET revenue = revenue + 1 WHERE customer_id = 'a'")
        conn.execute("UPDATE kpis_daily SET purchases = purchases + 1")
        conn.execute(
            "INSERT INTO sessions SELECT * REPLACE (session_id || 'x' AS session_id) "
            "FROM sessions WHERE customer_id = 'b'"
        )
    with lakehouse.connect(read_only=True) as conn:
        outcomes = {
            check.__name__: check(conn, D1, D1 + timedelta(days=1))[0]
            for check in (
                checks.customer_daily_matches_events,
                checks.sessions_are_well_formed,
                checks.kpis_daily_match_events,
            )
        }
    assert outcomes == {
        "customer_daily_matches_events": False,
        "sessions_are_well_formed": False,
        "kpis_daily_match_events": False,
    }
