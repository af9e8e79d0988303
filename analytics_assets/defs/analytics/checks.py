"""Checks next to the analytics assets, over the day range the run rebuilt.

Each check is a plain function of a connection and a day range (tested directly), wrapped by an
``@asset_check`` that supplies the run's range.
"""

from datetime import date

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from analytics_assets.lib import lakehouse
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
    conn: duckdb.DuckDBPyConnection, lo: date, hi: date, version: int | None = None
) -> CheckOutcome:
    """Events, purchases and revenue of days ``[lo, hi)`` in customer_daily vs in events (at
    snapshot ``version``: the one the rebuild read, while other runs add events)."""
    events = lakehouse.as_of("events", version)
    row = conn.execute(
        f"""
        SELECT
            (SELECT coalesce(sum(events), 0) FROM customer_daily WHERE day >= $lo AND day < $hi),
            (SELECT coalesce(sum(purchases), 0) FROM customer_daily
             WHERE day >= $lo AND day < $hi),
            (SELECT round(coalesce(sum(revenue), 0), 2) FROM customer_daily
             WHERE day >= $lo AND day < $hi),
            (SELECT count(*) FROM {events} WHERE occurred_at >= $lo_ts AND occurred_at < $hi_ts),
            (SELECT count(*) FILTER (WHERE event_type = 'purchase') FROM {events}
             WHERE occurred_at >= $lo_ts AND occurred_at < $hi_ts),
            (SELECT round(coalesce(sum(amount) FILTER (WHERE event_type = 'purchase'), 0), 2)
             FROM {events} WHERE occurred_at >= $lo_ts AND occurred_at < $hi_ts)
        """,
        _instants(lo, hi),
    ).fetchall()[0]
    daily, events = row[:3], row[3:]
    return daily == events, {
        "customer_daily (events, purchases, revenue)": str(daily),
        "events (events, purchases, revenue)": str(events),
    }


def sessions_are_well_formed(
    conn: duckdb.DuckDBPyConnection, lo: date, hi: date, version: int | None = None
) -> CheckOutcome:
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


def kpis_daily_match_events(
    conn: duckdb.DuckDBPyConnection, lo: date, hi: date, version: int | None = None
) -> CheckOutcome:
    """Per day of ``[lo, hi)``, kpis_daily purchases and revenue equal those of events at
    snapshot ``version`` (the one the rebuild read; customer_daily reconciles to the same)."""
    events = lakehouse.as_of("events", version)
    mismatched = conn.execute(
        f"""
        SELECT count(*) FROM (
            SELECT (occurred_at AT TIME ZONE 'UTC')::DATE AS day,
                   count(*) FILTER (WHERE event_type = 'purchase') AS purchases,
                   round(coalesce(sum(amount) FILTER (WHERE event_type = 'purchase'), 0), 2)
                       AS revenue
            FROM {events} WHERE occurred_at >= $lo_ts AND occurred_at < $hi_ts GROUP BY 1
        ) e FULL JOIN (
            SELECT window_start::DATE AS day, purchases, round(revenue, 2) AS revenue
            FROM kpis_daily WHERE window_start >= $lo AND window_start < $hi
        ) k USING (day)
        WHERE e.purchases IS DISTINCT FROM k.purchases OR e.revenue IS DISTINCT FROM k.revenue
        """,
        _instants(lo, hi),
    ).fetchall()[0][0]
    return mismatched == 0, {"days_mismatched": mismatched}


def _run(context, warehouse: DuckDBResource, check) -> dg.AssetCheckResult:
    window = context.partition_time_window
    version = read_snapshot(context)
    with warehouse.get_connection() as conn:
        passed, metadata = check(conn, window.start.date(), window.end.date(), version)
    return dg.AssetCheckResult(
        passed=passed, metadata={**metadata, "events_snapshot": version if version else ""}
    )


def read_snapshot(context) -> int | None:
    """The lakehouse snapshot the checked asset read in this run (its ``events_snapshot``)."""
    key = context.check_specs[0].asset_key if context.check_specs else None
    if key is None:
        return None
    event = context.instance.get_latest_materialization_event(key)
    if event is None or event.run_id != context.run.run_id:
        return None
    entry = event.asset_materialization.metadata.get(SNAPSHOT)
    return int(entry.value) if entry is not None else None


SNAPSHOT = "events_snapshot"
"""Materialization metadata of the day tables: the lakehouse snapshot whose events they were
built from (their checks compare against that snapshot)."""


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
    """Daily revenue and purchases equal those of the events the KPIs were built from."""
    return _run(context, warehouse, kpis_daily_match_events)
