"""Checks next to the analytics assets, over the day range the run rebuilt.

Each check is a plain function of a connection and a day range (tested directly), wrapped by an
``@asset_check`` that supplies the run's range.
"""

from datetime import date

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from analytics_assets.lib.days import utc_midnight
from analytics_assets.partitions import days

CheckOutcome = tuple[bool, dict[str, object]]


def _instants(lo: date, hi: date) -> dict[str, object]:
    return {
        "lo": lo,
        "hi": hi,
        "lo_ts": utc_midnight(lo),
        "hi_ts": utc_midnight(hi),
    }


def customer_daily_matches_events(
    conn: duckdb.DuckDBPyConnection, lo: date, hi: date
) -> CheckOutcome:
    """Events, purchases and revenue of days ``[lo, hi)`` in customer_daily vs in events."""
    row = conn.execute(
        """
        SELECT
            (SELECT coalesce(sum(events), 0) FROM customer_daily WHERE day >= $lo AND day < $hi),
            (SELECT coalesce(sum(purchases), 0) FROM customer_daily
             WHERE day >= $lo AND day < $hi),
            (SELECT round(coalesce(sum(revenue), 0), 2) FROM customer_daily
             WHERE day >= $lo AND day < $hi),
            (SELECT count(*) FROM events WHERE occurred_at >= $lo_ts AND occurred_at < $hi_ts),
            (SELECT count(*) FILTER (WHERE event_type = 'purchase') FROM events
             WHERE occurred_at >= $lo_ts AND occurred_at < $hi_ts),
            (SELECT round(coalesce(sum(amount) FILTER (WHERE event_type = 'purchase'), 0), 2)
             FROM events WHERE occurred_at >= $lo_ts AND occurred_at < $hi_ts)
        """,
        _instants(lo, hi),
    ).fetchall()[0]
    daily, events = row[:3], row[3:]
    return daily == events, {
        "customer_daily (events, purchases, revenue)": str(daily),
        "events (events, purchases, revenue)": str(events),
    }


def sessions_are_well_formed(conn: duckdb.DuckDBPyConnection, lo: date, hi: date) -> CheckOutcome:
    """Session ids of days ``[lo, hi)`` are unique to one customer; no customer's sessions
    overlap."""
    shared_ids, overlaps = conn.execute(
        """
        WITH affected AS (
            SELECT DISTINCT customer_id FROM sessions WHERE day >= $lo AND day < $hi
        ),
        ordered AS (
            SELECT s.customer_id, s.session_start,
                   lag(s.session_end) OVER (
                       PARTITION BY s.customer_id ORDER BY s.session_start
                   ) AS previous_end
            FROM sessions s SEMI JOIN affected USING (customer_id)
        )
        SELECT
            (SELECT count(*) FROM (
                SELECT session_id FROM sessions WHERE day >= $lo AND day < $hi
                GROUP BY session_id HAVING count(*) > 1)),
            (SELECT count(*) FROM ordered WHERE session_start <= previous_end)
        """,
        {"lo": lo, "hi": hi},
    ).fetchall()[0]
    return shared_ids == 0 and overlaps == 0, {
        "session_ids_not_unique": shared_ids,
        "overlapping_sessions": overlaps,
    }


def kpis_daily_match_customer_daily(
    conn: duckdb.DuckDBPyConnection, lo: date, hi: date
) -> CheckOutcome:
    """Per day of ``[lo, hi)``, kpis_daily purchases and revenue equal customer_daily sums."""
    mismatched = conn.execute(
        """
        SELECT count(*) FROM (
            SELECT day, sum(purchases) AS purchases, round(sum(revenue), 2) AS revenue
            FROM customer_daily WHERE day >= $lo AND day < $hi GROUP BY day
        ) c FULL JOIN (
            SELECT window_start::DATE AS day, purchases, round(revenue, 2) AS revenue
            FROM kpis_daily WHERE window_start >= $lo AND window_start < $hi
        ) k USING (day)
        WHERE c.purchases IS DISTINCT FROM k.purchases OR c.revenue IS DISTINCT FROM k.revenue
        """,
        {"lo": lo, "hi": hi},
    ).fetchall()[0][0]
    return mismatched == 0, {"days_mismatched": mismatched}


def _run(context, warehouse: DuckDBResource, check) -> dg.AssetCheckResult:
    window = context.partition_time_window
    with warehouse.get_connection() as conn:
        passed, metadata = check(conn, window.start.date(), window.end.date())
    return dg.AssetCheckResult(passed=passed, metadata=metadata)


_COMMON = {"partitions_def": days}


@dg.asset_check(asset="customer_daily", blocking=True, **_COMMON)
def customer_daily_reconciles(
    context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource
) -> dg.AssetCheckResult:
    """Events, purchases and revenue of the rebuilt days equal those in events."""
    return _run(context, warehouse, customer_daily_matches_events)


@dg.asset_check(asset="sessions", blocking=True, **_COMMON)
def sessions_well_formed(
    context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource
) -> dg.AssetCheckResult:
    """Each session belongs to one customer, and a customer's sessions never overlap."""
    return _run(context, warehouse, sessions_are_well_formed)


@dg.asset_check(asset="kpis_daily", **_COMMON)
def kpis_daily_reconciles(
    context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource
) -> dg.AssetCheckResult:
    """Daily revenue and purchases equal the sums of customer_daily."""
    return _run(context, warehouse, kpis_daily_match_customer_daily)
