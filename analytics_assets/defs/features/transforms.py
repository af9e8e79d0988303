"""Customer feature snapshots and training labels (DuckDB SQL over the analytics tables).

A snapshot for as-of day D describes a customer at the end of D: it reads only activity of days
up to and including D, and is valid from ``D + 1 00:00 UTC`` (its ``event_timestamp``). Labels
look only at what happens after that instant. Together they make the point-in-time join leak-free.

Rolling sums come from running totals: the sum over the last N days is the running total at D
minus the running total at D - N, each found with an ASOF join, so the cost is one pass over
customer-days with activity plus one over the snapshot grid.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import duckdb

from analytics_assets.defs.analytics.transforms import utc_midnight
from analytics_assets.warehouse import identifier

FEATURE_COLUMNS: dict[str, str] = {
    "frequency": "BIGINT",
    "recency_days": "DOUBLE",
    "tenure_days": "DOUBLE",
    "monetary_value": "DOUBLE",
    "orders": "BIGINT",
    "average_order_value": "DOUBLE",
    "total_revenue": "DOUBLE",
    "days_since_last_purchase": "DOUBLE",
    "sessions_7d": "BIGINT",
    "sessions_28d": "BIGINT",
    "page_views_7d": "BIGINT",
    "page_views_28d": "BIGINT",
    "cart_abandonment_rate_28d": "DOUBLE",
    "days_since_last_session": "DOUBLE",
    "mobile_share_28d": "DOUBLE",
    "desktop_share_28d": "DOUBLE",
    "tablet_share_28d": "DOUBLE",
}
"""Every feature column of a snapshot, with its DuckDB type (the Feast views' schema)."""

_RUNNING = ("page_views", "sessions", "cart_sessions", "abandoned", "mobile", "desktop", "tablet")

_SNAPSHOT_SQL = f"""
WITH activity AS (
    SELECT customer_id, day,
           sum(page_views) AS page_views, sum(purchases) AS purchases, sum(revenue) AS revenue,
           sum(sessions) AS sessions, sum(cart_sessions) AS cart_sessions,
           sum(abandoned) AS abandoned, sum(mobile) AS mobile, sum(desktop) AS desktop,
           sum(tablet) AS tablet
    FROM (
        SELECT customer_id, day, page_views, purchases, revenue,
               0 AS sessions, 0 AS cart_sessions, 0 AS abandoned,
               0 AS mobile, 0 AS desktop, 0 AS tablet
        FROM customer_daily WHERE day <= $last
        UNION ALL
        SELECT customer_id, day, 0, 0, 0,
               count(*),
               count(*) FILTER (WHERE carts > 0),
               count(*) FILTER (WHERE carts > 0 AND purchases = 0),
               count(*) FILTER (WHERE device = 'mobile'),
               count(*) FILTER (WHERE device = 'desktop'),
               count(*) FILTER (WHERE device = 'tablet')
        FROM sessions WHERE day <= $last
        GROUP BY ALL
    )
    GROUP BY ALL
),
running AS (
    SELECT customer_id, day,
           {", ".join(f"sum({c}) OVER w AS {c}" for c in _RUNNING)},
           sum(purchases) OVER w AS orders,
           sum(revenue) OVER w AS revenue,
           count(*) FILTER (WHERE purchases > 0) OVER w AS purchase_days,
           min(day) FILTER (WHERE purchases > 0) OVER w AS first_purchase_day,
           max(day) FILTER (WHERE purchases > 0) OVER w AS last_purchase_day,
           first_value(CASE WHEN purchases > 0 THEN revenue END IGNORE NULLS) OVER w
               AS first_purchase_revenue,
           max(day) FILTER (WHERE sessions > 0) OVER w AS last_session_day
    FROM activity
    WINDOW w AS (PARTITION BY customer_id ORDER BY day ROWS UNBOUNDED PRECEDING)
),
shifted_7 AS (SELECT customer_id, day + 7 AS day, {", ".join(_RUNNING)} FROM running),
shifted_28 AS (SELECT customer_id, day + 28 AS day, {", ".join(_RUNNING)} FROM running),
customers AS (SELECT customer_id, min(day) AS first_day FROM activity GROUP BY ALL),
as_of_days AS (SELECT unnest($days::DATE[]) AS as_of),
grid AS (
    SELECT c.customer_id, d.as_of
    FROM customers c JOIN as_of_days d ON c.first_day <= d.as_of
),
joined AS (
    SELECT g.customer_id, g.as_of, r.*,
           {", ".join(f"coalesce(w7.{c}, 0) AS {c}_before_7" for c in _RUNNING)},
           {", ".join(f"coalesce(w28.{c}, 0) AS {c}_before_28" for c in _RUNNING)}
    FROM grid g
    ASOF LEFT JOIN running r ON g.customer_id = r.customer_id AND g.as_of >= r.day
    ASOF LEFT JOIN shifted_7 w7 ON g.customer_id = w7.customer_id AND g.as_of >= w7.day
    ASOF LEFT JOIN shifted_28 w28 ON g.customer_id = w28.customer_id AND g.as_of >= w28.day
)
SELECT
    customer_id,
    as_of,
    timezone('UTC', (as_of + 1)::TIMESTAMP) AS event_timestamp,
    $created_at::TIMESTAMPTZ AS created_at,
    greatest(purchase_days - 1, 0)::BIGINT AS frequency,
    (last_purchase_day - first_purchase_day)::DOUBLE AS recency_days,
    (as_of - first_purchase_day)::DOUBLE AS tenure_days,
    CASE WHEN purchase_days > 1
         THEN (revenue - first_purchase_revenue) / (purchase_days - 1) ELSE 0 END::DOUBLE
        AS monetary_value,
    orders::BIGINT AS orders,
    (revenue / nullif(orders, 0))::DOUBLE AS average_order_value,
    revenue::DOUBLE AS total_revenue,
    (as_of - last_purchase_day)::DOUBLE AS days_since_last_purchase,
    (sessions - sessions_before_7)::BIGINT AS sessions_7d,
    (sessions - sessions_before_28)::BIGINT AS sessions_28d,
    (page_views - page_views_before_7)::BIGINT AS page_views_7d,
    (page_views - page_views_before_28)::BIGINT AS page_views_28d,
    ((abandoned - abandoned_before_28)
        / nullif(cart_sessions - cart_sessions_before_28, 0))::DOUBLE
        AS cart_abandonment_rate_28d,
    (as_of - last_session_day)::DOUBLE AS days_since_last_session,
    ((mobile - mobile_before_28) / nullif(sessions - sessions_before_28, 0))::DOUBLE
        AS mobile_share_28d,
    ((desktop - desktop_before_28) / nullif(sessions - sessions_before_28, 0))::DOUBLE
        AS desktop_share_28d,
    ((tablet - tablet_before_28) / nullif(sessions - sessions_before_28, 0))::DOUBLE
        AS tablet_share_28d
FROM joined
"""


def snapshot_instant(as_of: date) -> datetime:
    """When the snapshot of ``as_of`` becomes valid: the end of that UTC day."""
    return utc_midnight(as_of + timedelta(days=1))


def day_range(start: date, end: date) -> list[date]:
    """The days of ``[start, end)``."""
    return [start + timedelta(days=n) for n in range((end - start).days)]


def customer_snapshots(
    conn: duckdb.DuckDBPyConnection, days: list[date], created_at: datetime
) -> duckdb.DuckDBPyRelation:
    """One row per customer per as-of day in ``days``, for every customer seen by then.

    Reads ``customer_daily`` and ``sessions`` (which must be built up to the last day).
    """
    params = {"days": sorted(days), "last": max(days), "created_at": created_at}
    return conn.sql(_SNAPSHOT_SQL, params=params)


def labels(
    conn: duckdb.DuckDBPyConnection,
    entities: str,
    churn_days: int,
    value_days: int,
) -> duckdb.DuckDBPyRelation:
    """Labels for each ``(customer_id, event_timestamp)`` row of the relation named ``entities``.

    ``churned``: no purchase in ``[t, t + churn_days)``; ``future_value``: revenue in
    ``[t, t + value_days)``. A snapshot valid from ``t`` holds only events before ``t``, so
    features and labels never share an event, and none falls between them.
    """
    identifier(entities)
    churn, value = int(churn_days), int(value_days)
    return conn.sql(
        f"""
        SELECT e.customer_id, e.event_timestamp,
               count(p.occurred_at) FILTER (
                   WHERE p.occurred_at < e.event_timestamp + INTERVAL {churn} DAY
               ) = 0 AS churned,
               coalesce(sum(p.amount) FILTER (
                   WHERE p.occurred_at < e.event_timestamp + INTERVAL {value} DAY
               ), 0)::DOUBLE AS future_value
        FROM {entities} e
        LEFT JOIN events p
          ON p.customer_id = e.customer_id
         AND p.event_type = 'purchase'
         AND p.occurred_at >= e.event_timestamp
         AND p.occurred_at < e.event_timestamp + INTERVAL {max(churn, value)} DAY
        GROUP BY ALL
        """
    )


def future_purchases(
    conn: duckdb.DuckDBPyConnection, entities: str, days: int
) -> duckdb.DuckDBPyRelation:
    """For each ``(customer_id, event_timestamp)`` row of ``entities``: purchase days and revenue
    in ``[t, t + days)``. Purchase days, because the snapshot's ``frequency`` counts repeat
    purchase days (several orders on one day are one transaction, as in the BG/NBD paper)."""
    identifier(entities)
    horizon = int(days)
    return conn.sql(
        f"""
        SELECT e.customer_id, e.event_timestamp,
               count(DISTINCT (p.occurred_at AT TIME ZONE 'UTC')::DATE)::BIGINT
                   AS purchase_days,
               coalesce(sum(p.amount), 0)::DOUBLE AS revenue
        FROM {entities} e
        LEFT JOIN events p
          ON p.customer_id = e.customer_id
         AND p.event_type = 'purchase'
         AND p.occurred_at >= e.event_timestamp
         AND p.occurred_at < e.event_timestamp + INTERVAL {horizon} DAY
        GROUP BY ALL
        """
    )
