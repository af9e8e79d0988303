"""Sessions, customer-day activity and KPI windows over the ``events`` table (DuckDB SQL).

Each function computes one derived table for a half-open range of UTC days and returns a DuckDB
relation, so the caller decides where it goes (a partition replace, a benchmark, a test).

Sessions: a customer's new session starts after ``gap_minutes`` of inactivity. A session belongs
to the UTC day it starts on. To decide whether the first events of a day continue a session of
the day before, and to follow sessions past midnight, events are read with a margin of one day on
each side; a session longer than that margin is cut at it. A late event on day D can therefore
change the sessions of D and of D - 1 (see :func:`session_days_affected`).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import duckdb

from analytics_assets.lib import lakehouse
from analytics_assets.lib.days import utc_midnight
from analytics_assets.lib.warehouse import identifier

DEFAULT_GAP_MINUTES = 30
_MARGIN = timedelta(days=1)


def session_days_affected(days_touched: list[date]) -> list[date]:
    """Days whose sessions must be recomputed when events of ``days_touched`` change."""
    return sorted({d for day in days_touched for d in (day, day - timedelta(days=1))})


def _bounds(start: date, end: date) -> dict[str, datetime]:
    """UTC instants of the day range, and of the range widened by the session margin."""
    lo, hi = utc_midnight(start), utc_midnight(end)
    return {"lo": lo, "hi": hi, "read_lo": lo - _MARGIN, "read_hi": hi + _MARGIN}


def _sessions_sql(gap_minutes: int, source: str) -> str:
    return f"""
        WITH scoped AS (
            SELECT customer_id, event_id, event_type, occurred_at, amount, device
            FROM {identifier(source)}
            WHERE occurred_at >= $read_lo AND occurred_at < $read_hi
        ),
        marked AS (
            SELECT *,
                   coalesce(
                       occurred_at - lag(occurred_at) OVER w > INTERVAL {int(gap_minutes)} MINUTE,
                       true
                   )::INT AS starts_session
            FROM scoped
            WINDOW w AS (PARTITION BY customer_id ORDER BY occurred_at, event_id)
        ),
        numbered AS (
            SELECT *,
                   sum(starts_session) OVER (
                       PARTITION BY customer_id ORDER BY occurred_at, event_id
                       ROWS UNBOUNDED PRECEDING
                   ) AS session_number
            FROM marked
        ),
        grouped AS (
            SELECT
                customer_id,
                min(occurred_at) AS session_start,
                max(occurred_at) AS session_end,
                count(*) AS events,
                count(*) FILTER (WHERE event_type = 'page_view') AS page_views,
                count(*) FILTER (WHERE event_type = 'add_to_cart') AS carts,
                count(*) FILTER (WHERE event_type = 'purchase') AS purchases,
                coalesce(sum(amount) FILTER (WHERE event_type = 'purchase'), 0) AS revenue,
                mode(device) AS device
            FROM numbered
            GROUP BY customer_id, session_number
        )
        SELECT
            customer_id || ':' || epoch_us(session_start)::VARCHAR AS session_id,
            customer_id,
            (session_start AT TIME ZONE 'UTC')::DATE AS day,
            session_start,
            session_end,
            epoch(session_end - session_start) AS duration_s,
            events, page_views, carts, purchases, revenue, device
        FROM grouped
        WHERE session_start >= $lo AND session_start < $hi
    """


def sessions(
    conn: duckdb.DuckDBPyConnection,
    start: date,
    end: date,
    gap_minutes: int = DEFAULT_GAP_MINUTES,
    source: str = "events",
) -> duckdb.DuckDBPyRelation:
    """Sessions starting on days ``[start, end)``, one row each, from the events in ``source``
    (a table or view with the columns of ``events``)."""
    return conn.sql(_sessions_sql(gap_minutes, source), params=_bounds(start, end))


def customer_daily(
    conn: duckdb.DuckDBPyConnection, start: date, end: date, source: str = "events"
) -> duckdb.DuckDBPyRelation:
    """One row per customer per UTC day with activity on days ``[start, end)``, from the
    events in ``source``."""
    bounds = _bounds(start, end)
    return conn.sql(
        f"""
        SELECT
            customer_id,
            (occurred_at AT TIME ZONE 'UTC')::DATE AS day,
            count(*) AS events,
            count(*) FILTER (WHERE event_type = 'page_view') AS page_views,
            count(*) FILTER (WHERE event_type = 'add_to_cart') AS carts,
            count(*) FILTER (WHERE event_type = 'purchase') AS purchases,
            coalesce(sum(quantity) FILTER (WHERE event_type = 'purchase'), 0) AS units,
            coalesce(sum(amount) FILTER (WHERE event_type = 'purchase'), 0) AS revenue,
            min(occurred_at) AS first_event_at,
            max(occurred_at) AS last_event_at
        FROM {identifier(source)}
        WHERE occurred_at >= $lo AND occurred_at < $hi
        GROUP BY ALL
        """,
        params={"lo": bounds["lo"], "hi": bounds["hi"]},
    )


def kpis(
    conn: duckdb.DuckDBPyConnection,
    start: date,
    end: date,
    grain: str,
    sessions_table: str = "sessions",
) -> duckdb.DuckDBPyRelation:
    """Tumbling-window KPIs per ``grain`` ('hour' or 'day') over days ``[start, end)``.

    Events, active customers, purchases and revenue count the events that occurred in the
    window. Sessions and conversion come from ``sessions_table`` (rows as :func:`sessions`
    makes them, already built for the range): ``sessions`` started in the window, and
    ``conversion_rate`` is the share of them with at least one purchase (a session with two
    purchases converts once, so the rate is never above 1). Average order value is revenue per
    purchase.
    """
    if grain not in ("hour", "day"):
        raise ValueError(f"grain must be 'hour' or 'day', not {grain!r}")
    identifier(sessions_table)
    bounds = _bounds(start, end)
    return conn.sql(
        f"""
        WITH per_window AS (
            SELECT date_trunc('{grain}', session_start AT TIME ZONE 'UTC') AS window_start,
                   count(*) AS sessions,
                   count(*) FILTER (WHERE purchases > 0) AS converted
            FROM {sessions_table}
            WHERE session_start >= $lo AND session_start < $hi
            GROUP BY ALL
        ),
        e AS (
            SELECT date_trunc('{grain}', occurred_at AT TIME ZONE 'UTC') AS window_start,
                   count(*) AS events,
                   count(DISTINCT customer_id) AS active_customers,
                   count(*) FILTER (WHERE event_type = 'purchase') AS purchases,
                   coalesce(sum(amount) FILTER (WHERE event_type = 'purchase'), 0) AS revenue
            FROM events
            WHERE occurred_at >= $lo AND occurred_at < $hi
            GROUP BY ALL
        )
        SELECT e.window_start, e.events, e.active_customers,
               coalesce(p.sessions, 0) AS sessions, e.purchases, e.revenue,
               CASE WHEN p.sessions > 0 THEN p.converted / p.sessions END AS conversion_rate,
               CASE WHEN e.purchases > 0 THEN e.revenue / e.purchases END AS average_order_value
        FROM e LEFT JOIN per_window p USING (window_start)
        ORDER BY e.window_start
        """,
        params={"lo": bounds["lo"], "hi": bounds["hi"]},
    )


def create_rolling_view(conn: duckdb.DuckDBPyConnection) -> None:
    """``customer_daily_rolling``: each customer-day with sums over the 7 and 28 days ending
    on it (calendar windows, so days without activity count as zero). A catalog write like
    any other: on a SQLite catalog it waits its turn with the batch commits (outside the
    commit lock it failed with "database is locked" while the daemon ingested)."""
    windows = []
    for days in (7, 28):
        frame = f"w{days}"
        windows += [
            f"sum(events) OVER {frame} AS events_{days}d",
            f"sum(page_views) OVER {frame} AS page_views_{days}d",
            f"sum(carts) OVER {frame} AS carts_{days}d",
            f"sum(purchases) OVER {frame} AS purchases_{days}d",
            f"sum(revenue) OVER {frame} AS revenue_{days}d",
        ]
    statement = f"""
        CREATE OR REPLACE VIEW customer_daily_rolling AS
        SELECT customer_id, day, {", ".join(windows)}
        FROM customer_daily
        WINDOW
            w7 AS (PARTITION BY customer_id ORDER BY day
                   RANGE BETWEEN INTERVAL 6 DAYS PRECEDING AND CURRENT ROW),
            w28 AS (PARTITION BY customer_id ORDER BY day
                    RANGE BETWEEN INTERVAL 27 DAYS PRECEDING AND CURRENT ROW)
        """
    lakehouse.run_transaction(conn, lambda c: c.execute(statement), what="customer_daily_rolling")
